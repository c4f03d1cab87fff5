"""The Telegram adapter end to end: the real PTB client over HTTP against the Bot API test server, with a
small recording handler standing in for the dialogue engine (any Callable[[Incoming], Reply] works)."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import SecretStr
from sqlalchemy import select
from sqlalchemy.engine import Engine

from bot.channels.inbox import MAX_INTERRUPTED, Inbox
from bot.channels.telegram import TEXT_BUSY, TEXT_FAILED, TelegramChannel
from bot.dialogue.types import Incoming, Reply
from bot.settings import Settings
from casestore.clock import FakeClock
from casestore.db import session_scope
from casestore.dispatch import count_replies
from casestore.models import InboundState, InboundUpdate, OutboundReply
from casestore.notify import Button
from tests.servers.botapi import DEFAULT_TOKEN, BotApiServer
from tests.servers.tg_factories import (
    make_callback_update,
    make_command_update,
    make_document_update,
    make_edited_text_update,
    make_location_update,
    make_photo_update,
    make_sticker_update,
    make_text_update,
    make_voice_update,
)


class RecordingHandler:
    """Answers every Incoming with one message (and buttons on request); records what it saw."""

    def __init__(self) -> None:
        self.calls: list[Incoming] = []
        self.fail = 0  # raise on the next n calls
        self.reply_for: Callable[[Incoming], Reply] | None = None
        self._lock = threading.Lock()

    def __call__(self, incoming: Incoming) -> Reply:
        with self._lock:
            self.calls.append(incoming)
            if self.fail:
                self.fail -= 1
                raise RuntimeError("engine exploded")
        if self.reply_for is not None:
            return self.reply_for(incoming)
        return Reply().say(f"收到[{incoming.kind}]：{incoming.text}")


@pytest.fixture
def tg() -> Any:
    with BotApiServer(DEFAULT_TOKEN) as server:
        yield server


@pytest.fixture
def tg_settings(settings: Settings, tg: BotApiServer) -> Settings:
    return settings.model_copy(update={
        "telegram_token": SecretStr(DEFAULT_TOKEN),
        "telegram_base_url": tg.base_url,
        "admin_telegram_ids": [90001],
    })


@pytest.fixture
def handler() -> RecordingHandler:
    return RecordingHandler()


class Running:
    def __init__(self, channel: TelegramChannel, task: asyncio.Task[None], stop: asyncio.Event):
        self.channel, self.task, self.stop_event = channel, task, stop

    async def stop(self) -> None:
        self.stop_event.set()
        await asyncio.wait_for(self.task, timeout=10)


async def start(settings: Settings, handler: Any, engine: Engine, clock: FakeClock | None = None,
                retry_delays: tuple[float, ...] = (0.2,)) -> Running:
    channel = TelegramChannel(settings=settings, handler=handler, db_engine=engine, clock=clock, poll_timeout=1,
                              retry_delays=retry_delays)
    stop = asyncio.Event()
    started = asyncio.Event()

    async def on_started() -> None:
        started.set()

    task = asyncio.create_task(channel.run(stop, on_started=on_started))
    done, _ = await asyncio.wait({task, asyncio.ensure_future(started.wait())}, timeout=10,
                                 return_when=asyncio.FIRST_COMPLETED)
    if task in done:
        task.result()  # surface the start-up error
    assert started.is_set(), "channel did not start"
    return Running(channel, task, stop)


@pytest.fixture
async def bot(tg_settings: Settings, handler: RecordingHandler, engine: Engine) -> AsyncIterator[Running]:
    running = await start(tg_settings, handler, engine)
    yield running
    await running.stop()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not await asyncio.to_thread(condition):
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


def entry_error(engine: Engine, update_id: int) -> str | None:
    with session_scope(engine) as session:
        row = session.execute(select(InboundUpdate).where(InboundUpdate.update_id == update_id)).scalar_one()
        return row.error


async def wait_text(tg: BotApiServer, chat_id: int, needle: str, timeout: float = 5.0) -> dict[str, Any]:
    return await tg.async_wait_for(
        lambda c: c["method"] in ("sendMessage", "sendPhoto") and c["params"].get("chat_id") == chat_id
        and needle in (c["params"].get("text") or c["params"].get("caption") or ""), timeout)


# ---------------------------------------------------------------- polling round trip and parsing
async def test_text_roundtrip_stores_in_inbox_and_marks_done(tg: BotApiServer, bot: Running,
                                                             handler: RecordingHandler, engine: Engine):
    uid = tg.push_update(make_text_update("楼道灯坏了 <b>&", user_id=10001))
    call = await wait_text(tg, 10001, "楼道灯坏了")
    # plain text, no parse_mode: user text arrives exactly as typed
    assert call["params"]["text"] == "收到[text]：楼道灯坏了 <b>&"
    assert "parse_mode" not in call["params"]
    inc = handler.calls[0]
    assert (inc.channel, inc.kind, inc.user_id, inc.chat_id, inc.display_name) == (
        "telegram", "text", 10001, 10001, "张阿姨")
    await tg.async_wait_for(lambda c: Inbox(engine).get(update_id=uid).state == "done")  # type: ignore[union-attr]
    entry = Inbox(engine).get(update_id=uid)
    assert entry is not None and entry.update == {}  # handled: the content is gone from the inbox
    await until(lambda: count_replies(engine=engine, channel="telegram", update_id=uid, state="sent") == 1)


async def test_commands_photo_location_and_unsupported_media(tg: BotApiServer, bot: Running,
                                                              handler: RecordingHandler):
    tg.push_update(make_command_update("/mycases@quanbot_test_bot", user_id=10002, args="全部 近期"))
    tg.push_update(make_photo_update(10002, file_id="BIGPHOTO", caption="井盖破了"))
    tg.push_update(make_location_update(10002, lat=36.67, lon=117.02))
    tg.push_update(make_sticker_update(10002))
    tg.push_update(make_voice_update(10002))
    tg.push_update(make_document_update(10002))
    await tg.async_wait_for(lambda c: len(tg.texts_to(10002)) >= 6)
    kinds = [(c.kind, c.command, c.args, c.photo_file_id, c.location, c.unsupported_type, c.text)
             for c in handler.calls]
    assert kinds == [
        ("command", "mycases", "全部 近期", None, None, None, "/mycases@quanbot_test_bot 全部 近期"),
        ("photo", None, "", "BIGPHOTO", None, None, "井盖破了"),  # the largest size's file_id
        ("location", None, "", None, (36.67, 117.02), None, ""),
        ("unsupported", None, "", None, None, "sticker", ""),
        ("voice", None, "", None, None, None, ""),  # bot.dialogue.voice (tests/test_voice_telegram.py)
        ("unsupported", None, "", None, None, "document", ""),
    ]


async def test_edits_are_ignored_but_done(tg: BotApiServer, bot: Running, handler: RecordingHandler,
                                          engine: Engine):
    uid = tg.push_update(make_edited_text_update("改过的内容", user_id=10003))
    tg.push_update(make_text_update("后一条", user_id=10003))
    await wait_text(tg, 10003, "后一条")
    assert [c.text for c in handler.calls] == ["后一条"]
    assert Inbox(engine).get(update_id=uid).state == InboundState.done  # type: ignore[union-attr]


async def test_commands_registered_with_scopes(tg: BotApiServer, bot: Running):
    from bot.dialogue import COMMANDS_ADMIN, COMMANDS_RESIDENT

    resident = [(c["command"], c["description"]) for c in tg.commands()]
    assert resident == COMMANDS_RESIDENT and "stats" not in dict(resident)
    admin = [(c["command"], c["description"]) for c in tg.commands({"type": "chat", "chat_id": 90001})]
    assert admin == COMMANDS_ADMIN  # the admin id from settings gets its own menu


# ---------------------------------------------------------------- duplicates, crashes, replays
async def test_duplicate_update_id_is_handled_once(tg: BotApiServer, tg_settings: Settings,
                                                   handler: RecordingHandler, engine: Engine):
    upd = make_text_update("重复投递", user_id=10004)
    tg.push_update(upd)
    tg.push_update(upd)  # the same update_id twice in one getUpdates batch
    running = await start(tg_settings, handler, engine)
    try:
        await wait_text(tg, 10004, "重复投递")
        tg.push_update(make_text_update("下一条", user_id=10004))
        await wait_text(tg, 10004, "下一条")
    finally:
        await running.stop()
    assert [c.text for c in handler.calls] == ["重复投递", "下一条"]
    assert tg.texts_to(10004) == ["收到[text]：重复投递", "收到[text]：下一条"]
    assert running.channel.stats.duplicates == 1
    assert Inbox(engine).count() == 2


async def test_a_handler_that_raises_is_run_again_and_the_resident_is_told_once(
        tg: BotApiServer, tg_settings: Settings, handler: RecordingHandler, engine: Engine):
    handler.fail = 1
    running = await start(tg_settings, handler, engine, retry_delays=(0.3,))
    try:
        uid = tg.push_update(make_text_update("帮我查一下", user_id=10005))
        await wait_text(tg, 10005, "收到[text]：帮我查一下")  # no restart, no new message needed
    finally:
        await running.stop()
    assert [c.text for c in handler.calls] == ["帮我查一下", "帮我查一下"]
    assert tg.texts_to(10005) == [TEXT_BUSY, "收到[text]：帮我查一下"]
    entry = Inbox(engine).get(update_id=uid)
    assert entry is not None and (entry.state, entry.attempts, entry.failures) == ("done", 2, 1)


async def test_failed_only_after_the_handler_really_raised_n_times_across_restarts(
        tg: BotApiServer, tg_settings: Settings, handler: RecordingHandler, engine: Engine):
    handler.fail = 10
    running = await start(tg_settings, handler, engine, retry_delays=(0.2, 30.0))
    uid = tg.push_update(make_text_update("总是出错", user_id=10012))
    await tg.async_wait_for(lambda c: len(handler.calls) == 2, timeout=5)  # the second pause is long: stop in it
    await running.stop()
    entry = Inbox(engine).get(update_id=uid)
    assert entry is not None and (entry.state, entry.failures) == ("received", 2)

    running = await start(tg_settings, handler, engine, retry_delays=(0.2,))  # the third failure is the last
    await wait_text(tg, 10012, TEXT_FAILED)
    await running.stop()
    entry = Inbox(engine).get(update_id=uid)
    assert entry is not None and (entry.state, entry.attempts, entry.failures) == ("failed", 3, 3)
    assert len(handler.calls) == 3 and tg.texts_to(10012) == [TEXT_BUSY, TEXT_FAILED]
    assert "RuntimeError" in (entry_error(engine, uid) or "")

    running = await start(tg_settings, handler, engine)  # given up: never run again
    await running.stop()
    assert len(handler.calls) == 3 and running.channel.stats.replayed == 0


async def test_process_stopping_after_inbox_write_replays_on_start(tg: BotApiServer, tg_settings: Settings,
                                                                   handler: RecordingHandler, engine: Engine):
    raw = make_text_update("写进收件箱后就停了", user_id=10006)
    assert Inbox(engine).record(update_id=raw["update_id"], update_data=raw)  # stored; the process "dies" here
    running = await start(tg_settings, handler, engine)
    await wait_text(tg, 10006, "写进收件箱后就停了")
    tg.push_update(raw)  # Telegram redelivers the same update: the inbox skips it
    tg.push_update(make_text_update("之后", user_id=10006))
    await wait_text(tg, 10006, "之后")
    await running.stop()
    assert [c.text for c in handler.calls] == ["写进收件箱后就停了", "之后"]
    assert len(tg.texts_to(10006)) == 2


async def test_runs_cut_off_by_crashes_are_not_failures_and_a_poison_update_is_bounded(
        tg: BotApiServer, tg_settings: Settings, handler: RecordingHandler, engine: Engine):
    """Three runs cut off by kills (begin() without an end) leave an update to be handled normally; five make it
    poison: given up with a notice, never run again, and the updates behind it are handled."""
    inbox = Inbox(engine)
    cut = make_text_update("被打断三次", user_id=10013)
    poison = make_text_update("每次都让进程崩溃", user_id=10014)
    after = make_text_update("后面的消息", user_id=10014)
    for upd, kills in ((cut, 3), (poison, MAX_INTERRUPTED), (after, 0)):
        assert inbox.record(update_id=upd["update_id"], update_data=upd)
        for _ in range(kills):
            assert inbox.begin(update_id=upd["update_id"]) is not None
    running = await start(tg_settings, handler, engine)
    try:
        await wait_text(tg, 10013, "被打断三次")
        await wait_text(tg, 10014, TEXT_FAILED)
        await wait_text(tg, 10014, "后面的消息")
    finally:
        await running.stop()
    assert [c.text for c in handler.calls] == ["被打断三次", "后面的消息"]  # the poison update never ran again
    states = {u["update_id"]: inbox.get(update_id=u["update_id"]).state for u in (cut, poison, after)}  # type: ignore[union-attr]
    assert list(states.values()) == ["done", "failed", "done"]
    assert running.channel.stats.poisoned == 1 and running.channel.stats.failed == 1


async def test_stored_text_is_masked_and_erased_once_handled(tg: BotApiServer, tg_settings: Settings,
                                                           handler: RecordingHandler, engine: Engine):
    """Finding: the inbox kept every raw update for 7 days, ID and phone numbers included."""
    body = "我电话13812345678，身份证370102199003071234，3号楼漏水"
    at_rest: list[str] = []

    def answer(incoming: Incoming) -> Reply:  # runs after the update is stored and before it is marked done
        with session_scope(engine) as session:
            at_rest.extend(json.dumps(r.payload, ensure_ascii=False)
                           for r in session.execute(select(InboundUpdate)).scalars())
        return Reply().say("已记下")

    handler.reply_for = answer
    running = await start(tg_settings, handler, engine)
    try:
        tg.push_update(make_text_update(body, user_id=10015))
        await wait_text(tg, 10015, "已记下")
        replayed = make_text_update(body, user_id=10015)  # as if stored before a crash: replayed from the copy
        assert Inbox(engine).record(update_id=replayed["update_id"], update_data=replayed)
    finally:
        await running.stop()
    assert handler.calls[0].text == body  # the first run has the message as typed
    assert len(at_rest) == 1 and "138****5678" in at_rest[0] and "3号楼漏水" in at_rest[0]
    assert "13812345678" not in at_rest[0] and "370102199003071234" not in at_rest[0]
    running = await start(tg_settings, handler, engine)
    await wait_text(tg, 10015, "已记下")
    await running.stop()
    assert handler.calls[1].text == "我电话138****5678，身份证370***********1234，3号楼漏水"
    with session_scope(engine) as session:
        rows = [json.dumps(r.payload, ensure_ascii=False) + (r.error or "")
                for r in session.execute(select(InboundUpdate)).scalars()]
        replies = [r.payload for r in session.execute(select(OutboundReply)).scalars()]
    assert rows == ["{}", "{}"] and replies == [{}, {}]  # handled: nothing of the message is left at rest


# ---------------------------------------------------------------- outbound: 429, splitting
async def test_429_retry_after_is_honoured_not_dropped(tg: BotApiServer, bot: Running):
    tg.fail_next("sendMessage", status=429, retry_after=1)
    tg.push_update(make_text_update("限流测试", user_id=10008))
    call = await wait_text(tg, 10008, "限流测试", timeout=8)
    rejected = [c for c in tg.rejected if c["method"] == "sendMessage"]
    assert len(rejected) == 1
    assert call["t"] - rejected[0]["t"] >= 1.0  # waited retry_after before trying again
    assert tg.texts_to(10008) == ["收到[text]：限流测试"]
    assert bot.channel.rate_limiter.retries_seen == 1


async def test_long_reply_is_split_under_4096_with_nothing_lost(tg: BotApiServer, bot: Running,
                                                                handler: RecordingHandler):
    long_text = "\n".join(f"第{i}条：根据《济南市物业管理条例》，业主可以向街道办反映问题。" for i in range(400))
    assert len(long_text) > 3 * 4096
    handler.reply_for = lambda inc: Reply().say(long_text, buttons=[[Button("有用", "useful", None, "k1")]])
    tg.push_update(make_text_update("物业问题", user_id=10009))
    await tg.async_wait_for(lambda c: c["method"] == "sendMessage" and "reply_markup" in c["params"])
    texts = tg.texts_to(10009)
    assert len(texts) >= 4 and all(len(t) <= 4096 for t in texts)
    assert "".join(texts) == long_text
    assert all(t.endswith("\n") for t in texts[:-1])  # cut at line ends
    sent = tg.messages_to(10009)
    assert "reply_markup" in sent[-1] and all("reply_markup" not in p for p in sent[:-1])


# ---------------------------------------------------------------- buttons: signed, forged, stale
async def test_buttons_roundtrip_and_forged_or_stale_data_is_refused(
        tg: BotApiServer, tg_settings: Settings, handler: RecordingHandler, engine: Engine):
    clock = FakeClock(datetime.now(UTC))
    confirm = [[Button("接单", "accept", "JN20261120-0001"), Button("评 5 星", "rate", "JN20261120-0001", "5")]]
    handler.reply_for = lambda inc: (Reply().say("请确认", buttons=confirm) if inc.kind == "text"
                                     else Reply().say(f"按钮：{inc.button}"))
    running = await start(tg_settings, handler, engine, clock=clock)
    try:
        tg.push_update(make_text_update("派单", user_id=10010))
        call = await tg.async_wait_for(lambda c: c["method"] == "sendMessage" and "reply_markup" in c["params"])
        markup = call["params"]["reply_markup"]
        row = markup["inline_keyboard"][0]
        assert all(len(b["callback_data"].encode()) <= 64 for b in row)
        good = row[1]["callback_data"]
        mid = call["result"]["message_id"]

        tg.push_update(make_callback_update(good, user_id=10010, message_id=mid, reply_markup=markup))
        await wait_text(tg, 10010, "按钮：")
        pressed = handler.calls[-1]
        assert pressed.kind == "button" and pressed.button == Button("评 5 星", "rate", "JN20261120-0001", "5")

        calls_before = len(handler.calls)
        forged = good[:-1] + ("A" if good[-1] != "A" else "B")
        tampered_case = good.replace("0001", "0002")
        for data in (forged, tampered_case, "accept:JN20261120-0001", ""):
            tg.push_update(make_callback_update(data or "x", user_id=10010, message_id=mid))
        clock.advance(timedelta(days=31))  # a month later the real button is stale
        tg.push_update(make_callback_update(good, user_id=10010, message_id=mid, callback_id="stale1"))
        await tg.async_wait_for(lambda c: c["method"] == "answerCallbackQuery"
                                and c["params"]["callback_query_id"] == "stale1")
    finally:
        await running.stop()
    assert len(handler.calls) == calls_before  # refused: the handler never saw them
    alerts = [c["params"] for c in tg.calls("answerCallbackQuery") if c["params"].get("show_alert")]
    assert len(alerts) == 5 and all("按钮已失效" in a["text"] for a in alerts)
    assert running.channel.stats.refused_buttons == 5
    assert tg.texts_to(10010)[-1].startswith("按钮：")  # no reply message for the refused presses


# ---------------------------------------------------------------- webhook mode
async def test_webhook_checks_secret_and_dedupes(tg: BotApiServer, tg_settings: Settings,
                                                 handler: RecordingHandler, engine: Engine):
    port = free_port()
    hook = tg_settings.model_copy(update={
        "webhook_url": f"http://127.0.0.1:{port}/tg/hook", "webhook_secret": SecretStr("s3cret_Token-1"),
        "webhook_listen": "127.0.0.1", "webhook_port": port})
    running = await start(hook, handler, engine)
    try:
        assert tg.webhook is not None and tg.webhook["secret_token"] == "s3cret_Token-1"
        assert await tg.async_post_webhook(make_text_update("错的密钥", user_id=10011), secret="wrong") == 403
        assert await tg.async_post_webhook(make_text_update("没有密钥", user_id=10011), secret=None) == 403
        assert await tg.async_post_webhook(make_text_update("差一位", user_id=10011), secret="s3cret_Token-") == 403
        assert Inbox(engine).count() == 0 and handler.calls == []

        upd = make_text_update("对的密钥", user_id=10011)
        assert await tg.async_post_webhook(upd, secret="s3cret_Token-1") == 200
        assert await tg.async_post_webhook(upd, secret="s3cret_Token-1") == 200  # Telegram's retry
        await wait_text(tg, 10011, "对的密钥")
        await asyncio.sleep(0.2)
    finally:
        await running.stop()
    assert [c.text for c in handler.calls] == ["对的密钥"]
    assert tg.texts_to(10011) == ["收到[text]：对的密钥"]
    assert Inbox(engine).count() == 1


# ---------------------------------------------------------------- pushes: the Telegram Notifier
async def test_notifier_delivers_pending_rows_and_429_keeps_them_pending(
        tg: BotApiServer, tg_settings: Settings, handler: RecordingHandler, engine: Engine):
    from casestore.db import session_scope
    from casestore.dispatch import dispatch_pending, list_notifications, record_notification
    from casestore.notify import OutboundMessage

    clock = FakeClock(datetime.now(UTC))
    channel = TelegramChannel(settings=tg_settings, handler=handler, db_engine=engine, clock=clock)
    push = OutboundMessage(text="新任务 JN20261120-0003：楼道灯坏了",
                           buttons=[[Button("接单", "accept", "JN20261120-0003")]])
    with session_scope(engine) as session:
        for i, chat in enumerate((20001, 20002, 20003)):
            record_notification(session=session, case_id=None, kind="task", level=i,
                                recipient=f"chat:telegram:{chat}", message=push, now=clock.now())
    tg.fail_next("sendMessage", n=1, status=429, retry_after=2)
    async with channel.application:
        sent = await dispatch_pending(engine=engine, notifier=channel.notifier, clock=clock)
        assert sent == 2  # the 429'd one is not sent and not retried in this sweep
        with session_scope(engine) as session:
            rows = {r.chat_id: r for r in list_notifications(session=session)}
        waiting = [r for r in rows.values() if r.state == "pending"]
        assert len(waiting) == 1 and "retry after 2" in (waiting[0].last_error or "")
        clock.advance(seconds=3)
        assert await dispatch_pending(engine=engine, notifier=channel.notifier, clock=clock) == 1
    for chat in (20001, 20002, 20003):
        [params] = tg.messages_to(chat)
        data = params["reply_markup"]["inline_keyboard"][0][0]["callback_data"]
        assert channel.signer.decode(data) == Button("", "accept", "JN20261120-0003")
    assert len(tg.rejected) == 1


async def test_notifier_maps_blocked_chat_to_delivery_error(tg: BotApiServer, tg_settings: Settings,
                                                           handler: RecordingHandler, engine: Engine):
    from casestore.notify import DeliveryError, OutboundMessage, RetryLater

    channel = TelegramChannel(settings=tg_settings, handler=handler, db_engine=engine)
    async with channel.application:
        tg.fail_next("sendMessage", status=403)
        with pytest.raises(DeliveryError):
            await channel.notifier.send(chat_id=20004, message=OutboundMessage(text="提醒"))
        tg.fail_next("sendMessage", status=429, retry_after=1)
        with pytest.raises(RetryLater) as exc_info:
            await channel.notifier.send(chat_id=20004, message=OutboundMessage(text="提醒"))
        assert exc_info.value.seconds == 1
        await channel.notifier.send(chat_id=20004, message=OutboundMessage(text="提醒"))
    assert tg.texts_to(20004) == ["提醒"]
