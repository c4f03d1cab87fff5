"""The eval runner, report writer and `quanbot eval` command, on tiny synthetic suites (no product suites run)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bot.cli import app
from evals import runner
from evals.core import DataProblem, EvalContext, SuiteResult, read_jsonl
from evals.fixtures import read_yaml_cases
from evals.report import render_html, write_report


def _synthetic(score: float) -> runner.SuiteFn:
    def run(ctx: EvalContext) -> SuiteResult:
        problems: list[DataProblem] = []
        rows = list(read_jsonl(ctx.data, ("text",), problems)) if ctx.data else []
        return SuiteResult(name="synthetic", figures={"n": len(rows), "score": score, "axis": {"f1": 0.5}},
                           headline={"score": score}, problems=problems,
                           failures=[{"id": "c1", "input": "电话13812345678的那件事"}] if score < 0.9 else [])
    return run


@pytest.fixture
def synthetic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    th = tmp_path / "thresholds.yaml"
    th.write_text("synthetic:\n  score: {min: 0.9}\n  axis_f1: {min: 0.4}\n", encoding="utf-8")
    monkeypatch.setattr(runner, "THRESHOLDS_PATH", th)
    runner.register_suite("synthetic", _synthetic(0.95))
    yield th
    runner.unregister_suite("synthetic")


def test_malformed_jsonl_lines_are_reported_by_file_and_line_and_the_rest_runs(tmp_path: Path) -> None:
    data = tmp_path / "cases.jsonl"
    data.write_text('{"text": "一"}\nnot json\n{"other": 1}\n[1]\n{"text": "二"}\n', encoding="utf-8")
    problems: list[DataProblem] = []
    rows = list(read_jsonl(data, ("text",), problems))
    assert [n for n, _ in rows] == [1, 5]
    assert [(p.file, p.line) for p in problems] == [("cases.jsonl", 2), ("cases.jsonl", 3), ("cases.jsonl", 4)]


def test_malformed_yaml_items_and_files_are_reported_by_line(tmp_path: Path) -> None:
    good = tmp_path / "s.yaml"
    good.write_text("cases:\n  - id: a\n    text: x\n  - id: b\n  - 5\n  - id: c\n    text: y\n", encoding="utf-8")
    problems: list[DataProblem] = []
    items = read_yaml_cases(good, "cases", ("id", "text"), problems)
    assert [(line, i["id"]) for line, i in items] == [(2, "a"), (6, "c")]
    assert [(p.line, p.message) for p in problems] == [(4, "missing text"), (5, "not a mapping")]
    bad = tmp_path / "bad.yaml"
    bad.write_text("cases:\n  - id: a\n    text: [unclosed\n", encoding="utf-8")
    problems = []
    assert read_yaml_cases(bad, "cases", ("id",), problems) == []
    assert problems and problems[0].file == "bad.yaml" and problems[0].line >= 3


def test_thresholds_pass_fail_and_missing_figures(synthetic: Path) -> None:
    th = runner.load_thresholds()
    ok = runner.run_suite("synthetic", EvalContext(settings=None), th)
    assert ok.status == "ok" and not ok.gate_failed
    assert {c["figure"]: c["passed"] for c in ok.checks} == {"score": True, "axis_f1": True}
    runner.register_suite("synthetic", _synthetic(0.5))
    bad = runner.run_suite("synthetic", EvalContext(settings=None), th)
    assert bad.gate_failed and [c["figure"] for c in bad.checks if not c["passed"]] == ["score"]
    missing = runner.check_thresholds({"headline": {}, "figures": {}}, th["synthetic"])
    assert not any(c["passed"] for c in missing)


def test_the_real_thresholds_file_parses_and_covers_every_suite() -> None:
    th = runner.load_thresholds()
    assert set(runner.SUITE_ORDER) <= set(th)
    safety = {t.figure: t for t in th["safety"]}
    assert safety["pii_leaks"].op == "<=" and safety["pii_leaks"].value == 0


def _suite_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, source: str) -> str:
    """A suite module on sys.path (a file, so its imports run the way the real suites' do)."""
    (tmp_path / f"{name}.py").write_text(source, encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    return name


@pytest.fixture
def registered() -> Iterator[list[str]]:
    names: list[str] = []
    yield names
    for name in names:
        runner.unregister_suite(name)


def _register(registered: list[str], name: str, suite: str | runner.SuiteFn) -> None:
    runner.register_suite(name, suite)
    registered.append(name)


RUN = "def run(ctx):\n    raise AssertionError('unreachable')\n"


def test_a_missing_third_party_module_is_unavailable_with_its_name(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, registered: list[str]) -> None:
    _register(registered, "optional", _suite_module(tmp_path, monkeypatch, "suite_optional",
                                                    "import quanbot_absent_vendor_lib\n" + RUN))

    def imports_when_run(ctx: EvalContext) -> SuiteResult:
        import quanbot_absent_vendor_lib_2  # type: ignore[import-not-found]  # noqa: F401

        raise AssertionError("unreachable")

    _register(registered, "optional_at_run", imports_when_run)
    for name, missing in (("optional", "quanbot_absent_vendor_lib"),
                          ("optional_at_run", "quanbot_absent_vendor_lib_2")):
        run = runner.run_suite(name, EvalContext(settings=None))
        assert run.status == "unavailable" and not run.gate_failed, run
        assert run.reason == f"not available: {missing} is not installed"


@pytest.mark.parametrize("source, error", [
    ("from bot.understanding.training import no_such_name\n", "ImportError"),  # a name our module lost
    ("import bot.no_such_module\n", "ModuleNotFoundError"),  # a module of ours that moved
    ("import evals.suites.no_such_suite_helper\n", "ModuleNotFoundError"),
    ("import casestore.db\nX = casestore.db.no_such_function\n", "AttributeError"),
])
def test_an_import_failure_in_our_own_packages_fails_the_gate(
        source: str, error: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, registered: list[str]) -> None:
    _register(registered, "broken", _suite_module(tmp_path, monkeypatch, f"suite_broken_{error.lower()}",
                                                  source + RUN))
    run = runner.run_suite("broken", EvalContext(settings=None))
    assert run.status == "error" and run.gate_failed and run.reason.startswith(f"{error}:"), run
    doc = runner.run_all(["broken"], settings=None, modes=["offline"], thresholds={})
    assert not doc["gate"]["passed"] and doc["gate"]["failures"][0]["suite"] == "broken"


def test_quanbot_eval_exits_non_zero_when_a_suite_cannot_import_our_code(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, registered: list[str]) -> None:
    _register(registered, "broken", _suite_module(tmp_path, monkeypatch, "suite_broken_cli",
                                                  "from bot.dialogue import no_such_handler\n" + RUN))
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'unused.db'}")
    res = CliRunner().invoke(app, ["eval", "broken", "--out", str(tmp_path / "r")])
    assert res.exit_code == 1, res.output
    assert "ImportError" in res.output and "no_such_handler" in res.output


def test_a_crashing_suite_is_a_failure(registered: list[str]) -> None:
    def crashes(ctx: EvalContext) -> SuiteResult:
        raise RuntimeError("boom")

    _register(registered, "crash", crashes)
    c = runner.run_suite("crash", EvalContext(settings=None))
    assert c.status == "error" and c.gate_failed and c.reason == "RuntimeError: boom"


def test_baseline_diff_shows_every_change_and_new_failures(synthetic: Path) -> None:
    before = runner.run_all(["synthetic"], settings=None, modes=["offline"])
    runner.register_suite("synthetic", _synthetic(0.5))
    after = runner.run_all(["synthetic"], settings=None, modes=["offline"])
    diff = runner.diff_baseline(after, before)
    score = next(c for c in diff["changes"] if c["figure"] == "score")
    assert (score["before"], score["after"], score["change"]) == (0.95, 0.5, -0.45)
    assert [f["figure"] for f in diff["new_gate_failures"]] == ["score"]
    assert [f["case"]["id"] for f in diff["new_failing_cases"]] == ["c1"]
    assert not after["gate"]["passed"] and before["gate"]["passed"]


def test_cli_exit_code_json_and_reports(synthetic: Path, tmp_path: Path, settings) -> None:  # type: ignore[no-untyped-def]
    data = tmp_path / "d.jsonl"
    data.write_text('{"text": "a"}\n{oops\n', encoding="utf-8")
    cli = CliRunner()
    out = tmp_path / "r1"
    res = cli.invoke(app, ["eval", "synthetic", "--json", "--out", str(out), "--data", str(data)])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout) == {"n": 1, "score": 0.95, "axis": {"f1": 0.5}}  # stdout: the figures only
    assert "d.jsonl:2" in res.stderr and "report.html" in res.stderr
    doc = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert doc["runs"]["offline"]["synthetic"]["problems"][0]["line"] == 2

    runner.register_suite("synthetic", _synthetic(0.5))
    res2 = cli.invoke(app, ["eval", "synthetic", "--out", str(tmp_path / "r2"), "--baseline", str(out / "report.json")])
    assert res2.exit_code == 1
    assert "score" in res2.stdout and "0.950" in res2.stdout and "-0.45" in res2.stdout
    html = (tmp_path / "r2" / "report.html").read_text(encoding="utf-8")
    assert "13812345678" not in html and "138****5678" in html  # failing inputs are masked
    assert "13812345678" not in (tmp_path / "r2" / "report.json").read_text(encoding="utf-8")


