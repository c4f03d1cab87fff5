"""Duplicates (one problem reported twice is one case, paged once) and hotspots (未诉先办: one alert per
incident), plus the loop statistics, the stats command and the scheduler job wiring."""

from __future__ import annotations

import json
from datetime import timedelta

from sqlmodel import Session, select
from typer.testing import CliRunner

from bot.scheduler import JOB_ID, LoopDeps, build_scheduler, tick
from casestore import actions, feedback
from casestore.db import session_scope
from casestore.duplicates import BigramSimilarity, list_subscribers
from casestore.models import CaseStatus, CloseReason, Hotspot
from casestore.notify import RecordingNotifier
from casestore.stats import compute, summary_text
from tests.factories import actor
from tests.test_loop_support import (
    FU01_FULL,
    FURONG_SUPERVISOR,
    case_by_code,
    notes,
    open_,
    resident,
    sla,
)

__all__ = ["sla"]

LEAK = {"category": "building", "title": "楼道漏水", "description": "3号楼2单元楼道天花板漏水"}
LEAK_AGAIN = {"category": "building", "title": "楼道漏水了", "description": "3号楼2单元楼道漏水，一直在滴水"}


def test_a_repeat_report_joins_the_open_case_and_pages_nobody(engine, policies, sla, clock) -> None:
    first_reporter = resident(engine, clock, policies, user=5001)
    second_reporter = resident(engine, clock, policies, user=5002)
    original = open_(engine, policies, sla, clock, first_reporter, **LEAK).case
    clock.advance(hours=2)
    r = open_(engine, policies, sla, clock, second_reporter, **LEAK_AGAIN)
    assert r.duplicate_of is not None and r.duplicate_of.code == original.code
    dup = case_by_code(engine, r.case.code)
    assert (dup.status, dup.close_reason, dup.duplicate_of_id) == (
        CaseStatus.closed, CloseReason.duplicate, original.id)
    assert dup.assignee_id is None and dup.next_reminder_at is None
    assert [n.chat_id for n in notes(engine, kind="task")] == [FU01_FULL]  # paged once, for the original
    with Session(engine) as s:
        assert list_subscribers(session=s, case_id=original.id) == [second_reporter.id]
    # the follower hears when the original is resolved
    with session_scope(engine) as s:
        actions.resolve(session=s, sla=sla, code=original.code, actor=actor(s, FU01_FULL), clock=clock,
                        note="已修好")
    [follow] = notes(engine, original.code, "subscriber_update")
    assert follow.chat_id == 5002 and dup.code in follow.payload["text"]
    # the follower never sees the first reporter's case code or words
    assert original.code not in follow.payload["text"] and "天花板" not in follow.payload["text"]
    assert [n.chat_id for n in notes(engine, original.code, "rating_request")] == [5001]


def test_no_merge_across_grids_categories_closed_cases_or_the_window(engine, policies, sla, clock) -> None:
    original = open_(engine, policies, sla, clock, **LEAK).case
    assert open_(engine, policies, sla, clock, **{**LEAK_AGAIN, "building": 8}).duplicate_of is None  # FU02
    assert open_(engine, policies, sla, clock, **{**LEAK_AGAIN, "category": "utilities"}).duplicate_of is None
    assert open_(engine, policies, sla, clock, category="building", title="电梯故障",
                 description="5号楼电梯停在三楼不动").duplicate_of is None  # same grid+category, other problem
    clock.advance(hours=25)
    assert open_(engine, policies, sla, clock, **LEAK_AGAIN).duplicate_of is None  # past the 24 h window
    with session_scope(engine) as s:
        actions.resolve(session=s, sla=sla, code=original.code, actor=actor(s, FU01_FULL), clock=clock,
                        note="修好")


def test_the_similarity_is_pluggable(engine, policies, sla, clock) -> None:
    class Always:
        def similarity(self, a: str, b: str) -> float:
            return 1.0

    open_(engine, policies, sla, clock, **LEAK)
    assert BigramSimilarity().similarity("停水了", "电梯坏了") == 0.0
    with session_scope(engine) as s:
        from casestore.intake import open_case
        from tests.test_loop_support import report

        r = open_case(session=s, policies=policies, sla=sla, clock=clock, resident=None,
                      report=report(category="building", title="完全不同", description="毫不相干"),
                      similarity=Always())
        assert r.duplicate_of is not None


def _outage(engine, policies, sla, clock, building: int):
    return open_(engine, policies, sla, clock, category="utilities", title="停水",
                 description=f"{building}号楼第{building}户家里没水了，水龙头不出水", building=building)


def test_fifth_report_raises_one_hotspot_and_the_sixth_joins(engine, policies, sla, clock) -> None:
    results = []
    for i, building in enumerate([1, 2, 3, 4, 5, 6]):
        results.append(_outage(engine, policies, sla, clock, building))
        clock.advance(minutes=5)
        if i < 4:
            assert results[-1].hotspot is None
    fifth, sixth = results[4], results[5]
    assert fifth.hotspot is not None and fifth.hotspot_raised
    assert sixth.hotspot is not None and not sixth.hotspot_raised and sixth.hotspot.id == fifth.hotspot.id
    with Session(engine) as s:
        [spot] = s.exec(select(Hotspot)).all()
    assert spot.scope == "grid:FU01" and spot.category == "utilities" and spot.report_count == 6
    assert spot.case_codes == [r.case.code for r in results]
    assert {case_by_code(engine, r.case.code).cluster_id for r in results} == {spot.id}
    [alert] = notes(engine, kind="hotspot")
    assert alert.chat_id == FURONG_SUPERVISOR and "5 件" in alert.payload["text"]
    assert all(r.case.code in alert.payload["text"] for r in results[:5])


