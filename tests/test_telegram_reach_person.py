"""Issue #15 played over Telegram: the real python-telegram-bot client polls the Bot API test server
(tests/servers/botapi.py) on 127.0.0.1 and the REAL dialogue engine answers; a resident and grid workers are
scripted by raw updates and by pressing the signed buttons the server recorded.

- A resident asks for a person mid-report (转人工) and is told who and by when; the 转人工 case reaches the grid
  worker with its buttons; 接单 is told to the resident; the worker's 回复居民 reaches the resident from the bot
  (no number shown) and the resident's answer reaches the worker; a new report typed while the relay is open is
  handled as a report and the resident is told so; after 办结 with a note, 没修好 in words reopens the case.
- A stranger's emergency before any consent gets its safety steps at once, the duty desk is paged, the place
  typed next moves the case to the right grid, the duty desk hears it moved, and the privacy notice comes after.
- /myid is in every command menu (setMyCommands, read back with getMyCommands) and answers on Telegram.
"""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select
from telegram import Bot, BotCommand, BotCommandScopeChat
from telegram.error import BadRequest

from bot.dialogue import COMMANDS_ADMIN, COMMANDS_RESIDENT, COMMANDS_WORKER, texts
from casestore.clock import FakeClock
from casestore.db import session_scope
from casestore.models import AuditEvent, Case, CaseStatus
from policies.models import Policies
from tests.factories import FU01_FULL_TIME, FURONG_DUTY_DESK, make_resident
from tests.servers.botapi import DEFAULT_TOKEN, BotApiServer
from tests.telegram_running import pushed, running  # noqa: F401 - fixture
from tests.test_telegram_e2e import Running, start, tg, tg_settings  # noqa: F401 - fixtures
from tests.test_telegram_loop_e2e import CASE_CODE, Chat, _labels, _text_of, case_by_code, fast_settings, said  # noqa: F401

RESIDENT = 555888
STRANGER = 555889
WORKER = FU01_FULL_TIME  # 900100, 芙蓉社区第一网格专职网格员 (王芳（示例）)
QU01_FULL_TIME = 900128  # 曲水社区第一网格专职网格员 (曲水花园 1-6号楼)
ADMIN = 90001  # tg_settings' admin id


# ---------------------------------------------------------------- a person, relayed words, progress, reopen
async def test_handoff_relay_progress_and_reopen_in_words_over_telegram(
        tg: BotApiServer, running: Running, engine: Any, policies: Policies, clock: FakeClock):  # noqa: F811
    make_resident(engine, policies, user=RESIDENT, clock=clock)  # consented, 芙蓉小区3号楼2单元 (FU01)
    resident = Chat(tg, engine, RESIDENT, "王大爷")
    worker = Chat(tg, engine, WORKER, "王芳")

    # 1. 转人工 in the middle of a report: who and by when, and a 转人工 case with the words so far
    r = await resident.send("楼道灯坏了")
    assert texts.ASK_PHOTO in said(r)
    r = await resident.send("转人工")
    (code,) = CASE_CODE.findall(said(r))
    assert "王芳（示例）" in said(r) and "前响应" in said(r) and texts.BUTTON_EXPIRED not in said(r)
    case = case_by_code(engine, code)
    assert (case.intent, case.grid_id, case.status) == ("inquiry", "FU01", CaseStatus.assigned)
    assert "楼道灯坏了" in case.description and "转人工" not in case.description

    # 2. the worker's push arrives with its buttons, including the ways to reach the resident through the bot
    task = await pushed(tg, WORKER, code, texts.BTN_ACCEPT)
    assert {texts.BTN_ACCEPT, texts.BTN_RESOLVE, texts.BTN_RELAY, texts.BTN_ASK_PHONE} <= set(_labels(task["params"]))
    w = await worker.press([task], texts.BTN_ACCEPT)
    assert texts.ACCEPTED.format(code=code) in said(w)
    await pushed(tg, RESIDENT, "已接单")  # progress: the resident hears 接单

    # 3. 回复居民: the worker's words reach the resident from the bot, the number masked
    w = await worker.press([task], texts.BTN_RELAY)
    assert texts.ASK_RELAY_TEXT.format(code=code) in said(w)
    w = await worker.send("您好，明天上午9点上门换灯泡，有事打我13900001111")
    assert texts.RELAY_SENT.format(code=code) in said(w)
    words = await pushed(tg, RESIDENT, "明天上午9点上门换灯泡", texts.BTN_RELAY_REPLY)
    assert _text_of(words["params"]).startswith("网格员（芙蓉社区第一网格）：")
    assert "13900001111" not in _text_of(words["params"]) and "139****1111" in _text_of(words["params"])

    # 4. a new report typed while the relay is open is a report, and the resident can tell it was not relayed
    r = await resident.send("路灯不亮了")
    assert texts.ASK_WHERE in said(r) and texts.RELAY_NOT_TAKEN.format(code=code) in said(r)
    assert texts.BTN_RELAY_REPLY in _labels(r[-1]["params"])
    r = await resident.send("小区门口")
    r = await resident.press(r, texts.BTN_SKIP)
    r = await resident.press(r, texts.BTN_YES)
    (lamp,) = [c for c in CASE_CODE.findall(said(r)) if c != code]
    assert case_by_code(engine, lamp).title == "路灯不亮了"

    # 5. the resident's answer (the relay is still open) reaches the worker, masked
    r = await resident.send("好的，上午在家")
    assert texts.RELAY_TO_WORKER_SENT.format(code=code) in said(r)
    answer = await pushed(tg, WORKER, "好的，上午在家", texts.BTN_RELAY)
    assert code in _text_of(answer["params"])

    # 6. 办结 with a note: the resident gets the note and the rating buttons
    w = await worker.press([task], texts.BTN_RESOLVE)
    assert texts.ASK_RESOLVE_NOTE.format(code=code) in said(w)
    w = await worker.send("已更换灯泡")
    w = await worker.press(w, texts.BTN_SKIP)
    assert texts.RESOLVED.format(code=code) in said(w)
    done = await pushed(tg, RESIDENT, "已更换灯泡", "⭐5")
    assert code in _text_of(done["params"])

    # 7. 没修好 in words reopens the same case; the worker gets it back
    r = await resident.send("灯还是不亮 根本没修好")
    assert texts.REOPENED_IN_WORDS.format(code=code, title=case.title) in said(r)
    reopened = case_by_code(engine, code)
    assert reopened.reopen_count == 1 and reopened.status in (CaseStatus.reopened, CaseStatus.assigned)
    back = await pushed(tg, WORKER, "退回", texts.BTN_ACCEPT)
    assert code in _text_of(back["params"])
    with session_scope(engine) as s:
        assert len(s.execute(select(Case)).scalars().all()) == 2  # the 转人工 case and the street lamp, no more


