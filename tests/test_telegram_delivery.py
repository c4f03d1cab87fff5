"""Replies leave through the outbox's background sender: a 429 storm longer than the retry budget, network
errors and a blocked chat, each without a restart or the resident's next message; chats are served
concurrently (one busy chat never holds the others up), each chat in order, with "typing…" for a slow handler."""

from __future__ import annotations

import threading
import time

from sqlalchemy.engine import Engine

from bot.channels.inbox import Inbox
from bot.dialogue.types import Incoming, Reply
from bot.settings import Settings
from casestore.dispatch import count_replies
from tests.servers.botapi import BotApiServer
from tests.servers.tg_factories import make_text_update
from tests.test_telegram_e2e import RecordingHandler, handler, start, tg, tg_settings, until, wait_text

__all__ = ["handler", "tg", "tg_settings"]


async def test_a_429_storm_longer_than_the_retry_budget_still_delivers_without_a_restart(
        tg: BotApiServer, tg_settings: Settings, handler: RecordingHandler, engine: Engine):
    """Finding: twelve 429s in a row (more than TELEGRAM_SEND_RETRIES) left the update unanswered, with no
    notice, until a restart and the resident's next message."""
    budget = tg_settings.model_copy(update={"telegram_send_retries": 1})
    storm = 4  # four times the budget
    tg.fail_next("sendMessage", n=storm, status=429, retry_after=1)
    running = await start(budget, handler, engine)
    try:
        t0 = time.monotonic()
        for i in range(3):  # three messages of one chat: all come, in order
            tg.push_update(make_text_update(f"限流中的第{i}条", user_id=10030))
        await wait_text(tg, 10030, "限流中的第2条", timeout=20)
        waited = time.monotonic() - t0
        tg.push_update(make_text_update("之后的居民", user_id=10031))  # the limit has lifted for everyone
        await wait_text(tg, 10031, "之后的居民", timeout=5)
    finally:
        await running.stop()
    assert len([c for c in tg.rejected if c["method"] == "sendMessage"]) == storm
    assert waited >= storm * 0.9  # every retry_after was honoured
    assert tg.texts_to(10030) == [f"收到[text]：限流中的第{i}条" for i in range(3)]  # once each, in order
    assert running.channel.sender.flood_waits >= 1 and running.channel.rate_limiter.retries_seen >= 1
    assert count_replies(engine=engine, channel="telegram", unsent=True) == 0


async def test_network_errors_are_retried_in_the_background(tg: BotApiServer, tg_settings: Settings,
                                                            handler: RecordingHandler, engine: Engine):
    """Finding: after a crash, network errors during the replay left 4 replies unsent until the next restart."""
    tg.fail_next("sendMessage", n=1, status=502)
    running = await start(tg_settings, handler, engine)
    try:
        uid = tg.push_update(make_text_update("网络不好的时候", user_id=10032))
        await wait_text(tg, 10032, "网络不好的时候", timeout=10)
    finally:
        await running.stop()
    assert tg.texts_to(10032) == ["收到[text]：网络不好的时候"]
    assert Inbox(engine).get(update_id=uid).state == "done"  # type: ignore[union-attr]
    assert running.channel.sender.errors == 1 and len(handler.calls) == 1  # the handler was not asked again


async def test_a_blocked_chat_fails_its_reply_and_nobody_else_waits(tg: BotApiServer, tg_settings: Settings,
                                                                   handler: RecordingHandler, engine: Engine):
    tg.fail_next("sendMessage", n=1, status=403)
    running = await start(tg_settings, handler, engine)
    try:
        tg.push_update(make_text_update("把机器人拉黑了", user_id=10033))
        await until(lambda: count_replies(engine=engine, channel="telegram", state="failed") == 1)
        tg.push_update(make_text_update("我没有拉黑", user_id=10034))
        await wait_text(tg, 10034, "我没有拉黑")
    finally:
        await running.stop()
    assert tg.texts_to(10033) == [] and running.channel.sender.failed == 1


async def test_one_slow_chat_does_not_hold_up_the_others_and_shows_typing(
        tg: BotApiServer, tg_settings: Settings, engine: Engine):
    """Finding: residents were served one after another; a slow handler for one chat delayed every other chat.
    One chat with a backlog of 300 slow updates must not take the capacity other chats need."""
    release = threading.Event()
    seen: list[tuple[int, str]] = []

    def slow_for_one(incoming: Incoming) -> Reply:
        seen.append((incoming.chat_id, incoming.text))
        if incoming.chat_id == 10040:
            release.wait(3.0 if incoming.text == "慢0" else 0.01)
        return Reply().say(f"好的：{incoming.text}")

    fast = tg_settings.model_copy(update={"telegram_rate_per_chat": 0.0, "telegram_rate_overall": 0.0})
    running = await start(fast, slow_for_one, engine)
    try:
        for i in range(300):
            tg.push_update(make_text_update(f"慢{i}", user_id=10040))
        await tg.async_wait_for(lambda c: (10040, "慢0") in seen, timeout=10)
        t0 = time.monotonic()
        for chat in (10041, 10042, 10043):
            tg.push_update(make_text_update("快", user_id=chat))
        for chat in (10041, 10042, 10043):
            await wait_text(tg, chat, "好的：快", timeout=5)
        others = time.monotonic() - t0
        typing = await tg.async_wait_for(lambda c: c["method"] == "sendChatAction", timeout=5)
        release.set()
        await wait_text(tg, 10040, "好的：慢299", timeout=30)
    finally:
        release.set()
        await running.stop()
    assert others < 2.0, f"other chats waited {others:.1f}s behind one slow chat"
    assert typing["params"] == {"chat_id": 10040, "action": "typing"}
    assert not [c for c in tg.calls("sendChatAction") if c["params"]["chat_id"] != 10040]
    assert [t for c, t in seen if c == 10040] == [f"慢{i}" for i in range(300)]  # one chat stays in order
