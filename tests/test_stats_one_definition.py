"""Issue #16: each figure is defined once (casestore.stats). On the same database, the demo's summary, `quanbot stats
--json` (the real CLI) and `overview()` give the same numbers; the console's per-grid figures, heatmap and worker
load add up to the same totals; windows are Shanghai days and weeks from Monday; a scope keeps to its grids."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from rich.console import Console
from sqlmodel import Session
from typer.testing import CliRunner

from bot.cli import app
from bot.cli.common import console as cli_console
from bot.demo.runner import DemoResult, demo_settings, prepare_dir, run_day, setup_environment
from bot.demo.scenario import scenario_from_dict
from bot.demo.summary import print_summary
from bot.settings import PROJECT_ROOT, Settings
from casestore import actions, feedback
from casestore.db import make_engine, session_scope
from casestore.questions import Outcome, record_question
from casestore.stats import LABELS, category_heatmap, compute, grid_figures, overview, worker_load
from knowledge.service import KnowledgeRuntime
from policies.loader import load_policies
from tests.embedders import HASH_THRESHOLDS, HashEmbedder
from tests.factories import actor
from tests.test_demo import small_scenario
from tests.test_loop_support import FU01_FULL, open_, resident, sla

__all__ = ["sla"]
SHANGHAI = ZoneInfo("Asia/Shanghai")

# demo Figures field -> overview field: the figures both show
SHARED = {"handled_cases": "cases", "response_median_min": "median_response_min",
          "response_p90_min": "p90_response_min", "response_on_time_rate": "on_time_response",
          "resolve_on_time_rate": "on_time_resolution", "escalations": "escalations",
          "escalated_cases": "escalated_cases", "ratings": "ratings", "rating_avg": "satisfaction",
          "rating_response_rate": "rating_response_rate", "reopen_rate": "reopen_rate",
          "duplicates_merged": "duplicates", "refusals": "refusals", "answered_questions": "answered_questions"}


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[DemoResult, Path, datetime]:
    """The demo's simulated morning (real engine, sweep, ratings, a reopen, escalations, duplicates, a hotspot)."""
    out = tmp_path_factory.mktemp("onedef") / "demo"
    prepare_dir(out)
    settings = demo_settings(Settings(_env_file=None, var_dir=PROJECT_ROOT / "var"), out)  # type: ignore[call-arg]
    runtime = KnowledgeRuntime(settings, embedder=HashEmbedder(), thresholds=HASH_THRESHOLDS)
    setup = setup_environment(settings, knowledge=runtime)
    assert setup.missing == []
    scenario = scenario_from_dict(small_scenario())
    result = run_day(setup, out=out, seed=7, scenario=scenario)
    return result, out / "quanbot.db", scenario.fast_forward_end


def _stats_json(db: Path, monkeypatch: pytest.MonkeyPatch, *args: str) -> dict[str, Any]:
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{db}")
    result = CliRunner().invoke(app, ["stats", "--json", *args])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)  # type: ignore[no-any-return]


