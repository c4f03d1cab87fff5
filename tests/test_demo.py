"""`quanbot demo` end to end on a small scenario: the real engine, case store, sweep and dispatch on a fake clock.

The knowledge base uses the tests' hash embedder (tests/embedders.py, no model load); the classifier is the real one,
loaded from the shared model cache under var/models (trained once if missing).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from bot.demo.runner import DemoResult, demo_settings, prepare_dir, run_day, setup_environment
from bot.demo.scenario import DEFAULT_SCENARIO, ScenarioError, expand, scenario_from_dict
from bot.settings import PROJECT_ROOT, Settings
from knowledge.service import KnowledgeRuntime
from tests.embedders import HASH_THRESHOLDS, HashEmbedder


def small_scenario() -> dict[str, Any]:
    """A morning in a few grids: a water outage burst (hotspot), a task the QU05 worker ignores (escalation),
    a duplicate pair, and 40 messages in all; the clock then runs on past the 72 h auto-close."""
    raw = yaml.safe_load(DEFAULT_SCENARIO.read_text(encoding="utf-8"))
    raw.update(day_start="08:00", day_end="12:00", fast_forward_until="2026-11-21 13:00", messages=40,
               fast_forward_sweep_minutes=30)
    raw["residents"] = {**raw["residents"], "count": 16,
                        "grid_weights": {"FU02": 6, "QU05": 3, "QU03": 3, "FU03": 2, "FU01": 2}}
    raw["hourly_profile"] = {8: 3, 9: 3, 10: 2, 11: 2}
    keep = {"water_outage", "ignored_task", "dup_street_light", "elder_lost", "wish_haircut"}
    scripted = [b for b in raw["scripted"] if b["id"] in keep]
    for b in scripted:
        b["at"] = {"water_outage": "09:00", "ignored_task": "08:20", "dup_street_light": "10:30",
                   "elder_lost": "11:10", "wish_haircut": "09:30"}[b["id"]]
        if b["id"] == "water_outage":
            b["count"] = 6
    raw["scripted"] = scripted
    return raw


def _run(tmp: Path, name: str, seed: int) -> DemoResult:
    out = tmp / name
    prepare_dir(out)
    base = Settings(_env_file=None, var_dir=PROJECT_ROOT / "var")  # type: ignore[call-arg]
    settings = demo_settings(base, out)
    # the test's hash embedder: no model load; each run has its own Chroma directory
    runtime = KnowledgeRuntime(settings, embedder=HashEmbedder(), thresholds=HASH_THRESHOLDS)
    setup = setup_environment(settings, knowledge=runtime)
    assert setup.missing == []
    return run_day(setup, out=out, seed=seed, scenario=scenario_from_dict(small_scenario()))


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[DemoResult, DemoResult]:
    tmp = tmp_path_factory.mktemp("demo")
    return _run(tmp, "a", 7), _run(tmp, "b", 7)


def test_small_day_runs_through_the_real_engine(runs: tuple[DemoResult, ...]) -> None:
    result = runs[0]
    fig = result.figures
    assert result.missing == []
    assert result.sim.counters.errors == 0
    assert fig.messages == 40
    assert fig.cases > 5
    assert fig.responded > 0 and fig.response_median_min is not None
    # the water outage burst in FU02 becomes a hotspot
    assert fig.hotspots >= 1 and fig.hotspot_reports >= 5
    # 未诉先办: the scheduler sweep told the hotspot's buildings (one notice per building; their quiet neighbours
    # get it: in this day every FU02 resident of those buildings reported, so it reaches nobody new)
    assert fig.hotspot_notices >= 1
    # the QU05 full-time worker ignores the task: the ladder reaches the street command
    assert fig.escalations >= 2 and fig.street_level_cases >= 1
    # the neighbours' reports of one broken light are merged
    assert fig.duplicates_merged >= 1
    # residents rate; those who never answer are auto-closed after 72 h
    assert fig.ratings > 0 and fig.rating_avg is not None
    assert fig.auto_closed > 0
    # workers pressed buttons through the engine: cases got resolved
    assert fig.resolved > 0
    # two spoken messages: a report read back and confirmed (its case keeps the audio), a 75 s 语音留言
    assert result.sim.counters.voice == 2 and fig.voice_cases == 2 and fig.voice_message_cases == 1
    # the FU01 wish: its wall's volunteers and party members all press 认领心愿, one wins, the resident confirms
    assert fig.wishes["claimed"] >= 1 and fig.wishes["fulfilled"] >= 1, fig.wishes
    assert fig.wishes["median_claim_min"] is not None


def test_on_leave_worker_gets_nothing_and_the_deputy_acts(runs: tuple[DemoResult, ...]) -> None:
    from sqlmodel import Session, select

    from casestore.db import make_engine
    from casestore.models import Case, CaseEvent, Worker

    engine = make_engine(f"sqlite:///{runs[0].report_path.parent / 'quanbot.db'}")
    try:
        with Session(engine) as s:
            fu03 = s.exec(select(Case).where(Case.grid_id == "FU03")).all()
            assert fu03, "the scripted FU03 emergency opened a case"
            workers = {w.id: w for w in s.exec(select(Worker)).all()}
            for case in fu03:
                holder = workers[case.assignee_id]
                assert not holder.on_leave
                assert holder.is_deputy or holder.role != "full_time"
                actors = {e.actor for e in s.exec(select(CaseEvent).where(CaseEvent.case_id == case.id)).all()}
                if case.intent == "wish":  # the 微心愿 wall answers it: a volunteer's or party member's claim
                    assert any(a.startswith("worker:") for a in actors), actors
                    continue
                assert f"worker:{holder.id}" in actors  # the deputy pressed the buttons
    finally:
        engine.dispose()


def test_workers_act_from_the_demo_channel(runs: tuple[DemoResult, ...], policies: Any) -> None:
    """Every worker of grids.yaml holds a demo account with its grids.yaml id (their button presses come from it)."""
    from sqlmodel import Session, col, select

    from casestore.db import make_engine
    from casestore.models import Account

    engine = make_engine(f"sqlite:///{runs[0].report_path.parent / 'quanbot.db'}")
    try:
        with Session(engine) as s:
            demo = s.exec(select(Account).where(col(Account.channel) == "demo", col(Account.worker_id).is_not(None)))
            ids = {a.external_id for a in demo}
    finally:
        engine.dispose()
    assert ids == {str(w.telegram_id) for w in policies.grids.all_staff() if w.telegram_id is not None}


def test_clarify_choice_reads_the_case_intents_of_the_taxonomy(policies: Any) -> None:
    from bot.demo.scenario import Expect, SimMessage
    from bot.demo.simulation import _clarify_choice
    from policies.taxonomy import Intent

    wish = SimMessage(at=datetime(2026, 11, 18, 9, tzinfo=UTC), user_id=1, text="想要个图书角", kind="wish",
                      expect=Expect(intent="wish", category="family_youth", urgency="normal"))
    assert _clarify_choice(wish, policies.taxonomy) == "report"
    narrow = policies.taxonomy.model_copy(update={"case_intents": frozenset({Intent.help, Intent.complaint})})
    assert _clarify_choice(wish, narrow) == "other"


def test_report_is_self_contained(runs: tuple[DemoResult, ...]) -> None:
    page = runs[0].report_path.read_text(encoding="utf-8")
    assert page.startswith("<!doctype html>")
    assert page.count("<svg") == 3
    assert not re.search(r"https?://", page)
    assert "<script" not in page and "<link" not in page
    assert "各网格 SLA 时间线" in page and "随机种子" in page and "{" not in page.split("<style>")[0]
    assert "{info}" not in page and "{grid_rows}" not in page
    assert all(f">{g.key} {g.name}<" in page for g in runs[0].grids)


def test_same_seed_same_figures(runs: tuple[DemoResult, ...], policies: Any) -> None:
    a, b = runs
    assert a.figures.as_dict() == b.figures.as_dict()
    assert a.sim.counters == b.sim.counters
    assert [m.text for m in a.day.messages] == [m.text for m in b.day.messages]
    # a different seed gives a different day (what is compared is not a constant)
    other = expand(scenario_from_dict(small_scenario()), policies.grids, seed=8)
    assert [m.text for m in other.messages] != [m.text for m in a.day.messages]


def test_expansion_is_deterministic_and_realistic(policies: Any) -> None:
    sc = scenario_from_dict(yaml.safe_load(DEFAULT_SCENARIO.read_text(encoding="utf-8")))
    day1 = expand(sc, policies.grids, seed=42)
    day2 = expand(sc, policies.grids, seed=42)
    assert day1.messages == day2.messages and day1.residents == day2.residents
    assert len(day1.residents) == 60 and len(day1.messages) == 300
    assert all(sc.start <= m.at <= sc.end for m in day1.messages if m.kind not in ("status", "feedback"))
    for r in day1.residents:  # every address is inside the resident's grid
        assert policies.grids.grid_for(r.estate, r.building) == r.grid_id
    assert len({r.name for r in day1.residents}) == 60
    outage = [m for m in day1.messages if m.block == "water_outage"]
    assert len(outage) == 8 and all("水" in m.text for m in outage)
    scaled = expand(sc, policies.grids, seed=42, messages=40)
    assert len(scaled.messages) == 40


def test_bad_scenario_is_reported_by_field() -> None:
    raw = small_scenario()
    raw["mix"] = {"gossip": 3}
    with pytest.raises(ScenarioError, match="mix"):
        scenario_from_dict(raw)


def test_refuses_to_wipe_a_foreign_directory(tmp_path: Path) -> None:
    from bot.demo.runner import DemoDirError

    (tmp_path / "precious.txt").write_text("x")
    with pytest.raises(DemoDirError):
        prepare_dir(tmp_path)
    assert (tmp_path / "precious.txt").exists()
