"""The workers' morning digest (#17 item 5) through the scheduler's real tick on a fake clock: from 08:30 Asia/Shanghai
each worker holding open cases gets one message listing what is overdue and what is due today (masked), once a day
(unique per worker and local day, so a second tick, a restarted scheduler or two schedulers queue nothing more);
nobody on leave gets one."""

from __future__ import annotations

import asyncio
import threading
from datetime import datetime, timedelta

import pytest
from sqlmodel import Session, col, select

from bot.scheduler import LoopDeps, tick
from casestore import actions
from casestore.db import session_scope
from casestore.digests import KIND, run_digests
from casestore.models import Notification, Worker
from casestore.notify import RecordingNotifier
from casestore.staff import set_leave
from tests.conftest import SHANGHAI
from tests.factories import actor
from tests.test_loop_support import FU01_FULL, FU02_FULL, open_, sla, worker_id

__all__ = ["sla"]


def _deps(engine, policies, sla, clock) -> tuple[LoopDeps, RecordingNotifier]:  # type: ignore[no-untyped-def]
    notifier = RecordingNotifier()
    return LoopDeps(engine=engine, policies=policies, sla=sla, clock=clock, notifier=notifier), notifier


def _digests(notifier: RecordingNotifier, chat: int) -> list[str]:
    return [t for t in notifier.texts_to(chat) if t.startswith("早上好")]


@pytest.fixture
def two_cases(engine, policies, sla, clock) -> tuple[str, str]:  # type: ignore[no-untyped-def]
    """Friday 14:00: two urgent FU01 cases; the second is answered at 14:30 (its resolution is due Saturday 14:00)."""
    late = open_(engine, policies, sla, clock, title="楼道灯不亮，电话13912345678",
                 description="3号楼2单元楼道灯坏了，电话13912345678")
    answered = open_(engine, policies, sla, clock, category="environment", title="垃圾没清",
                     description="1号楼门口垃圾桶满了两天", building=1)
    clock.advance(minutes=30)
    with session_scope(engine) as s:
        actions.respond(session=s, sla=sla, code=answered.case.code, actor=actor(s, FU01_FULL), clock=clock,
                        note="已联系")
    return late.case.code, answered.case.code


def test_at_0830_each_worker_gets_one_digest_of_overdue_and_due_today(engine, policies, sla, clock, two_cases):
    late, answered = two_cases
    deps, notifier = _deps(engine, policies, sla, clock)
    clock.set(datetime(2026, 11, 21, 8, 29, tzinfo=SHANGHAI))  # Saturday, a minute early
    assert asyncio.run(tick(deps)).digests == 0 and not _digests(notifier, FU01_FULL)
    clock.advance(minutes=1)
    assert asyncio.run(tick(deps)).digests == 1
    [digest] = _digests(notifier, FU01_FULL)
    overdue, today = digest.split("📅")
    assert "已超时 1 件" in overdue and late in overdue and "应联系居民" in overdue
    assert "今天到期 1 件" in today and answered in today and "应办结" in today and "11-21 14:00" in today
    assert "13912345678" not in digest and "139****5678" in digest  # masked, like every push
    assert "共 2 件在办" in digest
    [message] = [m for c, m in notifier.sent if c == FU01_FULL and m.text == digest]
    assert [b.case_code for row in message.buttons for b in row] == [late, answered]
    assert not _digests(notifier, FU02_FULL)  # no open cases: no digest

    # later ticks, and a restarted scheduler (new deps, same database), queue nothing more today
    clock.advance(minutes=5)
    assert asyncio.run(tick(deps)).digests == 0
    restarted, again = _deps(engine, policies, sla, clock)
    assert asyncio.run(tick(restarted)).digests == 0 and not again.sent
    assert len(_digests(notifier, FU01_FULL)) == 1

    # the next morning brings the next digest
    clock.set(datetime(2026, 11, 22, 9, 0, tzinfo=SHANGHAI))
    assert asyncio.run(tick(deps)).digests == 1 and len(_digests(notifier, FU01_FULL)) == 2
    with Session(engine) as s:
        levels = s.exec(select(Notification.level).where(col(Notification.kind) == KIND)).all()
    assert sorted(levels) == [20261121, 20261122]


def test_no_digest_outside_the_morning_window_or_while_on_leave(engine, policies, sla, clock, two_cases):
    deps, notifier = _deps(engine, policies, sla, clock)
    clock.set(datetime(2026, 11, 21, 12, 0, tzinfo=SHANGHAI))  # routing.yaml digest_until: too late today
    assert asyncio.run(tick(deps)).digests == 0
    with session_scope(engine) as s:
        set_leave(session=s, worker=s.get(Worker, worker_id(engine, FU01_FULL)), on_leave=True, actor="test",
                  now=clock.now())
    clock.set(datetime(2026, 11, 22, 8, 45, tzinfo=SHANGHAI))
    assert asyncio.run(tick(deps)).digests == 0 and not _digests(notifier, FU01_FULL)


def test_two_schedulers_at_once_queue_one_digest(pg_engine, policies, sla, clock):
    open_(pg_engine, policies, sla, clock)
    at = datetime(2026, 11, 21, 8, 30, tzinfo=SHANGHAI)
    counts: list[int] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(2)

    def run() -> None:
        try:
            barrier.wait()
            counts.append(run_digests(engine=pg_engine, policies=policies, now=at))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not errors and sum(counts) == 1
    with Session(pg_engine) as s:
        assert len(s.exec(select(Notification).where(col(Notification.kind) == KIND)).all()) == 1
    assert run_digests(engine=pg_engine, policies=policies, now=at + timedelta(hours=1)) == 0
