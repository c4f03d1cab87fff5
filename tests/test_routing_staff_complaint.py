"""A complaint about the community's own people: to the supervisor (网格长), never to the grid's workers or the
position it names, falling back to the street command centre; nobody of the grid is told."""

from __future__ import annotations

import pytest
from sqlmodel import Session, select

from bot.understanding.target import TargetDetector
from casestore import actions
from casestore.db import session_scope
from casestore.errors import DomainError
from casestore.models import Worker
from casestore.routing import match_rule, route
from tests.factories import actor
from tests.test_loop_support import (
    FU01_DEPUTY,
    FU01_FULL,
    FURONG_SUPERVISOR,
    STREET_COMMAND,
    case_by_code,
    notes,
    open_,
    resident,
    sla,
    worker_id,
)

__all__ = ["sla"]

STAFF_COMPLAINT = {"intent": "complaint", "category": "other", "urgency": "normal", "title": "投诉网格员",
                   "description": "俺要投诉俺们网格员 打了三回电话都不接 态度还不好", "target": "staff",
                   "target_roles": ["full_time"]}


def _set(engine, tg_id: int, **fields) -> None:  # type: ignore[no-untyped-def]
    with session_scope(engine) as s:
        w = s.get(Worker, worker_id(engine, tg_id))
        for k, v in fields.items():
            setattr(w, k, v)
        s.add(w)


def _grid_ids(engine, grid: str) -> set[int]:  # type: ignore[no-untyped-def]
    with Session(engine) as s:
        return {w.id for w in s.exec(select(Worker).where(Worker.grid_id == grid))}


def test_the_rule_matches_only_a_staff_complaint(policies) -> None:
    role, cc, reason = match_rule(policies.routing, intent="complaint", category="other", urgency="normal",
                                  target="staff")
    assert (role, cc) == ("supervisor", []) and "target=staff" in reason
    role, _, _ = match_rule(policies.routing, intent="complaint", category="environment", urgency="normal",
                            target="other")
    assert role == "full_time"
    assert match_rule(policies.routing, intent="help", category="other", urgency="normal", target="staff")[0] \
        == "full_time"


def test_staff_complaint_goes_to_the_supervisor_and_the_grid_hears_nothing(engine, policies, sla, clock) -> None:
    who = resident(engine, clock, policies)  # 芙蓉小区3号楼: FU01
    r = open_(engine, policies, sla, clock, who, **STAFF_COMPLAINT)
    case = case_by_code(engine, r.case.code)
    assert case.assignee_id == worker_id(engine, FURONG_SUPERVISOR) and case.assignee_role == "supervisor"
    assert case.cc_roles == []
    told = {n.recipient for n in notes(engine, case.code)}
    assert told == {f"worker:{worker_id(engine, FURONG_SUPERVISOR)}"}
    assert not told & {f"worker:{i}" for i in _grid_ids(engine, "FU01")}


@pytest.mark.parametrize("why", [{"on_leave": True}, {"active": False}])
def test_without_the_supervisor_it_skips_the_grid_for_the_street_command(engine, policies, sla, clock,
                                                                          why) -> None:
    _set(engine, FURONG_SUPERVISOR, **why)
    who = resident(engine, clock, policies)
    r = open_(engine, policies, sla, clock, who, **STAFF_COMPLAINT)
    case = case_by_code(engine, r.case.code)
    assert case.assignee_id == worker_id(engine, STREET_COMMAND) and case.assignee_role == "street_command"
    assert case.assignee_id not in _grid_ids(engine, "FU01")


def test_a_complaint_naming_the_supervisor_goes_over_their_head(engine, policies, sla, clock) -> None:
    who = resident(engine, clock, policies)
    r = open_(engine, policies, sla, clock, who, **{**STAFF_COMPLAINT, "target_roles": ["supervisor"],
                                                    "description": "社区书记收红包"})
    assert case_by_code(engine, r.case.code).assignee_id == worker_id(engine, STREET_COMMAND)


def test_the_residents_own_grid_is_skipped_when_the_address_is_another_grid(engine, policies, sla,
                                                                           clock) -> None:
    who = resident(engine, clock, policies)  # bound to FU01
    own = _grid_ids(engine, "FU01")
    _set(engine, FURONG_SUPERVISOR, on_leave=True)
    r = open_(engine, policies, sla, clock, who, **STAFF_COMPLAINT, estate="芙蓉小区", building=8)  # FU02
    case = case_by_code(engine, r.case.code)
    assert case.grid_id == "FU02" and case.assignee_id == worker_id(engine, STREET_COMMAND)
    assert case.assignee_id not in own | _grid_ids(engine, "FU02")


