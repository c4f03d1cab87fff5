"""A grid's team shares the load (issue #17 item 5): overflow to the part-timers past routing.yaml
`team.overflow_after`, each person's working hours (grids.yaml's own, else the position's), the duty desk when
the whole team is off duty, leave skipped; every assignment written with its audit event through intake's one
transaction."""

from __future__ import annotations

from datetime import datetime, time

import pytest
from sqlmodel import Session, col, select

from casestore.db import session_scope
from casestore.models import AuditEvent, Case, CaseEvent, Worker
from casestore.routing import in_hours, route, share_in_team
from casestore.staff import set_leave
from policies.loader import PolicyError, load_policies
from policies.models import Policies, WorkingHours
from tests.conftest import SHANGHAI
from tests.test_loop_support import FU01_DEPUTY, FU01_FULL, FURONG_DUTY, FURONG_SUPERVISOR, open_, sla, worker_id

__all__ = ["sla"]
FU01_PART_TIME = 900102  # grids.yaml: takes new cases 13:00-20:00, Monday to Friday

# distinct problems in FU01 (buildings 1-6), so that none is merged into another as a duplicate
PROBLEMS = [
    {"category": "building", "title": "楼道灯不亮", "description": "3号楼2单元楼道灯坏了", "building": 3},
    {"category": "environment", "title": "垃圾没清", "description": "1号楼门口垃圾桶满了两天", "building": 1},
    {"category": "public_facilities", "title": "健身器材坏了", "description": "小区广场的单杠断了", "building": 2},
    {"category": "parking_traffic", "title": "车堵消防通道", "description": "4号楼消防通道停满了车", "building": 4},
    {"category": "utilities", "title": "暖气不热", "description": "5号楼暖气一直不热", "building": 5},
    {"category": "urban_management", "title": "占道经营", "description": "6号楼外面有人摆摊占道", "building": 6},
]


def with_team(policies: Policies, **team: object) -> Policies:
    routing = policies.routing.model_copy(update={"team": policies.routing.team.model_copy(update=team)})
    return policies.model_copy(update={"routing": routing})


def assignee_tg(engine, code: str) -> int:  # type: ignore[no-untyped-def]
    from casestore.accounts import address_of

    with Session(engine) as s:
        case = s.exec(select(Case).where(Case.code == code)).one()
        address = address_of(session=s, recipient=f"worker:{case.assignee_id}")
        assert address is not None
        return address.chat_id


def test_past_overflow_the_least_loaded_part_timer_in_hours_takes_the_next_case(engine, policies, sla, clock):
    team = with_team(policies, overflow_after=1)  # Friday 14:00: everyone of FU01 is in hours
    got = [assignee_tg(engine, open_(engine, team, sla, clock, **p).case.code) for p in PROBLEMS[:5]]
    # the full-time worker takes two (0 and 1 open ≤ 1), then the part-timers by load, the deputy first on a tie
    assert got == [FU01_FULL, FU01_FULL, FU01_DEPUTY, FU01_PART_TIME, FU01_DEPUTY]
    with Session(engine) as s:
        cases = s.exec(select(Case).order_by(col(Case.id))).all()
        assert [c.assignee_role for c in cases] == ["full_time", "full_time", "deputy", "part_time", "deputy"]
        # each assignment wrote its assign event, naming why (the audit trail of the rule)
        for c in cases:
            [event] = s.exec(select(CaseEvent).where(CaseEvent.case_id == c.id, CaseEvent.action == "assign")).all()
            assert event.data["assignee"] == c.assignee_id
        third = s.exec(select(CaseEvent).where(CaseEvent.case_id == cases[2].id, CaseEvent.action == "assign")).one()
        assert "full_time holds 2 open (> 1)" in (third.note or "")


def test_a_part_timer_outside_their_own_hours_gets_no_overflow(engine, policies, sla, clock):
    clock.set(datetime(2026, 11, 20, 10, 0, tzinfo=SHANGHAI))  # Friday morning: the part-timer starts at 13:00
    team = with_team(policies, overflow_after=0)
    first = open_(engine, team, sla, clock, **PROBLEMS[0])
    second = open_(engine, team, sla, clock, **PROBLEMS[1])
    third = open_(engine, team, sla, clock, **PROBLEMS[2])
    assert assignee_tg(engine, first.case.code) == FU01_FULL
    # the full-time worker holds 1 > 0: the deputy, then the deputy again (the other part-timer is off duty)
    assert [assignee_tg(engine, r.case.code) for r in (second, third)] == [FU01_DEPUTY, FU01_DEPUTY]
    assert third.assignment is not None and "part_time#" in third.assignment.reason
    assert "off duty" in third.assignment.reason


def test_overloaded_full_time_keeps_the_case_when_no_part_timer_can_share(engine, policies, sla, clock):
    with session_scope(engine) as s:
        for tg in (FU01_DEPUTY, FU01_PART_TIME):
            set_leave(session=s, worker=s.get(Worker, worker_id(engine, tg)), on_leave=True, actor="test",
                      now=clock.now())
    team = with_team(policies, overflow_after=0)
    open_(engine, team, sla, clock, **PROBLEMS[0])
    r = open_(engine, team, sla, clock, **PROBLEMS[1])
    assert assignee_tg(engine, r.case.code) == FU01_FULL
    assert r.assignment is not None and "no part-timer can share" in r.assignment.reason


def office_hours(policies: Policies) -> Policies:
    """routing.yaml with hours for both positions (the sample keeps the full-time worker on call at any hour)."""
    return with_team(policies, working_hours={"full_time": WorkingHours(start=time(8, 30), end=time(17, 30)),
                                              "part_time": WorkingHours(start=time(8, 30), end=time(17, 30))})


