"""The organisation (grids and workers) in the database, synchronised from `grids.yaml`; worker registration.

Sync is idempotent: a worker is matched by (name, role, grid) and its flags are refreshed; a Telegram id in
the file becomes that worker's Telegram account unless another worker already holds it (an admin registered
it: the registration is kept and the clash is logged). Workers registered by an admin and not in the file are
left alone. Registration writes its audit event.
"""

from __future__ import annotations

import logging
from datetime import datetime

from sqlmodel import Session, col, select

from casestore.accounts import get_account, get_worker_by_account, link_worker_account
from casestore.audit import record_audit
from casestore.errors import DomainError
from casestore.models import Account, Grid, Worker, utcnow
from policies.models import Grids, StaffEntry
from policies.taxonomy import ROLE_NAMES_ZH, Role

log = logging.getLogger(__name__)


def _staff_rows(grids: Grids) -> list[tuple[StaffEntry, Role, str | None, str | None]]:
    rows: list[tuple[StaffEntry, Role, str | None, str | None]] = [
        (grids.street_command, Role.street_command, None, None)]
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


def sync_org(*, session: Session, grids: Grids, now: datetime | None = None) -> tuple[int, int]:
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
        worker.active = entry.active
        worker.on_leave = entry.on_leave
        worker.is_deputy = entry.deputy
        worker.is_lead = entry.lead
        session.add(worker)
        session.flush()
        if entry.telegram_id is not None:
            _sync_account(session, worker, str(entry.telegram_id), now or utcnow())
    session.flush()
    return sum(len(c.grids) for c in grids.communities), len(rows)


def _sync_account(session: Session, worker: Worker, external_id: str, now: datetime) -> None:
    account = get_account(session=session, channel="telegram", external_id=external_id)
    if account is None:
        session.add(Account(channel="telegram", external_id=external_id, worker_id=worker.id, created_at=now))
    elif account.worker_id != worker.id:
        log.warning("grids.yaml gives telegram id ***%s to %s, but it is registered to %s: the registration is kept",
                    external_id[-3:], f"worker:{worker.id}",
                    f"worker:{account.worker_id}" if account.worker_id else "a resident")


def register_worker(*, session: Session, channel: str, external_id: int | str, grid: Grid, role: Role,
                    actor: str, now: datetime) -> Worker:
    """Make this account a worker of `grid` in `role` (a new worker, or the one it already is); audited."""
    worker = get_worker_by_account(session=session, channel=channel, external_id=external_id)
    if get_account(session=session, channel=channel, external_id=external_id) is not None and worker is None:
        raise DomainError("account belongs to a resident", "这个账号是居民账号，不能直接登记为工作人员。")
    if worker is None:
        worker = Worker(name=f"{grid.name}{ROLE_NAMES_ZH[role]}", role=role.value)
    before = {"role": worker.role, "grid": worker.grid_id} if worker.id is not None else None
    worker.role, worker.grid_id, worker.community_id, worker.active = role.value, grid.id, grid.community_id, True
    session.add(worker)
    session.flush()
    link_worker_account(session=session, worker=worker, channel=channel, external_id=external_id, actor=actor,
                        now=now)
    record_audit(session=session, actor=actor, action="register_worker", subject=f"worker:{worker.id}", now=now,
                 data={"role": role.value, "grid": grid.id, "before": before, "channel": channel})
    return worker


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
