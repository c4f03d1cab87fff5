"""The organisation (grids and workers) in the database, synchronised from `grids.yaml`; worker registration.

Two kinds of worker rows live side by side:
- file positions, one per staff entry of `grids.yaml`, matched by (name, role, grid) and refreshed by every sync;
- registered workers, made at run time by an admin (`/register_worker`, the console). The audit trail says which
  they are (a `register_worker` event on the worker), so no sync ever matches, refreshes or duplicates them.

Leave, deputy, active and lead of a file position: a change made at run time (the console's 人员, a worker's
/leave) wins until grids.yaml changes that field of that entry itself. Each sync records what the file said
(`FILE_VALUES_ACTION`, only when it changed) and sets a field only when the file's value differs from the one it
recorded last (`file_wins`), so restarting or `db upgrade` never undoes a change made in the console.

Registering an account a file position holds makes a registered worker and moves the account to it; the file
position stays where the file puts it. A Telegram id in the file becomes that position's account unless a
registered worker or a resident holds it (the registration is kept and the clash is logged); one another file
position holds is moved (the file was edited). A clash the database still refuses raises `OrgSyncError`, one
line for a person. Must not: know any channel's API or delete a worker.
"""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from casestore.accounts import get_account, get_worker_by_account, link_worker_account
from casestore.audit import list_audit, record_audit
from casestore.db import DatabaseConfigError
from casestore.errors import DomainError
from casestore.models import Account, Grid, Worker, utcnow
from policies.models import Grids, StaffEntry
from policies.taxonomy import ROLE_NAMES_ZH, Role

log = logging.getLogger(__name__)

REGISTER_ACTION = "register_worker"
SYNC_ACTOR = "grids.yaml"
FILE_VALUES_ACTION = "org_file_values"  # what grids.yaml said for a position's synced fields, at the last change
# a file position's fields a sync copies from its entry (Worker attribute, StaffEntry attribute), and the audited
# run-time changes of them (casestore.staff), which win until the file changes that field
SYNCED_FIELDS = (("on_leave", "on_leave"), ("is_deputy", "deputy"), ("active", "active"), ("is_lead", "lead"))
RUNTIME_ACTIONS = {"on_leave": "set_leave", "is_deputy": "set_deputy", "active": "set_active"}
_SYNC_LOCK = 0x7162_6f72_6700  # "qborg": one sync at a time on PostgreSQL (several replicas may start at once)


class OrgSyncError(DatabaseConfigError):
    """grids.yaml cannot be loaded into this database; the message is one line for a person."""


def _staff_rows(grids: Grids) -> list[tuple[StaffEntry, Role, str | None, str | None]]:
    rows: list[tuple[StaffEntry, Role, str | None, str | None]] = [
        (grids.street_command, Role.street_command, None, None)]
    for c in grids.communities:
        rows += [
            (c.staff.supervisor, Role.supervisor, None, c.id),
            (c.staff.duty_desk, Role.duty_desk, None, c.id),
            (c.staff.mediator, Role.mediator, None, c.id),
            (c.staff.property_manager, Role.property_manager, None, c.id),
            *[(v, Role.volunteer, None, c.id) for v in c.staff.volunteer],
            *[(p, Role.party_member, None, c.id) for p in c.staff.party_member],
        ]
        for g in c.grids:
            rows.append((g.workers.full_time, Role.full_time, g.id, c.id))
            rows += [(p, Role.part_time, g.id, c.id) for p in g.workers.part_time]
            rows += [(v, Role.volunteer, g.id, c.id) for v in g.workers.volunteer]
            rows += [(p, Role.party_member, g.id, c.id) for p in g.workers.party_member]
    return rows


def registered_worker_ids(*, session: Session) -> set[int]:
    """The workers an admin registered at run time (not file positions): subjects of `register_worker` events."""
    ids: set[int] = set()
    for event in list_audit(session=session, action=REGISTER_ACTION):
        kind, _, ident = event.subject.partition(":")
        if kind == "worker" and ident.isdigit() and not event.data.get("file_position"):
            ids.add(int(ident))
    return ids


def file_values_applied(*, session: Session) -> dict[int, dict[str, bool]]:
    """Per file position, the synced fields' values grids.yaml gave at the last sync that saw them change."""
    out: dict[int, dict[str, bool]] = {}
    for event in list_audit(session=session, action=FILE_VALUES_ACTION):  # oldest first: the last one stays
        kind, _, ident = event.subject.partition(":")
        if kind == "worker" and ident.isdigit():
            out[int(ident)] = {k: bool(v) for k, v in (event.data or {}).items()}
    return out


def changed_at_runtime(*, session: Session) -> set[tuple[int, str]]:
    """(worker id, field) pairs someone changed at run time (an audited set_leave / set_deputy / set_active)."""
    out: set[tuple[int, str]] = set()
    for attr, action in RUNTIME_ACTIONS.items():
        for event in list_audit(session=session, action=action):
            kind, _, ident = event.subject.partition(":")
            if kind == "worker" and ident.isdigit() and event.actor != SYNC_ACTOR:
                out.add((int(ident), attr))
    return out


def file_wins(*, worker_id: int | None, attr: str, filed: bool, applied: dict[int, dict[str, bool]],
              runtime: set[tuple[int, str]]) -> bool:
    """Whether a sync sets `attr` of a file position to the file's value `filed`: a new position, the file's
    value changed since the last sync recorded it, or (nothing recorded yet) nobody changed it at run time."""
    if worker_id is None:
        return True
    last = applied.get(worker_id)
    if last is None or attr not in last:
        return (worker_id, attr) not in runtime
    return last[attr] != filed


