"""The reminder sweep: due reminders, the escalation ladder and auto-close, driven by `Case.next_reminder_at`.

Each case carries one cursor, `next_reminder_at`: the next instant something may be due for it (a reminder
point, a breach, the next ladder level, or the auto-close time), or NULL when nothing more is due. The sweep
reads only cases whose cursor has passed, through the partial index `ix_case_open_reminder`, claims them with
SELECT ... FOR UPDATE SKIP LOCKED on PostgreSQL (other schedulers skip them; SQLite serialises writers), and in
ONE transaction per batch writes each case's change together with its Notification rows (recorded under
`uq_notification_once`, ON CONFLICT DO NOTHING, so a repeated sweep never adds a second row).
It reads plain rows (only the columns a plan needs, no ORM objects) and writes with a fixed number of
executemany statements per batch (state changes, cursor moves, audit events, notifications), so a batch
costs a few round trips whatever its size.

Phases of an open case: "response" until `first_response_at` is set (window clock_started_at →
response_due_at), then "resolve" (clock_started_at → resolve_due_at). In a phase: reminders at the sla.yaml
fractions of the window ("还剩 X 分钟"), then on breach one ladder level per step: level 1 (community
supervisor) at the due time, the next level `repeat_after_fraction` of the window after that escalation,
each time notifying that level AND the assignee. `escalation_level` counts levels within the current phase
(it restarts at 0 when a phase starts: first response, transfer, reopen, approved extension).
After downtime only the latest passed reminder point is sent (stale ones are skipped), and a breach
escalates one level now and schedules the next one a full step later: no burst of stale pushes.
A resolved case is auto-closed (`auto_closed_without_rating`) `resident_feedback.auto_close_after` after
resolution if the resident has not answered.

Notification keys: kind "remind_response"/"remind_resolve" with level = cycle*10 + point index,
kind "escalation" (response breach) / "escalation_resolve" with level = cycle*10 + ladder level, where
cycle = `Case.clock_cycle` (0 for a case's first clock; transfers and reopens start a new cycle).
Must not: send anything itself (dispatch does), or decide routing.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import Select, Table, bindparam, select, update
from sqlalchemy.engine import Engine
from sqlmodel import Session
from sqlmodel import select as select_model

from casestore import notices
from casestore.accounts import Address, worker_addresses
from casestore.cases import PlannedAction, apply_actions_bulk
from casestore.clock import Clock
from casestore.db import session_scope
from casestore.deadlines import SlaPolicy
from casestore.dispatch import notification_row, record_many
from casestore.errors import ConcurrentUpdate
from casestore.models import Case, CaseStatus, CloseReason, Worker
from casestore.states import OPEN
from policies.models import Policies
from policies.taxonomy import Role

log = logging.getLogger(__name__)
CYCLE_STRIDE = 10  # level = cycle * CYCLE_STRIDE + index: keeps each clock cycle's keys apart
_OPEN_VALUES = frozenset(s.value for s in OPEN)


class Clocked(Protocol):
    """What planning needs of a case: an ORM `Case` or a `DueCase` row both fit."""

    @property
    def status(self) -> str: ...
    @property
    def urgency(self) -> str: ...
    @property
    def created_at(self) -> datetime: ...
    @property
    def clock_started_at(self) -> datetime | None: ...
    @property
    def first_response_at(self) -> datetime | None: ...
    @property
    def response_due_at(self) -> datetime | None: ...
    @property
    def resolve_due_at(self) -> datetime | None: ...
    @property
    def resolved_at(self) -> datetime | None: ...
    @property
    def escalation_level(self) -> int: ...


@dataclass(frozen=True, slots=True)
class DueCase:
    """The columns of a due case that the sweep reads (field order = SELECT column order)."""

    id: int
    code: str
    title: str
    status: str
    urgency: str
    created_at: datetime
    clock_started_at: datetime | None
    first_response_at: datetime | None
    response_due_at: datetime | None
    resolve_due_at: datetime | None
    resolved_at: datetime | None
    escalation_level: int
    clock_cycle: int
    assignee_id: int | None
    community_id: str | None
    version: int


def phase(case: Clocked) -> str | None:
    """"response", "resolve", "auto_close" or None (nothing can fall due)."""
    if case.status == CaseStatus.resolved:
        return "auto_close"
    if case.status in _OPEN_VALUES:
        return "response" if case.first_response_at is None else "resolve"
    return None


def window(case: Clocked, ph: str) -> tuple[datetime, datetime | None]:
    start = case.clock_started_at or case.created_at
    return start, case.response_due_at if ph == "response" else case.resolve_due_at


def first_reminder_at(sla: SlaPolicy, urgency: str, start: datetime, due: datetime, now: datetime) -> datetime:
    """The cursor at the start of a phase (or after a reminder): the next point after `now`, else the due time."""
    future = [p for p in sla.reminder_points(urgency, start, due) if p > now]
    return future[0] if future else due


def next_point(case: Clocked, sla: SlaPolicy, now: datetime) -> datetime | None:
    """The cursor for a case whose phase has just (re)started, e.g. after an action."""
    ph = phase(case)
    if ph is None:
        return None
    if ph == "auto_close":
        resolved = case.resolved_at or now
        return resolved + sla.sla.resident_feedback.auto_close_delta
    start, due = window(case, ph)
    return None if due is None else first_reminder_at(sla, case.urgency, start, due, now)


@dataclass(frozen=True)
class Plan:
    """What one sweep step does to one case (pure; computed before any write)."""

    next_at: datetime | None
    reminder: tuple[str, int, int] | None = None  # (phase, point index, minutes left)
    escalate_to: int | None = None
    auto_close: bool = False
    phase: str | None = None


def plan(case: Clocked, sla: SlaPolicy, now: datetime) -> Plan:
    ph = phase(case)
    if ph is None:
        return Plan(next_at=None)
    if ph == "auto_close":
        at = (case.resolved_at or now) + sla.sla.resident_feedback.auto_close_delta
        return Plan(next_at=None, auto_close=True, phase=ph) if now >= at else Plan(next_at=at, phase=ph)
    start, due = window(case, ph)
    if due is None:
        return Plan(next_at=None, phase=ph)
    top = max(step.level for step in sla.sla.escalation.ladder)
    if now < due:
        points = sla.reminder_points(case.urgency, start, due)
        passed = [i for i, p in enumerate(points) if p <= now]
        future = [p for p in points if p > now]
        reminder = None
        if passed:  # only the latest passed point: earlier ones are sent already or stale
            left = max(1, round(sla.clock_for(case.urgency).running_minutes(now, due)))
            reminder = (ph, passed[-1], left)
        return Plan(next_at=future[0] if future else due, reminder=reminder, phase=ph)
    if case.escalation_level >= top:
        return Plan(next_at=None, phase=ph)
    level = case.escalation_level + 1
    following = sla.next_escalation_after(case.urgency, start, due, now) if level < top else None
    return Plan(next_at=following, escalate_to=level, phase=ph)


@dataclass
class SweepReport:
    due: int = 0
    reminders: int = 0
    escalations: int = 0
    auto_closed: int = 0
    errors: int = 0
    notifications: int = 0  # rows offered for recording (duplicates are dropped by the constraint)
    query_ms: float = 0.0
    total_ms: float = 0.0
    codes: list[str] = field(default_factory=list)


@dataclass
class _Org:
    workers: dict[int, Worker]
    supervisors: dict[str | None, Worker]
    street: Worker | None
    addresses: dict[int, Address]

    @classmethod
    def load(cls, session: Session) -> _Org:
        workers = {w.id: w for w in session.exec(select_model(Worker)) if w.id is not None}
        supervisors = {w.community_id: w for w in workers.values() if w.role == Role.supervisor.value}
        street = next((w for w in workers.values() if w.role == Role.street_command.value), None)
        return cls(workers, supervisors, street, worker_addresses(session=session))

    def address(self, worker: Worker) -> Address | None:
        return self.addresses.get(worker.id) if worker.id is not None else None

    def ladder_holder(self, role: str, community_id: str | None) -> Worker | None:
        return self.street if role == Role.street_command.value else self.supervisors.get(community_id)


_CASE: Table = Case.__table__  # type: ignore[attr-defined]  # SQLModel does not declare __table__
_DUE_COLUMNS = [_CASE.c[f.name] for f in fields(DueCase)]


def due_cases_stmt(now: datetime, batch: int, dialect: str) -> Select[Any]:
    """The `DueCase` columns of at most `batch` due cases, oldest cursor first (claimed on PostgreSQL)."""
    cursor = _CASE.c.next_reminder_at
    stmt = select(*_DUE_COLUMNS).where(cursor.is_not(None), cursor <= now).order_by(cursor).limit(batch)
    if dialect == "postgresql":
        stmt = stmt.with_for_update(skip_locked=True)
    return stmt


def _move_cursors(session: Session, moves: list[dict[str, Any]]) -> None:
    """Set `next_reminder_at` of cases that only had a reminder (or nothing) due, guarded by the version.

    A cursor move is not a state change (no audit event) but bumps the version, so a concurrent writer
    that read the old row gets ConcurrentUpdate instead of a lost update (and so do we, the other way).
    """
    if not moves:
        return
    stmt = (update(_CASE)
            .where(_CASE.c.id == bindparam("b_id"), _CASE.c.version == bindparam("b_version"))
            .values(next_reminder_at=bindparam("v_next_at", type_=_CASE.c.next_reminder_at.type),
                    version=_CASE.c.version + 1))
    result = session.connection().execute(stmt, moves)
    if result.rowcount != len(moves):  # executemany: the sum over all rows
        raise ConcurrentUpdate(f"{len(moves) - result.rowcount} of {len(moves)} swept cases changed under us")


def sweep(*, engine: Engine, policies: Policies, sla: SlaPolicy, clock: Clock, batch: int = 1000) -> SweepReport:
    """One sweep step over at most `batch` due cases; see the module docstring."""
    t0 = time.perf_counter()
    now = clock.now()
    report = SweepReport()
    ladder = {step.level: step for step in policies.sla.escalation.ladder}
    with session_scope(engine) as session:
        result = session.connection().execute(due_cases_stmt(now, batch, engine.dialect.name))
        cases = [DueCase(*row) for row in result.tuples()]
        report.query_ms = (time.perf_counter() - t0) * 1000
        report.due = len(cases)
        if not cases:
            report.total_ms = report.query_ms
            return report
        org = _Org.load(session)
        rows: list[dict[str, Any]] = []
        actions: list[PlannedAction] = []
        cursor_moves: list[dict[str, Any]] = []
        for case in cases:
            try:
                p = plan(case, sla, now)
            except Exception:  # one bad case must not stop the others' reminders
                log.exception("sweep: cannot plan case %s", case.code)
                report.errors += 1
                continue
            base = case.clock_cycle * CYCLE_STRIDE
            assignee = org.workers.get(case.assignee_id) if case.assignee_id is not None else None
            if p.auto_close:
                actions.append(PlannedAction(
                    case_id=case.id, code=case.code, version=case.version, status=case.status, action="auto_close",
                    changes={"close_reason": CloseReason.auto_closed_without_rating.value, "closed_at": now,
                             "next_reminder_at": None},
                    note="居民超时未评价，自动办结（不计入满意）"))
                report.auto_closed += 1
                continue
            if p.escalate_to is not None:
                step = ladder[p.escalate_to]
                actions.append(PlannedAction(
                    case_id=case.id, code=case.code, version=case.version, status=case.status, action="escalate",
                    changes={"escalation_level": p.escalate_to, "next_reminder_at": p.next_at},
                    data={"level": p.escalate_to, "role": step.role, "phase": p.phase}))
                kind = "escalation" if p.phase == "response" else "escalation_resolve"
                holder = org.ladder_holder(step.role, case.community_id)
                if holder is not None:
                    rows.append(notification_row(
                        case_id=case.id, kind=kind, level=base + p.escalate_to, recipient=f"worker:{holder.id}",
                        address=org.address(holder), now=now,
                        message=notices.escalation(case, level=p.escalate_to, level_name=step.name,
                                                   what=p.phase or "response", assignee=assignee, tz=sla.tz)))
                if assignee is not None and (holder is None or holder.id != assignee.id):
                    rows.append(notification_row(
                        case_id=case.id, kind=kind, level=base + p.escalate_to, recipient=f"worker:{assignee.id}",
                        address=org.address(assignee), now=now,
                        message=notices.escalation_to_assignee(case, level=p.escalate_to, level_name=step.name,
                                                               what=p.phase or "response", tz=sla.tz)))
                report.escalations += 1
                report.codes.append(case.code)
                continue
            if p.reminder is not None and assignee is not None:
                ph, index, left = p.reminder
                rows.append(notification_row(
                    case_id=case.id, kind=f"remind_{ph}", level=base + index, recipient=f"worker:{assignee.id}",
                    address=org.address(assignee), now=now,
                    message=notices.reminder(case, what=ph, minutes_left=left, tz=sla.tz)))
                report.reminders += 1
                report.codes.append(case.code)
            cursor_moves.append({"b_id": case.id, "b_version": case.version, "v_next_at": p.next_at})
        # state changes (with their audit events), cursor moves, then the pushes: all in this transaction
        apply_actions_bulk(session=session, actions=actions, actor="system", now=now)
        _move_cursors(session, cursor_moves)
        record_many(session=session, rows=rows)
        report.notifications = len(rows)
    report.total_ms = (time.perf_counter() - t0) * 1000
    return report


def sweep_all(*, engine: Engine, policies: Policies, sla: SlaPolicy, clock: Clock, batch: int = 1000,
              max_batches: int = 50) -> SweepReport:
    """Sweep until nothing is due (bounded), summing the batches."""
    total = SweepReport()
    for _ in range(max_batches):
        r = sweep(engine=engine, policies=policies, sla=sla, clock=clock, batch=batch)
        for name in ("due", "reminders", "escalations", "auto_closed", "errors", "notifications"):
            setattr(total, name, getattr(total, name) + getattr(r, name))
        total.query_ms += r.query_ms
        total.total_ms += r.total_ms
        total.codes += r.codes
        if r.due < batch:
            break
    return total
