"""评测 in the console: a suite run as a background job (the CLI in a subprocess, so the product never imports
evals), its report in the history with Chinese labels, and a second run diffed against the first."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine

from bot.services import Services
from bot.settings import Settings
from bot.web.routes.evals import SUITES, figure_label, registered_suites, suite_label
from casestore.clock import FakeClock
from policies.models import Policies
from tests.test_web_knowledge import wait_job
from tests.web_support import console_server, login, make_admin


@pytest.fixture
def base(settings: Settings, engine: Engine, policies: Policies, clock: FakeClock) -> Iterator[str]:
    services = Services(settings, clock=clock, engine=engine, policies=policies)
    make_admin(engine, "street_chief")
    make_admin(engine, "fu_admin", scope="community:furong")
    with console_server(services, run_jobs=True) as url:
        yield url


def test_the_console_offers_the_suites_of_the_eval_registry(tmp_path: Path) -> None:
    """The suite list is evals.runner's own (read, not imported), each with a Chinese label; no evals, no suites."""
    from evals.runner import SUITE_ORDER

    assert (*SUITE_ORDER, "all") == SUITES
    assert all(suite_label(name) != name for name in SUITES), "every registered suite needs a Chinese label"
    assert registered_suites(tmp_path / "missing.py") == ()
    grown = tmp_path / "runner.py"
    grown.write_text('SUITE_ORDER = ("classification", "wishes")\n', encoding="utf-8")
    assert registered_suites(grown) == ("classification", "wishes", "all")


def test_figure_labels_are_chinese(policies: Policies) -> None:
    assert figure_label("category.per_class.elderly_disabled.f1", policies.taxonomy) == "类别 · 各类 · 为老助残 · F1"
    assert figure_label("gated_hit", policies.taxonomy) == "复核命中率"


def test_an_eval_run_is_a_job_with_a_chinese_report_and_a_diff(base: str, settings: Settings) -> None:
    street = login(base, "street_chief")
    assert login(base, "fu_admin").post("/api/evals/runs", json={"suite": "reviewed"}).status_code == 403
    bad = street.post("/api/evals/runs", json={"suite": "nope"})
    assert bad.status_code == 400 and "没有评测套件" in bad.json()["detail"]
    first = street.post("/api/evals/runs", json={"suite": "reviewed"})
    assert first.status_code == 202, first.text
    job = wait_job(street, first.json()["id"], timeout=120)
    assert job["state"] == "done", job
    assert (settings.var_dir / "reports" / f"console-{job['id']}" / "report.json").is_file()
    history = street.get("/evals").text
    assert "复核回归" in history and "复核命中率" in history
    report = street.get(f"/evals/{job['id']}").text
    assert "门禁通过" in report and "第一次运行" in report
    second = wait_job(street, street.post("/api/evals/runs", json={"suite": "reviewed"}).json()["id"], timeout=120)
    assert second["state"] == "done", second
    view = street.get(f"/api/evals/runs/{second['id']}").json()
    assert view["diff"] is not None and view["diff"]["unchanged"] >= 1
    assert f"评测 #{job['id']}" in street.get(f"/evals/{second['id']}").text
