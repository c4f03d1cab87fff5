"""The console's staff work (人员): who is on the team, where they came from, and the changes an admin makes.

Owns: `list_staff` (workers with their channel accounts, open load and origin: a grids.yaml position, a worker
registered at run time, or a row the file no longer has), the fields a grids.yaml sync would put back
(`sync_reverts`), and the audited changes: registering a worker by name (with or without a Telegram id, through
`casestore.org.register_worker` when an account is given), leave, deputy, active, linking and unlinking a
channel account. Every change writes its AuditEvent in the caller's transaction.
Must not: decide who may see whom (the console passes the scope's grid and community ids), know a channel's API,
or change how grids.yaml is synchronised (casestore.org owns that).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from sqlalchemy import func
from sqlmodel import Session, col, select

from casestore.accounts import get_account, link_worker_account
from casestore.audit import record_audit
from casestore.errors import DomainError, NotFound
from casestore.models import OPEN_STATUSES, Account, Case, Grid, Worker
from casestore.org import (
    REGISTER_ACTION,
    _staff_rows,
    changed_at_runtime,
    file_values_applied,
    file_wins,
    register_worker,
    registered_worker_ids,
)
from policies.models import Grids, StaffEntry
from policies.taxonomy import ROLE_NAMES_ZH, Role

NAME_MAX = 60
# the channels a worker's account may live on, with the names an admin reads
CHANNEL_NAMES = {"telegram": "电报", "wechat": "微信公众号", "wecom": "企业微信", "terminal": "终端"}
_NUMERIC_CHANNELS = frozenset({"telegram", "terminal"})
_ID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


class Origin(StrEnum):
    file = "file"  # a staff entry of grids.yaml: every sync (db upgrade, each start) refreshes it from the file
    registered = "registered"  # registered at run time: no sync touches it
    stale = "stale"  # neither: a position the file no longer has (or a duplicate row); no sync touches it


ORIGIN_NAMES = {Origin.file: "grids.yaml", Origin.registered: "运行中登记", Origin.stale: "grids.yaml 已无此岗位"}
# the fields a sync copies from a grids.yaml entry onto its position
_SYNCED = (("on_leave", "on_leave", "请假"), ("is_deputy", "deputy", "副网格员"), ("active", "active", "在用"),
           ("is_lead", "lead", "志愿者队长"))


@dataclass
class StaffRecord:
    worker: Worker
    origin: Origin
    accounts: list[Account] = field(default_factory=list)
    open_load: int = 0
    # what the next sync would put back: (field label, value now, value grids.yaml gives)
    reverts: list[tuple[str, bool, bool]] = field(default_factory=list)
    entry: StaffEntry | None = None  # the grids.yaml entry of a file position

    def from_file(self, account: Account) -> bool:
        """This account is the position's Telegram id in grids.yaml: a sync links it again if it is removed."""
        return (self.entry is not None and self.entry.telegram_id is not None and account.channel == "telegram"
                and account.external_id == str(self.entry.telegram_id))


def mask_external_id(external_id: str) -> str:
    """A channel id as an admin sees it in a list: the last three characters only (***124)."""
    return "***" + external_id[-3:] if len(external_id) > 3 else "***"


def role_name(role: str) -> str:
    try:
        return ROLE_NAMES_ZH[Role(role)]
    except ValueError:
        return role


def file_entries(grids: Grids) -> dict[tuple[str, str, str | None], StaffEntry]:
    """grids.yaml's staff entries by the key a sync matches a position on: (name, role, grid)."""
    return {(entry.name, role.value, grid_id): entry for entry, role, grid_id, _c in _staff_rows(grids)}


def origins(*, session: Session, grids: Grids) -> dict[int, Origin]:
    """Every worker's origin, by the rule casestore.org.sync_org matches positions with."""
    registered = registered_worker_ids(session=session)
    keys = file_entries(grids)
    seen: set[tuple[str, str, str | None]] = set()
    out: dict[int, Origin] = {}
    for w in session.exec(select(Worker).order_by(col(Worker.id))):
        assert w.id is not None
        key = (w.name, w.role, w.grid_id)
        if w.id in registered:
            out[w.id] = Origin.registered
        elif key in keys and key not in seen:  # the oldest row of a position is the position
            seen.add(key)
            out[w.id] = Origin.file
        else:
            out[w.id] = Origin.stale
    return out


