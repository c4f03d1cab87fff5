"""Intake and routing: roles, fallbacks, unknown grids, deadlines, audit trail, task pushes; permissions."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlmodel import Session

from casestore import actions
from casestore.accounts import address_of
from casestore.cases import list_events
from casestore.db import session_scope
from casestore.errors import NotFound, PermissionDenied
from casestore.feedback import get_case_for_resident
from casestore.models import CaseStatus
from casestore.notify import OutboundMessage
from tests.conftest import SHANGHAI
from tests.factories import actor
from tests.test_loop_support import (
    ADMIN,
    FU01_DEPUTY,
    FU01_FULL,
    FU01_LEAD,
    FU02_FULL,
    FU03_DEPUTY,
    FU03_FULL_ON_LEAVE,
    FURONG_DUTY,
    FURONG_MEDIATOR,
    FURONG_PROPERTY,
    FURONG_SUPERVISOR,
    QUSHUI_SUPERVISOR,
    case_by_code,
    notes,
    open_,
    resident,
    sla,
    worker_id,
)

__all__ = ["sla"]
FU03_PART_TIME = 900110  # 芙蓉社区第三网格兼职网格员 (not the deputy)


def _assignee_tg(engine, result) -> int:
    """The Telegram id of the case's assignee (the push address)."""
    case = case_by_code(engine, result.case.code)
    with Session(engine) as s:
        address = address_of(session=s, recipient=f"worker:{case.assignee_id}")
        assert address is not None
        return address.chat_id


def test_default_goes_to_the_grids_full_time_worker_with_task_push(engine, policies, sla, clock) -> None:
    who = resident(engine, clock, policies)
    r = open_(engine, policies, sla, clock, who)
    case = case_by_code(engine, r.case.code)
    assert case.code == "JN20261120-0001"  # the local (Shanghai) date
    assert case.grid_id == "FU01" and case.community_id == "furong" and case.status == CaseStatus.assigned
    assert _assignee_tg(engine, r) == FU01_FULL and case.assignee_role == "full_time"
    [task] = notes(engine, case.code, "task")
    assert (task.level, task.chat_id, task.recipient) == (0, FU01_FULL, f"worker:{worker_id(engine, FU01_FULL)}")
    msg = OutboundMessage.from_payload(task.payload)
    labels = [b.label for row in msg.buttons for b in row]
    assert labels == ["接单", "已联系", "办结", "转派", "申请延期", "回复居民", "请居民留电话"]  # a resident to reach
    assert all(b.case_code == case.code for row in msg.buttons for b in row)
    with Session(engine) as s:
        events = list_events(session=s, case_id=case.id)
    assert [e.action for e in events] == ["created", "assign"]
    assert "default→full_time" in events[1].data["reason"] and events[0].actor == f"resident:{who.id}"


def test_dispute_goes_to_the_community_mediator(engine, policies, sla, clock) -> None:
    r = open_(engine, policies, sla, clock, intent="dispute", category="neighborhood", title="邻里噪音纠纷")
    assert _assignee_tg(engine, r) == FURONG_MEDIATOR
    assert r.assignment.role == "mediator" and "(intent=dispute)" in r.assignment.reason


def test_wish_goes_to_the_grids_volunteer_lead(engine, policies, sla, clock) -> None:
    r = open_(engine, policies, sla, clock, intent="wish", category="elderly_disabled", title="想请人帮忙买菜",
              description="独居老人想请志愿者帮忙买菜")
    assert _assignee_tg(engine, r) == FU01_LEAD and r.assignment.role == "volunteer_lead"


def test_property_management_copies_the_property_manager(engine, policies, sla, clock) -> None:
    r = open_(engine, policies, sla, clock, category="property_mgmt", title="电梯坏了", description="3号楼电梯不动了")
    assert _assignee_tg(engine, r) == FU01_FULL
    [cc] = notes(engine, r.case.code, "cc")
    assert cc.chat_id == FURONG_PROPERTY and "物业项目经理" in cc.payload["text"]
    assert case_by_code(engine, r.case.code).cc_roles == ["property_manager"]


def test_worker_on_leave_falls_back_to_the_deputy(engine, policies, sla, clock) -> None:
    r = open_(engine, policies, sla, clock, estate="芙蓉小区", building=15)  # FU03: full-time on leave
    case = case_by_code(engine, r.case.code)
    assert case.grid_id == "FU03" and _assignee_tg(engine, r) == FU03_DEPUTY and case.assignee_role == "deputy"
    assert "full_time on leave" in r.assignment.reason
    assert not [n for n in notes(engine) if n.chat_id == FU03_FULL_ON_LEAVE]


