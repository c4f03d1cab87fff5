"""#17 item 5 over Telegram: the real python-telegram-bot client polls the Bot API test server and the REAL dialogue
engine answers. The FU01 full-time worker sends /leave; a resident's new report then reaches the grid's part-timer
(the deputy) with its task buttons and nothing reaches the worker on leave; the part-timer 接单 with the signed
button and answers with a 常用语 button; /back brings the next case home."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from bot.dialogue import texts
from casestore.clock import FakeClock
from casestore.db import session_scope
from casestore.models import AuditEvent, CaseEvent, CaseStatus
from policies.models import Policies
from tests.factories import FU01_FULL_TIME, make_resident
from tests.servers.botapi import BotApiServer
from tests.telegram_running import pushed, running  # noqa: F401 - fixture
from tests.test_telegram_e2e import Running, start, tg, tg_settings  # noqa: F401 - fixtures
from tests.test_telegram_loop_e2e import CASE_CODE, Chat, _labels, _text_of, case_by_code, fast_settings, said  # noqa: F401

RESIDENT = 555901
FU01_DEPUTY = 900101  # 芙蓉社区第一网格兼职网格员（副）


async def report(resident: Chat, body: str) -> str:
    """Report through the form (skip the photo, confirm); the case code the bot gave."""
    r = await resident.send(body)
    for _ in range(4):
        if "照片" in said(r) and "跳过" in said(r):
            r = await resident.send("跳过")
        elif "我帮您登记" in said(r):
            r = await resident.send("对")
        else:
            break
    (code,) = CASE_CODE.findall(said(r))
    return code


async def test_leave_over_telegram_sends_the_new_case_to_the_part_timer(
        tg: BotApiServer, running: Running, engine: Any, policies: Policies, clock: FakeClock):  # noqa: F811
    make_resident(engine, policies, user=RESIDENT, clock=clock)  # consented, 芙蓉小区3号楼2单元 (FU01)
    resident = Chat(tg, engine, RESIDENT, "王大爷")
    worker = Chat(tg, engine, FU01_FULL_TIME, "王芳")
    deputy = Chat(tg, engine, FU01_DEPUTY, "钱")

    assert said(await worker.command("/leave")) == texts.LEAVE_ON
    with session_scope(engine) as s:
        [event] = s.execute(select(AuditEvent).where(AuditEvent.action == "set_leave")).scalars().all()
        assert event.data == {"on_leave": True, "before": False}

    code = await report(resident, "3号楼2单元楼道灯坏了，晚上黑乎乎的")
    case = case_by_code(engine, code)
    assert case.grid_id == "FU01" and case.assignee_role == "deputy"
    task = await pushed(tg, FU01_DEPUTY, code, texts.BTN_ACCEPT)
    assert not [c for c in tg.sent if c["params"].get("chat_id") == FU01_FULL_TIME and code in _text_of(c["params"])]

    d = await deputy.press([task], texts.BTN_ACCEPT)
    assert texts.ACCEPTED.format(code=code) in said(d)
    d = await deputy.press(d, texts.BTN_RESPOND)
    phrase = policies.quick_replies.phrases(case.category, "respond")[0]
    assert phrase in _labels(d[-1]["params"])  # 常用语 as buttons under the note question
    await deputy.press(d, phrase)
    done = case_by_code(engine, code)
    assert done.status in (CaseStatus.accepted, CaseStatus.in_progress) and done.first_response_at is not None
    with session_scope(engine) as s:
        notes = [e.note for e in s.execute(select(CaseEvent).where(CaseEvent.case_id == done.id,
                                                                    CaseEvent.action == "respond")).scalars()]
    assert notes == [phrase]

    assert said(await worker.command("/back")) == texts.LEAVE_OFF
    second = await report(resident, "1号楼门口的垃圾桶满了两天没人清")
    assert case_by_code(engine, second).assignee_role == "full_time"
    await pushed(tg, FU01_FULL_TIME, second, texts.BTN_ACCEPT)
