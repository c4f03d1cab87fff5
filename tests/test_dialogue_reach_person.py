"""End to end, as residents actually write (issue #15, the resident side): an emergency is served before consent
and its place reaches the case later in the same conversation; a person can be asked for at any point and the
resident is told who and by when; "没修好" in words reopens the case, and later words about an open case join it.
Through the real classifier and dialogue."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from bot.dialogue import texts
from bot.dialogue.engine import DialogueEngine
from bot.dialogue.words import HUMAN
from casestore import actions
from casestore.db import session_scope
from casestore.models import Case, CaseEvent, CaseStatus, Resident
from tests.factories import (
    FU01_FULL_TIME,
    RESIDENT_ID,
    actor,
    all_text,
    button,
    buttons_of,
    find_button,
    make_resident,
    press,
    pushes,
    report_through,
    resident_of,
    text,
)

FURONG_SUPERVISOR = 900124
QU01_FULL_TIME = 900128  # 曲水社区第一网格专职网格员 (曲水花园 1-6号楼)
QUSHUI_SUPERVISOR = 900156
FURONG_DUTY_DESK = 900125
STREET_COMMAND = 900160


def _cases(engine) -> list[Case]:  # type: ignore[no-untyped-def]
    with session_scope(engine) as s:
        r = resident_of(s, RESIDENT_ID)
        assert r is not None
        return list(s.execute(select(Case).where(Case.resident_id == r.id).order_by(Case.id)).scalars().all())


def _report(dlg: DialogueEngine, message: str) -> str:
    return "\n".join(report_through(dlg, message))


# ---------------------------------------------------------------- 1. the emergency lane comes first
def test_a_strangers_fire_is_paged_at_once_and_the_place_typed_next_moves_it_to_the_right_grid(
        dlg, engine, clock) -> None:  # type: ignore[no-untyped-def]
    first = dlg.handle(text("着火了 厨房着火了"))
    said = all_text(first)
    assert "119" in first.messages[0].text  # the safety steps first
    assert "登记工单需要先同意隐私说明" not in said and "位置" in said  # the place is asked, not paperwork
    (case,) = _cases(engine)
    assert case.urgency == "emergency" and case.status == CaseStatus.assigned
    sent = pushes(engine, clock)
    assert any(case.code in t for t in sent.texts_to(FURONG_DUTY_DESK))  # paged at once, before consent or address
    assert any(case.code in t for t in sent.texts_to(STREET_COMMAND))  # the community is a guess: the street too

    second = all_text(dlg.handle(text("曲水花园5号楼2单元")))
    assert case.code in second and "曲水花园5号楼2单元" in second
    assert "紧急情况下先救助，依法可以不经同意先处理" in second  # consent is asked afterwards, saying why
    (case,) = _cases(engine)
    assert case.grid_id == "QU01" and case.community_id == "qushui"
    assert "曲水花园5号楼2单元" in (case.location_text or "") and not case.needs_address_confirmation
    with session_scope(engine) as s:
        events = s.execute(select(CaseEvent).where(CaseEvent.case_id == case.id)).scalars().all()
        assert any(e.action == "note" and e.data.get("relocated") and e.actor.startswith("resident:") for e in events)
        r = resident_of(s, RESIDENT_ID)
        assert r is not None and r.consent_at is None and r.estate is None  # nothing stored on the resident
    sent = pushes(engine, clock)
    assert any(case.code in t and "曲水花园5号楼2单元" in t for t in sent.texts_to(QU01_FULL_TIME))
    assert any(case.code in t for t in sent.texts_to(QUSHUI_SUPERVISOR))


def test_a_gas_smell_in_the_stairwell_pushes_the_bound_building_and_the_stairwell(
        dlg, engine, clock, policies) -> None:  # type: ignore[no-untyped-def]
    make_resident(engine, policies, clock=clock)  # 芙蓉小区3号楼2单元
    dlg.handle(text("楼道里一股子煤气味"))
    (case,) = _cases(engine)
    assert case.location_text == "芙蓉小区3号楼2单元 楼道"
    sent = pushes(engine, clock)
    assert any("地点：芙蓉小区3号楼2单元 楼道\n" in t for t in sent.texts_to(FU01_FULL_TIME))
    assert any(case.code in t for t in sent.texts_to(FURONG_SUPERVISOR))


# ---------------------------------------------------------------- 2. a person, at any point
@pytest.mark.parametrize("phrase", ["找人", "转人工", "找网格员", "人工", "俺要找真人说话", "找个人", "叫你们的人"])
def test_asking_for_a_person_always_opens_a_handoff_and_says_who_and_when(
        dlg, engine, clock, policies, phrase) -> None:  # type: ignore[no-untyped-def]
    assert phrase in HUMAN or phrase in ("俺要找真人说话", "叫你们的人")
    make_resident(engine, policies, clock=clock)
    dlg.handle(text("楼道灯坏了"))  # mid-report: the bot is asking something
    said = all_text(dlg.handle(text(phrase)))
    assert texts.BUTTON_EXPIRED not in said and texts.CHITCHAT not in said
    assert "王芳（示例）" in said  # their grid worker by name
    (case,) = [c for c in _cases(engine) if c.intent == "inquiry"]
    assert case.code in said and case.grid_id == "FU01"
    assert "楼道灯坏了" in case.description  # the conversation so far goes with it
    again = all_text(dlg.handle(text(phrase)))  # asked twice: the same case, not a second one
    assert case.code in again and len([c for c in _cases(engine) if c.intent == "inquiry"]) == 1


def test_a_handoff_with_a_phone_keeps_the_phone_as_the_call_back_number_not_in_the_title(
        dlg, engine, clock, policies) -> None:  # type: ignore[no-untyped-def]
    make_resident(engine, policies, clock=clock)
    said = all_text(dlg.handle(text("人工，13812341234 这是俺的电话")))
    (case,) = _cases(engine)
    assert case.code in said and "王芳（示例）" in said
    assert "1381234" not in case.title and "138****1234" not in case.title and case.title == "居民要求人工服务"
    with session_scope(engine) as s:
        r = s.get(Resident, case.resident_id)
        assert r is not None and r.contact_phone == "13812341234"
    # a stale 转人工 button (from an old answer) still reaches a person
    said = all_text(dlg.handle(button("human", arg="999")))
    assert texts.BUTTON_EXPIRED not in said and case.code in said


def test_out_of_hours_the_handoff_names_the_duty_desk(dlg, engine, clock, policies) -> None:  # type: ignore[no-untyped-def]
    make_resident(engine, policies, clock=clock)
    clock.advance(hours=8)  # Friday 22:00
    said = all_text(dlg.handle(text("转人工")))
    (case,) = _cases(engine)
    assert case.code in said and "下班" in said
    assert "芙蓉社区值班台" in said and "0531-0000-1199" in said  # the duty desk, its line and its hours


# ---------------------------------------------------------------- 3. 没修好, in words
def test_not_fixed_in_words_reopens_the_resolved_case_and_later_words_join_the_open_case(
        dlg, engine, clock, policies) -> None:  # type: ignore[no-untyped-def]
    make_resident(engine, policies, clock=clock)
    _report(dlg, "3号楼2单元楼道灯坏了")
    (case,) = _cases(engine)
    with session_scope(engine) as s:
        actions.resolve(session=s, sla=dlg.services.sla, code=case.code, actor=actor(s, FU01_FULL_TIME),
                        clock=clock, note="已更换灯泡")
    clock.advance(hours=3)
    said = all_text(dlg.handle(text("灯还是不亮 根本没修好")))
    assert case.code in said and "重新" in said
    (case,) = _cases(engine)  # no new report
    assert case.status in (CaseStatus.reopened, CaseStatus.assigned) and case.reopen_count == 1
    with session_scope(engine) as s:
        events = s.execute(select(CaseEvent).where(CaseEvent.case_id == case.id)).scalars().all()
        assert any(e.action == "reopen" and e.actor.startswith("resident:") for e in events)

    r = dlg.handle(text("灯还是一闪一闪的"))
    said = all_text(r)
    if buttons_of(r):  # unsure: the resident is asked, with the case named on the button
        said = all_text(dlg.handle(press(find_button(r, f"补充到工单 {case.code}"))))
    assert case.code in said
    assert len(_cases(engine)) == 1
    with session_scope(engine) as s:
        notes = [e for e in s.execute(select(CaseEvent).where(CaseEvent.case_id == case.id)).scalars().all()
                 if e.action == "note" and e.actor.startswith("resident:")]
        assert notes and "一闪一闪" in (notes[-1].note or "")
