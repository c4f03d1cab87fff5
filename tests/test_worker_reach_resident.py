"""A grid worker reaches the resident through the bot, through the real engine: relayed messages both ways with
no phone number shown to the other side, a call-back phone asked for only on the worker's request, progress told
to the resident at every step, typed reasons for extension and transfer, and extension approvals in /tasks."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from bot.services import Services
from casestore.db import session_scope
from casestore.models import AuditEvent, Case, CaseEvent, CaseStatus, Notification, Resident
from casestore.notify import Button, OutboundMessage, RecordingNotifier
from tests.factories import (
    FU01_FULL_TIME,
    FU02_FULL_TIME,
    RESIDENT_ID,
    all_text,
    command,
    find_button,
    make_resident,
    photo,
    press,
    pushes,
    text,
)

FURONG_SUPERVISOR = 900124  # 芙蓉社区网格长 (grids.yaml)
FURONG_PROPERTY = 900127  # 芙蓉社区物业项目经理
FU01_DEPUTY = 900101
DESCRIPTION = "3号楼2单元楼道灯坏了"


@pytest.fixture
def reported(dlg, engine, clock, policies) -> tuple[str, RecordingNotifier]:  # type: ignore[no-untyped-def]
    """A resident of FU01 reports a broken stairwell light; returns the code and the delivered pushes."""
    make_resident(engine, policies, clock=clock)
    dlg.handle(text(DESCRIPTION))
    dlg.handle(text("跳过"))
    dlg.handle(text("对"))
    with session_scope(engine) as s:
        code = s.execute(select(Case.code)).scalar_one()
    return code, pushes(engine, clock)


def _push_to(sent: RecordingNotifier, chat: int) -> OutboundMessage:
    mine = [m for c, m in sent.sent if c == chat]
    assert mine, f"nothing was pushed to {chat}"
    return mine[-1]


def _button(message: OutboundMessage, label: str) -> Button:
    found = [b for row in message.buttons for b in row if b.label == label]
    assert found, f"no button {label!r} in {[b.label for row in message.buttons for b in row]}"
    return found[0]


def _case(engine: Any, code: str) -> Case:
    with session_scope(engine) as s:
        return s.execute(select(Case).where(Case.code == code)).scalars().one()


def _relay_events(engine: Any, code: str) -> list[CaseEvent]:
    with session_scope(engine) as s:
        case_id = s.execute(select(Case.id).where(Case.code == code)).scalar_one()
        rows = s.execute(select(CaseEvent).where(CaseEvent.case_id == case_id).order_by(CaseEvent.id)).scalars()
        return [e for e in rows if "relay" in (e.data or {})]


# ---------------------------------------------------------------- 1. relayed messages, no numbers shared
def test_worker_and_resident_talk_through_the_bot_and_no_phone_number_crosses(dlg, engine, clock, reported):
    code, sent = reported
    w = FU01_FULL_TIME
    task = _push_to(sent, w)
    r = dlg.handle(press(_button(task, "回复居民"), user=w))
    assert "居民" in all_text(r)
    r = dlg.handle(text("您好，明天上午9点上门换灯泡，有事打我13900001111", user=w))
    assert "已发给居民" in all_text(r)
    to_resident = _push_to(pushes(engine, clock), RESIDENT_ID)
    assert to_resident.text.startswith("网格员（芙蓉社区第一网格）：您好，明天上午9点上门换灯泡")
    assert "13900001111" not in to_resident.text and "139****1111" in to_resident.text
    assert "0531" not in to_resident.text  # the worker's own work line is not handed out either

    # the resident's next text goes to the worker (no new case), masked
    said = all_text(dlg.handle(text("好的，上午在家，我电话13812345678")))
    assert "网格员" in said and "已转给" in said
    to_worker = _push_to(pushes(engine, clock), w)
    assert code in to_worker.text and "好的，上午在家" in to_worker.text
    assert "13812345678" not in to_worker.text and "138****5678" in to_worker.text
    assert _button(to_worker, "回复居民").case_code == code
    with session_scope(engine) as s:
        assert len(s.execute(select(Case)).scalars().all()) == 1

    # the relay closed with that reply; the 「回复网格员」 button opens it again for one more message
    dlg.handle(press(_button(to_resident, "回复网格员")))
    dlg.handle(text("麻烦带个梯子"))
    assert "麻烦带个梯子" in _push_to(pushes(engine, clock), w).text

    directions = [e.data["relay"] for e in _relay_events(engine, code)]
    assert directions == ["to_resident", "to_worker", "reply_opened", "to_worker"]
    notes = "".join(e.note or "" for e in _relay_events(engine, code))
    assert "13900001111" not in notes and "13812345678" not in notes and "139****1111" in notes

    # a stranger's forged relay button changes nothing and reaches nobody
    assert "没有权限" in all_text(dlg.handle(press(Button("回复居民", "relay", code), user=FU02_FULL_TIME)))


def test_call_back_phone_is_asked_only_on_request_kept_once_and_shown_only_to_the_assignee(
        dlg, engine, clock, reported):
    _, sent = reported
    w = FU01_FULL_TIME
    with session_scope(engine) as s:
        assert s.execute(select(Resident.contact_phone)).scalar_one() is None
    r = dlg.handle(press(_button(_push_to(sent, w), "请居民留电话"), user=w))
    dlg.handle(text("需要电话确认上门时间", user=w))
    ask = _push_to(pushes(engine, clock), RESIDENT_ID)
    assert "电话" in ask.text and "需要电话确认上门时间" in ask.text and "只有负责" in ask.text

    said = all_text(dlg.handle(text("13812345678")))
    assert "已转告" in said or "收到" in said
    with session_scope(engine) as s:
        resident = s.execute(select(Resident)).scalars().one()
        assert (resident.contact_phone, resident.contact_masked) == ("13812345678", "138****5678")
        rows = s.execute(select(Notification)).scalars().all()
        assert not any("13812345678" in str(n.payload) for n in rows)  # the raw number lives on the row only
        events = s.execute(select(CaseEvent)).scalars().all()
        assert not any("13812345678" in (e.note or "") + str(e.data) for e in events)
    told = _push_to(pushes(engine, clock), w)
    assert "13812345678" not in told.text
    r = dlg.handle(press(_button(told, "查看电话"), user=w))
    assert "13812345678" in all_text(r)
    for other in (FU02_FULL_TIME, FU01_DEPUTY):
        assert "13812345678" not in all_text(dlg.handle(press(_button(told, "查看电话"), user=other)))
    with session_scope(engine) as s:
        views = s.execute(select(AuditEvent).where(AuditEvent.action == "view_contact")).scalars().all()
        assert len(views) == 1 and "13812345678" not in str(views[0].data)


# ---------------------------------------------------------------- 2. progress at every step
def test_the_resident_hears_every_step_with_time_reason_position_note_and_photo(dlg, engine, clock, reported):
    code, _ = reported
    w = FU01_FULL_TIME
    heard: list[OutboundMessage] = []

    def step(*incoming: Any) -> None:
        for inc in incoming:
            dlg.handle(inc)
        heard.extend(m for c, m in pushes(engine, clock).sent if c == RESIDENT_ID)

    step(press(Button("接单", "accept", code), user=w))
    assert "已接单" in heard[-1].text and code in heard[-1].text
    step(press(Button("已联系", "respond", code), user=w), text("已电话联系，明早上门", user=w))
    assert "已联系" in heard[-1].text
    n = len(heard)
    step(press(Button("申请延期", "extend", code), user=w), press(Button("48小时", "wext", None, "48"), user=w),
         text("需要等配件，厂家周三到货", user=w))
    assert len(heard) == n  # a request is not a promise yet
    step(press(Button("同意延期", "approve_extension", code), user=FURONG_SUPERVISOR))
    due = _case(engine, code).resolve_due_at
    assert due is not None
    local = due.astimezone(dlg.services.settings.tz)
    assert "延期" in heard[-1].text and "需要等配件，厂家周三到货" in heard[-1].text
    assert f"{local.month}月{local.day}日" in heard[-1].text
    step(press(Button("转派", "transfer", code), user=w), press(Button("物业项目经理", "wxfer", None,
                                                                      "property_manager"), user=w),
         text("属于物业维修范围", user=w))
    assert "物业项目经理" in heard[-1].text and "（示例）" not in heard[-1].text  # the position, never a name
    p = FURONG_PROPERTY
    step(press(Button("办结", "resolve", code), user=p), text("已更换灯泡", user=p), photo(user=p))
    done = heard[-1]
    assert "已更换灯泡" in done.text and done.photo and "打分" in done.text
    assert _case(engine, code).status == CaseStatus.resolved
    kinds = [m.text for m in heard]
    assert len(kinds) == 5, kinds


# ---------------------------------------------------------------- 3. worker tools
def test_push_shows_the_description_once_and_typed_reasons_reach_the_approver_and_the_new_assignee(
        dlg, engine, clock, reported):
    code, sent = reported
    w = FU01_FULL_TIME
    task = _push_to(sent, w)
    assert task.text.count(DESCRIPTION) == 1, task.text

    dlg.handle(press(Button("申请延期", "extend", code), user=w))
    dlg.handle(press(Button("24小时", "wext", None, "24"), user=w))
    dlg.handle(text("需要等配件，厂家周三到货", user=w))
    r = dlg.handle(command("tasks", user=FURONG_SUPERVISOR))
    said = all_text(r)
    assert "待审批" in said and code in said and "需要等配件，厂家周三到货" in said
    approve = find_button(r, "批准")
    assert approve.case_code == code and find_button(r, "驳回").case_code == code
    assert "待审批" not in all_text(dlg.handle(command("tasks", user=FU01_DEPUTY)))  # not theirs to decide
    assert "待审批" not in all_text(dlg.handle(command("tasks", user=w)))  # never the requester's
    before = _case(engine, code).resolve_due_at
    assert "批准" in all_text(dlg.handle(press(approve, user=FURONG_SUPERVISOR)))
    after = _case(engine, code).resolve_due_at
    assert before is not None and after is not None and after > before
    assert "待审批" not in all_text(dlg.handle(command("tasks", user=FURONG_SUPERVISOR)))
    pushes(engine, clock)

    dlg.handle(press(Button("转派", "transfer", code), user=w))
    dlg.handle(press(Button("物业项目经理", "wxfer", None, "property_manager"), user=w))
    dlg.handle(text("属于物业维修范围", user=w))
    moved = _push_to(pushes(engine, clock), FURONG_PROPERTY)
    assert "转派" in moved.text and "属于物业维修范围" in moved.text and moved.text.count(DESCRIPTION) == 1
    assert {b.label for b in buttons_of_message(moved)} >= {"接单", "回复居民"}


def buttons_of_message(message: OutboundMessage) -> list[Button]:
    return [b for row in message.buttons for b in row]


def test_relay_contract_empty_and_stale(dlg, engine, clock, reported):
    _, sent = reported
    w = FU01_FULL_TIME
    dlg.handle(press(_button(_push_to(sent, w), "回复居民"), user=w))
    assert all_text(dlg.handle(text("", user=w)))  # empty input gets a polite answer, nothing is sent
    assert not [m for c, m in pushes(engine, clock).sent if c == RESIDENT_ID]
    # a resident's 回复网格员 for a case that is not theirs: expired, nothing reaches the worker
    said = all_text(dlg.handle(press(Button("回复网格员", "relay_reply", "JN20991231-9999"))))
    assert said
    dlg.handle(text("你好"))
    assert not [m for c, m in pushes(engine, clock).sent if c == w]


# ---------------------------------------------------------------- the same queries on PostgreSQL
def test_relay_progress_and_approvals_on_postgresql(settings, pg_engine, pg_url, policies, clock, ai):
    pg = settings.model_copy(update={"database_url": pg_url})
    services = Services(pg, clock=clock, engine=pg_engine, policies=policies, classifier=ai.classifier,
                        knowledge=ai.knowledge)
    dlg = services.dialogue
    make_resident(pg_engine, policies, clock=clock)
    for said in (DESCRIPTION, "跳过", "对"):
        dlg.handle(text(said))
    with session_scope(pg_engine) as s:
        code = s.execute(select(Case.code)).scalar_one()
    w = FU01_FULL_TIME
    dlg.handle(press(Button("回复居民", "relay", code), user=w))
    dlg.handle(text("明天上午上门", user=w))
    dlg.handle(text("好的"))
    assert "好的" in _push_to(pushes(pg_engine, clock), w).text
    dlg.handle(press(Button("申请延期", "extend", code), user=w))
    dlg.handle(press(Button("24小时", "wext", None, "24"), user=w))
    dlg.handle(text("等配件", user=w))
    r = dlg.handle(command("tasks", user=FURONG_SUPERVISOR))
    dlg.handle(press(find_button(r, "批准"), user=FURONG_SUPERVISOR))
    assert any("延期" in t for t in pushes(pg_engine, clock).texts_to(RESIDENT_ID))


def test_an_emergency_typed_while_a_relay_is_open_gets_its_safety_steps_not_the_relay(dlg, engine, clock, reported):
    code, _ = reported
    w = FU01_FULL_TIME
    dlg.handle(press(Button("回复居民", "relay", code), user=w))
    dlg.handle(text("明天上午上门", user=w))
    pushes(engine, clock)
    said = all_text(dlg.handle(text("厨房有煤气味")))
    assert "燃气" in said or "119" in said
    assert [e.data["relay"] for e in _relay_events(engine, code)] == ["to_resident"]  # still waiting for an answer