def test_reports_spread_over_a_community_or_too_slow_do_not_alert_wrongly(engine, policies, sla, clock) -> None:
    # five outages across grids of one community: a community hotspot
    for building in (1, 8, 14):
        _outage(engine, policies, sla, clock, building)
    open_(engine, policies, sla, clock, category="utilities", title="停水", description="东苑2号楼停水",
          estate="芙蓉东苑", building=2)
    r = open_(engine, policies, sla, clock, category="utilities", title="停水", description="东苑6号楼停水",
              estate="芙蓉东苑", building=6)
    assert r.hotspot_raised and r.hotspot.scope == "community:furong"
    # four reports in another community, then a fifth after the window: nothing
    for building in (1, 7, 13, 2):
        clock.advance(minutes=9)
        open_(engine, policies, sla, clock, category="environment", title="垃圾没清", estate="曲水花园",
              description=f"{building}号楼垃圾桶满了", building=building)
    assert len(notes(engine, kind="hotspot")) == 1


def test_stats_count_promises_and_silence_is_not_satisfaction(engine, policies, sla, clock) -> None:
    who = resident(engine, clock, policies, user=5001)
    start = clock.now()
    a = open_(engine, policies, sla, clock, who).case.code  # answered in 20 min, resolved, rated 4
    b = open_(engine, policies, sla, clock, who,
              title="井盖松动", description="门口井盖松动").case.code  # answered late
    c = open_(engine, policies, sla, clock, who,
              title="路灯不亮", description="东门路灯坏了").case.code  # never answered
    clock.advance(minutes=20)
    with session_scope(engine) as s:
        actions.resolve(session=s, sla=sla, code=a, actor=actor(s, FU01_FULL), clock=clock, note="好了")
        feedback.rate(session=s, policies=policies, sla=sla, clock=clock, resident_id=who.id, code=a, fixed=True,
                      rating=4)
    clock.advance(minutes=70)
    with session_scope(engine) as s:
        actions.resolve(session=s, sla=sla, code=b, actor=actor(s, FU01_FULL), clock=clock, note="好了")
    clock.advance(hours=73)
    with session_scope(engine) as s:
        from casestore.sweep import sweep_all

        sweep_all(engine=engine, policies=policies, sla=sla, clock=clock)  # b auto-closes unrated
        figures = compute(session=s, now=clock.now())
    t = figures["total"][0]
    assert t.cases == 3 and t.open == 1 and t.overdue == 1
    assert t.median_response_min == 55.0  # 20 and 90 minutes
    assert t.on_time_response == round(1 / 3, 4)  # a on time, b late, c unanswered past due
    assert t.satisfaction == 4.0 and t.rating_response_rate == 0.5  # b's silence counts as no answer
    assert [g.key for g in figures["grid"]] == ["FU01"] and case_by_code(engine, c).first_response_at is None
    with Session(engine) as s:
        text = summary_text(session=s, now=clock.now(), taxonomy=policies.taxonomy)
    assert "工单 3 件" in text and "满意度 4.0 分" in text and start < clock.now()


def test_stats_command_prints_a_chinese_table_and_json(engine, policies, sla, clock, settings, monkeypatch) -> None:
    from bot import cli

    app = cli.app
    monkeypatch.setattr(cli.console, "width", 200)  # a wide terminal; CliRunner's default is 80 columns
    open_(engine, policies, sla, clock)
    monkeypatch.setenv("DATABASE_URL", settings.database_url)
    runner = CliRunner()
    table = runner.invoke(app, ["stats"])
    assert table.exit_code == 0, table.output
    assert "按网格" in table.output and "芙蓉社区第一网格" in table.output and "按时响应" in table.output
    as_json = runner.invoke(app, ["stats", "--json", "--grid", "FU01", "--since", "2026-11-01"])
    data = json.loads(as_json.output)
    assert data["total"][0]["cases"] == 1 and data["grid"][0]["key"] == "FU01"
    assert runner.invoke(app, ["stats", "--since", "11/20"]).exit_code == 2


async def test_scheduler_has_one_job_however_often_it_is_built(engine, policies, sla, clock) -> None:
    notifier = RecordingNotifier()
    deps = LoopDeps(engine=engine, policies=policies, sla=sla, clock=clock, notifier=notifier)
    scheduler = build_scheduler(deps, interval_s=30)
    build_scheduler(deps, interval_s=30, scheduler=scheduler)  # added twice before start
    scheduler.start(paused=True)
    build_scheduler(deps, interval_s=30, scheduler=scheduler)  # and again while running (a re-wiring)
    [job] = scheduler.get_jobs()
    scheduler.shutdown(wait=False)
    assert job.id == JOB_ID and job.max_instances == 1 and job.coalesce and job.misfire_grace_time >= 60
    assert job.trigger.interval == timedelta(seconds=30)
    open_(engine, policies, sla, clock)
    clock.advance(minutes=30)
    result = await tick(deps)
    assert result.sweep.reminders == 1 and result.sent == 2  # the task push and the 30-minute reminder
    assert (await tick(deps)).sent == 0