def _lock_for_sync(session: Session) -> None:
    """Serialise concurrent syncs (two hosts starting at once) so neither inserts what the other just did."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _SYNC_LOCK})
    else:  # SQLite: a first write takes the database's write lock (waiting within the busy timeout)
        session.execute(text("UPDATE grid SET name = name WHERE 1 = 0"))


def sync_org(*, session: Session, grids: Grids, now: datetime | None = None) -> tuple[int, int]:
    """Upsert grids and file positions from the policy file, leaving registered workers alone; returns
    (grids, workers) counts. Raises OrgSyncError (one line) for a clash the database refuses."""
    try:
        return _sync(session, grids, now or utcnow())
    except IntegrityError as exc:  # the caller's unit of work rolls back
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig is not None else type(exc).__name__
        raise OrgSyncError(f"无法把 grids.yaml 的人员同步进数据库（{reason}）：已登记的人员未改动；请检查 grids.yaml "
                           "中的电报ID是否与已登记的账号重复，改正后再运行 quanbot db upgrade。") from exc


def _sync(session: Session, grids: Grids, now: datetime) -> tuple[int, int]:
    _lock_for_sync(session)
    for c in grids.communities:
        for g in c.grids:
            row = session.get(Grid, g.id) or Grid(id=g.id, name=g.name, community_id=c.id,
                                                  community_name=c.name, street_id=grids.street.id)
            row.name, row.community_id, row.community_name = g.name, c.id, c.name
            session.add(row)
    session.flush()
    registered = registered_worker_ids(session=session)
    positions: dict[tuple[str, str, str | None], Worker] = {}
    for w in session.exec(select(Worker).order_by(col(Worker.id))):
        if w.id not in registered:  # the oldest row of a position is the position
            positions.setdefault((w.name, w.role, w.grid_id), w)
    rows = _staff_rows(grids)
    applied, runtime = file_values_applied(session=session), changed_at_runtime(session=session)
    for entry, role, grid_id, community_id in rows:
        worker = positions.get((entry.name, role.value, grid_id))
        if worker is None:
            worker = Worker(name=entry.name, role=role.value, grid_id=grid_id)
            positions[(entry.name, role.value, grid_id)] = worker
        worker.community_id = community_id
        filed = {attr: bool(getattr(entry, key)) for attr, key in SYNCED_FIELDS}
        for attr, value in filed.items():
            if file_wins(worker_id=worker.id, attr=attr, filed=value, applied=applied, runtime=runtime):
                setattr(worker, attr, value)
        session.add(worker)
        session.flush()
        if applied.get(worker.id or 0) != filed:
            record_audit(session=session, actor=SYNC_ACTOR, action=FILE_VALUES_ACTION, subject=f"worker:{worker.id}",
                         now=now, data=filed)
            applied[worker.id or 0] = filed
        if entry.telegram_id is not None:
            _sync_account(session, worker, str(entry.telegram_id), now, registered)
    session.flush()
    return sum(len(c.grids) for c in grids.communities), len(rows)


def _sync_account(session: Session, worker: Worker, external_id: str, now: datetime, registered: set[int]) -> None:
    account = get_account(session=session, channel="telegram", external_id=external_id)
    if account is None:
        session.add(Account(channel="telegram", external_id=external_id, worker_id=worker.id, created_at=now))
    elif account.worker_id == worker.id:
        return
    elif account.worker_id is not None and account.worker_id not in registered:
        # another file position held it: the file was edited, the file wins
        link_worker_account(session=session, worker=worker, channel="telegram", external_id=external_id,
                            actor=SYNC_ACTOR, now=now)
    else:
        # an admin reads this under `quanbot db upgrade`: Chinese
        log.warning("grids.yaml 把电报ID ***%s 给了 %s，但它已登记给 %s：保留登记，未改动", external_id[-3:],
                    f"worker:{worker.id}", f"worker:{account.worker_id}" if account.worker_id else "一位居民")


def register_worker(*, session: Session, channel: str, external_id: int | str, grid: Grid, role: Role,
                    actor: str, now: datetime, name: str | None = None) -> Worker:
    """Make this account a worker of `grid` in `role`; audited. The account's registered worker is updated; an
    account of a file position gets a registered worker of its own (the position stays as grids.yaml says)."""
    holder = get_worker_by_account(session=session, channel=channel, external_id=external_id)
    if get_account(session=session, channel=channel, external_id=external_id) is not None and holder is None:
        raise DomainError("account belongs to a resident", "这个账号是居民账号，不能直接登记为工作人员。")
    if holder is not None and holder.id not in registered_worker_ids(session=session):
        if (holder.role, holder.grid_id) == (role.value, grid.id):  # already this file position: nothing moves
            holder.active = True
            session.add(holder)
            record_audit(session=session, actor=actor, action=REGISTER_ACTION, subject=f"worker:{holder.id}",
                         now=now, data={"role": role.value, "grid": grid.id, "before": None, "channel": channel,
                                        "file_position": True})
            return holder
        holder = None
    worker = holder or Worker(name=name or f"{grid.name}{ROLE_NAMES_ZH[role]}", role=role.value)
    before = {"role": worker.role, "grid": worker.grid_id} if worker.id is not None else None
    worker.role, worker.grid_id, worker.community_id, worker.active = role.value, grid.id, grid.community_id, True
    if name:
        worker.name = name
    session.add(worker)
    session.flush()
    link_worker_account(session=session, worker=worker, channel=channel, external_id=external_id, actor=actor,
                        now=now)
    record_audit(session=session, actor=actor, action=REGISTER_ACTION, subject=f"worker:{worker.id}", now=now,
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