def test_deputy_also_away_falls_back_to_the_supervisor(engine, policies, sla, clock) -> None:
    from casestore.models import Worker

    with session_scope(engine) as s:
        deputy = s.get(Worker, worker_id(engine, FU03_DEPUTY))
        deputy.active = False
        s.add(deputy)
    # the grid's other part-timer shares the load (routing.yaml `team`) ...
    r = open_(engine, policies, sla, clock, estate="芙蓉小区", building=15)
    assert _assignee_tg(engine, r) == FU03_PART_TIME and "deputy inactive" in r.assignment.reason
    with session_scope(engine) as s:
        other = s.get(Worker, worker_id(engine, FU03_PART_TIME))
        other.on_leave = True
        s.add(other)
    # ... and with the whole team away the supervisor takes it
    r = open_(engine, policies, sla, clock, estate="芙蓉小区", building=16, title="井盖松动",
              description="东门井盖松动了")
    assert _assignee_tg(engine, r) == FURONG_SUPERVISOR
    assert "deputy inactive" in r.assignment.reason and "on leave" in r.assignment.reason


def test_unknown_address_goes_to_the_duty_desk_flagged(engine, policies, sla, clock) -> None:
    r = open_(engine, policies, sla, clock, estate="不存在小区", building=99, location_text="不知道哪里")
    case = case_by_code(engine, r.case.code)
    assert case.grid_id is None and case.needs_address_confirmation
    assert case.community_id == "furong"  # no resident: the first community
    assert _assignee_tg(engine, r) == FURONG_DUTY
    assert "地址未确认" in notes(engine, case.code, "task")[0].payload["text"]


def test_unknown_address_uses_the_residents_community(engine, policies, sla, clock) -> None:
    who = resident(engine, clock, policies, estate="曲水花园", building=99)  # no grid covers building 99
    r = open_(engine, policies, sla, clock, who, estate=None, building=None)
    case = case_by_code(engine, r.case.code)
    assert case.grid_id is None and case.community_id == "qushui" and case.needs_address_confirmation


def test_residents_bound_grid_is_used_without_an_address(engine, policies, sla, clock) -> None:
    who = resident(engine, clock, policies, estate="芙蓉小区", building=8)  # FU02
    r = open_(engine, policies, sla, clock, who, estate=None, building=None)
    assert case_by_code(engine, r.case.code).grid_id == "FU02" and _assignee_tg(engine, r) == FU02_FULL


def test_deadlines_on_the_sla_clocks(engine, policies, sla, clock) -> None:
    urgent = case_by_code(engine, open_(engine, policies, sla, clock, urgency="urgent").case.code)
    assert urgent.response_due_at == clock.now() + timedelta(hours=1)
    assert urgent.resolve_due_at == clock.now() + timedelta(hours=24)
    assert urgent.next_reminder_at == clock.now() + timedelta(minutes=30)
    # normal on service hours: Friday 14:00 + 1h, resolve 3 working days later (Wed 14:00)
    normal = case_by_code(engine, open_(engine, policies, sla, clock, urgency="normal", title="井盖松动",
                                        description="小区门口井盖松动").case.code)
    assert normal.response_due_at.astimezone(SHANGHAI).strftime("%a %H:%M") == "Fri 15:00"
    assert normal.resolve_due_at.astimezone(SHANGHAI).strftime("%a %d %H:%M") == "Wed 25 14:00"


def _case_for_permissions(engine, policies, sla, clock):
    return open_(engine, policies, sla, clock).case.code


@pytest.mark.parametrize("stranger", [FU02_FULL, FU01_DEPUTY, QUSHUI_SUPERVISOR, 5001, 123])
def test_others_are_refused_and_logged(engine, policies, sla, clock, caplog, stranger) -> None:
    resident(engine, clock, policies, user=5001)
    code = _case_for_permissions(engine, policies, sla, clock)
    with pytest.raises(PermissionDenied) as err, session_scope(engine) as s:
        actions.accept(session=s, code=code, actor=actor(s, stranger, admin=stranger == ADMIN), clock=clock)
    assert err.value.user_message.startswith("抱歉")
    assert any("refused" in r.getMessage() and code in r.getMessage() for r in caplog.records)
    assert case_by_code(engine, code).status == CaseStatus.assigned


@pytest.mark.parametrize("who", [FU01_FULL, FURONG_SUPERVISOR, ADMIN])
def test_assignee_supervisor_and_admin_may_act(engine, policies, sla, clock, who) -> None:
    code = _case_for_permissions(engine, policies, sla, clock)
    with session_scope(engine) as s:
        actions.accept(session=s, code=code, actor=actor(s, who, admin=who == ADMIN), clock=clock)
    case = case_by_code(engine, code)
    assert case.status == CaseStatus.accepted
    with Session(engine) as s:
        done_by = list_events(session=s, case_id=case.id)[-1].actor
    assert done_by == (f"admin:telegram:{ADMIN}" if who == ADMIN else f"worker:{worker_id(engine, who)}")


