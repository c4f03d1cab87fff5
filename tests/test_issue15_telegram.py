"""Issue #15 gaps over Telegram, against the Bot API test server with the REAL dialogue engine: after a reopen in
words, "灯还是一闪一闪的 没修好" joins the same case (the resident told which, the worker pushed the words with
回复居民) instead of starting a report; a phone typed on its own after 转人工 is kept and acknowledged, and no raw
number crosses the wire to the worker."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from bot.dialogue import texts
from casestore.clock import FakeClock
from casestore.db import session_scope
from casestore.models import Case, Resident
from policies.models import Policies
from tests.factories import FU01_FULL_TIME, make_resident
from tests.servers.botapi import BotApiServer
from tests.test_telegram_e2e import tg, tg_settings  # noqa: F401 - fixtures
from tests.test_telegram_loop_e2e import CASE_CODE, Chat, _labels, _text_of, case_by_code, fast_settings, said  # noqa: F401
from tests.test_telegram_reach_person import pushed, running  # noqa: F401 - fixtures

RESIDENT = 555890
WORKER = FU01_FULL_TIME  # 900100, 芙蓉社区第一网格专职网格员


async def test_not_fixed_again_after_a_reopen_joins_the_case_over_telegram(
        tg: BotApiServer, running: Any, engine: Any, policies: Policies, clock: FakeClock):  # noqa: F811
    make_resident(engine, policies, user=RESIDENT, clock=clock)  # consented, 芙蓉小区3号楼2单元 (FU01)
    resident = Chat(tg, engine, RESIDENT, "王大爷")
    worker = Chat(tg, engine, WORKER, "王芳")

    r = await resident.send("3号楼2单元楼道灯坏了")
    r = await resident.press(r, texts.BTN_SKIP)
    r = await resident.press(r, texts.BTN_YES)
    (code,) = CASE_CODE.findall(said(r))
    task = await pushed(tg, WORKER, code, texts.BTN_ACCEPT)
    await worker.press([task], texts.BTN_ACCEPT)
    await worker.press([task], texts.BTN_RESOLVE)
    await worker.send("已更换灯泡")
    w = await worker.send("跳过")
    assert texts.RESOLVED.format(code=code) in said(w)
    await pushed(tg, RESIDENT, "已更换灯泡", "⭐5")

    r = await resident.send("灯还是不亮 根本没修好")
    title = case_by_code(engine, code).title
    assert texts.REOPENED_IN_WORDS.format(code=code, title=title) in said(r)
    await pushed(tg, WORKER, "退回", texts.BTN_ACCEPT)

    r = await resident.send("灯还是一闪一闪的 没修好")
    assert texts.NOTE_ADDED.format(code=code, title=title) in said(r)
    assert texts.ASK_PHOTO not in said(r) and texts.BTN_NOTE_NEW not in [k for c in r for k in _labels(c["params"])]
    told = await pushed(tg, WORKER, "灯还是一闪一闪的 没修好", texts.BTN_RELAY)
    assert code in _text_of(told["params"]) and "居民补充" in _text_of(told["params"])
    with session_scope(engine) as s:
        assert [c.code for c in s.execute(select(Case)).scalars()] == [code]  # no new report


async def test_a_phone_after_asking_for_a_person_is_kept_over_telegram(
        tg: BotApiServer, running: Any, engine: Any, policies: Policies, clock: FakeClock):  # noqa: F811
    make_resident(engine, policies, user=RESIDENT, clock=clock)
    resident = Chat(tg, engine, RESIDENT, "王大爷")
    r = await resident.send("人工")
    (code,) = CASE_CODE.findall(said(r))
    await pushed(tg, WORKER, code, texts.BTN_ACCEPT)
    r = await resident.send("138 1234 5678 这是俺的电话")
    assert texts.PHONE_KEPT.format(phone="138****5678", code=code) in said(r)
    assert texts.CHITCHAT not in said(r)
    await pushed(tg, WORKER, code, texts.BTN_RELAY)  # told a phone was left, masked
    to_worker = [_text_of(c["params"]) for c in tg.sent if c["params"].get("chat_id") == WORKER]
    assert to_worker and not any("13812345678" in t or "1234 5678" in t for t in to_worker)
    with session_scope(engine) as s:
        cases = list(s.execute(select(Case)).scalars())
        assert [c.code for c in cases] == [code] and "138" not in cases[0].title
        phones = [p for p in s.execute(select(Resident.contact_phone)).scalars() if p]
        assert phones == ["13812345678"]  # kept in one place, the resident's row
