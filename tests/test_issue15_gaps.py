"""Issue #15 gaps found by playing it again in `quanbot chat` (2026-12-02), through the real engine and classifier:
an explicit request for 调解 goes to the mediator even when it reads like a complaint; a phone typed on its own
after 转人工 is acknowledged as the call-back phone instead of the chit-chat greeting; an emergency that joins an
open emergency does not claim a second page to the grid; a reason typed while the extension asks how long is
kept, not refused."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from bot.dialogue import texts
from casestore import actions
from casestore.db import session_scope
from casestore.models import Case, CaseEvent, Resident
from casestore.notify import Button
from tests.factories import (
    FU01_FULL_TIME,
    RESIDENT_ID,
    actor,
    all_text,
    command,
    find_button,
    make_resident,
    press,
    pushes,
    report_through,
    resident_of,
    text,
)

FURONG_MEDIATOR = 900126
FURONG_SUPERVISOR = 900124


def _cases(engine: Any) -> list[Case]:
    with session_scope(engine) as s:
        return list(s.execute(select(Case).order_by(Case.id)).scalars().all())


# ---------------------------------------------------------------- mediation asked for in words
@pytest.mark.parametrize("message", [
    "楼上那家天天半夜剁馅子，吵得睡不着，恁给调解调解吧",  # read as a complaint (0.83) before
    "对门邻居把鞋柜摆在楼道里，说了也不听，想请社区帮忙调解一下",
])
def test_asking_for_mediation_in_words_goes_to_the_mediator(dlg, engine, clock, policies, message) -> None:  # type: ignore[no-untyped-def]
    make_resident(engine, policies, clock=clock)  # 芙蓉小区3号楼2单元: grid FU01
    said = "\n".join(report_through(dlg, message))
    (case,) = _cases(engine)
    assert case.intent == "dispute" and case.assignee_role == "mediator"
    assert "芙蓉社区人民调解员" in said
    sent = pushes(engine, clock)
    assert any(case.code in t for t in sent.texts_to(FURONG_MEDIATOR))
    assert not any(case.code in t for t in sent.texts_to(FU01_FULL_TIME))


def test_a_complaint_that_only_mentions_mediation_is_not_made_a_dispute(dlg, engine, clock, policies) -> None:  # type: ignore[no-untyped-def]
    make_resident(engine, policies, clock=clock)
    report_through(dlg, "社区调解员上次答应来处理，到现在都没人来，我要投诉")
    (case,) = _cases(engine)
    assert case.intent != "dispute"


# ---------------------------------------------------------------- a phone after 转人工
def test_a_phone_typed_after_asking_for_a_person_is_kept_and_acknowledged(dlg, engine, clock, policies) -> None:  # type: ignore[no-untyped-def]
    make_resident(engine, policies, clock=clock)
    dlg.handle(text("人工"))
    said = all_text(dlg.handle(text("138 1234 5678 这是俺的电话")))
    assert "回电" in said and "138****5678" in said and "13812345678" not in said
    assert texts.CHITCHAT not in said
    cases = _cases(engine)
    assert len(cases) == 1 and "138" not in (cases[0].title or "")  # no second case titled with the number
    with session_scope(engine) as s:
        r = resident_of(s, RESIDENT_ID)
        assert r is not None and r.contact_phone == "13812345678"
        events = s.execute(select(CaseEvent).where(CaseEvent.case_id == cases[0].id)).scalars().all()
        assert any(e.action == "note" and "138****5678" in (e.note or "") for e in events)  # the worker sees it


def test_a_phone_alone_without_consent_is_not_kept(dlg, engine, clock) -> None:  # type: ignore[no-untyped-def]
    dlg.handle(command("start"))
    said = all_text(dlg.handle(text("13812345678")))
    assert "已记下" not in said
    with session_scope(engine) as s:
        rows = s.execute(select(Resident)).scalars().all()
        assert all(r.contact_phone is None for r in rows)


# ---------------------------------------------------------------- an emergency that joins an open one
def test_an_emergency_joined_to_an_open_one_does_not_claim_a_second_page(dlg, engine, clock, policies) -> None:  # type: ignore[no-untyped-def]
    make_resident(engine, policies, clock=clock)
    make_resident(engine, policies, clock=clock, user=RESIDENT_ID + 1)
    dlg.handle(text("楼道里一股子煤气味"))
    first, = _cases(engine)
    pushes(engine, clock)
    said = all_text(dlg.handle(text("楼道里一股子煤气味，呛得慌", user=RESIDENT_ID + 1)))
    second = _cases(engine)[-1]
    assert "⚠️" in said  # the safety steps come first whatever else
    if second.duplicate_of_id is None:
        pytest.skip("casestore did not merge the two reports; nothing to check")
    assert second.duplicate_of_id == first.id
    assert "已合并跟进" in said and second.code in said
    assert "立刻通知了" not in said  # nobody was paged for the merged case: the handler of the first has it


# ---------------------------------------------------------------- extension: a reason typed first
def test_a_reason_typed_while_the_extension_asks_how_long_is_kept(dlg, engine, clock, policies) -> None:  # type: ignore[no-untyped-def]
    make_resident(engine, policies, clock=clock)
    report_through(dlg, "3号楼2单元楼道灯坏了")
    (case,) = _cases(engine)
    w = FU01_FULL_TIME
    dlg.handle(press(Button("申请延期", "extend", case.code), user=w))
    said = all_text(dlg.handle(text("要等物业配件，周五到货", user=w)))
    assert texts.WORKER_UNKNOWN not in said and "要等物业配件，周五到货" in said
    assert "多久" in said
    dlg.handle(press(Button("48小时", "wext", None, "48"), user=w))
    r = dlg.handle(command("tasks", user=FURONG_SUPERVISOR))
    listed = all_text(r)
    assert "待审批" in listed and case.code in listed and "要等物业配件，周五到货" in listed
    assert find_button(r, "批准").case_code == case.code


def test_hours_typed_while_the_extension_asks_how_long_are_taken(dlg, engine, clock, policies) -> None:  # type: ignore[no-untyped-def]
    make_resident(engine, policies, clock=clock)
    report_through(dlg, "3号楼2单元楼道灯坏了")
    (case,) = _cases(engine)
    w = FU01_FULL_TIME
    dlg.handle(press(Button("申请延期", "extend", case.code), user=w))
    said = all_text(dlg.handle(text("48小时", user=w)))
    assert "原因" in said  # the hours are taken; now the reason
    dlg.handle(text("要等物业配件", user=w))
    listed = all_text(dlg.handle(command("tasks", user=FURONG_SUPERVISOR)))
    assert "待审批" in listed and "要等物业配件" in listed
    with session_scope(engine) as s:
        (pending,) = actions.list_pending_extensions(session=s, actor=actor(s, FURONG_SUPERVISOR))
        assert pending.case.resolve_due_at is not None
        assert pending.until - pending.case.resolve_due_at == timedelta(hours=48)  # "48小时" typed was taken


# ---------------------------------------------------------------- 没修好 again, after a reopen
def _resolved(dlg: Any, engine: Any, clock: Any) -> str:
    """A stairwell-light case of the resident, accepted and resolved with a note by its worker; its code."""
    report_through(dlg, "3号楼2单元楼道灯坏了")
    (case,) = _cases(engine)
    w = FU01_FULL_TIME
    dlg.handle(press(Button("接单", "accept", case.code), user=w))
    dlg.handle(press(Button("办结", "resolve", case.code), user=w))
    dlg.handle(text("已更换灯泡", user=w))
    dlg.handle(text("跳过", user=w))
    pushes(engine, clock)
    return case.code


def test_not_fixed_again_after_a_reopen_joins_that_case_and_reaches_its_worker(dlg, engine, clock, policies) -> None:  # type: ignore[no-untyped-def]
    make_resident(engine, policies, clock=clock)
    code = _resolved(dlg, engine, clock)
    assert "已重新交给网格员" in all_text(dlg.handle(text("灯还是不亮 根本没修好")))
    pushes(engine, clock)
    said = all_text(dlg.handle(text("灯还是一闪一闪的 没修好")))  # read as feedback/other at low confidence
    assert texts.NOTE_ADDED.format(code=code, title="3号楼2单元楼道灯坏了") in said
    assert texts.ASK_PHOTO not in said and "新问题" not in said
    assert [c.code for c in _cases(engine)] == [code]  # no second case
    sent = pushes(engine, clock)
    told = [m for c, m in sent.sent if c == FU01_FULL_TIME and "灯还是一闪一闪的 没修好" in m.text]
    assert told and code in told[0].text and "回复居民" in [b.label for row in told[0].buttons for b in row]
    with session_scope(engine) as s:
        case_id = s.execute(select(Case.id).where(Case.code == code)).scalar_one()
        notes = s.execute(select(CaseEvent).where(CaseEvent.case_id == case_id, CaseEvent.action == "note")).scalars()
        assert any(e.note == "灯还是一闪一闪的 没修好" and e.actor.startswith("resident:") for e in notes)


def test_words_attached_with_the_button_reach_the_worker_once(dlg, engine, clock, policies) -> None:  # type: ignore[no-untyped-def]
    make_resident(engine, policies, clock=clock)
    report_through(dlg, "3号楼2单元楼道灯坏了")
    (case,) = _cases(engine)
    pushes(engine, clock)
    r = dlg.handle(text("楼道灯那个事，晚上黑得看不见路"))  # not sure: asked 补充 or 新问题 with buttons
    dlg.handle(press(find_button(r, f"补充到工单 {case.code}")))
    assert [c.code for c in _cases(engine)] == [case.code]
    sent = pushes(engine, clock)
    told = [m.text for c, m in sent.sent if c == FU01_FULL_TIME and "晚上黑得看不见路" in m.text]
    assert len(told) == 1 and "居民补充" in told[0]
    assert not pushes(engine, clock).texts_to(FU01_FULL_TIME)  # delivered once


# ---------------------------------------------------------------- the mediator's task names the two sides
def test_the_mediators_task_says_who_the_two_sides_are_masked(dlg, engine, clock, policies) -> None:  # type: ignore[no-untyped-def]
    make_resident(engine, policies, clock=clock)  # 芙蓉小区3号楼2单元
    said = "\n".join(report_through(dlg, "楼上那家天天半夜剁馅子，俺打电话13812345678给他也不接，恁给调解调解吧"))
    assert "当事双方" in said  # the resident sees on the confirm screen what the mediator gets
    (case,) = _cases(engine)
    assert case.assignee_role == "mediator"
    sent = pushes(engine, clock)
    (task,) = [t for t in sent.texts_to(FURONG_MEDIATOR) if case.code in t]
    assert "当事双方：反映人：芙蓉小区3号楼2单元住户；对方：楼上住户（同一单元）" in task
    assert "13812345678" not in task and "138****5678" in task
    assert case.title.startswith("楼上那家天天半夜剁馅子") and "当事双方" not in case.title


@pytest.mark.parametrize("message,party", [
    ("对门邻居把鞋柜摆在楼道里，说了也不听，想请社区帮忙调解一下", "对门住户"),
    ("房东不退押金，想请社区给调解调解", "房东"),
    ("跟人闹了点矛盾，想请社区帮忙调解一下", "居民没有说明，请联系居民了解"),
])
def test_the_other_side_is_named_from_a_fixed_list(dlg, engine, clock, policies, message, party) -> None:  # type: ignore[no-untyped-def]
    make_resident(engine, policies, clock=clock)
    report_through(dlg, message)
    (case,) = _cases(engine)
    assert case.intent == "dispute"
    assert f"对方：{party}" in case.description


# ---------------------------------------------------------------- an emergency's building without the estate
def test_an_emergency_naming_only_a_building_is_placed_in_the_residents_estate(dlg, engine, clock, policies) -> None:  # type: ignore[no-untyped-def]
    make_resident(engine, policies, clock=clock)  # 芙蓉小区3号楼2单元
    dlg.handle(text("3号楼楼道里一股煤气味"))
    (case,) = _cases(engine)
    assert case.location_text is not None and case.location_text.startswith("芙蓉小区3号楼")
    assert case.grid_id == "FU01" and not case.needs_address_confirmation
    sent = pushes(engine, clock)
    assert any(case.code in t and "地点：芙蓉小区3号楼" in t for t in sent.texts_to(FU01_FULL_TIME))


# ---------------------------------------------------------------- transfer: a reason typed first
FURONG_PROPERTY = 900127  # 芙蓉社区物业项目经理


def test_a_reason_typed_while_the_transfer_asks_to_whom_reaches_the_new_assignee(dlg, engine, clock, policies) -> None:  # type: ignore[no-untyped-def]
    make_resident(engine, policies, clock=clock)
    report_through(dlg, "3号楼2单元楼道灯坏了")
    (case,) = _cases(engine)
    w = FU01_FULL_TIME
    pushes(engine, clock)
    dlg.handle(press(Button("转派", "transfer", case.code), user=w))
    r = dlg.handle(text("这是物业负责的公共照明", user=w))
    said = all_text(r)
    assert texts.WORKER_UNKNOWN not in said and "这是物业负责的公共照明" in said and "转给谁" in said
    dlg.handle(press(find_button(r, "物业项目经理"), user=w))
    (moved,) = _cases(engine)
    assert moved.assignee_role == "property_manager"
    sent = pushes(engine, clock)
    assert any(case.code in t and "这是物业负责的公共照明" in t for t in sent.texts_to(FURONG_PROPERTY))


def test_a_position_typed_while_the_transfer_asks_to_whom_is_taken(dlg, engine, clock, policies) -> None:  # type: ignore[no-untyped-def]
    make_resident(engine, policies, clock=clock)
    report_through(dlg, "3号楼2单元楼道灯坏了")
    (case,) = _cases(engine)
    w = FU01_FULL_TIME
    dlg.handle(press(Button("转派", "transfer", case.code), user=w))
    assert "原因" in all_text(dlg.handle(text("物业项目经理", user=w)))
    dlg.handle(text("属于物业维修范围", user=w))
    (moved,) = _cases(engine)
    assert moved.assignee_role == "property_manager"


# ---------------------------------------------------------------- a report's building without the estate
def test_a_report_naming_only_a_building_is_placed_in_the_residents_estate(dlg, engine, clock, policies) -> None:  # type: ignore[no-untyped-def]
    make_resident(engine, policies, clock=clock)  # 芙蓉小区3号楼2单元
    said = "\n".join(report_through(dlg, "3号楼2单元楼道灯坏了"))
    assert "地点：芙蓉小区3号楼2单元楼道" in said  # the confirm screen
    (case,) = _cases(engine)
    assert case.location_text == "芙蓉小区3号楼2单元楼道" and case.grid_id == "FU01"
    sent = pushes(engine, clock)
    assert any(case.code in t and "地点：芙蓉小区3号楼2单元楼道\n" in t for t in sent.texts_to(FU01_FULL_TIME))


def test_a_stranger_without_an_address_keeps_the_building_as_typed(dlg, engine, clock, policies) -> None:  # type: ignore[no-untyped-def]
    make_resident(engine, policies, clock=clock, estate=None)  # consented, no address bound
    report_through(dlg, "3号楼2单元楼道灯坏了")
    cases = _cases(engine)
    assert cases and not (cases[0].location_text or "").startswith("芙蓉小区")
