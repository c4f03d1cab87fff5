"""Self-tests: the fake Bot API / OpenAI servers speak the protocol to the REAL clients."""

from __future__ import annotations

import json
import math

import openai
import pytest
from telegram import Bot, InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram.error import BadRequest, Forbidden, RetryAfter
from telegram.ext import (
    Application,
    CallbackQueryHandler,
    CommandHandler,
    ContextTypes,
    MessageHandler,
    filters,
)

from tests.servers.botapi import DEFAULT_TOKEN, BotApiServer
from tests.servers.openai_compat import OpenAICompatServer
from tests.servers.tg_factories import (
    make_callback_update,
    make_command_update,
    make_document_update,
    make_location_update,
    make_photo_update,
    make_sticker_update,
    make_text_update,
    make_voice_update,
)

TOKEN = DEFAULT_TOKEN


@pytest.fixture
def tg():
    with BotApiServer(TOKEN) as server:
        yield server


@pytest.fixture
def llm():
    with OpenAICompatServer() as server:
        yield server


def _bot(tg: BotApiServer) -> Bot:
    return Bot(TOKEN, base_url=tg.base_url, base_file_url=tg.base_file_url)


# ---------------------------------------------------------------- Bot API: plain Bot
async def test_bot_get_me_and_send_message_with_keyboard(tg: BotApiServer):
    markup = InlineKeyboardMarkup(
        [
            [
                InlineKeyboardButton("确认", callback_data="ok"),
                InlineKeyboardButton("取消", callback_data="cancel"),
            ]
        ]
    )
    async with _bot(tg) as bot:
        me = await bot.get_me()
        assert me.is_bot and me.username == "quanbot_test_bot"
        assert me.id == int(TOKEN.split(":")[0])
        m1 = await bot.send_message(chat_id=10001, text="您好，请确认", reply_markup=markup)
        m2 = await bot.send_message(chat_id=10001, text="123")
        other = await bot.send_message(chat_id=20002, text="x")

    assert m1.text == "您好，请确认"
    assert m1.chat.id == 10001 and m1.chat.type == "private"
    assert m1.from_user.username == "quanbot_test_bot"
    assert m1.reply_markup == markup
    assert (m1.message_id, m2.message_id, other.message_id) == (1, 2, 1)

    call = tg.wait_for(lambda c: c["method"] == "sendMessage" and "reply_markup" in c["params"])
    assert call["params"]["chat_id"] == 10001
    assert call["params"]["reply_markup"]["inline_keyboard"][0][1]["callback_data"] == "cancel"
    assert [p["text"] for p in tg.messages_to(10001)] == ["您好，请确认", "123"]
    assert tg.texts_to(20002) == ["x"]
    assert tg.calls("getMe")


async def test_misc_methods(tg: BotApiServer):
    async with _bot(tg) as bot:
        msg = await bot.send_message(
            10001, "原文", reply_markup=InlineKeyboardMarkup([[InlineKeyboardButton("a", callback_data="a")]])
        )
        edited = await bot.edit_message_text("新文", chat_id=10001, message_id=msg.message_id)
        assert edited.text == "新文" and edited.edit_date is not None
        assert edited.reply_markup is None
        kb = InlineKeyboardMarkup([[InlineKeyboardButton("b", callback_data="b")]])
        edited2 = await bot.edit_message_reply_markup(10001, msg.message_id, reply_markup=kb)
        assert edited2.reply_markup == kb
        assert await bot.send_chat_action(10001, "typing")
        assert await bot.answer_callback_query("cbq1", text="已收到")
        assert await bot.set_my_commands([("start", "开始"), ("help", "帮助")])
        cmds = await bot.get_my_commands()
        assert [c.command for c in cmds] == ["start", "help"]
        photo = await bot.send_photo(10001, photo=b"\x89PNG fake bytes", caption="现场照片")
        assert photo.caption == "现场照片" and photo.photo
        photo2 = await bot.send_photo(10001, photo="AgACAgExisting")
        assert photo2.photo[-1].file_id == "AgACAgExisting"
        assert await bot.set_webhook("https://example.invalid/hook", secret_token="s3cret")
        assert tg.webhook["url"] == "https://example.invalid/hook"
        assert tg.webhook["secret_token"] == "s3cret"
        info = await bot.get_webhook_info()
        assert info.url == "https://example.invalid/hook"
        assert await bot.delete_webhook()
        assert tg.webhook is None
        assert await bot.close()
        with pytest.raises(BadRequest):
            await bot.send_message(10001, "")
        # unknown method
        with pytest.raises(Exception) as exc_info:
            await bot.do_api_request("noSuchMethod", api_kwargs={"x": 1})
        assert "not found" in str(exc_info.value).lower()

    upload = tg.calls("sendPhoto")[0]
    assert upload["files"]["photo"]["content"] == b"\x89PNG fake bytes"
    assert tg.messages_to(10001)[-1]["photo"] == "AgACAgExisting"
    assert tg.rejected[-1]["method"] == "noSuchMethod"