def test_with_nobody_above_the_grid_it_refuses_rather_than_tell_the_grid(engine, policies) -> None:
    with Session(engine) as s:
        above = frozenset({worker_id(engine, STREET_COMMAND), worker_id(engine, FURONG_SUPERVISOR)})
        with pytest.raises(LookupError):
            route(session=s, policies=policies, intent="complaint", category="other", urgency="normal",
                  grid_id="FU01", community_id=None, target="staff", exclude_worker_ids=above)


def test_a_staff_complaint_is_not_merged_into_an_open_case_of_the_grid(engine, policies, sla, clock) -> None:
    who = resident(engine, clock, policies)
    first = open_(engine, policies, sla, clock, who, intent="complaint", category="other",
                  title="投诉网格员", description=STAFF_COMPLAINT["description"])  # read as "other": FU01
    assert case_by_code(engine, first.case.code).assignee_id == worker_id(engine, FU01_FULL)
    second = open_(engine, policies, sla, clock, who, **STAFF_COMPLAINT)
    assert second.duplicate_of is None
    assert case_by_code(engine, second.case.code).assignee_id == worker_id(engine, FURONG_SUPERVISOR)


def test_other_complaints_and_transfers_route_as_before(engine, policies, sla, clock) -> None:
    who = resident(engine, clock, policies)
    r = open_(engine, policies, sla, clock, who, intent="complaint", category="environment", title="烧烤扰民",
              description="楼下烧烤天天到半夜", target="other")
    assert case_by_code(engine, r.case.code).assignee_id == worker_id(engine, FU01_FULL)
    with Session(engine) as s:
        a = route(session=s, policies=policies, intent="complaint", category="other", urgency="normal",
                  grid_id="FU01", community_id=None, target="staff", role="deputy")  # a chosen transfer
    assert a.worker.id == worker_id(engine, FU01_DEPUTY)


@pytest.mark.parametrize(("text", "target", "roles", "strong"), [
    ("俺要投诉俺们网格员 打了三回电话都不接 态度还不好", "staff", ("full_time",), True),
    ("网格员小王天天不见人影 有事找不到人", "staff", ("full_time",), True),
    ("值班的人爱答不理", "staff", ("duty_desk",), True),
    ("社区书记收红包", "staff", ("supervisor",), True),
    ("找网格员也不管 楼下烧烤天天到半夜", "staff", ("full_time",), True),
    ("社区一直推 说不归他们管", "staff", (), True),  # the community as a body, by its conduct
    ("网格员从来没来过俺家", "staff", ("full_time",), True),
    ("网格长态度挺好的", "staff", ("supervisor",), False),  # named, nothing done: whom, not whether
    ("投诉楼上邻居装修太吵", "other", (), False),
    ("请网格员来处理 楼上不管", "other", (), False),
    ("物业工作人员态度太差", "other", (), False),
    ("社区医院的大夫态度差", "other", (), False),
    ("热力公司来修的工作人员态度差", "other", (), False),
])
def test_target_detector_reads_whom_a_complaint_is_about(policies, text, target, roles, strong) -> None:
    reading = TargetDetector(policies.taxonomy.staff_terms).read(text)
    assert (reading.target, reading.roles, reading.strong) == (target, roles, strong)


def test_the_case_remembers_its_target_and_transfers_keep_it_away_from_the_grid(engine, policies, sla,
                                                                               clock) -> None:
    who = resident(engine, clock, policies)
    code = open_(engine, policies, sla, clock, who, **STAFF_COMPLAINT).case.code
    case = case_by_code(engine, code)
    assert (case.complaint_target, case.complaint_roles) == ("staff", ["full_time"])
    for to in ({"to_role": "full_time"}, {"to_role": "deputy"}, {"to_worker_id": worker_id(engine, FU01_FULL)}):
        with session_scope(engine) as s, pytest.raises(DomainError) as refused:
            actions.transfer(session=s, policies=policies, sla=sla, code=code, actor=actor(s, FURONG_SUPERVISOR),
                             clock=clock, reason="转给网格员处理", **to)
        assert "不能转给被投诉的人员" in refused.value.user_message
    assert case_by_code(engine, code).assignee_id == worker_id(engine, FURONG_SUPERVISOR)
    with session_scope(engine) as s:  # above the grid is fine
        actions.transfer(session=s, policies=policies, sla=sla, code=code, actor=actor(s, FURONG_SUPERVISOR),
                         clock=clock, reason="请街道督办", to_role="street_command")
    assert case_by_code(engine, code).assignee_id == worker_id(engine, STREET_COMMAND)


def test_an_ordinary_case_still_transfers_inside_the_grid(engine, policies, sla, clock) -> None:
    who = resident(engine, clock, policies)
    code = open_(engine, policies, sla, clock, who).case.code
    with session_scope(engine) as s:
        actions.transfer(session=s, policies=policies, sla=sla, code=code, actor=actor(s, FURONG_SUPERVISOR),
                         clock=clock, reason="副网格员更熟悉", to_role="deputy")
    assert case_by_code(engine, code).assignee_id == worker_id(engine, FU01_DEPUTY)
