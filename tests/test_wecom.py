"""WeCom (企业微信) for grid workers, end to end with the Official Account for residents, through the REAL engine:
resident (OA) reports → the task push reaches the worker on WeCom as text plus a button card whose keys are the
same signed tokens as Telegram's callback_data → the worker presses 接单 and 办结 on the card → the resident hears
each step on the OA and rates with a typed number. Both channels run in this process on one database against the
API test server (tests.servers.wechat), with real encrypted callbacks; the worker also holds a Telegram account.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
import pytest_asyncio
from pydantic import SecretStr
from sqlalchemy import select
from sqlalchemy.engine import Engine

from bot.channels.callback import CallbackSigner
from bot.channels.notifiers import LogNotifier
from bot.channels.wechat import RoutingNotifier, WeChatChannel, wechat_signing_key
from bot.channels.wechat_store import alias_of, remember_user
from bot.channels.wecom import WeComChannel
from bot.dialogue import texts
from bot.services import Services
from bot.settings import Settings
from casestore.accounts import link_worker_account, list_accounts
from casestore.db import session_scope
from casestore.models import Case, Worker
from policies.models import Policies
from tests.factories import SharedAI, make_resident
from tests.servers.wechat import (
    AES_KEY,
    AGENT_ID,
    CORP_ID,
    CORP_SECRET,
    TOKEN,
    CallbackDriver,
    WeChatApiServer,
    WeComDriver,
)
from tests.test_wechat_oa import wx_settings


@pytest.fixture
def wx() -> Any:
    with WeChatApiServer() as server:
        yield server


@dataclass
class Both:
    oa: WeChatChannel
    wecom: WeComChannel
    resident: CallbackDriver
    worker: WeComDriver
    stop: asyncio.Event
    tasks: list[asyncio.Task[None]]


@pytest_asyncio.fixture
async def both(settings: Settings, engine: Engine, wx: WeChatApiServer, ai: SharedAI) -> AsyncIterator[Both]:
    config = wx_settings(settings, wx).model_copy(update={
        "wecom_corp_id": CORP_ID, "wecom_agent_id": AGENT_ID, "wecom_secret": SecretStr(CORP_SECRET),
        "wecom_token": SecretStr(TOKEN), "wecom_encoding_aes_key": SecretStr(AES_KEY),
        "wecom_callback_url": "https://wx.example.invalid/wecom", "wecom_port": 0, "wecom_base_url": wx.base_url})
    services = Services(config, engine=engine, classifier=ai.classifier, knowledge=ai.knowledge)
    oa = WeChatChannel(settings=config, handler=services.dialogue.handle, db_engine=engine)
    wecom = WeComChannel(settings=config, handler=services.dialogue.handle, db_engine=engine)
    router = RoutingNotifier(LogNotifier(), engine=engine, channels={"wechat": oa.notifier, "wecom": wecom.notifier})
    oa.push_notifier = wecom.push_notifier = router
    stop = asyncio.Event()
    started = [asyncio.Event(), asyncio.Event()]

    def marker(i: int) -> Any:
        async def on_started() -> None:
            started[i].set()
        return on_started

    tasks = [asyncio.create_task(oa.run(stop, on_started=marker(0))),
             asyncio.create_task(wecom.run(stop, on_started=marker(1)))]
    await asyncio.wait_for(asyncio.gather(*(e.wait() for e in started)), timeout=20)
    running = Both(oa, wecom, CallbackDriver(f"http://127.0.0.1:{oa.port}/wechat"),
                   WeComDriver(f"http://127.0.0.1:{wecom.port}/wecom"), stop, tasks)
    try:
        yield running
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), timeout=30)
        services.close()


def _link_all_workers_to_wecom(engine: Engine, clock: Any) -> dict[int, str]:
    """Every worker also on WeCom (their latest account), so whoever routing picks gets the push there."""
    out: dict[int, str] = {}
    with session_scope(engine) as session:
        for worker in session.execute(select(Worker)).scalars().all():
            assert worker.id is not None
            userid = f"wk{worker.id}"
            link_worker_account(session=session, worker=worker, channel="wecom",
                                external_id=alias_of("wecom", userid), actor="test", now=clock.now())
            out[worker.id] = userid
    return out


async def _wait(pred: Any, timeout: float = 20.0) -> None:
    for _ in range(int(timeout / 0.02)):
        if pred():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("condition not met")


async def test_wecom_url_check(both: Both) -> None:
    assert await asyncio.to_thread(both.worker.verify, "echo-wecom") == (200, "echo-wecom")
    assert (await asyncio.to_thread(both.worker.verify, "echo-wecom", forge=True))[0] == 403


async def test_resident_on_oa_worker_on_wecom_accepts_resolves_resident_rates(
        both: Both, wx: WeChatApiServer, engine: Engine, policies: Policies) -> None:
    clock = both.oa.clock
    workers = _link_all_workers_to_wecom(engine, clock)
    for userid in workers.values():  # the way back from alias to UserID (a worker's first message also stores it)
        remember_user(engine, channel="wecom", user_ref=userid, now=clock.now(), inbound=False)
    openid = "oRES_loop_0001"
    make_resident(engine, policies, user=alias_of("wechat", openid), clock=clock, channel="wechat")

    for text, expect in (("楼道灯坏了好几天了，晚上黑咕隆咚的", "跳过"), ("跳过", "对吗"), ("1", "工单号")):
        n = len(wx.texts_to(openid))
        assert await both.resident.apost(both.resident.text(openid, text)) == (200, "success")
        await wx.async_wait_for(lambda s, n=n, e=expect: any(e in t for t in wx.texts_to(openid)[n:]))
    code = re.search(r"JN\d{8}-\d{4}", "\n".join(wx.texts_to(openid))).group(0)  # type: ignore[union-attr]

    await _wait(lambda: bool(wx.cards))
    card = wx.cards[-1]
    userid = card["touser"]
    assert userid in workers.values()
    task_text = wx.texts_to(userid)[-1]
    assert code in task_text and f"1. {texts.BTN_ACCEPT}" in task_text  # all choices numbered in the text
    keys = {b["text"]: b["key"] for b in card["card"]["button_list"]}
    signer = CallbackSigner(wechat_signing_key(both.oa.settings))
    accept = signer.decode(keys[texts.BTN_ACCEPT])  # the same signed token a Telegram button carries
    assert accept is not None and (accept.action, accept.case_code) == ("accept", code)

    forged = keys[texts.BTN_ACCEPT][:-2] + ("AA" if not keys[texts.BTN_ACCEPT].endswith("AA") else "BB")
    n = len(wx.texts_to(userid))
    await both.worker.apost(both.worker.card_press(userid, forged, task_id=card["card"]["task_id"]))
    await wx.async_wait_for(lambda s: len(wx.texts_to(userid)) > n)
    assert "已失效" in wx.texts_to(userid)[-1]
    with session_scope(engine) as session:
        case = session.execute(select(Case).where(Case.code == code)).scalars().one()
        status = case.status  # the forged press must change nothing

    n_res = len(wx.texts_to(openid))
    await both.worker.apost(both.worker.card_press(userid, keys[texts.BTN_ACCEPT], task_id=card["card"]["task_id"]))
    await wx.async_wait_for(lambda s: any(texts.ACCEPTED.format(code=code) in t for t in wx.texts_to(userid)))
    await wx.async_wait_for(lambda s: any("已接单" in t for t in wx.texts_to(openid)[n_res:]))
    # the same card pressed again a few seconds later (WeCom leaves it clickable): answered, not redone. (A press
    # in the same second is one press: WeCom's retries of a callback carry the same CreateTime.)
    n = len(wx.texts_to(userid))
    n_res = len(wx.texts_to(openid))
    await both.worker.apost(both.worker.card_press(userid, keys[texts.BTN_ACCEPT], task_id=card["card"]["task_id"],
                                                   create_time=int(time.time()) + 5))
    await wx.async_wait_for(lambda s: len(wx.texts_to(userid)) > n)
    assert texts.ACCEPTED.format(code=code) not in wx.texts_to(userid)[-1]
    await asyncio.sleep(0.3)
    assert len(wx.texts_to(openid)) == n_res  # the resident is not told twice

    await both.worker.apost(both.worker.card_press(userid, keys[texts.BTN_RESOLVE], task_id=card["card"]["task_id"]))
    await wx.async_wait_for(lambda s: any("办理结果" in t for t in wx.texts_to(userid)))
    await both.worker.apost(both.worker.text(userid, "已更换灯泡"))
    await wx.async_wait_for(lambda s: any("跳过" in t for t in wx.texts_to(userid)[-1:]))
    await both.worker.apost(both.worker.text(userid, "跳过"))
    await wx.async_wait_for(lambda s: any(texts.RESOLVED.format(code=code) in t for t in wx.texts_to(userid)))

    await wx.async_wait_for(lambda s: any("⭐5" in t for t in wx.texts_to(openid)))
    ask = next(t for t in reversed(wx.texts_to(openid)) if "⭐5" in t)
    number = re.search(r"(\d+)\. ⭐5", ask).group(1)  # type: ignore[union-attr]
    assert "已更换灯泡" in "\n".join(wx.texts_to(openid))
    await both.resident.apost(both.resident.text(openid, number))
    await wx.async_wait_for(lambda s: any(texts.RATE_THANKS in t for t in wx.texts_to(openid)))
    with session_scope(engine) as session:
        case = session.execute(select(Case).where(Case.code == code)).scalars().one()
        assert case.satisfaction == 5 and case.status != status
        worker_id = next(w for w, u in workers.items() if u == userid)
        channels = {a.channel for a in list_accounts(session=session, worker_id=worker_id)}
    assert "wecom" in channels  # and Telegram too when grids.yaml gives this position a telegram_id


def test_quanbot_wecom_link_gives_a_grid_worker_a_second_account(engine: Engine, settings: Settings,
                                                                 policies: Policies, monkeypatch: Any) -> None:
    from typer.testing import CliRunner

    from bot.channels.wechat_store import user_of
    from bot.cli import app
    from casestore.accounts import get_worker_by_account

    with session_scope(engine) as session:
        telegram = next(a for w in session.execute(select(Worker)).scalars().all()
                        for a in list_accounts(session=session, worker_id=w.id) if a.channel == "telegram")
        worker_id, telegram_id = telegram.worker_id, telegram.external_id
    monkeypatch.setenv("DATABASE_URL", settings.database_url)
    result = CliRunner().invoke(app, ["wecom", "link", telegram_id, "WangFang"])
    assert result.exit_code == 0, result.output
    with session_scope(engine) as session:
        linked = get_worker_by_account(session=session, channel="wecom", external_id=alias_of("wecom", "WangFang"))
        assert linked is not None and linked.id == worker_id
        assert {a.channel for a in list_accounts(session=session, worker_id=worker_id)} >= {"telegram", "wecom"}
    assert user_of(engine, alias_of("wecom", "WangFang"))[:2] == ("wecom", "WangFang")  # type: ignore[index]
    bad = CliRunner().invoke(app, ["wecom", "link", "999999999", "Nobody"])
    assert bad.exit_code == 2 and "没有找到网格员" in bad.output


async def test_wecom_forged_and_duplicate_callbacks(both: Both, wx: WeChatApiServer, engine: Engine) -> None:
    from bot.channels.inbox import Inbox

    inbox = Inbox(engine, channel="wecom")
    userid = "wk_faults"
    status, _ = await both.worker.apost(both.worker.text(userid, "/tasks", msg_id=424242), forge=True)
    assert status == 403 and inbox.count() == 0
    press = both.worker.card_press(userid, "a:A:JN20261202-0001::zz:forgedforged", task_id="t1", create_time=1)
    for _ in range(3):  # WeCom's retries carry the same CreateTime: one press
        assert await both.worker.apost(press) == (200, "success")
    await wx.async_wait_for(lambda s: len(wx.texts_to(userid)) >= 1)
    await asyncio.sleep(0.3)
    assert inbox.count() == 1 and wx.texts_to(userid) == ["这个选项已失效，请重新发送您的问题。"]


async def test_photos_cross_between_oa_and_wecom_and_the_workers_proof_goes_on_the_case(
        both: Both, wx: WeChatApiServer, engine: Engine, policies: Policies) -> None:
    """The resident's photo (OA media) reaches the worker on WeCom as an image (downloaded from the OA, uploaded to
    WeCom: the two accounts' media ids are not each other's); the worker's 办结 proof photo on WeCom goes on the
    case by its WeCom media id, as a Telegram photo does by its file id, and reaches the resident as an image."""
    from casestore.models import CaseEvent

    clock = both.oa.clock
    workers = _link_all_workers_to_wecom(engine, clock)
    for userid in workers.values():
        remember_user(engine, channel="wecom", user_ref=userid, now=clock.now(), inbound=False)
    openid = "oRES_photo_0002"
    make_resident(engine, policies, user=alias_of("wechat", openid), clock=clock, channel="wechat")
    resident_photo = wx.put_media(b"\xff\xd8resident-dark-stairs", corp=False)
    n = len(wx.texts_to(openid))
    await both.resident.apost(both.resident.text(openid, "楼道灯坏了好几天了，晚上黑咕隆咚的"))
    await wx.async_wait_for(lambda s: any("跳过" in t for t in wx.texts_to(openid)[n:]))
    n = len(wx.texts_to(openid))
    await both.resident.apost(both.resident.image(openid, resident_photo))
    await wx.async_wait_for(lambda s: any("对吗" in t for t in wx.texts_to(openid)[n:]))
    await both.resident.apost(both.resident.text(openid, "1"))
    await wx.async_wait_for(lambda s: any("工单号" in t for t in wx.texts_to(openid)))
    code = re.search(r"JN\d{8}-\d{4}", "\n".join(wx.texts_to(openid))).group(0)  # type: ignore[union-attr]

    await _wait(lambda: bool(wx.cards))
    card = wx.cards[-1]
    userid = card["touser"]
    assert wx.images_to(userid) == [b"\xff\xd8resident-dark-stairs"]  # an image, under a WeCom media id
    assert not any(resident_photo in t or "（图片：" in t for t in wx.texts_to(userid))
    keys = {b["text"]: b["key"] for b in card["card"]["button_list"]}

    await both.worker.apost(both.worker.card_press(userid, keys[texts.BTN_RESOLVE], task_id=card["card"]["task_id"]))
    await wx.async_wait_for(lambda s: any("办理结果" in t for t in wx.texts_to(userid)))
    await both.worker.apost(both.worker.text(userid, "已更换灯泡"))
    await wx.async_wait_for(lambda s: any("跳过" in t for t in wx.texts_to(userid)[-1:]))
    proof = wx.put_media(b"\xff\xd8new-bulb-lit", corp=True)
    await both.worker.apost(both.worker.image(userid, proof))
    await wx.async_wait_for(lambda s: any(texts.RESOLVED.format(code=code) in t for t in wx.texts_to(userid)))

    worker_id = next(w for w, u in workers.items() if u == userid)
    with session_scope(engine) as session:
        case = session.execute(select(Case).where(Case.code == code)).scalars().one()
        assert {"type": "photo", "file_id": proof, "by": f"worker:{worker_id}"} in case.attachments
        assert {"type": "photo", "file_id": resident_photo} in case.attachments
        events = session.execute(select(CaseEvent).where(CaseEvent.case_id == case.id)).scalars().all()
        assert any((e.data or {}).get("photo") == proof for e in events)
    await wx.async_wait_for(lambda s: b"\xff\xd8new-bulb-lit" in wx.images_to(openid))  # the OA re-uploaded it
    assert "已更换灯泡" in "\n".join(wx.texts_to(openid))


async def test_a_photo_no_wechat_account_holds_stays_a_mention(both: Both, wx: WeChatApiServer,
                                                                engine: Engine) -> None:
    """A Telegram file id (or media past WeChat's 3 days) on a push: neither account has it, so the push goes as
    text that mentions the photo, and nothing fails."""
    from casestore.notify import OutboundMessage

    userid = "wk_photo_mention"
    alias = remember_user(engine, channel="wecom", user_ref=userid, now=both.oa.clock.now(), inbound=True)
    await both.wecom.notifier.send(chat_id=alias, message=OutboundMessage(text="📋 新工单", photo="AgACAgTelegramId"))
    assert wx.images_to(userid) == [] and "（图片：AgACAgTelegramId）" in wx.texts_to(userid)[-1]


def test_wecom_media_upload_download_and_foreign_media(wx: WeChatApiServer, engine: Engine) -> None:
    """WeCom's media/upload and media/get over the real client: its own media round-trip; an OA media id is not
    WeCom's (40007, refused for good), nor a WeCom one the OA's."""
    from bot.channels.wechat_api import OfficialAccountApi, WeChatRefused
    from bot.channels.wecom import WeComApi
    from tests.servers.wechat import APP_ID, APP_SECRET

    api = WeComApi(corp_id=CORP_ID, agent_id=AGENT_ID, secret=CORP_SECRET, tokens_engine=engine, base_url=wx.base_url)
    oa = OfficialAccountApi(appid=APP_ID, secret=APP_SECRET, tokens_engine=engine, base_url=wx.base_url)
    media = api.upload_image(b"\xff\xd8proof")
    assert api.download(media) == b"\xff\xd8proof"
    api.send_image("wk_media", media)
    assert wx.images_to("wk_media") == [b"\xff\xd8proof"]
    with pytest.raises(WeChatRefused):
        api.download(oa.upload_image(b"\xff\xd8oa"))
    with pytest.raises(WeChatRefused):
        oa.download(media)
    with pytest.raises(WeChatRefused):
        api.send_image("wk_media", "MEDIA-unknown")


async def test_a_pressed_card_is_updated_to_show_the_choice(both: Both, wx: WeChatApiServer, engine: Engine,
                                                            policies: Policies) -> None:
    """After a verified press the card's buttons give way to one saying what was chosen (update_template_card with
    the press's ResponseCode); a forged press updates nothing; a press without a ResponseCode is still handled."""
    clock = both.oa.clock
    workers = _link_all_workers_to_wecom(engine, clock)
    for userid in workers.values():
        remember_user(engine, channel="wecom", user_ref=userid, now=clock.now(), inbound=False)
    openid = "oRES_card_0003"
    make_resident(engine, policies, user=alias_of("wechat", openid), clock=clock, channel="wechat")
    for text, expect in (("楼道灯坏了好几天了，晚上黑咕隆咚的", "跳过"), ("跳过", "对吗"), ("1", "工单号")):
        n = len(wx.texts_to(openid))
        await both.resident.apost(both.resident.text(openid, text))
        await wx.async_wait_for(lambda s, n=n, e=expect: any(e in t for t in wx.texts_to(openid)[n:]))
    code = re.search(r"JN\d{8}-\d{4}", "\n".join(wx.texts_to(openid))).group(0)  # type: ignore[union-attr]
    await _wait(lambda: bool(wx.cards))
    card = wx.cards[-1]
    userid, task_id = card["touser"], card["card"]["task_id"]
    keys = {b["text"]: b["key"] for b in card["card"]["button_list"]}

    press_code = wx.press_code()
    await both.worker.apost(both.worker.card_press(userid, keys[texts.BTN_ACCEPT], task_id=task_id,
                                                   response_code=press_code))
    await wx.async_wait_for(lambda s: any(texts.ACCEPTED.format(code=code) in t for t in wx.texts_to(userid)))
    await _wait(lambda: bool(wx.card_updates))
    update = wx.card_updates[-1]
    assert update["response_code"] == press_code and update["userids"] == [userid]
    assert update["agentid"] == AGENT_ID and update["button"]["replace_name"] == f"已选择：{texts.BTN_ACCEPT}"
    assert press_code not in wx.response_codes  # used once

    forged_code = wx.press_code()
    n = len(wx.texts_to(userid))
    await both.worker.apost(both.worker.card_press(userid, keys[texts.BTN_RESOLVE][:-3] + "xyz", task_id=task_id,
                                                   response_code=forged_code, create_time=int(time.time()) + 1))
    await wx.async_wait_for(lambda s: len(wx.texts_to(userid)) > n)
    assert "已失效" in wx.texts_to(userid)[-1]
    await asyncio.sleep(0.3)
    assert len(wx.card_updates) == 1 and forged_code in wx.response_codes  # a forged press updates no card

    # the menu the card's labels came from was replaced by the replies since: a later press still updates the
    # card, with the plain wording
    later = wx.press_code()
    await both.worker.apost(both.worker.card_press(userid, keys[texts.BTN_RESOLVE], task_id=task_id,
                                                   response_code=later, create_time=int(time.time()) + 2))
    await wx.async_wait_for(lambda s: any("办理结果" in t for t in wx.texts_to(userid)))
    await _wait(lambda: len(wx.card_updates) == 2)
    assert wx.card_updates[-1]["response_code"] == later and wx.card_updates[-1]["button"]["replace_name"] == "已处理"

    with session_scope(engine) as session:
        case = session.execute(select(Case).where(Case.code == code)).scalars().one()
        assert case.status == "accepted"