def sync_reverts(worker: Worker, entry: StaffEntry | None, *, applied: dict[int, dict[str, bool]],
                 runtime: set[tuple[int, str]]) -> list[tuple[str, bool, bool]]:
    """The fields of a grids.yaml position the next sync sets to the file's value: those that differ from the
    file where the file wins (casestore.org.file_wins: grids.yaml changed that field since the last sync). A
    change made in the console stays until then."""
    if entry is None:
        return []
    out = []
    for attr, key, label in _SYNCED:
        now, filed = bool(getattr(worker, attr)), bool(getattr(entry, key))
        if now != filed and file_wins(worker_id=worker.id, attr=attr, filed=filed, applied=applied,
                                      runtime=runtime):
            out.append((label, now, filed))
    return out


def open_loads(*, session: Session, worker_ids: Iterable[int]) -> dict[int, int]:
    """Open cases per assignee."""
    ids = list(worker_ids)
    if not ids:
        return {}
    stmt = (select(col(Case.assignee_id), func.count())
            .where(col(Case.assignee_id).in_(ids), col(Case.status).in_([s.value for s in OPEN_STATUSES]))
            .group_by(col(Case.assignee_id)))
    return {int(a): int(n) for a, n in session.exec(stmt) if a is not None}


def in_scope(worker: Worker, *, grid_ids: frozenset[str] | None, community_ids: frozenset[str] | None) -> bool:
    """Street scope (`grid_ids` None) sees everyone; otherwise the workers of those grids, and the community
    staff who have no grid (网格长, 值班台, …) of `community_ids` (the console passes none for a grid's scope)."""
    if grid_ids is None:
        return True
    if worker.grid_id is not None:
        return worker.grid_id in grid_ids
    return community_ids is not None and worker.community_id in community_ids


def list_staff(*, session: Session, grids: Grids, grid_ids: frozenset[str] | None,
               community_ids: frozenset[str] | None, include_inactive: bool = True) -> list[StaffRecord]:
    """The workers in scope with their accounts, open load, origin and what a sync would put back."""
    workers = [w for w in session.exec(select(Worker).order_by(col(Worker.id)))
               if in_scope(w, grid_ids=grid_ids, community_ids=community_ids) and (include_inactive or w.active)]
    return _records(session, grids, workers)


def staff_record(*, session: Session, grids: Grids, worker: Worker) -> StaffRecord:
    return _records(session, grids, [worker])[0]


def _records(session: Session, grids: Grids, workers: list[Worker]) -> list[StaffRecord]:
    entries = file_entries(grids)
    origin = origins(session=session, grids=grids)
    ids = [w.id for w in workers if w.id is not None]
    accounts: dict[int, list[Account]] = {}
    if ids:
        for a in session.exec(select(Account).where(col(Account.worker_id).in_(ids)).order_by(col(Account.id))):
            assert a.worker_id is not None
            accounts.setdefault(a.worker_id, []).append(a)
    loads = open_loads(session=session, worker_ids=ids)
    applied, runtime = file_values_applied(session=session), changed_at_runtime(session=session)
    out = []
    for w in workers:
        assert w.id is not None
        kind = origin.get(w.id, Origin.stale)
        entry = entries.get((w.name, w.role, w.grid_id)) if kind is Origin.file else None
        reverts = sync_reverts(w, entry, applied=applied, runtime=runtime)
        out.append(StaffRecord(w, kind, accounts.get(w.id, []), loads.get(w.id, 0), reverts, entry))
    return out


def get_worker(*, session: Session, worker_id: int) -> Worker:
    worker = session.get(Worker, worker_id)
    if worker is None:
        raise NotFound(f"worker {worker_id}", "没有找到这位工作人员。")
    return worker


def clean_name(name: str) -> str:
    value = " ".join(name.split())
    if not value:
        raise DomainError("empty name", "请填写姓名或岗位名称。")
    if len(value) > NAME_MAX:
        raise DomainError("name too long", f"姓名或岗位名称最多 {NAME_MAX} 个字。")
    return value


def clean_external_id(channel: str, external_id: str) -> str:
    value = external_id.strip()
    if channel not in CHANNEL_NAMES:
        raise DomainError(f"unknown channel {channel!r}",
                          f"没有这个渠道：可选 {'、'.join(CHANNEL_NAMES.values())}。")
    if channel in _NUMERIC_CHANNELS:
        if not value.isdigit() or not 1 <= len(value) <= 20:
            raise DomainError("bad numeric id", f"{CHANNEL_NAMES[channel]} ID 应为数字（对方发 /myid 可查看）。")
    elif not _ID_PATTERN.match(value):
        raise DomainError("bad id", f"{CHANNEL_NAMES[channel]} ID 只能由字母、数字、下划线或短横线组成（最多 64 位）。")
    return value


