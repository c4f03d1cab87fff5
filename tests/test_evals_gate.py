"""The CI gate: every eval suite in quick mode (fixed seeds, small subsets, offline) must meet
evals/thresholds.yaml. Only a suite that needs a third-party module which is not installed is skipped, with the
reason; an import or attribute error in our own packages fails here (evals.runner), so a refactor cannot quietly
switch a gate off. Models and indexes are cached under var/test-cache between runs."""

from __future__ import annotations

import pytest

from bot.settings import PROJECT_ROOT, Settings
from evals import runner
from evals.core import EvalContext

CACHE = PROJECT_ROOT / "var" / "test-cache"


@pytest.fixture(scope="module")
def gate_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    tmp = tmp_path_factory.mktemp("gate")
    return Settings(_env_file=None, database_url=f"sqlite:///{tmp / 'unused.db'}",  # type: ignore[call-arg]
                    var_dir=CACHE, chroma_dir=CACHE / "chroma")


@pytest.fixture(scope="module")
def thresholds() -> dict[str, list[runner.Threshold]]:
    return runner.load_thresholds()


@pytest.mark.timeout(600)
@pytest.mark.parametrize("suite", runner.SUITE_ORDER)
def test_suite_meets_its_thresholds(suite: str, gate_settings: Settings,
                                    thresholds: dict[str, list[runner.Threshold]]) -> None:
    run = runner.run_suite(suite, EvalContext(settings=gate_settings, mode="offline", quick=True), thresholds)
    if run.status == "unavailable":
        pytest.skip(f"{suite}: {run.reason}")
    assert run.status == "ok", f"{suite} could not run: {run.reason}"
    assert not run.problems, f"{suite}: malformed data lines: {run.problems}"
    assert run.checks, f"{suite} has no gated figures in thresholds.yaml"
    missed = [f"{c['figure']} = {c['value']} (needs {c['op']} {c['threshold']})" for c in run.checks if not c["passed"]]
    examples = [str(f)[:300] for f in run.failures[:5]]
    assert not missed, f"{suite} below threshold: {missed}; failing examples: {examples}"