# ---------------------------------------------------------------- the emergency lane, before consent
async def test_a_strangers_emergency_gets_safety_steps_at_once_and_its_place_moves_it_over_telegram(
        tg: BotApiServer, running: Running, engine: Any):  # noqa: F811
    stranger = Chat(tg, engine, STRANGER, "路人")
    r = await stranger.send("着火了 厨房着火了")
    assert _text_of(r[0]["params"]) == texts.EMERGENCY_FIRE  # the safety steps come first
    assert "同意隐私说明" not in said(r) and texts.BTN_AGREE not in _labels(r[-1]["params"])  # no consent gate
    (code,) = CASE_CODE.findall(said(r))
    page = await pushed(tg, FURONG_DUTY_DESK, code, texts.BTN_ACCEPT)  # paged at once, no sweep
    assert "紧急" in _text_of(page["params"])

    r = await stranger.send("曲水花园5号楼2单元")
    assert texts.EMERGENCY_PLACE_ADDED.split("：")[0].format(code=code) in said(r)
    assert texts.PRIVACY_AFTER_EMERGENCY in said(r) and texts.BTN_AGREE in _labels(r[-1]["params"])
    case = case_by_code(engine, code)
    assert (case.grid_id, case.urgency) == ("QU01", "emergency")
    task = await pushed(tg, QU01_FULL_TIME, code, texts.BTN_ACCEPT)
    assert "曲水花园5号楼2单元" in _text_of(task["params"])
    moved = await pushed(tg, FURONG_DUTY_DESK, "改派")  # the desk paged for the old place hears where it went
    assert code in _text_of(moved["params"]) and "曲水社区第一网格" in _text_of(moved["params"])
    with session_scope(engine) as s:
        (audit,) = s.execute(select(AuditEvent).where(AuditEvent.action == "relocate_notice")).scalars().all()
        assert audit.data["told"] and audit.data["to_grid"] == "QU01"


# ---------------------------------------------------------------- /myid in every menu
async def test_myid_is_in_every_command_menu_and_answers_over_telegram(
        tg: BotApiServer, running: Running, engine: Any):  # noqa: F811
    async with Bot(DEFAULT_TOKEN, base_url=tg.base_url) as bot:  # read back as any Bot API client would
        menus = {
            "resident": await bot.get_my_commands(),
            "worker": await bot.get_my_commands(scope=BotCommandScopeChat(WORKER)),
            "admin": await bot.get_my_commands(scope=BotCommandScopeChat(ADMIN)),
        }
    for menu, expected in (("resident", COMMANDS_RESIDENT), ("worker", COMMANDS_WORKER), ("admin", COMMANDS_ADMIN)):
        names = [c.command for c in menus[menu]]
        assert "myid" in names, (menu, names)
        assert [(c.command, c.description) for c in menus[menu] if c.command == "myid"] == [
            p for p in expected if p[0] == "myid"]

    r = await Chat(tg, engine, RESIDENT, "王大爷").command("/myid")
    assert said(r) == "您的身份\n渠道：telegram\nID：555888\n角色：居民"
    w = await Chat(tg, engine, WORKER, "王芳").command("/myid")
    assert "ID：900100" in said(w) and "角色：网格员（" in said(w)
    a = await Chat(tg, engine, ADMIN, "管理员").command("/myid")
    assert "ID：90001" in said(a) and "管理员" in said(a)


async def test_the_test_server_refuses_commands_telegram_would_refuse(tg: BotApiServer):  # noqa: F811
    async with Bot(DEFAULT_TOKEN, base_url=tg.base_url) as bot:
        for bad in ([BotCommand("MyId", "大写不行")], [BotCommand("my-id", "连字符不行")],
                    [BotCommand("myid", "长" * 257)]):
            with pytest.raises(BadRequest):
                await bot.set_my_commands(bad)
        assert await bot.set_my_commands([BotCommand(c, d) for c, d in COMMANDS_ADMIN])
    assert len(tg.rejected) == 3 and tg.commands() == [{"command": c, "description": d} for c, d in COMMANDS_ADMIN]