def test_worker_flow_respond_transfer_extension(engine, policies, sla, clock) -> None:
    code = _case_for_permissions(engine, policies, sla, clock)
    clock.advance(minutes=20)
    with session_scope(engine) as s:
        actions.respond(session=s, sla=sla, code=code, actor=actor(s, FU01_FULL), clock=clock,
                        note="已电话联系居民")
    case = case_by_code(engine, code)
    assert case.first_response_at == clock.now() and case.status == CaseStatus.in_progress
    assert case.next_reminder_at == case.clock_started_at + timedelta(hours=12)  # resolve window, 50 %
    # transfer to the deputy: new assignee, response clock restarted, resolution deadline kept
    clock.advance(minutes=10)
    with session_scope(engine) as s:
        actions.transfer(session=s, policies=policies, sla=sla, code=code, actor=actor(s, FU01_FULL),
                         clock=clock, reason="本人外出培训", to_worker_id=worker_id(engine, FU01_DEPUTY))
    moved = case_by_code(engine, code)
    assert moved.assignee_id == worker_id(engine, FU01_DEPUTY) and moved.status == CaseStatus.assigned
    assert moved.first_response_at is None and moved.response_due_at == clock.now() + timedelta(hours=1)
    assert moved.resolve_due_at == case.resolve_due_at and moved.clock_cycle == 1
    [push] = [n for n in notes(engine, code, "task") if n.chat_id == FU01_DEPUTY]
    assert push.level == 1 and "转派" in push.payload["text"]
    # the old assignee may no longer act; the new one asks for an extension, only the supervisor approves
    with pytest.raises(PermissionDenied), session_scope(engine) as s:
        actions.accept(session=s, code=code, actor=actor(s, FU01_FULL), clock=clock)
    until = moved.resolve_due_at + timedelta(days=2)
    with session_scope(engine) as s:
        actions.request_extension(session=s, sla=sla, code=code, actor=actor(s, FU01_DEPUTY),
                                  clock=clock, until=until, reason="需要等配件")
    [req] = notes(engine, code, "extension_request")
    assert req.chat_id == FURONG_SUPERVISOR
    assert [[b.action for b in row] for row in OutboundMessage.from_payload(req.payload).buttons] == \
        [["approve_extension", "deny_extension"]]
    with pytest.raises(PermissionDenied), session_scope(engine) as s:  # the assignee cannot approve himself
        actions.approve_extension(session=s, sla=sla, code=code, actor=actor(s, FU01_DEPUTY), clock=clock)
    with session_scope(engine) as s:
        actions.approve_extension(session=s, sla=sla, code=code, actor=actor(s, FURONG_SUPERVISOR),
                                  clock=clock)
    assert case_by_code(engine, code).resolve_due_at == until
    assert notes(engine, code, "extension_decision")[0].chat_id == FU01_DEPUTY


def test_transfer_to_a_role_reroutes_in_the_grid(engine, policies, sla, clock) -> None:
    code = _case_for_permissions(engine, policies, sla, clock)
    with session_scope(engine) as s:
        actions.transfer(session=s, policies=policies, sla=sla, code=code, actor=actor(s, FURONG_SUPERVISOR),
                          clock=clock, reason="属于调解范围", to_role="mediator")
    assert case_by_code(engine, code).assignee_id == worker_id(engine, FURONG_MEDIATOR)


def test_resident_sees_only_their_own_cases(engine, policies, sla, clock) -> None:
    mine = resident(engine, clock, policies, user=5001)
    other = resident(engine, clock, policies, user=5002)
    code = open_(engine, policies, sla, clock, mine).case.code
    with Session(engine) as s:
        assert get_case_for_resident(session=s, resident_id=mine.id, code=code.lower()).code == code
        with pytest.raises(NotFound) as hidden:
            get_case_for_resident(session=s, resident_id=other.id, code=code)
        with pytest.raises(NotFound) as missing:
            get_case_for_resident(session=s, resident_id=other.id, code="JN20261120-9999")
    assert hidden.value.user_message == missing.value.user_message


def test_task_push_carries_the_masked_contact_and_the_photo_never_the_full_number(engine, policies, sla,
                                                                                  clock) -> None:
    who = resident(engine, clock, policies)
    with session_scope(engine) as s:
        row = s.get(type(who), who.id)
        row.contact_phone, row.contact_masked = "13812345678", "138****5678"
    r = open_(engine, policies, sla, clock, who, attachments=[{"type": "photo", "file_id": "photo-abc"}])
    [task] = notes(engine, r.case.code, "task")
    msg = OutboundMessage.from_payload(task.payload)
    assert "138****5678" in msg.text and "13812345678" not in msg.text
    assert msg.photo == "photo-abc"