def test_mode_both_without_llm_says_llm_is_not_configured(synthetic: Path, settings) -> None:  # type: ignore[no-untyped-def]
    doc = runner.run_all(["synthetic"], settings=settings, modes=["offline", "llm"])
    assert doc["modes"] == ["offline"] and "llm mode is not configured" in doc["notes"][0]


def test_report_html_is_self_contained_with_charts(tmp_path: Path) -> None:
    figures = {"intent": {"macro_f1": 0.9, "per_class": {"help": {"f1": 0.9}, "inquiry": {"f1": 0.8}},
                          "confusion": {"labels": ["help", "inquiry"], "matrix": [[9, 1], [2, 8]]}}}
    doc = {"created_at": "2026-11-20T10:00:00+00:00", "modes": ["offline"], "duration_s": 1.0, "notes": [],
           "gate": {"passed": True, "failures": []},
           "runs": {"offline": {
               "classification": {"status": "ok", "reason": "", "figures": figures, "headline": {}, "checks": [],
                                  "failures": [], "problems": [], "extra": {}, "duration_s": 1.0},
               "retrieval": {"status": "ok", "reason": "", "figures": {"hit_at_1": 0.8}, "headline": {}, "checks": [],
                             "failures": [], "problems": [], "duration_s": 1.0,
                             "extra": {"hit_at_k": {"1": 0.8, "3": 0.9, "5": 0.95}}},
               "dialogue": {"status": "ok", "reason": "", "figures": {"pass_rate": 1.0}, "headline": {}, "checks": [],
                            "failures": [], "problems": [], "duration_s": 1.0,
                            "extra": {"timeline": [{"scenario": "s1", "passed": True, "events": [
                                {"kind": "opened", "minute": 0}, {"kind": "reminder", "minute": 48},
                                {"kind": "escalation", "minute": 60}]}]}}}}}
    _, html_path = write_report(doc, tmp_path)
    html = html_path.read_text(encoding="utf-8")
    for svg_id in ("confusion-intent", "per-class-intent", "hit-at-k", "sla-timeline"):
        assert f"<svg id='{svg_id}'" in html
    assert not re.search(r"(src|href)\s*=\s*['\"]?\s*(https?:)?//", html)
    assert "http://" not in html and "https://" not in html and "@import" not in html
    assert render_html(doc) == html


