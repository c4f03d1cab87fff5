"""The organisation (grids and workers) in the database, synchronised from `grids.yaml`.

Sync is idempotent: a worker is matched by (name, role, grid); telegram ids and flags are refreshed.
Workers registered by an admin command and not in the file are left alone.
"""

from __future__ import annotations

from sqlmodel import Session, col, select

from casestore.models import Grid, Worker
from policies.models import Grids, StaffEntry
from policies.taxonomy import Role


def _staff_rows(grids: Grids) -> list[tuple[StaffEntry, Role, str | None, str | None]]:
    rows: list[tuple[StaffEntry, Role, str | None, str | None]] = [(grids.street_command, Role.street_command, None, None)]
    for c in grids.communities:
        rows += [
            (c.staff.supervisor, Role.supervisor, None, c.id),
            (c.staff.duty_desk, Role.duty_desk, None, c.id),
            (c.staff.mediator, Role.mediator, None, c.id),
            (c.staff.property_manager, Role.property_manager, None, c.id),
        ]
        for g in c.grids:
            rows.append((g.workers.full_time, Role.full_time, g.id, c.id))
            rows += [(p, Role.part_time, g.id, c.id) for p in g.workers.part_time]
            rows += [(v, Role.volunteer, g.id, c.id) for v in g.workers.volunteer]
    return rows


def sync_org(*, session: Session, grids: Grids) -> tuple[int, int]:
    """Upsert grids and workers from the policy file; returns (grids, workers) counts."""
    for c in grids.communities:
        for g in c.grids:
            row = session.get(Grid, g.id) or Grid(id=g.id, name=g.name, community_id=c.id,
                                                  community_name=c.name, street_id=grids.street.id)
            row.name, row.community_id, row.community_name = g.name, c.id, c.name
            session.add(row)
    session.flush()
    existing = {(w.name, w.role, w.grid_id): w for w in session.exec(select(Worker))}
    rows = _staff_rows(grids)
    for entry, role, grid_id, community_id in rows:
        worker = existing.get((entry.name, role.value, grid_id))
        if worker is None:
            worker = Worker(name=entry.name, role=role.value, grid_id=grid_id)
        worker.community_id = community_id
        worker.telegram_id = entry.telegram_id
        worker.active = entry.active
        worker.on_leave = entry.on_leave
        worker.is_deputy = entry.deputy
        worker.is_lead = entry.lead
        session.add(worker)
    session.flush()
    return sum(len(c.grids) for c in grids.communities), len(rows)


def get_worker_by_telegram(*, session: Session, telegram_id: int) -> Worker | None:
    return session.exec(select(Worker).where(Worker.telegram_id == telegram_id)).first()


def list_workers(*, session: Session, grid_id: str | None = None, community_id: str | None = None,
                 role: str | None = None) -> list[Worker]:
    stmt = select(Worker)
    if grid_id is not None:
        stmt = stmt.where(Worker.grid_id == grid_id)
    if community_id is not None:
        stmt = stmt.where(Worker.community_id == community_id)
    if role is not None:
        stmt = stmt.where(Worker.role == role)
    return list(session.exec(stmt.order_by(col(Worker.id))))
