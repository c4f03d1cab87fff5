"""Case data functions: create, read, list and change cases. Keyword-only, with an explicit session.

Every change goes through `apply_action`, which checks the state machine, bumps the version and writes
the audit event in the same transaction. Must not: know about channels or the LLM.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Table, bindparam, insert, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm.attributes import set_committed_value
from sqlmodel import Session, col, select

from casestore.errors import ConcurrentUpdate, NotFound
from casestore.models import Case, CaseCounter, CaseCreate, CaseEvent
from casestore.states import OPEN, next_status


def next_case_code(*, session: Session, local_day: str, prefix: str) -> str:
    """Atomically take the next number of the day: JN20261122-0042. Safe with concurrent writers."""
    dialect = session.get_bind().dialect.name
    ins = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(CaseCounter)
    stmt = (
        ins.values(day=local_day, value=1)
        .on_conflict_do_update(index_elements=["day"], set_={"value": col(CaseCounter.value) + 1})
        .returning(col(CaseCounter.value))
    )
    number: int = session.execute(stmt).scalar_one()
    return f"{prefix}{local_day}-{number:04d}"


def create_case(
    *,
    session: Session,
    case_in: CaseCreate,
    code: str,
    now: datetime,
    actor: str,
    extra: dict[str, Any] | None = None,
    note: str | None = None,
) -> Case:
    """Insert a new case and its `created` event in the caller's transaction."""
    case = Case.model_validate(case_in, update={"code": code, "created_at": now, "clock_started_at": now,
                                                **(extra or {})})
    session.add(case)
    session.flush()
    assert case.id is not None  # flushed: the database has assigned it
    session.add(CaseEvent(case_id=case.id, at=now, actor=actor, action="created", to_status=case.status, note=note,
                          data={"intent": case.intent, "category": case.category, "urgency": case.urgency}))
    return case


def get_case(*, session: Session, case_id: int | None = None, code: str | None = None,
             for_update: bool = False) -> Case:
    stmt = select(Case)
    stmt = stmt.where(col(Case.id) == case_id) if case_id is not None else stmt.where(col(Case.code) == code)
    if for_update:
        stmt = stmt.with_for_update()
    case = session.exec(stmt).first()
    if case is None:
        raise NotFound(f"case {case_id or code} not found")
    return case


def apply_action(
    *,
    session: Session,
    case: Case,
    action: str,
    actor: str,
    now: datetime,
    note: str | None = None,
    changes: dict[str, Any] | None = None,
    data: dict[str, Any] | None = None,
) -> Case:
    """Check `action` against the state machine, apply `changes`, and write the audit event atomically.

    The update is guarded by the row version, so a concurrent writer gets ConcurrentUpdate instead of
    silently overwriting the other's change.
    """
    before = case.status
    after = next_status(before, action)
    values: dict[str, Any] = dict(changes or {})
    values["status"] = after.value
    values["version"] = case.version + 1
    # synchronize_session=False: the default "evaluate" scans every object in the session per UPDATE
    # (quadratic in a sweep batch); this object is brought up to date just below instead.
    result = session.execute(
        update(Case).where(col(Case.id) == case.id, col(Case.version) == case.version).values(**values)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        raise ConcurrentUpdate(f"case {case.code} changed under us")
    for key, value in values.items():
        set_committed_value(case, key, value)  # the row already holds it: no second UPDATE at flush
    assert case.id is not None  # a case that was read or flushed has its id
    session.add(CaseEvent(case_id=case.id, at=now, actor=actor, action=action, from_status=before,
                          to_status=after.value, note=note, data=data or {}))
    session.flush()
    return case


@dataclass(frozen=True)
class PlannedAction:
    """One case's move for `apply_actions_bulk`: the row as it was read (id, version, status) and the change."""

    case_id: int
    code: str
    version: int
    status: str
    action: str
    changes: Mapping[str, Any] = field(default_factory=dict)
    data: Mapping[str, Any] | None = None
    note: str | None = None


def apply_actions_bulk(*, session: Session, actions: Sequence[PlannedAction], actor: str, now: datetime) -> None:
    """`apply_action` for many cases in the caller's transaction, with a few statements instead of 2 per case.

    Every move is checked against the state machine before anything is written; then one version-guarded
    UPDATE per set of changed columns (executemany) and one CaseEvent per case. If any row's version moved,
    ConcurrentUpdate is raised and the caller's transaction must roll back (nothing is half applied).
    For callers that hold plain rows: ORM `Case` objects already in the session are not refreshed.
    """
    if not actions:
        return
    table: Table = Case.__table__  # type: ignore[attr-defined]  # SQLModel does not declare __table__
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    events: list[dict[str, Any]] = []
    for item in actions:
        after = next_status(item.status, item.action)  # IllegalTransition before any write
        keys = tuple(sorted(item.changes))
        groups.setdefault(keys, []).append(
            {"b_id": item.case_id, "b_version": item.version, "v_status": after.value,
             **{f"v_{k}": v for k, v in item.changes.items()}})
        events.append({"case_id": item.case_id, "at": now, "actor": actor, "action": item.action,
                       "from_status": item.status, "to_status": after.value, "note": item.note,
                       "data": dict(item.data or {})})
    conn = session.connection()
    for keys, params in groups.items():
        values: dict[str, Any] = {k: bindparam(f"v_{k}", type_=table.c[k].type) for k in keys}
        stmt = (update(table)
                .where(table.c.id == bindparam("b_id"), table.c.version == bindparam("b_version"))
                .values(status=bindparam("v_status"), version=table.c.version + 1, **values))
        result = conn.execute(stmt, params)
        if result.rowcount != len(params):  # executemany: the sum over all rows (sane multi-rowcount)
            raise ConcurrentUpdate(f"{len(params) - result.rowcount} of {len(params)} cases changed under us")
    conn.execute(insert(CaseEvent.__table__), events)  # type: ignore[attr-defined]  # as above


def list_events(*, session: Session, case_id: int) -> list[CaseEvent]:
    stmt = select(CaseEvent).where(CaseEvent.case_id == case_id).order_by(col(CaseEvent.at), col(CaseEvent.id))
    return list(session.exec(stmt))


def list_cases_for_resident(*, session: Session, resident_id: int, limit: int = 10) -> list[Case]:
    stmt = (select(Case).where(Case.resident_id == resident_id)
            .order_by(col(Case.created_at).desc()).limit(limit))
    return list(session.exec(stmt))


def list_open_cases_for_worker(*, session: Session, worker_id: int, limit: int = 50) -> list[Case]:
    stmt = (select(Case).where(Case.assignee_id == worker_id, col(Case.status).in_([s.value for s in OPEN]))
            .order_by(col(Case.response_due_at).asc().nulls_last()).limit(limit))
    return list(session.exec(stmt))
