"""Inbox at rest and its retention: an update is stored masked, a handled one loses its content in the transaction
that marks it done, a failed one keeps its masked content for the retention period; every key stays a while
longer (a duplicate delivery is still refused), then goes; unhandled updates are never touched."""

from __future__ import annotations

import json
from datetime import timedelta

from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from bot.channels.inbox import KEEP_KEYS, MAX_DEPTH, Inbox, mask_update, purge_inbox, within_depth
from bot.scheduler import LoopDeps, tick
from casestore.db import session_scope
from casestore.models import InboundUpdate
from casestore.notify import OutboundMessage, RecordingNotifier
from tests.test_loop_support import sla

__all__ = ["sla"]

PHONE, ID_NUMBER = "13812345678", "370102199003071234"
MESSAGE = {"message": {"text": f"我家电话{PHONE}，身份证{ID_NUMBER}，3号楼漏水",
                       "contact": {"phone_number": PHONE}, "chat": {"id": 5}},
           "callback_query": {"data": "a:K::yes:1a2b:13812345678xyz"}}
WEEK = timedelta(days=7)


def _handled(inbox: Inbox, update_id: int) -> None:
    assert inbox.record(update_id=update_id, update_data=MESSAGE)
    assert inbox.begin(update_id=update_id) is not None
    with inbox.engine.begin() as conn:
        inbox.finish(connection=conn, update_id=update_id, chat_id=5, messages=[OutboundMessage(text="已受理")])


def _failed(inbox: Inbox, update_id: int) -> None:
    assert inbox.record(update_id=update_id, update_data=MESSAGE)
    for _ in range(inbox.max_failures):
        assert inbox.begin(update_id=update_id) is not None
        inbox.fail(update_id=update_id, error=f"RuntimeError: {PHONE}")


def _raw_rows(engine) -> str:
    with session_scope(engine) as session:
        return " ".join(json.dumps(r.payload, ensure_ascii=False) + (r.error or "")
                        for r in session.execute(select(InboundUpdate)).scalars())


def test_stored_updates_carry_no_raw_phone_or_id_numbers(engine, clock) -> None:
    """Finding: the inbox kept raw ID and phone numbers for 7 days although the privacy notice says masked."""
    inbox = Inbox(engine, clock=clock)
    assert inbox.record(update_id=1, update_data=MESSAGE)
    assert inbox.record_many([(2, MESSAGE)]) == [2]
    _failed(inbox, 3)
    at_rest = _raw_rows(engine)
    assert PHONE not in at_rest.replace("13812345678xyz", "") and ID_NUMBER not in at_rest
    assert "138****5678" in at_rest and "3号楼漏水" in at_rest
    stored = inbox.get(update_id=1)
    assert stored is not None and stored.update["callback_query"]["data"] == MESSAGE["callback_query"]["data"]


def test_content_goes_when_handled_failed_after_retention_and_the_key_later(engine, clock) -> None:
    _erase_then_delete(engine, clock)


def test_retention_on_postgresql(pg_engine, clock) -> None:
    _erase_then_delete(pg_engine, clock)


def _erase_then_delete(engine, clock) -> None:
    inbox = Inbox(engine, clock=clock)
    _handled(inbox, 1)
    assert inbox.get(update_id=1).update == {}  # type: ignore[union-attr]  # erased with the handled mark
    assert inbox.record(update_id=2, update_data=MESSAGE)  # still waiting to be handled: never purged
    _failed(inbox, 3)
    clock.advance(days=6)
    assert purge_inbox(engine, now=clock.now(), retention=WEEK).erased == 0  # nothing a week old yet

    clock.advance(days=2)
    report = purge_inbox(engine, now=clock.now(), retention=WEEK)
    assert (report.erased, report.deleted, report.replies_deleted) == (1, 0, 0)  # an unsent reply is kept
    failed = inbox.get(update_id=3)
    assert failed is not None and failed.update == {} and failed.state == "failed"
    assert not inbox.record(update_id=1, update_data=MESSAGE)  # the key still refuses a second delivery
    assert inbox.get(update_id=2).update == mask_update(MESSAGE)  # type: ignore[union-attr]
    assert purge_inbox(engine, now=clock.now(), retention=WEEK).erased == 0  # erased once, not again

    clock.advance(KEEP_KEYS + timedelta(days=1))
    report = purge_inbox(engine, now=clock.now(), retention=WEEK)
    assert report.deleted == 2  # the handled and the failed row go; the waiting one stays
    assert inbox.get(update_id=1) is None and inbox.get(update_id=3) is None and inbox.count() == 1


async def test_the_scheduler_purges_at_most_hourly(engine, policies, sla, clock) -> None:
    inbox = Inbox(engine, clock=clock)
    _failed(inbox, 10)
    clock.advance(days=8)
    _failed(inbox, 11)
    deps = LoopDeps(engine=engine, policies=policies, sla=sla, clock=clock, notifier=RecordingNotifier(),
                    inbox_retention=WEEK)
    assert (await tick(deps)).erased == 1
    clock.advance(days=8)
    assert (await tick(deps)).erased == 1  # a new hour: update 11 is old enough now
    _failed(inbox, 12)
    clock.advance(days=8, minutes=-59)
    deps.last_purge = clock.now() - timedelta(minutes=10)
    assert (await tick(deps)).erased == 0  # purged ten minutes ago: not again this hour
    never = LoopDeps(engine=engine, policies=policies, sla=sla, clock=clock, notifier=RecordingNotifier())
    assert (await tick(never)).erased == 0 and inbox.get(update_id=12).update != {}  # type: ignore[union-attr]


_json = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=30),
                     lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                                 max_size=4), max_leaves=30)


@settings(max_examples=200, deadline=None)
@given(value=_json, phone=st.from_regex(r"1[3-9][0-9]{9}", fullmatch=True))
def test_masking_keeps_the_shape_and_leaves_no_phone_number(value, phone) -> None:
    update = {"update_id": 1, "message": {"text": f"电话{phone}", "extra": value}}
    masked = mask_update(update)
    assert phone not in json.dumps(masked, ensure_ascii=False)
    assert masked["update_id"] == 1 and masked.keys() == update.keys()


def test_depth_is_checked_without_recursion() -> None:
    deep: list = []
    node = deep
    for _ in range(100_000):
        node.append([])
        node = node[0]
    assert not within_depth(deep)
    flat = {"a": [{"b": 1}] * 1000}
    assert within_depth(flat) and within_depth(_nest(MAX_DEPTH)) and not within_depth(_nest(MAX_DEPTH + 1))


def _nest(depth: int) -> dict:
    value: dict = {}
    for _ in range(depth - 1):
        value = {"x": value}
    return value
