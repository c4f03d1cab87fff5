"""Two schedulers against one real PostgreSQL: due cases are claimed with SKIP LOCKED, every notification row
exists once and is delivered once. Runs when TEST_DATABASE_URL is set (pg_engine skips otherwise)."""

from __future__ import annotations

import asyncio
import threading
from collections import Counter

from sqlmodel import Session, select

from casestore.clock import FakeClock
from casestore.db import make_engine, session_scope
from casestore.dispatch import dispatch_pending
from casestore.intake import open_case
from casestore.models import Case, Notification, NotificationState
from casestore.notify import RecordingNotifier
from casestore.sweep import sweep
from tests.test_loop_support import report, sla

__all__ = ["sla"]


class _Never:
    def similarity(self, a: str, b: str) -> float:
        return 0.0


def _open_many(engine, policies, sla, clock, n: int) -> None:
    with session_scope(engine) as s:
        for i in range(n):
            open_case(session=s, policies=policies, sla=sla, clock=clock, resident=None, similarity=_Never(),
                      report=report(title=f"问题{i}", description=f"第{i}件", building=1 + i % 18))


def test_two_schedulers_send_each_reminder_exactly_once(pg_engine, pg_url, policies, sla, clock) -> None:
    _open_many(pg_engine, policies, sla, clock, 60)
    clock.advance(minutes=30)
    shared = RecordingNotifier()
    barrier = threading.Barrier(2)
    claimed: dict[str, int] = {}
    errors: list[BaseException] = []

    def scheduler(name: str) -> None:
        engine = make_engine(pg_url)  # each scheduler process has its own engine and pool
        try:
            barrier.wait()
            total = 0
            while True:  # small batches so that the two really interleave
                r = sweep(engine=engine, policies=policies, sla=sla, clock=FakeClock(clock.now()), batch=7)
                total += r.due
                if r.due == 0:
                    break
            claimed[name] = total
            barrier.wait()
            asyncio.run(_drain(engine, shared, clock))
        except BaseException as exc:  # noqa: BLE001 - a thread's error (a broken barrier too) is re-raised by the assert below
            errors.append(exc)
        finally:
            engine.dispose()

    threads = [threading.Thread(target=scheduler, args=(n,)) for n in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert claimed["a"] + claimed["b"] == 60  # every due case swept once, by one of them
    with Session(pg_engine) as s:
        rows = s.exec(select(Notification)).all()
    keys = Counter((n.case_id, n.kind, n.level, n.recipient) for n in rows)
    kinds = Counter(n.kind for n in rows)
    assert max(keys.values()) == 1 and kinds["task"] == 60 and kinds["remind_response"] == 60
    assert all(n.state == NotificationState.sent for n in rows)
    texts = [m.text for _, m in shared.sent]
    assert len(texts) == len(rows) and len(set(texts)) == len(rows)  # delivered once each, nothing twice


async def _drain(engine, notifier, clock) -> None:
    while await dispatch_pending(engine=engine, notifier=notifier, clock=FakeClock(clock.now()), limit=9):
        pass


def test_a_case_locked_by_one_scheduler_is_skipped_by_the_other(pg_engine, policies, sla, clock) -> None:
    _open_many(pg_engine, policies, sla, clock, 2)
    clock.advance(minutes=30)
    with Session(pg_engine) as holder:
        locked = holder.exec(select(Case).order_by(Case.id).limit(1).with_for_update()).one().code
        r = sweep(engine=pg_engine, policies=policies, sla=sla, clock=clock)
        assert r.due == 1 and locked not in r.codes
        holder.rollback()
    assert sweep(engine=pg_engine, policies=policies, sla=sla, clock=clock).codes == [locked]
