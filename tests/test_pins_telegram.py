"""A location pin over Telegram (#17 item 4): the real python-telegram-bot client polls the Bot API test server and
the REAL dialogue engine answers. A resident with no address reports a broken street lamp, shares a location
message (Message.location) at the where-slot, is asked 曲水花园5号楼附近吗 with signed 是这里 / 不是 buttons, presses
是这里, and the case goes to that building's grid (QU01), whose worker gets the task push."""

from __future__ import annotations

from typing import Any

from bot.dialogue import texts
from bot.dialogue.pins import BTN_NO, BTN_YES
from casestore.clock import FakeClock
from policies.models import Policies
from tests.factories import make_resident
from tests.servers.botapi import BotApiServer
from tests.servers.tg_factories import make_location_update
from tests.telegram_running import running  # noqa: F401 - fixture
from tests.test_telegram_e2e import Running, start, tg, tg_settings  # noqa: F401 - fixtures
from tests.test_telegram_loop_e2e import CASE_CODE, Chat, _labels, case_by_code, fast_settings, said  # noqa: F401

RESIDENT = 556601
QU01_FULL_TIME = 900128  # 曲水社区第一网格专职网格员 (曲水花园 1-6号楼)


async def test_a_location_message_is_placed_confirmed_and_routes_the_case(
        tg: BotApiServer, running: Running, engine: Any, policies: Policies, clock: FakeClock) -> None:  # noqa: F811
    make_resident(engine, policies, user=RESIDENT, clock=clock, estate=None, building=None)  # consented, no address
    resident = Chat(tg, engine, RESIDENT, "李大爷")
    r = await resident.send("路灯坏了")
    assert texts.ASK_WHERE in said(r)
    estate = next(e for c in policies.grids.communities for e in c.estates if e.name == "曲水花园")
    lat, lng = estate.building_locations[5]
    r = await resident._turn(make_location_update(RESIDENT, lat=lat + 0.00004, lon=lng, first_name="李大爷"))
    assert said(r) == "收到定位。您说的地方是在曲水花园5号楼附近吗？"
    assert list(_labels(r[-1]["params"])) == [BTN_YES, BTN_NO]
    r = await resident.press(r, BTN_YES)
    assert texts.ASK_PHOTO in said(r)
    r = await resident.press(r, texts.BTN_SKIP)
    assert "曲水花园5号楼附近（定位" in said(r)
    r = await resident.press(r, texts.BTN_YES)
    (code,) = CASE_CODE.findall(said(r))
    case = case_by_code(engine, code)
    assert case.grid_id == "QU01" and [a["type"] for a in case.attachments] == ["location"]
    await tg.async_wait_for(lambda c: c["method"] == "sendMessage" and c["params"].get("chat_id") == QU01_FULL_TIME
                            and code in str(c["params"].get("text")), timeout=15)
