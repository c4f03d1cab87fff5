"""The WeChat Official Account channel end to end: real encrypted callbacks (tests.servers.wechat.CallbackDriver)
into the real channel (tornado, wechatpy's crypto, the inbox, the reply outbox) and the REAL dialogue engine,
replies through wechatpy's client to the OA API test server on 127.0.0.1.

Covers: server verification; a resident who follows the account, consents by typing a number, sets an address
and reports a problem gets a case code; duplicate callbacks handled once; a wrong signature (403, nothing
stored); a replayed old timestamp (403); an expired token (refreshed once, reply delivered); rate-limit and busy
errors (delivered after waiting); a refusal for good (the row fails, no loop); the shared token refreshed once
by two replicas at once (SQLite, and PostgreSQL when TEST_DATABASE_URL is set).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
import pytest_asyncio
from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from bot.channels.inbox import Inbox
from bot.channels.wechat import WeChatChannel
from bot.channels.wechat_api import OfficialAccountApi
from bot.channels.wechat_store import TokenStore, alias_of
from bot.dialogue import texts
from bot.services import Services
from bot.settings import Settings
from casestore.db import session_scope
from casestore.dispatch import count_replies
from casestore.models import Case
from casestore.notify import Button, OutboundMessage
from policies.models import Policies
from tests.factories import SharedAI, make_resident, resident_of
from tests.servers.wechat import AES_KEY, APP_ID, APP_SECRET, TOKEN, CallbackDriver, WeChatApiServer


@pytest.fixture
def wx() -> Any:
    with WeChatApiServer() as server:
        yield server


def wx_settings(settings: Settings, server: WeChatApiServer) -> Settings:
    return settings.model_copy(update={
        "wechat_app_id": APP_ID, "wechat_app_secret": _secret(APP_SECRET), "wechat_token": _secret(TOKEN),
        "wechat_encoding_aes_key": _secret(AES_KEY), "wechat_callback_url": "https://wx.example.invalid/wechat",
        "wechat_port": 0, "wechat_base_url": server.base_url, "wechat_limit_retry_s": 0.5})


def _secret(value: str) -> Any:
    from pydantic import SecretStr

    return SecretStr(value)


@dataclass
class Running:
    channel: WeChatChannel
    driver: CallbackDriver
    stop: asyncio.Event
    task: asyncio.Task[None]

    async def close(self) -> None:
        self.stop.set()
        await asyncio.wait_for(self.task, timeout=30)


@pytest_asyncio.fixture
async def oa(settings: Settings, engine: Engine, wx: WeChatApiServer, ai: SharedAI) -> AsyncIterator[Running]:
    config = wx_settings(settings, wx)
    services = Services(config, engine=engine, classifier=ai.classifier, knowledge=ai.knowledge)
    channel = WeChatChannel(settings=config, handler=services.dialogue.handle, db_engine=engine,
                            retry_delays=(0.05, 0.1))
    stop = asyncio.Event()
    started = asyncio.Event()

    async def on_started() -> None:
        started.set()

    task = asyncio.create_task(channel.run(stop, on_started=on_started))
    await asyncio.wait_for(started.wait(), timeout=20)
    running = Running(channel, CallbackDriver(f"http://127.0.0.1:{channel.port}/wechat"), stop, task)
    try:
        yield running
    finally:
        await running.close()
        services.close()


async def _say(oa: Running, wx: WeChatApiServer, openid: str, text: str, *, expect: str) -> str:
    """Post a text and wait for a reply containing `expect`; the reply texts after the post, joined."""
    before = len(wx.texts_to(openid))
    status, body = await oa.driver.apost(oa.driver.text(openid, text))
    assert (status, body) == (200, "success")
    await wx.async_wait_for(lambda sent: any(expect in t for t in wx.texts_to(openid)[before:]))
    await asyncio.sleep(0.1)  # a second message of the same reply
    return "\n".join(wx.texts_to(openid)[before:])


async def test_verification_get(oa: Running) -> None:
    assert await asyncio.to_thread(oa.driver.verify, "echo-123") == (200, "echo-123")
    assert (await asyncio.to_thread(oa.driver.verify, "echo-123", forge=True))[0] == 403


async def test_resident_follows_consents_and_reports_a_problem(oa: Running, wx: WeChatApiServer,
                                                               engine: Engine) -> None:
    openid = "oRES_first_contact_0001"
    status, body = await oa.driver.apost(oa.driver.event(openid, "subscribe"))
    assert (status, body) == (200, "success")
    await wx.async_wait_for(lambda sent: any(texts.WELCOME in t for t in wx.texts_to(openid)))
    await wx.async_wait_for(lambda sent: any("回复数字选择" in t for t in wx.texts_to(openid)))
    consent_ask = wx.texts_to(openid)[-1]
    assert f"1. {texts.BTN_AGREE}" in consent_ask  # the inline buttons became numbered lines

    said = await _say(oa, wx, openid, "1", expect=texts.CONSENT_THANKS)  # "1" is the signed 同意
    assert "社区" in said
    await _say(oa, wx, openid, "芙蓉小区3号楼2单元", expect="芙蓉小区3号楼2单元")
    said = await _say(oa, wx, openid, "楼道灯坏了好几天了，晚上黑咕隆咚的", expect="跳过")
    said = await _say(oa, wx, openid, "跳过", expect="对吗")
    said = await _say(oa, wx, openid, "1", expect="工单号")
    assert "JN" in said

    with session_scope(engine) as session:
        resident = resident_of(session, alias_of("wechat", openid), channel="wechat")
        assert resident is not None and resident.consent_at is not None
        cases = session.execute(select(func.count()).select_from(Case)
                                .where(Case.resident_id == resident.id)).scalar_one()
    assert cases == 1
    assert all(len(t.encode()) <= 2048 for t in wx.texts_to(openid))


async def test_duplicates_forgeries_and_replays(oa: Running, wx: WeChatApiServer, engine: Engine,
                                                policies: Policies) -> None:
    openid = "oRES_faults_0002"
    alias = alias_of("wechat", openid)
    make_resident(engine, policies, user=alias, clock=oa.channel.clock, channel="wechat")
    inbox = Inbox(engine, channel="wechat")

    xml = oa.driver.text(openid, "办居住证要带什么", msg_id=777000111)
    for _ in range(3):  # WeChat's retries of a callback it got no answer to
        assert await oa.driver.apost(xml) == (200, "success")
    await wx.async_wait_for(lambda sent: len(wx.texts_to(openid)) >= 1)
    await asyncio.sleep(0.5)
    assert inbox.count() == 1 and inbox.get(update_id=777000111).state == "done"  # type: ignore[union-attr]
    assert count_replies(engine=engine, channel="wechat", update_id=777000111) == len(wx.texts_to(openid))

    stored = inbox.count()
    status, _ = await oa.driver.apost(oa.driver.text(openid, "伪造的消息", msg_id=777000112), forge=True)
    assert status == 403
    old = int(oa.channel.clock.now().timestamp()) - 3600
    status, _ = await oa.driver.apost(oa.driver.text(openid, "一小时前的消息", msg_id=777000113), timestamp=old)
    assert status == 403
    assert inbox.count() == stored  # nothing stored for either
    assert oa.channel.stats.refused == 2


async def test_expired_token_limits_busy_and_refusal(oa: Running, wx: WeChatApiServer, engine: Engine,
                                                     policies: Policies) -> None:
    openid = "oRES_tokens_0003"
    make_resident(engine, policies, user=alias_of("wechat", openid), clock=oa.channel.clock, channel="wechat")

    await _say(oa, wx, openid, "你好", expect="")
    issued = wx.tokens_issued
    wx.expire_tokens()  # 42001 on the next send: refreshed once, then delivered
    n = len(wx.texts_to(openid))
    await _say(oa, wx, openid, "谢谢", expect="")
    assert len(wx.texts_to(openid)) > n and wx.tokens_issued == issued + 1

    wx.fail_next(45047)  # the customer-service limit: the row waits WECHAT_LIMIT_RETRY_S and is sent then
    n = len(wx.texts_to(openid))
    await _say(oa, wx, openid, "你好", expect="")
    assert len(wx.texts_to(openid)) > n and oa.channel.sender.flood_waits >= 1

    wx.fail_next(-1, 2)  # busy twice: retried inline
    n = len(wx.texts_to(openid))
    await _say(oa, wx, openid, "谢谢", expect="")
    assert len(wx.texts_to(openid)) > n

    wx.fail_next(45015)  # outside the 48-hour window: given up, not retried for ever
    attempts = wx.send_attempts
    status, _ = await oa.driver.apost(oa.driver.text(openid, "你好", msg_id=888000111))
    assert status == 200
    for _ in range(100):
        if count_replies(engine=engine, channel="wechat", update_id=888000111, state="failed"):
            break
        await asyncio.sleep(0.05)
    assert count_replies(engine=engine, channel="wechat", update_id=888000111, state="failed") >= 1
    await asyncio.sleep(0.5)
    assert wx.send_attempts == attempts + 1  # one try, no loop


def _two_replicas_refresh_once(engine: Engine, wx: WeChatApiServer) -> None:
    apis = [OfficialAccountApi(appid=APP_ID, secret=APP_SECRET, tokens_engine=engine, base_url=wx.base_url)
            for _ in range(2)]
    barrier = threading.Barrier(4)
    got: list[str] = []

    def take(api: OfficialAccountApi) -> None:
        barrier.wait()
        got.append(api.tokens.get())

    threads = [threading.Thread(target=take, args=(apis[i % 2],)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert wx.tokens_issued == 1 and len(set(got)) == 1 and len(got) == 4
    assert TokenStore(engine, name=f"wechat:{APP_ID}", fetch=lambda: ("x", 1)).refreshed_count() == 1
    wx.expire_tokens()  # both replicas' next sends hit 42001: one refresh between them
    apis[0].send_text("oX", "一")
    apis[1].send_text("oX", "二")
    assert wx.tokens_issued == 2 and wx.texts_to("oX") == ["一", "二"]
    media = apis[0].upload_image(b"\xff\xd8jpeg-bytes")
    assert apis[1].download(media) == b"\xff\xd8jpeg-bytes"


def test_replicas_share_the_token_sqlite(engine: Engine, wx: WeChatApiServer) -> None:
    _two_replicas_refresh_once(engine, wx)


def test_replicas_share_the_token_postgres(pg_engine: Engine, wx: WeChatApiServer) -> None:
    _two_replicas_refresh_once(pg_engine, wx)


async def test_voice_read_back_or_left_for_the_worker(oa: Running, wx: WeChatApiServer, engine: Engine,
                                                      policies: Policies) -> None:
    openid = "oRES_voice_0004"
    make_resident(engine, policies, user=alias_of("wechat", openid), clock=oa.channel.clock, channel="wechat")
    # the account's own speech recognition: read back for the resident to confirm (bot.dialogue.voice)
    await oa.driver.apost(oa.driver.voice(openid, "VOICE-1", recognition="楼道灯坏了"))
    await wx.async_wait_for(lambda sent: any("您说的是：楼道灯坏了" in t for t in wx.texts_to(openid)))
    said = await _say(oa, wx, openid, "1", expect="跳过")  # 1 = 对: handled as if typed, the report form asks on
    assert "照片" in said
    # no recognition and no transcription endpoint: a 语音留言 case with the media id for the grid worker
    await _say(oa, wx, openid, "/start", expect="")
    before = len(wx.texts_to(openid))
    await oa.driver.apost(oa.driver.voice(openid, "VOICE-2"))
    await wx.async_wait_for(lambda sent: any("语音留言" in t for t in wx.texts_to(openid)[before:]))
    assert "工单号" in wx.texts_to(openid)[-1]


def test_standalone_scheduler_pushes_to_wechat_users(engine: Engine, settings: Settings, wx: WeChatApiServer,
                                                     policies: Policies, monkeypatch: pytest.MonkeyPatch) -> None:
    """`quanbot scheduler --once` with the Official Account configured: a pending push to a WeChat user goes out
    through the OA API (the rest would go to Telegram or the log), with its buttons as numbered choices."""
    from typer.testing import CliRunner

    from bot.channels.wechat_store import get_menu, remember_user
    from bot.cli import app
    from casestore.clock import SystemClock
    from casestore.dispatch import record_notification

    openid = "oRES_sched_0005"
    now = SystemClock().now()
    alias = remember_user(engine, channel="wechat", user_ref=openid, now=now)
    resident = make_resident(engine, policies, user=alias, clock=SystemClock(), channel="wechat")
    with session_scope(engine) as session:
        assert record_notification(session=session, case_id=None, kind="notice", level=1,
                                   recipient=f"resident:{resident.id}", now=now,
                                   message=OutboundMessage(text="明天上午停水", buttons=[[Button("知道了", "useful")]]))
    config = wx_settings(settings, wx)
    for key in ("wechat_app_id", "wechat_base_url"):
        monkeypatch.setenv(key.upper(), str(getattr(config, key)))
    for key in ("wechat_app_secret", "wechat_token", "wechat_encoding_aes_key"):
        monkeypatch.setenv(key.upper(), getattr(config, key).get_secret_value())
    monkeypatch.setenv("DATABASE_URL", settings.database_url)
    monkeypatch.setenv("VAR_DIR", str(settings.var_dir))
    monkeypatch.setenv("CHROMA_DIR", str(settings.chroma_dir))
    result = CliRunner().invoke(app, ["scheduler", "--once"])
    assert result.exit_code == 0, result.output
    assert wx.texts_to(openid) == ["明天上午停水\n回复数字选择：\n1. 知道了"]
    assert [c[0] for c in get_menu(engine, alias=alias, now=SystemClock().now())] == ["知道了"]


async def test_photo_and_location_and_long_text(oa: Running, wx: WeChatApiServer, engine: Engine,
                                                policies: Policies) -> None:
    """A photo sent while the report form asks for one goes on the case (its media id); a location message is a
    location; a reply over WeChat's 2048 bytes arrives split, every part within the limit."""
    openid = "oRES_media_0006"
    alias = alias_of("wechat", openid)
    make_resident(engine, policies, user=alias, clock=oa.channel.clock, channel="wechat")
    await _say(oa, wx, openid, "楼道灯坏了好几天了", expect="跳过")
    n = len(wx.texts_to(openid))
    await oa.driver.apost(oa.driver.image(openid, "MEDIA-photo-1"))
    await wx.async_wait_for(lambda s: any("对吗" in t for t in wx.texts_to(openid)[n:]))
    await _say(oa, wx, openid, "1", expect="工单号")
    with session_scope(engine) as session:
        resident = resident_of(session, alias, channel="wechat")
        case = session.execute(select(Case).where(Case.resident_id == resident.id)).scalars().one()  # type: ignore[union-attr]
        assert "MEDIA-photo-1" in str(case.attachments)
    n = len(wx.texts_to(openid))
    await oa.driver.apost(oa.driver.location(openid, 36.66, 117.02, label="济南市历下区芙蓉街"))
    await wx.async_wait_for(lambda s: len(wx.texts_to(openid)) > n)

    long_text = "\n".join(f"第{i}条：居民反映的情况说明，" + "内容" * 30 for i in range(40))
    renderer = oa.channel.renderer
    parts = renderer.render(OutboundMessage(text=long_text, buttons=[[Button("好的", "useful")]]))
    assert len(parts) > 1 and all(len(p.text.encode()) <= 2048 for p in parts)
    assert parts[-1].choices and not any(p.choices for p in parts[:-1])
    assert "".join(p.text.replace("\n", "") for p in parts).startswith(long_text.replace("\n", ""))
    await oa.channel.outbound.send_parts(alias, parts, on_part=lambda: None)
    assert wx.texts_to(openid)[-len(parts):] == [p.text for p in parts]  # the API took every part (45002 past 2048)