def register_by_name(*, session: Session, name: str, grid: Grid, role: Role, actor: str, now: datetime,
                     telegram_id: str | None = None) -> Worker:
    """Register a worker of `grid` in `role` by name; with a Telegram id the account is linked too
    (casestore.org.register_worker). A registration is audited, so no grids.yaml sync touches it."""
    name = clean_name(name)
    if telegram_id:
        external = clean_external_id("telegram", telegram_id)
        return register_worker(session=session, channel="telegram", external_id=external, grid=grid, role=role,
                               actor=actor, now=now, name=name)
    worker = Worker(name=name, role=role.value, grid_id=grid.id, community_id=grid.community_id, active=True)
    session.add(worker)
    session.flush()
    record_audit(session=session, actor=actor, action=REGISTER_ACTION, subject=f"worker:{worker.id}", now=now,
                 data={"role": role.value, "grid": grid.id, "before": None, "channel": None})
    return worker


def _change(session: Session, worker: Worker, attr: str, value: bool, *, actor: str, action: str,
            now: datetime) -> bool:
    before = bool(getattr(worker, attr))
    if before == value:
        return False
    setattr(worker, attr, value)
    session.add(worker)
    session.flush()
    record_audit(session=session, actor=actor, action=action, subject=f"worker:{worker.id}", now=now,
                 data={attr: value, "before": before})
    return True


def set_leave(*, session: Session, worker: Worker, on_leave: bool, actor: str, now: datetime) -> bool:
    """Put a worker on leave or back; routing then passes their cases to the deputy or the supervisor."""
    return _change(session, worker, "on_leave", on_leave, actor=actor, action="set_leave", now=now)


def set_active(*, session: Session, worker: Worker, active: bool, actor: str, now: datetime) -> bool:
    """Deactivate (or reactivate) a worker; nothing is deleted, their cases keep their history."""
    return _change(session, worker, "active", active, actor=actor, action="set_active", now=now)


def set_deputy(*, session: Session, worker: Worker, deputy: bool, actor: str, now: datetime) -> bool:
    """Make a part-time worker the deputy of their grid (the one routing falls back to), or clear it; the grid's
    other deputy, if any, is cleared so the grid has one."""
    if deputy and (worker.role != Role.part_time.value or worker.grid_id is None):
        raise DomainError("deputy must be part-time",
                          "只有网格里的兼职网格员可以设为副网格员（专职网格员请假时接替）。")
    changed = _change(session, worker, "is_deputy", deputy, actor=actor, action="set_deputy", now=now)
    if changed and deputy:
        others = select(Worker).where(col(Worker.grid_id) == worker.grid_id, col(Worker.id) != worker.id,
                                      col(Worker.is_deputy).is_(True))
        for other in session.exec(others):
            _change(session, other, "is_deputy", False, actor=actor, action="set_deputy", now=now)
    return changed


def link_account(*, session: Session, worker: Worker, channel: str, external_id: str, actor: str,
                 now: datetime) -> Account:
    """Give a worker one more channel account; an account a resident or another worker holds is refused."""
    external = clean_external_id(channel, external_id)
    held = get_account(session=session, channel=channel, external_id=external)
    if held is not None and held.worker_id != worker.id:
        if held.worker_id is None:
            raise DomainError("account belongs to a resident", "这个账号是居民账号，不能直接关联为工作人员。")
        holder = session.get(Worker, held.worker_id)
        raise DomainError("account held by another worker",
                          f"这个账号已关联到「{holder.name if holder else '另一位工作人员'}」，请先在其名下解除关联。")
    return link_worker_account(session=session, worker=worker, channel=channel, external_id=external, actor=actor,
                               now=now)


def unlink_account(*, session: Session, worker: Worker, account_id: int, actor: str, now: datetime) -> None:
    """Remove one of a worker's channel accounts (the person's next message there starts as a stranger)."""
    account = session.get(Account, account_id)
    if account is None or account.worker_id != worker.id:
        raise NotFound(f"account {account_id}", "这位工作人员没有这个渠道账号。")
    record_audit(session=session, actor=actor, action="unlink_account", subject=f"worker:{worker.id}", now=now,
                 data={"channel": account.channel, "account": account.id,
                       "external": mask_external_id(account.external_id)})
    session.delete(account)
    session.flush()
