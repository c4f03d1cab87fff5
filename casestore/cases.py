"""Case data functions: create, read, list and change cases. Keyword-only, with an explicit session.

Every change goes through `apply_action`, which checks the state machine, bumps the version and writes
the audit event in the same transaction. Must not: know about channels or the LLM.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, col

from casestore.errors import ConcurrentUpdate, NotFound
from casestore.models import Case, CaseCounter, CaseCreate, CaseEvent, CaseStatus
from casestore.states import next_status

CODE_PREFIX = "JN"


def next_case_code(*, session: Session, local_day: str, prefix: str = CODE_PREFIX) -> str:
    """Atomically take the next number of the day: JN20261122-0042. Safe with concurrent writers."""
    dialect = session.get_bind().dialect.name
    ins = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(CaseCounter)
    stmt = (
        ins.values(day=local_day, value=1)
        .on_conflict_do_update(index_elements=["day"], set_={"value": CaseCounter.value + 1})  # type: ignore[attr-defined]
        .returning(CaseCounter.value)  # type: ignore[attr-defined]
    )
    number = session.execute(stmt).scalar_one()
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
    case = Case.model_validate(case_in, update={"code": code, "created_at": now, "clock_started_at": now, **(extra or {})})
    session.add(case)
    session.flush()
    session.add(CaseEvent(case_id=case.id, at=now, actor=actor, action="created", to_status=case.status, note=note,
                          data={"intent": case.intent, "category": case.category, "urgency": case.urgency}))
    return case


def get_case(*, session: Session, case_id: int | None = None, code: str | None = None, for_update: bool = False) -> Case:
    stmt = select(Case)
    stmt = stmt.where(Case.id == case_id) if case_id is not None else stmt.where(Case.code == code)
    if for_update:
        stmt = stmt.with_for_update()
    case = session.execute(stmt).scalars().first()
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
    result = session.execute(
        update(Case).where(col(Case.id) == case.id, col(Case.version) == case.version).values(**values)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        raise ConcurrentUpdate(f"case {case.code} changed under us")
    for key, value in values.items():
        setattr(case, key, value)
    session.add(CaseEvent(case_id=case.id, at=now, actor=actor, action=action, from_status=before,
                          to_status=after.value, note=note, data=data or {}))
    session.flush()
    return case


def list_events(*, session: Session, case_id: int) -> list[CaseEvent]:
    stmt = select(CaseEvent).where(CaseEvent.case_id == case_id).order_by(CaseEvent.at, CaseEvent.id)
    return list(session.execute(stmt).scalars())


def list_cases_for_resident(*, session: Session, resident_id: int, limit: int = 10) -> list[Case]:
    stmt = (select(Case).where(Case.resident_id == resident_id)
            .order_by(col(Case.created_at).desc()).limit(limit))
    return list(session.execute(stmt).scalars())


def list_open_cases_for_worker(*, session: Session, worker_id: int, limit: int = 50) -> list[Case]:
    from casestore.states import OPEN

    stmt = (select(Case).where(Case.assignee_id == worker_id, col(Case.status).in_([s.value for s in OPEN]))
            .order_by(col(Case.response_due_at).asc().nulls_last()).limit(limit))
    return list(session.execute(stmt).scalars())


def count_cases(*, session: Session, status: CaseStatus | None = None) -> int:
    stmt = select(func.count()).select_from(Case)
    if status is not None:
        stmt = stmt.where(Case.status == status.value)
    return int(session.execute(stmt).scalar_one())
