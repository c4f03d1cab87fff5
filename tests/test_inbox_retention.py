"""Inbox retention: handled updates lose their content after the retention period, keep their key a while
longer (a duplicate delivery is still refused), then go; unhandled updates are never touched."""

from __future__ import annotations

from datetime import timedelta

from bot.channels.inbox import KEEP_KEYS, Inbox, purge_inbox
from bot.scheduler import LoopDeps, tick
from casestore.notify import RecordingNotifier
from tests.test_loop_support import sla

__all__ = ["sla"]

MESSAGE = {"message": {"text": "我家电话13812345678，3号楼漏水"}}
WEEK = timedelta(days=7)


def _handled(inbox: Inbox, update_id: int) -> None:
    assert inbox.record(update_id=update_id, update_data=MESSAGE)
    inbox.save_reply(update_id=update_id, reply=[{"text": "已受理"}], update_data=MESSAGE)
    inbox.mark_done(update_id=update_id)


def test_content_is_erased_after_retention_and_the_key_later(engine, clock) -> None:
    _erase_then_delete(engine, clock)


def test_retention_on_postgresql(pg_engine, clock) -> None:
    _erase_then_delete(pg_engine, clock)


def _erase_then_delete(engine, clock) -> None:
    inbox = Inbox(engine, clock=clock)
    _handled(inbox, 1)
    assert inbox.record(update_id=2, update_data=MESSAGE)  # still being handled: never purged
    clock.advance(days=6)
    _handled(inbox, 3)
    assert purge_inbox(engine, now=clock.now(), retention=WEEK).erased == 0  # nothing a week old yet

    clock.advance(days=2)
    report = purge_inbox(engine, now=clock.now(), retention=WEEK)
    assert (report.erased, report.deleted) == (1, 0)
    old = inbox.get(update_id=1)
    assert old is not None and old.update == {} and old.reply is None and old.state == "done"
    assert not inbox.record(update_id=1, update_data=MESSAGE)  # the key still refuses a second delivery
    assert inbox.get(update_id=2).update == MESSAGE and inbox.get(update_id=3).update == MESSAGE  # type: ignore[union-attr]
    assert purge_inbox(engine, now=clock.now(), retention=WEEK).erased == 0  # erased once, not again

    clock.advance(KEEP_KEYS + timedelta(days=1))
    report = purge_inbox(engine, now=clock.now(), retention=WEEK)
    assert report.deleted == 1 and report.erased == 1  # update 1's row goes; update 3 is now erased
    assert inbox.get(update_id=1) is None and inbox.count() == 2


async def test_the_scheduler_purges_at_most_hourly(engine, policies, sla, clock) -> None:
    inbox = Inbox(engine, clock=clock)
    _handled(inbox, 10)
    clock.advance(days=8)
    _handled(inbox, 11)
    deps = LoopDeps(engine=engine, policies=policies, sla=sla, clock=clock, notifier=RecordingNotifier(),
                    inbox_retention=WEEK)
    assert (await tick(deps)).erased == 1
    clock.advance(days=8)
    assert (await tick(deps)).erased == 1  # a new hour: update 11 is old enough now
    _handled(inbox, 12)
    clock.advance(days=8, minutes=-59)
    deps.last_purge = clock.now() - timedelta(minutes=10)
    assert (await tick(deps)).erased == 0  # purged ten minutes ago: not again this hour
    never = LoopDeps(engine=engine, policies=policies, sla=sla, clock=clock, notifier=RecordingNotifier())
    assert (await tick(never)).erased == 0 and inbox.get(update_id=12).update == MESSAGE  # type: ignore[union-attr]
