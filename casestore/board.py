"""The case board and the SLA risk lists the console shows: which cases, in what order, how close to breach.

Owns: the SLA risk of a case (`risk_of`: 已超时 / 2 小时内到期 / 正常, the same rule as a SQL filter), the board
query (`list_board`: filters, scope grid ids, newest or most urgent first, clamped paging), open cases by
escalation level, the workers a case may be reassigned to within a scope, the Chinese names of statuses and
audit actions as staff read them, how an audit actor is shown (role and name, never a resident's id) and the
masking of free text for the console (phones, ID numbers and room numbers).
"Overdue" is `casestore.stats.is_overdue`'s rule; a figure (counts, rates, loads) belongs in casestore.stats.
Must not: change anything, or know the console (scope comes in as grid ids).
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import ColumnElement, and_, case, false, func, or_
from sqlmodel import Session, col, select

from casestore.models import Case, Worker
from casestore.notices import role_name
from casestore.states import OPEN
from policies.masking import mask_text

DUE_SOON = timedelta(hours=2)
MAX_LIMIT = 200
MAX_OFFSET = 1_000_000
_OPEN = [s.value for s in OPEN]

# staff-facing status names (the resident's own wording is bot/dialogue/texts.STATUS_NAMES)
STATUS_LABELS = {
    "new": "已登记", "assigned": "已派单", "accepted": "已接单", "in_progress": "办理中",
    "resolved": "已办结待评价", "closed": "已结案", "reopened": "重新办理",
}
OPEN_LABEL = "在办（全部未结）"
ACTION_LABELS = {
    "created": "受理登记", "assign": "分派", "accept": "接单", "respond": "已联系居民", "start": "开始办理",
    "resolve": "办结", "confirm": "居民确认", "auto_close": "超时未评价自动结案", "reopen": "重新办理",
    "transfer": "转派", "escalate": "超时升级", "request_extension": "申请延期", "approve_extension": "批准延期",
    "merge_duplicate": "合并为重复工单", "withdraw": "撤回", "note": "备注", "link_hotspot": "归入热点",
    "close": "结案",
}
CLOSE_REASON_LABELS = {
    "rated": "居民评价后结案", "auto_closed_without_rating": "超时未评价自动结案", "duplicate": "重复工单已合并",
    "withdrawn": "居民撤回", "closed_by_staff": "工作人员结案",
}


class Risk(StrEnum):
    overdue = "overdue"
    due_soon = "due_soon"
    normal = "normal"


RISK_LABELS = {Risk.overdue: "已超时", Risk.due_soon: "2 小时内到期", Risk.normal: "正常"}


class Order(StrEnum):
    newest = "newest"
    urgent = "urgent"


ORDER_LABELS = {Order.newest: "最新在前", Order.urgent: "最紧急在前"}


# ---------------------------------------------------------------- risk of one case
def running_due(c: Case) -> datetime | None:
    """The deadline the case runs against now: its response due while unanswered, else its resolution due."""
    if c.status not in _OPEN:
        return None
    if c.first_response_at is None and c.response_due_at is not None:
        if c.resolve_due_at is not None and c.resolve_due_at < c.response_due_at:
            return c.resolve_due_at
        return c.response_due_at
    return c.resolve_due_at


def risk_of(c: Case, now: datetime) -> Risk | None:
    """已超时 past a running due time (casestore.stats' overdue), 2 小时内到期 within DUE_SOON, else 正常; None
    when the case is not open."""
    if c.status not in _OPEN:
        return None
    due = running_due(c)
    if due is not None and now > due:
        return Risk.overdue
    if due is not None and due <= now + DUE_SOON:
        return Risk.due_soon
    return Risk.normal


def _due_before(moment: datetime, *, strict: bool) -> ColumnElement[bool]:
    """Open and a running due time before `moment` (strict) or at it."""
    def cmp(column: Any) -> ColumnElement[bool]:
        return column < moment if strict else column <= moment
    return and_(col(Case.status).in_(_OPEN),
                or_(and_(col(Case.first_response_at).is_(None), col(Case.response_due_at).is_not(None),
                         cmp(col(Case.response_due_at))),
                    and_(col(Case.resolve_due_at).is_not(None), cmp(col(Case.resolve_due_at)))))


def risk_clause(risk: Risk, now: datetime) -> ColumnElement[bool]:
    """`risk_of(case, now) == risk` as a SQL condition."""
    overdue = _due_before(now, strict=True)
    if risk is Risk.overdue:
        return overdue
    soon = _due_before(now + DUE_SOON, strict=False)
    if risk is Risk.due_soon:
        return and_(soon, ~overdue)
    return and_(col(Case.status).in_(_OPEN), ~soon)


def _due_expr() -> Any:
    return case((col(Case.status).not_in(_OPEN), None),
                (and_(col(Case.first_response_at).is_(None), col(Case.response_due_at).is_not(None)),
                 col(Case.response_due_at)),
                else_=col(Case.resolve_due_at))


_URGENCY_RANK = case((col(Case.urgency) == "emergency", 2), (col(Case.urgency) == "urgent", 1), else_=0)


# ---------------------------------------------------------------- the board
@dataclass(frozen=True)
class BoardPage:
    cases: list[Case]
    total: int
    limit: int
    offset: int


def clamp_page(limit: int | None, offset: int | None, default: int = 50) -> tuple[int, int]:
    """Paging within bounds whatever was asked: 1..MAX_LIMIT rows from 0..MAX_OFFSET."""
    lim = default if limit is None else limit
    return max(1, min(MAX_LIMIT, lim)), max(0, min(MAX_OFFSET, offset or 0))


def scope_clause(grid_ids: Collection[str] | None) -> ColumnElement[bool] | None:
    """Cases in these grids (None: every case; an empty scope: none, and a case with no grid only for None)."""
    if grid_ids is None:
        return None
    if not grid_ids:
        return false()
    return col(Case.grid_id).in_(sorted(grid_ids))


def list_board(*, session: Session, now: datetime, grid_ids: Collection[str] | None, status: str | None = None,
               grid_id: str | None = None, category: str | None = None, urgency: str | None = None,
               risk: Risk | None = None, order: Order = Order.newest, limit: int | None = 50,
               offset: int | None = 0) -> BoardPage:
    """The cases of `grid_ids` matching the filters (status "open" = every open status), one page of them."""
    where: list[ColumnElement[bool]] = []
    scoped = scope_clause(grid_ids)
    if scoped is not None:
        where.append(scoped)
    if status == "open":
        where.append(col(Case.status).in_(_OPEN))
    elif status:
        where.append(col(Case.status) == status)
    if grid_id:
        where.append(col(Case.grid_id) == grid_id)
    if category:
        where.append(col(Case.category) == category)
    if urgency:
        where.append(col(Case.urgency) == urgency)
    if risk is not None:
        where.append(risk_clause(risk, now))
    lim, off = clamp_page(limit, offset)
    total = session.exec(select(func.count()).select_from(Case).where(*where)).one()
    stmt = select(Case).where(*where)
    if order is Order.urgent:
        stmt = stmt.order_by(_due_expr().asc().nulls_last(), _URGENCY_RANK.desc(), col(Case.created_at).desc(),
                             col(Case.id).desc())
    else:
        stmt = stmt.order_by(col(Case.created_at).desc(), col(Case.id).desc())
    return BoardPage(cases=list(session.exec(stmt.offset(off).limit(lim))), total=int(total), limit=lim, offset=off)


def open_by_escalation_level(*, session: Session, grid_ids: Collection[str] | None) -> dict[int, int]:
    """Open cases at each escalation level they have reached in their current phase (level >= 1)."""
    stmt = (select(col(Case.escalation_level), func.count()).where(col(Case.status).in_(_OPEN),
                                                                   col(Case.escalation_level) > 0)
            .group_by(col(Case.escalation_level)))
    scoped = scope_clause(grid_ids)
    if scoped is not None:
        stmt = stmt.where(scoped)
    return {int(level): int(n) for level, n in session.exec(stmt)}


# ---------------------------------------------------------------- people
def workers_in_scope(*, session: Session, grid_ids: Collection[str] | None,
                     community_ids: Collection[str] | None) -> list[Worker]:
    """Active workers not on leave that a case may be reassigned to: those of the scope's grids or communities."""
    stmt = select(Worker).where(col(Worker.active).is_(True), col(Worker.on_leave).is_(False))
    if grid_ids is not None:
        stmt = stmt.where(or_(col(Worker.grid_id).in_(sorted(grid_ids)),
                              and_(col(Worker.grid_id).is_(None),
                                   col(Worker.community_id).in_(sorted(community_ids or ())))))
    return list(session.exec(stmt.order_by(col(Worker.community_id), col(Worker.grid_id), col(Worker.id))))


def workers_by_id(*, session: Session, ids: Iterable[int]) -> dict[int, Worker]:
    wanted = sorted(set(ids))
    if not wanted:
        return {}
    return {w.id: w for w in session.exec(select(Worker).where(col(Worker.id).in_(wanted))) if w.id is not None}


def worker_ids_of(labels: Iterable[str]) -> set[int]:
    """The worker ids named by audit actor labels ("worker:7")."""
    out: set[int] = set()
    for label in labels:
        kind, _, ident = label.partition(":")
        if kind == "worker" and ident.isdigit():
            out.add(int(ident))
    return out


def worker_label(worker: Worker | None) -> str:
    """"专职网格员 王磊": position and name (staff, shown to staff); a name that already says the position alone."""
    if worker is None:
        return "—"
    return staff_label(name=worker.name, role=worker.role)


def staff_label(*, name: str, role: str | None) -> str:
    """A position and a name as one label, the position once."""
    position = role_name(role)
    return name if position and position in name else f"{position} {name}".strip()


def actor_display(label: str, workers: dict[int, Worker]) -> str:
    """How an audit actor is shown: 居民 / 网格员的岗位和姓名 / 管理员 name / 系统; never a resident's id."""
    kind, _, rest = label.partition(":")
    if kind == "resident":
        return "居民"
    if kind == "worker":
        return worker_label(workers.get(int(rest))) if rest.isdigit() else "网格员"
    if kind == "admin":
        channel, _, name = rest.partition(":")
        return f"管理员 {name}" if channel == "web" and name else "管理员"
    if kind == "system":
        return "系统"
    return "其他"


# ---------------------------------------------------------------- masking for the console
_ROOM_AFTER_UNIT = re.compile(r"(单元\s*)(\d{2,4})(?!\d)")
_ROOM_BEFORE_WORD = re.compile(r"(?<![\d-])(\d{3,4})(\s*(?:室|号房|户))")
_ROOM_DASHED = re.compile(r"(?<![\dA-Za-z-])(\d{1,2}-\d{1,2}-)(\d{3,4})(?!\d)")


def mask_public(text: str | None) -> str:
    """`text` as the console shows it: phones and ID numbers masked (policies.masking) and room numbers hidden
    (301室 → ***室, 2单元301 → 2单元***, 3-2-301 → 3-2-***); buildings and units stay, they route the case."""
    if not text:
        return ""
    out = mask_text(text)
    out = _ROOM_DASHED.sub(lambda m: m.group(1) + "***", out)
    out = _ROOM_AFTER_UNIT.sub(lambda m: m.group(1) + "***", out)
    return _ROOM_BEFORE_WORD.sub(lambda m: "***" + m.group(2), out)