def test_demo_summary_stats_json_and_overview_agree(demo: tuple[DemoResult, Path, datetime],
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    result, db, now = demo
    fig = result.figures.as_dict()
    out = _stats_json(db, monkeypatch, "--at", now.astimezone(SHANGHAI).isoformat())
    shown = out["overview"]["all"]
    assert shown["cases"] > 5 and shown["ratings"] > 0 and shown["escalations"] > 0 and shown["duplicates"] > 0
    for demo_key, key in SHARED.items():
        assert fig[demo_key] == shown[key], (demo_key, fig[demo_key], shown[key])
    # the per-group table (compute) says the same as the overview's all-time window
    total = out["total"][0]
    for key in ("cases", "median_response_min", "p90_response_min", "on_time_response", "on_time_resolution",
                "satisfaction", "ratings", "rating_response_rate", "reopen_rate", "escalations", "duplicates"):
        assert total[key] == shown[key], key
    # and so does overview() called directly, field for field
    engine = make_engine(f"sqlite:///{db}")
    try:
        with Session(engine) as s:
            direct = json.loads(json.dumps(overview(session=s, now=now, tz=SHANGHAI).to_dict(), ensure_ascii=False))
    finally:
        engine.dispose()
    assert direct == out["overview"]


def test_both_outputs_label_a_figure_the_same_way(demo: tuple[DemoResult, Path, datetime],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    result, db, now = demo
    printed = io.StringIO()
    print_summary(Console(file=printed, width=200), result.figures, load_policies())
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{db}")
    # the CLI's console is made once, at import, with whatever width the run had then: a narrow one wraps labels
    monkeypatch.setattr(cli_console, "width", 200)
    table = CliRunner().invoke(app, ["stats", "--at", now.astimezone(SHANGHAI).isoformat()])
    assert table.exit_code == 0, table.output
    satisfaction = f"{result.figures.rating_avg:.2f}"
    for key in ("satisfaction", "rating_response_rate", "p90_response_min"):
        assert LABELS[key] in printed.getvalue() and LABELS[key] in table.output, key
    assert satisfaction in printed.getvalue() and satisfaction in table.output
    assert "含引起退回的低分" in LABELS["satisfaction"] and "自然时间" in LABELS["p90_response_min"]


def test_the_consoles_breakdowns_add_up_to_the_overview(demo: tuple[DemoResult, Path, datetime]) -> None:
    _, db, now = demo
    engine = make_engine(f"sqlite:///{db}")
    try:
        with Session(engine) as s:
            whole = overview(session=s, now=now).all
            grids = grid_figures(session=s, now=now)
            heat = category_heatmap(session=s, now=now)
            load = worker_load(session=s, now=now)
            fu02 = overview(session=s, now=now, scope={"FU02"}).all
            fu02_load = worker_load(session=s, now=now, scope={"FU02"})
    finally:
        engine.dispose()
    assert sum(g.cases for g in grids) == whole.cases == sum(heat.counts.values())
    assert sum(g.escalations for g in grids) == whole.escalations
    assert sum(g.ratings for g in grids) == whole.ratings
    assert sum(w.resolved for w in load) <= whole.cases and all(w.open >= w.overdue for w in load)
    (fu02_row,) = [g for g in grids if g.key == "FU02"]
    assert (fu02.cases, fu02.satisfaction, fu02.p90_response_min) == (fu02_row.cases, fu02_row.satisfaction,
                                                                      fu02_row.p90_response_min)
    assert 0 < fu02.cases < whole.cases and {w.grid_id for w in fu02_load} == {"FU02"}
    assert heat.to_dict()["cells"] and all(c["count"] > 0 for c in heat.to_dict()["cells"])


@pytest.mark.parametrize("backend", ["engine", "pg_engine"])
def test_windows_are_shanghai_days_and_weeks_from_monday(backend: str, request: pytest.FixtureRequest,  # type: ignore[no-untyped-def]
                                                         policies, sla, clock,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Friday 2026-11-20: a case last Sunday (before the week), one on Monday 00:30 Shanghai (Sunday 16:30 UTC:
    this week), two today; a rating and two questions today (one question long ago); FU02's scope sees none."""
    engine = request.getfixturevalue(backend)  # SQLite, and PostgreSQL where TEST_DATABASE_URL is set
    friday = clock.now()
    who = resident(engine, clock, policies, user=5001)
    codes = []
    reports = (("楼道灯不亮", "3号楼2单元楼道灯坏了"), ("井盖松动", "东门井盖松动了"), ("垃圾没清", "垃圾桶满了两天"),
               ("路灯不亮", "小区北门路灯坏了"))
    for at, (title, description) in zip((datetime(2026, 11, 15, 10, 0, tzinfo=SHANGHAI),
                                         datetime(2026, 11, 16, 0, 30, tzinfo=SHANGHAI),
                                         friday - timedelta(hours=3), friday - timedelta(hours=2)), reports,
                                        strict=True):
        clock.set(at)
        codes.append(open_(engine, policies, sla, clock, who, title=title, description=description).case.code)
    clock.set(friday - timedelta(hours=1))
    with session_scope(engine) as s:
        actions.resolve(session=s, sla=sla, code=codes[0], actor=actor(s, FU01_FULL), clock=clock, note="修好了")
        feedback.rate(session=s, policies=policies, sla=sla, clock=clock, resident_id=who.id, code=codes[0],
                      fixed=True, rating=4)
        record_question(session=s, outcome=Outcome.answered, resident_id=who.id, answer_mode="cited", now=clock.now())
        record_question(session=s, outcome=Outcome.not_found, resident_id=who.id, answer_mode="none",
                        now=clock.now())
        record_question(session=s, outcome=Outcome.answered, resident_id=None, answer_mode="cited",
                        now=friday - timedelta(days=9))
    clock.set(friday)
    with Session(engine) as s:
        o = overview(session=s, now=friday, tz=SHANGHAI)
        scoped = overview(session=s, now=friday, tz=SHANGHAI, scope={"FU02"})
        grid_of_case = {f.key for f in compute(session=s, now=friday)["grid"]}
    assert (o.today.cases, o.week.cases, o.all.cases) == (2, 3, 4)
    assert o.week.start == datetime(2026, 11, 16, 0, 0, tzinfo=SHANGHAI)
    assert (o.today.ratings, o.today.satisfaction) == (1, 4.0)  # the rating was given today, of an older case
    assert (o.today.answered_questions, o.today.refusals, o.all.answered_questions) == (1, 1, 2)
    assert grid_of_case == {"FU01"} and scoped.all.cases == 0 and scoped.all.answered_questions == 0
    monkeypatch.setenv("DATABASE_URL", engine.url.render_as_string(hide_password=False))
    out = CliRunner().invoke(app, ["stats", "--json", "--at", friday.isoformat()])
    assert out.exit_code == 0, out.output
    data = json.loads(out.output)["overview"]
    assert (data["today"]["cases"], data["week"]["cases"], data["all"]["answered_questions"]) == (2, 3, 2)
    assert data["labels"]["refusals"] == LABELS["refusals"]
    bad = CliRunner().invoke(app, ["stats", "--at", "星期五"])
    assert bad.exit_code == 2 and "时间格式不对" in bad.output and "Traceback" not in bad.output


def test_a_window_with_nothing_in_it_has_no_numbers_not_zeros(engine) -> None:  # type: ignore[no-untyped-def]
    with Session(engine) as s:
        o = overview(session=s, now=datetime(2026, 11, 20, 6, 0, tzinfo=UTC))
    assert o.today.cases == 0 and o.today.satisfaction is None and o.today.median_response_min is None
    assert o.today.on_time_response is None and o.to_dict()["windows"]["week"] == "本周（自周一起）"
