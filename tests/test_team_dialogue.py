"""The team's side of the worker chat through the real engine (conftest `dlg`): /leave and /back change the one leave
state (casestore.staff.set_leave, audited) that routing reads, and the 常用语 buttons of policies/quick_replies.yaml
go on as a progress note or as words relayed to the resident; forged or stale quick-reply buttons change nothing."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from bot.dialogue import texts
from casestore.db import session_scope
from casestore.models import AuditEvent, Case, CaseEvent, CaseStatus, Worker
from casestore.notify import Button
from tests.factories import (
    FU01_FULL_TIME,
    RESIDENT_ID,
    all_text,
    buttons_of,
    command,
    make_resident,
    press,
    pushes,
    report_through,
    text,
)

FU01_DEPUTY = 900101


def _worker(engine: Any, tg: int) -> Worker:
    from tests.factories import worker_of

    with session_scope(engine) as s:
        w = worker_of(s, tg)
        s.expunge(w)
        return w


def _cases(engine: Any) -> list[Case]:
    with session_scope(engine) as s:
        rows = list(s.execute(select(Case).order_by(Case.id)).scalars())
        for r in rows:
            s.expunge(r)
        return rows


def test_leave_passes_new_cases_to_the_deputy_and_back_brings_them_home(dlg, engine, clock, policies):
    make_resident(engine, policies, clock=clock)
    said = all_text(dlg.handle(command("leave", user=FU01_FULL_TIME)))
    assert said == texts.LEAVE_ON
    assert _worker(engine, FU01_FULL_TIME).on_leave
    assert all_text(dlg.handle(command("leave", user=FU01_FULL_TIME))) == texts.LEAVE_ALREADY
    with session_scope(engine) as s:
        [event] = s.execute(select(AuditEvent).where(AuditEvent.action == "set_leave")).scalars().all()
        assert event.actor == f"worker:{_worker(engine, FU01_FULL_TIME).id}" and event.data["on_leave"] is True

    report_through(dlg, "3号楼2单元楼道灯坏了")
    [first] = _cases(engine)
    assert first.assignee_id == _worker(engine, FU01_DEPUTY).id and first.assignee_role == "deputy"
    sent = pushes(engine, clock)
    assert any(first.code in t for t in sent.texts_to(FU01_DEPUTY)) and not sent.texts_to(FU01_FULL_TIME)

    # back: the case already held stays where it is; the next one comes home, and /leave now tells the load
    assert all_text(dlg.handle(command("back", user=FU01_FULL_TIME))) == texts.LEAVE_OFF
    assert all_text(dlg.handle(command("back", user=FU01_FULL_TIME))) == texts.LEAVE_NOT_ON
    report_through(dlg, "1号楼门口的垃圾桶满了两天没人清")
    second = _cases(engine)[-1]
    assert second.id != first.id and second.assignee_id == _worker(engine, FU01_FULL_TIME).id
    said = all_text(dlg.handle(command("leave", user=FU01_FULL_TIME)))
    assert said == texts.LEAVE_ON + texts.LEAVE_HELD.format(n=1)
    with session_scope(engine) as s:
        events = s.execute(select(AuditEvent).where(AuditEvent.action == "set_leave")).scalars().all()
        assert [e.data["on_leave"] for e in events] == [True, False, True]


def test_a_resident_cannot_take_leave(dlg, engine, clock, policies):
    make_resident(engine, policies, clock=clock)
    said = all_text(dlg.handle(command("leave")))
    assert texts.LEAVE_ON not in said and said
    with session_scope(engine) as s:
        assert not s.execute(select(AuditEvent).where(AuditEvent.action == "set_leave")).scalars().all()


def _reported(dlg: Any, engine: Any, clock: Any, policies: Any) -> str:
    make_resident(engine, policies, clock=clock)
    report_through(dlg, "3号楼2单元楼道灯坏了")
    [case] = _cases(engine)
    pushes(engine, clock)
    return case.code


def test_quick_replies_of_the_category_fill_the_progress_note(dlg, engine, clock, policies):
    code = _reported(dlg, engine, clock, policies)
    r = dlg.handle(press(Button("已联系", "respond", code), user=FU01_FULL_TIME))
    offered = [b for b in buttons_of(r) if b.action == "wquick"]
    building = policies.quick_replies.phrases("building", "respond")
    assert [b.label for b in offered] == building and texts.QUICK_HINT in all_text(r)
    dlg.handle(press(offered[1], user=FU01_FULL_TIME))
    [case] = _cases(engine)
    assert case.first_response_at is not None and case.status in (CaseStatus.accepted, CaseStatus.in_progress)
    with session_scope(engine) as s:
        notes = [e.note for e in s.execute(select(CaseEvent).where(CaseEvent.case_id == case.id,
                                                                    CaseEvent.action == "respond")).scalars()]
    assert notes == [building[1]]
    # the same button again, after the step is over, is stale
    assert texts.BUTTON_EXPIRED in all_text(dlg.handle(press(offered[0], user=FU01_FULL_TIME)))


def test_a_quick_reply_is_relayed_to_the_resident(dlg, engine, clock, policies):
    code = _reported(dlg, engine, clock, policies)
    r = dlg.handle(press(Button("回复居民", "relay", code), user=FU01_FULL_TIME))
    offered = [b for b in buttons_of(r) if b.action == "wquick"]
    relay = policies.quick_replies.phrases("building", "relay")
    assert [b.label for b in offered] == relay
    said = all_text(dlg.handle(press(offered[0], user=FU01_FULL_TIME)))
    assert "已发给居民" in said
    to_resident = pushes(engine, clock).texts_to(RESIDENT_ID)
    assert any(relay[0] in t for t in to_resident)


def test_forged_quick_reply_buttons_change_nothing(dlg, engine, clock, policies):
    code = _reported(dlg, engine, clock, policies)
    # no step open: a quick reply button is stale
    assert texts.BUTTON_EXPIRED in all_text(dlg.handle(press(Button("x", "wquick", None, "0"), user=FU01_FULL_TIME)))
    dlg.handle(press(Button("已联系", "respond", code), user=FU01_FULL_TIME))
    for arg in ("99", "-1", "abc", "", "0" * 70):
        said = all_text(dlg.handle(press(Button("x", "wquick", None, arg), user=FU01_FULL_TIME)))
        assert texts.BUTTON_EXPIRED in said, arg
    [case] = _cases(engine)
    assert case.first_response_at is None
    # a resident pressing one gets nothing done either
    said = all_text(dlg.handle(press(Button("x", "wquick", None, "0"))))
    assert said and _cases(engine)[0].first_response_at is None
    # the step is still open for the worker: typed words still work
    dlg.handle(text("已电话联系居民", user=FU01_FULL_TIME))
    assert _cases(engine)[0].first_response_at is not None
