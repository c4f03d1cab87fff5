"""The PostgreSQL path against the real server: migrations, concurrent writers, no duplicate codes."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import pytest
from sqlalchemy import inspect, text
from sqlmodel import Session, func, select

from casestore.cases import apply_action, create_case, get_case, next_case_code
from casestore.db import current_revision, head_revision, session_scope
from casestore.errors import ConcurrentUpdate
from casestore.models import Case, CaseCreate, CaseEvent, Worker

NOW = datetime(2026, 11, 22, 2, 0, tzinfo=UTC)


def test_migrated_schema_and_org(pg_engine) -> None:
    assert current_revision(pg_engine) == head_revision() is not None
    tables = set(inspect(pg_engine).get_table_names())
    assert {"case", "caseevent", "notification", "inboundupdate", "grid", "worker", "resident"} <= tables
    indexes = {i["name"] for i in inspect(pg_engine).get_indexes("case")}
    assert {"ix_case_open_reminder", "ix_case_grid_status", "ix_case_resident_created"} <= indexes
    with Session(pg_engine) as s:
        assert s.exec(select(func.count()).select_from(Worker)).one() == 65  # with the 微心愿 wall
        assert s.execute(text("select current_schema()")).scalar_one().startswith("qb_")


def _open_one(engine, i: int) -> str:
    with session_scope(engine) as s:
        code = next_case_code(session=s, local_day="20261122", prefix="JN")
        create_case(session=s, code=code, now=NOW, actor=f"resident:{i}",
                    case_in=CaseCreate(intent="help", category="utilities", urgency="urgent",
                                       title="停水", description=f"第{i}户停水", grid_id="FU01"))
        return code


def test_concurrent_writers_never_duplicate_a_case_code(pg_engine) -> None:
    with ThreadPoolExecutor(max_workers=8) as pool:
        codes = list(pool.map(lambda i: _open_one(pg_engine, i), range(80)))
    assert len(set(codes)) == 80
    assert max(codes) == "JN20261122-0080"
    with Session(pg_engine) as s:
        assert s.exec(select(func.count()).select_from(Case)).one() == 80
        assert s.exec(select(func.count()).select_from(CaseEvent)).one() == 80


def test_two_concurrent_writers_do_not_lose_an_update(pg_engine) -> None:
    code = _open_one(pg_engine, 0)
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def writer(worker_id: int) -> None:
        with Session(pg_engine) as s:
            case = get_case(session=s, code=code)
            barrier.wait()  # both have read version 1
            try:
                apply_action(session=s, case=case, action="assign", actor=f"worker:{worker_id}", now=NOW,
                             changes={"assignee_id": worker_id})
                s.commit()
                outcomes.append(f"ok:{worker_id}")
            except ConcurrentUpdate:
                s.rollback()
                outcomes.append("conflict")

    threads = [threading.Thread(target=writer, args=(w,)) for w in (1, 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(o.split(":")[0] for o in outcomes) == ["conflict", "ok"]
    winner = int(next(o for o in outcomes if o.startswith("ok")).split(":")[1])
    with Session(pg_engine) as s:
        case = get_case(session=s, code=code)
        assert case.assignee_id == winner and case.version == 2
        events = s.exec(select(CaseEvent).where(CaseEvent.case_id == case.id)).all()
        assert [e.action for e in events] == ["created", "assign"]


def test_select_for_update_serialises_writers(pg_engine) -> None:
    code = _open_one(pg_engine, 0)
    with Session(pg_engine) as s1:
        get_case(session=s1, code=code, for_update=True)
        with Session(pg_engine) as s2:
            s2.execute(text("SET lock_timeout = '200ms'"))
            with pytest.raises(Exception, match="lock"):
                get_case(session=s2, code=code, for_update=True)


def test_inbox_tells_a_new_update_from_a_duplicate(pg_engine) -> None:
    """psycopg reports rowcount -1 for an ORM INSERT ... ON CONFLICT DO NOTHING: judged by rowcount, every
    update looked like a duplicate on PostgreSQL and the bot answered nobody."""
    from bot.channels.inbox import Inbox

    inbox = Inbox(pg_engine)
    assert inbox.record(update_id=7, update_data={"message": {"text": "你好"}})
    assert not inbox.record(update_id=7, update_data={"message": {"text": "你好"}})
    assert inbox.record_many([(7, {}), (8, {}), (9, {})]) == [8, 9]
    assert inbox.count() == 3
