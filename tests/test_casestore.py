"""Case data functions on SQLite: codes, audit events written atomically, optimistic concurrency."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlmodel import Session, select

from casestore.cases import apply_action, create_case, get_case, list_events, next_case_code
from casestore.db import session_scope
from casestore.errors import ConcurrentUpdate, IllegalTransition
from casestore.models import Case, CaseCreate, CaseEvent

NOW = datetime(2026, 11, 22, 2, 0, tzinfo=UTC)


def _new(session: Session, day: str = "20261122") -> Case:
    code = next_case_code(session=session, local_day=day, prefix="JN")
    return create_case(session=session, code=code, now=NOW, actor="system",
                       case_in=CaseCreate(intent="help", category="building", urgency="normal",
                                          title="楼道灯不亮", description="3号楼2单元楼道灯坏了", grid_id="FU01"))


def test_codes_are_sequential_per_day(engine) -> None:
    with session_scope(engine) as s:
        codes = [next_case_code(session=s, local_day="20261122", prefix="JN") for _ in range(3)]
        other = next_case_code(session=s, local_day="20261123", prefix="JN")
    assert codes == ["JN20261122-0001", "JN20261122-0002", "JN20261122-0003"]
    assert other == "JN20261123-0001"


def test_create_writes_case_and_event_together(engine) -> None:
    with session_scope(engine) as s:
        case = _new(s)
    with Session(engine) as s:
        stored = get_case(session=s, code=case.code)
        events = list_events(session=s, case_id=stored.id)
    assert stored.created_at == NOW and stored.created_at.tzinfo is not None
    assert [e.action for e in events] == ["created"]


def test_failed_transaction_leaves_neither_case_nor_event(engine) -> None:
    with pytest.raises(RuntimeError), session_scope(engine) as s:
        _new(s)
        raise RuntimeError("crash before commit")
    with Session(engine) as s:
        assert s.exec(select(Case)).all() == []
        assert s.exec(select(CaseEvent)).all() == []


def test_transition_and_event_are_atomic(engine) -> None:
    with session_scope(engine) as s:
        case = _new(s)
    with pytest.raises(RuntimeError), session_scope(engine) as s:
        c = get_case(session=s, case_id=case.id)
        apply_action(session=s, case=c, action="assign", actor="system", now=NOW, changes={"assignee_id": 1})
        raise RuntimeError("crash after the update")
    with Session(engine) as s:
        c = get_case(session=s, case_id=case.id)
        assert c.status == "new" and c.assignee_id is None
        assert [e.action for e in list_events(session=s, case_id=c.id)] == ["created"]


def test_every_change_is_audited_with_actor_and_note(engine) -> None:
    with session_scope(engine) as s:
        case = _new(s)
        for action in ("assign", "accept", "respond", "resolve"):
            apply_action(session=s, case=case, action=action, actor="worker:3", now=NOW, note=f"{action} 备注")
    with Session(engine) as s:
        events = list_events(session=s, case_id=case.id)
    assert [(e.action, e.from_status, e.to_status) for e in events[1:]] == [
        ("assign", "new", "assigned"), ("accept", "assigned", "accepted"),
        ("respond", "accepted", "in_progress"), ("resolve", "in_progress", "resolved")]
    assert all(e.actor == "worker:3" for e in events[1:])


def test_illegal_transition_changes_nothing(engine) -> None:
    with session_scope(engine) as s:
        case = _new(s)
    with pytest.raises(IllegalTransition), session_scope(engine) as s:
        apply_action(session=s, case=get_case(session=s, case_id=case.id), action="resolve", actor="x", now=NOW)
    with Session(engine) as s:
        assert len(list_events(session=s, case_id=case.id)) == 1


def test_stale_writer_gets_concurrent_update_not_a_lost_update(engine) -> None:
    with session_scope(engine) as s:
        case = _new(s)
    with Session(engine) as s1, Session(engine) as s2:
        a = get_case(session=s1, case_id=case.id)
        b = get_case(session=s2, case_id=case.id)
        apply_action(session=s1, case=a, action="assign", actor="worker:1", now=NOW, changes={"assignee_id": 1})
        s1.commit()
        with pytest.raises(ConcurrentUpdate):
            apply_action(session=s2, case=b, action="assign", actor="worker:2", now=NOW, changes={"assignee_id": 2})
        s2.rollback()
    with Session(engine) as s:
        assert get_case(session=s, case_id=case.id).assignee_id == 1