async def test_fail_next_429_raises_retry_after(tg: BotApiServer):
    tg.fail_next("sendMessage", status=429, retry_after=1)
    async with _bot(tg) as bot:
        with pytest.raises(RetryAfter) as exc_info:
            await bot.send_message(10001, "hi")
        ra = exc_info.value.retry_after  # int in PTB 22 (timedelta with PTB_TIMEDELTA=1)
        assert getattr(ra, "total_seconds", lambda: ra)() == 1
        # only the next call fails
        ok = await bot.send_message(10001, "hi again")
        assert ok.text == "hi again"
        tg.fail_next("sendMessage", status=403)
        with pytest.raises(Forbidden):
            await bot.send_message(10001, "blocked")
    assert [c["params"]["text"] for c in tg.rejected] == ["hi", "blocked"]
    assert tg.rejected[0]["response"]["parameters"] == {"retry_after": 1}
    assert tg.texts_to(10001) == ["hi again"]


# ---------------------------------------------------------------- Bot API: Application
async def _echo(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    await update.effective_message.reply_text(f"收到：{update.effective_message.text}")


async def _start(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    kb = InlineKeyboardMarkup([[InlineKeyboardButton("办理", callback_data="do")]])
    await update.effective_chat.send_message(f"欢迎 args={context.args}", reply_markup=kb)


async def _button(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    await update.callback_query.answer("好")
    await update.callback_query.edit_message_text(f"已选择 {update.callback_query.data}")


async def _other(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    m = update.effective_message
    kind = next(k for k in ("photo", "location", "sticker", "voice", "document") if getattr(m, k))
    await m.reply_text(f"kind={kind}")


def _build_app(tg: BotApiServer) -> Application:
    app = Application.builder().token(TOKEN).base_url(tg.base_url).base_file_url(tg.base_file_url).build()
    app.add_handler(CommandHandler("start", _start))
    app.add_handler(MessageHandler(filters.TEXT & ~filters.COMMAND, _echo))
    app.add_handler(CallbackQueryHandler(_button))
    app.add_handler(
        MessageHandler(
            filters.PHOTO | filters.LOCATION | filters.Sticker.ALL | filters.VOICE | filters.Document.ALL,
            _other,
        )
    )
    return app


async def test_application_polling_roundtrip(tg: BotApiServer):
    app = _build_app(tg)
    async with app:
        await app.updater.start_polling(poll_interval=0.01, timeout=1)
        await app.start()
        try:
            tg.push_update(make_text_update("楼道灯坏了", user_id=10001))
            call = await tg.async_wait_for(
                lambda c: c["method"] == "sendMessage" and c["params"]["text"].startswith("收到")
            )
            assert call["params"] == {**call["params"], "chat_id": 10001, "text": "收到：楼道灯坏了"}

            tg.push_update(make_command_update("/start", user_id=10002, args="ref9"))
            call = await tg.async_wait_for(lambda c: c["params"].get("chat_id") == 10002)
            assert call["params"]["text"] == "欢迎 args=['ref9']"
            mid = call["result"]["message_id"]

            tg.push_update(make_callback_update("do", user_id=10002, message_id=mid))
            await tg.async_wait_for("editMessageText")
            assert tg.last("answerCallbackQuery")["params"]["text"] == "好"
            assert tg.texts_to(10002)[-1] == "已选择 do"

            for upd in (
                make_photo_update(10003, caption="看"),
                make_location_update(10003),
                make_sticker_update(10003),
                make_voice_update(10003),
                make_document_update(10003),
            ):
                tg.push_update(upd)
            await tg.async_wait_for(lambda c: c["params"].get("text") == "kind=document")
            assert tg.texts_to(10003) == [
                "kind=photo",
                "kind=location",
                "kind=sticker",
                "kind=voice",
                "kind=document",
            ]
        finally:
            await app.updater.stop()
            await app.stop()
    assert tg.pending_updates == []  # PTB confirmed everything on stop


async def test_webhook_roundtrip(tg: BotApiServer):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app = _build_app(tg)
    async with app:
        await app.updater.start_webhook(
            listen="127.0.0.1",
            port=port,
            url_path="hook",
            secret_token="tok",
            webhook_url=f"http://127.0.0.1:{port}/hook",
        )
        await app.start()
        try:
            assert tg.webhook["url"] == f"http://127.0.0.1:{port}/hook"
            assert tg.webhook["secret_token"] == "tok"
            assert await tg.async_post_webhook(make_text_update("hi"), secret="wrong") == 403
            assert await tg.async_post_webhook(make_text_update("你好"), secret="tok") == 200
            await tg.async_wait_for(lambda c: c["params"].get("text") == "收到：你好")
        finally:
            await app.updater.stop()
            await app.stop()


def test_get_updates_long_poll_semantics(tg: BotApiServer):
    """Raw HTTP check of offset/timeout/limit, without PTB."""
    import threading
    import time
    import urllib.request

    def get_updates(**params):
        data = json.dumps(params).encode()
        req = urllib.request.Request(
            f"{tg.base_url}{TOKEN}/getUpdates", data=data, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(req, timeout=5) as resp:
            return json.loads(resp.read())["result"]

    t0 = time.monotonic()
    assert get_updates(timeout=0.2) == []
    assert time.monotonic() - t0 >= 0.15
    ids = [tg.push_update({"message": make_text_update(str(i))["message"]}) for i in range(3)]
    assert [u["update_id"] for u in get_updates(limit=2)] == ids[:2]
    assert [u["update_id"] for u in get_updates(offset=ids[1])] == ids[1:]
    assert get_updates(offset=ids[2] + 1) == []
    with pytest.raises(ValueError):
        tg.push_update({"update_id": ids[0], "message": {}})
    # a queued update wakes a waiting long poll at once
    threading.Timer(0.1, lambda: tg.push_update(make_text_update("late"))).start()
    t0 = time.monotonic()
    got = get_updates(offset=ids[2] + 1, timeout=3)
    assert len(got) == 1 and got[0]["message"]["text"] == "late"
    assert time.monotonic() - t0 < 1.5


def test_wait_for_timeout_message(tg: BotApiServer):
    with pytest.raises(TimeoutError) as exc_info:
        tg.wait_for("sendMessage", timeout=0.05)
    assert "recorded calls" in str(exc_info.value)


# ---------------------------------------------------------------- OpenAI-compatible server
def test_openai_client_chat_and_errors(llm: OpenAICompatServer):
    client = openai.OpenAI(base_url=llm.base_url, api_key="test", max_retries=0)
    llm.queue_reply('{"category": "路灯"}')
    resp = client.chat.completions.create(
        model="test-chat-model",
        messages=[{"role": "system", "content": "分类"}, {"role": "user", "content": "灯坏了"}],
        response_format={"type": "json_object"},
    )
    assert resp.choices[0].message.content == '{"category": "路灯"}'
    assert resp.choices[0].finish_reason == "stop"
    assert resp.usage.total_tokens > 0
    # default reply
    resp = client.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}])
    assert resp.choices[0].message.content == "好的。"
    assert "灯坏了" in llm.prompts_text() and "分类" in llm.prompts_text()
    req = llm.chat_requests()[0]
    assert req["headers"]["authorization"] == "Bearer test"
    assert req["body"]["response_format"] == {"type": "json_object"}

    llm.queue_delay(1.0)
    with pytest.raises(openai.APITimeoutError):
        client.chat.completions.create(model="m", messages=[{"role": "user", "content": "slow"}], timeout=0.2)

    llm.queue_error(500)
    with pytest.raises(openai.InternalServerError):
        client.chat.completions.create(model="m", messages=[{"role": "user", "content": "e"}])

    llm.queue_error(429)
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(model="m", messages=[{"role": "user", "content": "e"}])

    llm.queue_malformed()
    with pytest.raises((openai.APIError, json.JSONDecodeError, ValueError)):
        client.chat.completions.create(model="m", messages=[{"role": "user", "content": "bad"}])

    # failures do not consume queued replies; responder is used when queue is empty
    llm.queue_error(503)
    llm.queue_reply("第二次成功")
    with pytest.raises(openai.APIStatusError):
        client.chat.completions.create(model="m", messages=[{"role": "user", "content": "r"}])
    resp = client.chat.completions.create(model="m", messages=[{"role": "user", "content": "r"}])
    assert resp.choices[0].message.content == "第二次成功"
    llm.set_responder(lambda req: "echo:" + req["messages"][-1]["content"])
    resp = client.chat.completions.create(model="m", messages=[{"role": "user", "content": "q"}])
    assert resp.choices[0].message.content == "echo:q"


def test_openai_stream_tools_models_embeddings(llm: OpenAICompatServer):
    client = openai.OpenAI(base_url=llm.base_url, api_key="test", max_retries=0)
    llm.queue_reply("这是一个流式回答。")
    stream = client.chat.completions.create(
        model="m",
        messages=[{"role": "user", "content": "s"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    pieces, usage = [], None
    for ch in stream:
        if ch.usage:
            usage = ch.usage
        for c in ch.choices:
            pieces.append(c.delta.content or "")
    assert "".join(pieces) == "这是一个流式回答。"
    assert usage is not None and usage.completion_tokens > 0

    llm.queue_tool_call("open_case", {"category": "噪音"})
    resp = client.chat.completions.create(
        model="m",
        messages=[{"role": "user", "content": "t"}],
        tools=[
            {
                "type": "function",
                "function": {
                    "name": "open_case",
                    "parameters": {"type": "object", "properties": {"category": {"type": "string"}}},
                },
            }
        ],
    )
    tc = resp.choices[0].message.tool_calls[0]
    assert tc.function.name == "open_case"
    assert json.loads(tc.function.arguments) == {"category": "噪音"}

    assert {m.id for m in client.models.list()} >= {"test-chat-model"}

    emb = client.embeddings.create(model="e", input=["路灯坏了", "路灯坏了", "垃圾没人收"])
    vecs = [d.embedding for d in emb.data]  # default encoding_format is base64
    assert all(len(v) == 64 for v in vecs)
    assert math.isclose(sum(x * x for x in vecs[0]), 1.0, rel_tol=1e-4)
    assert vecs[0] == pytest.approx(vecs[1])
    assert vecs[0] == pytest.approx(llm.embed("路灯坏了"), abs=1e-6)
    single = client.embeddings.create(model="e", input="x", encoding_format="float", dimensions=16)
    assert len(single.data[0].embedding) == 16
    assert "垃圾没人收" in llm.prompts_text()


async def test_async_openai_client(llm: OpenAICompatServer):
    llm.queue_reply("来自异步客户端")
    aclient = openai.AsyncOpenAI(base_url=llm.base_url, api_key="test", max_retries=0)
    resp = await aclient.chat.completions.create(model="m", messages=[{"role": "user", "content": "你好"}])
    assert resp.choices[0].message.content == "来自异步客户端"
    await aclient.close()
    assert "你好" in llm.prompts_text()


async def test_bot_and_llm_together(tg: BotApiServer, llm: OpenAICompatServer):
    """Handler calls the LLM (async client) and replies: both fakes on one loop."""
    aclient = openai.AsyncOpenAI(base_url=llm.base_url, api_key="test", max_retries=0)

    async def answer(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        r = await aclient.chat.completions.create(
            model="m", messages=[{"role": "user", "content": update.message.text}]
        )
        await update.message.reply_text(r.choices[0].message.content)

    app = Application.builder().token(TOKEN).base_url(tg.base_url).build()
    app.add_handler(MessageHandler(filters.TEXT, answer))
    llm.queue_reply("已为您登记。")
    async with app:
        await app.updater.start_polling(poll_interval=0.01, timeout=1)
        await app.start()
        try:
            tg.push_update(make_text_update("噪音扰民", user_id=555))
            await tg.async_wait_for(lambda c: c["params"].get("text") == "已为您登记。")
        finally:
            await app.updater.stop()
            await app.stop()
    await aclient.close()
    assert "噪音扰民" in llm.prompts_text()
