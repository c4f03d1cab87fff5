"""Issue #15's follow-ups, through the real classifier and dialogue: a relay takes only what plainly answers the
worker (a new report typed while it is open is filed, and the resident is told it was not relayed); the 转人工
case keeps only the resident's words about the matter in hand; the duty desk and the street command centre hear
when an emergency they were paged for moves to another grid."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from bot.dialogue import texts
from bot.services import Services
from casestore.db import session_scope
from casestore.intake import relocate
from casestore.models import AuditEvent, Case, CaseEvent, Notification
from casestore.notify import Button
from tests.factories import (
    FU01_FULL_TIME,
    FURONG_DUTY_DESK,
    all_text,
    buttons_of,
    command,
    make_resident,
    press,
    pushes,
    text,
)

STREET_COMMAND = 900160
QU01_FULL_TIME = 900128


def _cases(engine: Any) -> list[Case]:
    with session_scope(engine) as s:
        return list(s.execute(select(Case).order_by(Case.id)).scalars().all())


def _relays(engine: Any, code: str) -> list[str]:
    with session_scope(engine) as s:
        case_id = s.execute(select(Case.id).where(Case.code == code)).scalar_one()
        rows = s.execute(select(CaseEvent).where(CaseEvent.case_id == case_id).order_by(CaseEvent.id)).scalars()
        return [e.data["relay"] for e in rows if "relay" in (e.data or {})]


@pytest.fixture
def relaying(dlg, engine, clock, policies) -> str:  # type: ignore[no-untyped-def]
    """A FU01 resident's stairwell-light case, and the worker's words to them through the bot just now."""
    make_resident(engine, policies, clock=clock)
    for said in ("3号楼2单元楼道灯坏了", "跳过", "对"):
        dlg.handle(text(said))
    (case,) = _cases(engine)
    dlg.handle(press(Button("回复居民", "relay", case.code), user=FU01_FULL_TIME))
    dlg.handle(text("明天上午来修", user=FU01_FULL_TIME))
    pushes(engine, clock)
    assert _relays(engine, case.code) == ["to_resident"]
    return case.code


# ---------------------------------------------------------------- 1. the relay takes only plain answers
def test_a_new_report_typed_right_after_the_workers_words_is_filed_not_relayed(dlg, engine, clock, relaying):
    r = dlg.handle(text("路灯不亮了"))  # the manual run that left this without a case
    said = all_text(r)
    assert texts.RELAY_TO_WORKER_SENT.format(code=relaying) not in said
    assert texts.RELAY_NOT_TAKEN.format(code=relaying) in said  # the resident can tell
    assert [b.label for b in buttons_of(r)][-1] == texts.BTN_RELAY_REPLY
    assert _relays(engine, relaying) == ["to_resident"]  # nothing went to the worker
    for step in ("小区门口", "跳过", "对"):
        said = all_text(dlg.handle(text(step)))
    (old, new) = _cases(engine)
    assert new.code in said and new.title == "路灯不亮了" and new.category == "public_facilities"
    assert old.code == relaying


@pytest.mark.parametrize("answer", ["好的，上午在家", "几点来？", "麻烦带个梯子", "明天不在家", "谢谢"])
def test_plain_answers_right_after_the_workers_words_reach_the_worker(dlg, engine, clock, relaying, answer):
    said = all_text(dlg.handle(text(answer)))
    assert texts.RELAY_TO_WORKER_SENT.format(code=relaying) in said
    assert _relays(engine, relaying) == ["to_resident", "to_worker"]
    assert any(answer in t for t in pushes(engine, clock).texts_to(FU01_FULL_TIME))
    assert len(_cases(engine)) == 1


def test_a_new_question_is_answered_and_hours_later_only_a_plain_reply_is_relayed(dlg, engine, clock, relaying):
    said = all_text(dlg.handle(text("办居住证要带什么")))
    assert "居住证" in said and texts.RELAY_NOT_TAKEN.format(code=relaying) in said
    assert _relays(engine, relaying) == ["to_resident"]
    clock.advance(hours=3)  # past the reply window, inside the 24 h relay
    said = all_text(dlg.handle(text("几点来？")))
    assert texts.RELAY_TO_WORKER_SENT.format(code=relaying) not in said
    said = all_text(dlg.handle(text("好的，明天不在家")))
    assert texts.RELAY_TO_WORKER_SENT.format(code=relaying) in said
    assert _relays(engine, relaying) == ["to_resident", "to_worker"]


def test_after_pressing_reply_the_next_text_is_relayed_whatever_it_reads_like(dlg, engine, clock, relaying):
    clock.advance(hours=3)
    assert "请直接输入" in all_text(dlg.handle(press(Button(texts.BTN_RELAY_REPLY, "relay_reply", relaying))))
    said = all_text(dlg.handle(text("路灯也不亮了，一起看看")))
    assert texts.RELAY_TO_WORKER_SENT.format(code=relaying) in said
    assert _relays(engine, relaying)[-2:] == ["reply_opened", "to_worker"]
    assert len(_cases(engine)) == 1


# ---------------------------------------------------------------- 2. 居民最近说: the matter in hand only
def test_the_handoff_case_keeps_the_residents_words_about_the_matter_not_the_address_or_earlier_topics(
        dlg, engine, clock):  # type: ignore[no-untyped-def]
    dlg.handle(command("start"))
    for said in ("同意", "芙蓉小区3号楼2单元", "你好", "办居住证要带什么", "楼道灯坏了",
                 "晚上黑乎乎的老人下楼不方便", "转人工"):
        dlg.handle(text(said))
    (case,) = [c for c in _cases(engine) if c.intent == "inquiry"]
    assert "楼道灯坏了" in case.description and "晚上黑乎乎的老人下楼不方便" in case.description
    for unrelated in ("芙蓉小区3号楼2单元", "同意", "你好", "居住证", "转人工"):
        assert unrelated not in case.description, case.description


def test_the_handoff_case_masks_the_residents_words(dlg, engine, clock, policies):  # type: ignore[no-untyped-def]
    make_resident(engine, policies, clock=clock)
    dlg.handle(text("楼道灯坏了"))
    dlg.handle(text("我是3号楼的张建国，身份证370102199001011234，灯坏一周了"))
    dlg.handle(text("找网格员"))
    (case,) = [c for c in _cases(engine) if c.intent == "inquiry"]
    assert "370102199001011234" not in case.description and "楼道灯坏了" in case.description


# ---------------------------------------------------------------- 3. the old place's desk hears of a move
def test_the_duty_desk_and_street_command_hear_where_the_emergency_went(dlg, engine, clock):  # type: ignore[no-untyped-def]
    dlg.handle(text("着火了 厨房着火了"))
    (case,) = _cases(engine)
    first = pushes(engine, clock)
    assert any(case.code in t for t in first.texts_to(FURONG_DUTY_DESK))
    assert any(case.code in t for t in first.texts_to(STREET_COMMAND))
    dlg.handle(text("曲水花园5号楼2单元"))
    sent = pushes(engine, clock)
    for paged in (FURONG_DUTY_DESK, STREET_COMMAND):
        told = [t for t in sent.texts_to(paged) if "改派" in t]
        assert len(told) == 1, sent.texts_to(paged)
        assert case.code in told[0] and "曲水花园5号楼2单元" in told[0] and "曲水社区第一网格" in told[0]
    assert not any("改派" in t for t in sent.texts_to(QU01_FULL_TIME))  # the new assignee gets the task itself
    with session_scope(engine) as s:
        (audit,) = s.execute(select(AuditEvent).where(AuditEvent.action == "relocate_notice")).scalars().all()
        assert audit.subject == f"case:{case.code}" and audit.data["to_grid"] == "QU01"
        assert audit.data["from_grid"] is None
        moved = s.execute(select(Notification).where(Notification.kind == "moved")).scalars().all()
        assert len(moved) == len(audit.data["told"]) == 2


def test_a_second_place_in_the_same_grid_tells_nobody_again(dlg, engine, clock, policies):  # type: ignore[no-untyped-def]
    dlg.handle(text("着火了 厨房着火了"))
    dlg.handle(text("曲水花园5号楼2单元"))
    pushes(engine, clock)
    (case,) = _cases(engine)
    with session_scope(engine) as s:
        resident_id = case.resident_id
        assert resident_id is not None
        relocate(session=s, policies=policies, sla=dlg.services.sla, clock=clock, resident_id=resident_id,
                 code=case.code, location_text="曲水花园5号楼1单元", estate="曲水花园", building=5, unit=1)
    assert not any("改派" in m.text for _, m in pushes(engine, clock).sent)
    with session_scope(engine) as s:
        assert len(s.execute(select(AuditEvent).where(AuditEvent.action == "relocate_notice")).scalars().all()) == 1


# ---------------------------------------------------------------- the same queries on PostgreSQL
def test_relay_window_and_the_moved_notice_on_postgresql(settings, pg_engine, pg_url, policies, clock, ai):  # type: ignore[no-untyped-def]
    pg = settings.model_copy(update={"database_url": pg_url})
    dlg = Services(pg, clock=clock, engine=pg_engine, policies=policies, classifier=ai.classifier,
                   knowledge=ai.knowledge).dialogue
    make_resident(pg_engine, policies, clock=clock)
    for said in ("3号楼2单元楼道灯坏了", "跳过", "对"):
        dlg.handle(text(said))
    (case,) = _cases(pg_engine)
    dlg.handle(press(Button("回复居民", "relay", case.code), user=FU01_FULL_TIME))
    dlg.handle(text("明天上午来修", user=FU01_FULL_TIME))
    assert texts.RELAY_NOT_TAKEN.format(code=case.code) in all_text(dlg.handle(text("路灯不亮了")))
    dlg.handle(command("cancel"))
    assert texts.RELAY_TO_WORKER_SENT.format(code=case.code) in all_text(dlg.handle(text("好的，上午在家")))
    assert _relays(pg_engine, case.code) == ["to_resident", "to_worker"]

    dlg.handle(text("着火了 厨房着火了", user=555003))
    dlg.handle(text("曲水花园5号楼2单元", user=555003))
    sent = pushes(pg_engine, clock)
    assert any("改派" in t for t in sent.texts_to(FURONG_DUTY_DESK))
    with session_scope(pg_engine) as s:
        assert s.execute(select(AuditEvent).where(AuditEvent.action == "relocate_notice")).scalars().all()