def test_outside_everyones_hours_the_duty_desk_takes_it(engine, policies, sla, clock):
    clock.set(datetime(2026, 11, 20, 23, 30, tzinfo=SHANGHAI))
    assert open_(engine, policies, sla, clock, **PROBLEMS[1]).assignment.role == "full_time"  # on call at any hour
    r = open_(engine, office_hours(policies), sla, clock, **PROBLEMS[0])
    assert assignee_tg(engine, r.case.code) == FURONG_DUTY
    assert r.assignment is not None and r.assignment.wanted_role == "full_time"
    assert "full_time off duty" in r.assignment.reason and "team off duty→duty_desk" in r.assignment.reason
    with Session(engine) as s:
        case = s.exec(select(Case).where(Case.code == r.case.code)).one()
        assert case.assignee_role == "duty_desk" and case.grid_id == "FU01"  # still the grid's case


def test_whole_team_on_leave_goes_above_the_grid_not_to_the_duty_desk(engine, policies, sla, clock):
    with session_scope(engine) as s:
        for tg in (FU01_FULL, FU01_DEPUTY, FU01_PART_TIME):
            set_leave(session=s, worker=s.get(Worker, worker_id(engine, tg)), on_leave=True, actor="test",
                      now=clock.now())
        events = s.exec(select(AuditEvent).where(AuditEvent.action == "set_leave")).all()
        assert len(events) == 3
    r = open_(engine, policies, sla, clock, **PROBLEMS[0])
    assert assignee_tg(engine, r.case.code) == FURONG_SUPERVISOR
    assert r.assignment is not None and "full_time on leave" in r.assignment.reason


def test_rules_other_than_full_time_and_transfers_are_untouched(engine, policies, sla, clock):
    clock.set(datetime(2026, 11, 20, 23, 30, tzinfo=SHANGHAI))  # off duty for the team, but a dispute is the mediator's
    r = open_(engine, office_hours(policies), sla, clock, intent="dispute", category="neighborhood", title="邻里噪音",
              description="楼上天天半夜装修")
    assert r.assignment is not None and r.assignment.role == "mediator"
    with Session(engine) as s:
        # a transfer to a named role ignores the team's sharing: the person asked for
        routed = route(session=s, policies=policies, intent="help", category="building", urgency="normal",
                       grid_id="FU01", community_id="furong", role="full_time", now=clock.now())
        assert routed.role == "full_time"


def test_share_in_team_without_a_time_does_not_check_hours(engine, policies, clock):
    with Session(engine) as s:
        pick = share_in_team(session=s, policies=policies, grid_id="FU01", now=None)
        assert pick.chosen is not None and pick.chosen[0] == "full_time" and not pick.off_duty
        late = datetime(2026, 11, 20, 23, 30, tzinfo=SHANGHAI)
        assert share_in_team(session=s, policies=office_hours(policies), grid_id="FU01", now=late).off_duty


def test_working_hours_read_the_persons_own_then_the_positions(engine, policies):
    with Session(engine) as s:
        part = s.get(Worker, worker_id(engine, FU01_PART_TIME))
        full = s.get(Worker, worker_id(engine, FU01_FULL))
        saturday_noon = datetime(2026, 11, 21, 14, 0, tzinfo=SHANGHAI)
        assert in_hours(policies=policies, worker=full, now=saturday_noon)  # routing.yaml: no hours, on call
        assert not in_hours(policies=policies, worker=part, now=saturday_noon)  # grids.yaml: Monday to Friday
        # the position's hours apply to whoever has none of their own; a person's own win
        weekdays = with_team(policies, working_hours={
            "full_time": WorkingHours(start=time(8, 30), end=time(17, 30), days=[1, 2, 3, 4, 5]),
            "part_time": WorkingHours(start=time(0, 0), end=time(23, 59))})
        assert not in_hours(policies=weekdays, worker=full, now=saturday_noon)
        assert not in_hours(policies=weekdays, worker=part, now=saturday_noon)


def test_night_shift_hours_span_midnight() -> None:
    night = WorkingHours(start=time(20, 0), end=time(8, 0), days=[5])  # Friday night into Saturday morning
    assert night.covers(5, time(23, 0)) and night.covers(6, time(7, 59))
    assert not night.covers(6, time(8, 0)) and not night.covers(5, time(7, 0)) and not night.covers(6, time(23, 0))


@pytest.mark.parametrize("bad, where", [
    ("team:\n  overflow_after: -1\n", "routing.yaml: team.overflow_after"),
    ("team:\n  working_hours:\n    full_time: {start: '09:00', end: '09:00'}\n", "routing.yaml: team.working_hours"),
    ("team:\n  working_hours:\n    full_time: {start: '09:00', end: '18:00', days: [0]}\n",
     "routing.yaml: team.working_hours"),
    ("team:\n  after_hours: nobody\n", "routing.yaml: team.after_hours"),
])
def test_bad_team_rules_are_refused_naming_the_key(tmp_path, bad: str, where: str) -> None:
    from policies.loader import DEFAULT_DIR

    for f in DEFAULT_DIR.glob("*.yaml"):
        (tmp_path / f.name).write_text(f.read_text(encoding="utf-8"), encoding="utf-8")
    routing = (tmp_path / "routing.yaml").read_text(encoding="utf-8")
    head = routing.split("\nteam:\n")[0]
    (tmp_path / "routing.yaml").write_text(head + "\n" + bad, encoding="utf-8")
    with pytest.raises(PolicyError) as err:
        load_policies(tmp_path)
    assert any(p.startswith(where) for p in err.value.problems), err.value.problems