def test_cli_llm_mode_without_llm_measures_nothing_and_says_so(synthetic: Path, tmp_path: Path) -> None:
    res = CliRunner().invoke(app, ["eval", "synthetic", "--mode", "llm", "--out", str(tmp_path / "r")])
    assert res.exit_code == 2
    assert "llm mode is not configured" in res.stderr


def test_the_classification_approaches_reach_the_suite_and_the_report_names_them(
        registered: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[str, ...]] = []

    def classification(ctx: EvalContext) -> SuiteResult:
        seen.append(ctx.approaches)
        return SuiteResult(name="classification", figures={})

    _register(registered, "classification", classification)
    doc = runner.run_all(["classification"], settings=None, modes=["offline"], thresholds={})
    assert seen == [()]
    assert "--approaches tfidf,embed,ensemble" in doc["notes"][0]
    doc = runner.run_all(["classification"], settings=None, modes=["offline"], thresholds={},
                         approaches=("embed", "ensemble"))
    assert seen[-1] == ("embed", "ensemble") and "embed, ensemble" in doc["notes"][0]
    assert not runner.run_all(["classification"], settings=None, modes=["offline"], thresholds={},
                              quick=True)["notes"]  # the quick gate compares nothing

    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'unused.db'}")
    (tmp_path / "thresholds.yaml").write_text("{}\n", encoding="utf-8")  # the stub has no figures to gate
    monkeypatch.setattr(runner, "THRESHOLDS_PATH", tmp_path / "thresholds.yaml")
    cli = CliRunner()
    res = cli.invoke(app, ["eval", "classification", "--approaches", "embed,bogus", "--out", str(tmp_path / "r")])
    assert res.exit_code == 2 and "bogus" in res.stderr
    res = cli.invoke(app, ["eval", "classification", "--approaches", "tfidf, embed", "--out", str(tmp_path / "r")])
    assert res.exit_code == 0, res.output
    assert seen[-1] == ("tfidf", "embed")
    assert "tfidf, embed" in (tmp_path / "r" / "report.html").read_text(encoding="utf-8")
    res = cli.invoke(app, ["eval", "classification", "--approaches", "window", "--out", str(tmp_path / "r")])
    assert res.exit_code == 0, res.output  # retrieval's arm is a known name, and no classifier approach
    assert seen[-1] == ("window",) and "--approaches tfidf,embed,ensemble" in (
        tmp_path / "r" / "report.html").read_text(encoding="utf-8")
