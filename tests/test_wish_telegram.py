"""The 微心愿 wall end to end through Telegram: the real python-telegram-bot client and the real dialogue engine
against the Bot API test server. A resident's wish is confirmed; the wall card reaches the grid's volunteer and
party member with a signed 认领心愿 button; both press it, one wins and the other is told 已被认领; the claimer
presses 已完成 and the resident 心愿达成 on the push they got."""

from __future__ import annotations

import re
from typing import Any

from sqlmodel import select

from bot.dialogue import texts
from bot.services import Services
from bot.settings import Settings
from casestore import wishes
from casestore.clock import FakeClock
from casestore.db import session_scope
from casestore.models import Wish, WishStatus
from policies.models import Policies
from tests.factories import SharedAI, make_resident
from tests.servers.botapi import BotApiServer
from tests.test_telegram_e2e import Running, start, tg, tg_settings  # noqa: F401 - fixtures
from tests.test_telegram_loop_e2e import Chat, _labels, _text_of, fast_settings, said  # noqa: F401 - fixture

RESIDENT = 555801
VOLUNTEER = 900170
PARTY_MEMBER = 900171
CODE = re.compile(r"JN\d{8}-\d{4}")


async def test_a_wish_claimed_and_fulfilled_through_telegram(tg: BotApiServer, fast_settings: Settings,  # noqa: F811
                                                            engine, policies: Policies, clock: FakeClock,
                                                            ai: SharedAI):
    services = Services(fast_settings, clock=clock, engine=engine, policies=policies, classifier=ai.classifier,
                        knowledge=ai.knowledge)
    make_resident(engine, policies, clock=clock, user=RESIDENT)
    running: Running = await start(fast_settings, services.dialogue.handle, engine, clock)

    async def pushed(chat_id: int, needle: str, label: str) -> dict[str, Any]:
        return await tg.async_wait_for(
            lambda c: c["method"] == "sendMessage" and c["params"].get("chat_id") == chat_id
            and needle in _text_of(c["params"]) and label in _labels(c["params"]), timeout=15)

    resident = Chat(tg, engine, RESIDENT, "张阿姨")
    volunteer = Chat(tg, engine, VOLUNTEER, "小刘")
    party = Chat(tg, engine, PARTY_MEMBER, "老赵")
    try:
        r = await resident.send("想请志愿者帮忙给老人理个发")
        if texts.BTN_SKIP in said(r) or "跳过" in said(r):
            r = await resident.press(r, texts.BTN_SKIP)
        assert texts.WISH_CONFIRM_NOTE in said(r)
        r = await resident.press(r, texts.BTN_YES)
        code = CODE.findall(said(r))[0]
        assert "心愿墙" in said(r)

        card_v = await pushed(VOLUNTEER, "微心愿", texts.BTN_WISH_CLAIM)
        card_p = await pushed(PARTY_MEMBER, "微心愿", texts.BTN_WISH_CLAIM)
        assert "理个发" in _text_of(card_v["params"]) and "3号楼" not in _text_of(card_v["params"])
        decoded = running.channel.signer.decode(_labels(card_v["params"])[texts.BTN_WISH_CLAIM])
        assert decoded is not None and (decoded.action, decoded.case_code) == ("wclaim", code)

        w = await volunteer.press([card_v], texts.BTN_WISH_CLAIM)
        assert said(w).startswith("认领成功")
        p = await party.press([card_p], texts.BTN_WISH_CLAIM)
        assert wishes.ALREADY_CLAIMED in said(p)
        await tg.async_wait_for(lambda c: c["method"] == "sendMessage" and c["params"].get("chat_id") == RESIDENT
                                and "已由" in _text_of(c["params"]) and code in _text_of(c["params"]), timeout=15)

        d = await volunteer.press(w, texts.BTN_WISH_DONE)
        assert texts.WISH_DONE_SENT.format(code=code) in said(d)
        ask = await pushed(RESIDENT, code, "心愿达成")
        r = await resident.press([ask], "心愿达成")
        assert texts.WISH_FULFILLED.format(code=code) in said(r)
        with session_scope(engine) as s:
            assert s.exec(select(Wish)).one().status == WishStatus.fulfilled
    finally:
        await running.stop()
