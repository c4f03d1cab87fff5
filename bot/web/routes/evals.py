"""评测: run an eval suite as a background job, the history of runs, each report with Chinese labels, and the
change since the previous run of the same suite.

Owns: the 评测 pages, `/api/evals/*`, the `eval` job and the Chinese label table for suites, figures and classes
(class names come from policies' taxonomy). The job runs `python -m bot.cli eval <suite> --out <dir>` as a
subprocess (the product never imports `evals`, and the web process never loads the suites' models), with the
previous run's report as `--baseline`, so the figure-by-figure diff is the eval runner's own. A slim copy of
each report (figures, checks, failures capped, the baseline diff) is kept in the Job row's result: replicas
share the database, not the disk; the full report.json/html stay under VAR_DIR/reports/console-<job id>/.
Scope: every console account may read the reports; only street accounts start a run.
Must not: import evals, score anything or decide pass/fail (the CLI's report says so).
"""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import BaseModel, Field, SecretStr
from sqlmodel import Session

from bot.settings import PROJECT_ROOT
from bot.web.jobs import JobContext, JobFailed, job_runner
from bot.web.render import page
from bot.web.routes.jobs import JobPublic, job_public
from bot.web.security import DbDep, RowId, Staff, StaffDep
from casestore.db import session_scope
from casestore.errors import DomainError, NotFound, PermissionDenied
from casestore.jobs import enqueue_job, list_jobs
from casestore.models import Job, JobState
from policies.models import Taxonomy

NAV = ("/evals", "评测")
api = APIRouter(tags=["评测"])
pages = APIRouter()

RUNNER = PROJECT_ROOT / "evals" / "runner.py"


def registered_suites(runner: Path = RUNNER) -> tuple[str, ...]:
    """The suites `quanbot eval` knows, read from the registry's own list (evals/runner.py SUITE_ORDER) without
    importing it (the product never imports evals), then "all"; none when the evals are not installed."""
    try:
        tree = ast.parse(runner.read_text(encoding="utf-8"))
    except (OSError, SyntaxError):
        return ()
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "SUITE_ORDER"
                                                for t in node.targets):
            return (*(str(n) for n in ast.literal_eval(node.value)), "all")
    return ()


SUITES = registered_suites()
SUITE_LABELS = {"classification": "消息分类", "retrieval": "知识检索", "answers": "知识回答", "routing": "工单分派",
                "dialogue": "对话闭环", "safety": "安全", "reviewed": "复核回归", "all": "全部套件"}
MODE_LABELS = {"offline": "离线", "llm": "大模型"}
STATUS_LABELS = {"ok": "完成", "unavailable": "不可用", "error": "出错"}
# figure names and the words of nested figure paths ("category.per_class.elderly_disabled.f1")
FIGURE_LABELS = {
    "accuracy": "准确率", "macro_f1": "宏平均 F1", "f1": "F1", "precision": "精确率", "recall": "召回率",
    "support": "样本数", "n": "样本数", "per_class": "各类", "confusion": "混淆矩阵",
    "intent": "意图", "category": "类别", "urgency": "紧急程度", "emergency": "紧急",
    "intent_macro_f1": "意图宏平均 F1", "category_macro_f1": "类别宏平均 F1", "urgency_macro_f1": "紧急程度宏平均 F1",
    "emergency_recall": "紧急召回率", "emergency_precision": "紧急精确率", "urgent_recall": "加急召回率",
    "staff_recall": "投诉工作人员召回率", "staff_n": "投诉工作人员样本数",
    "hit_at_1": "首位命中率", "hit_at_5": "前五命中率", "hit_at_k": "前 k 命中率", "mrr": "平均倒数排名",
    "no_answer_precision": "拒答精确率", "no_answer_recall": "拒答召回率", "no_answer_f1": "拒答 F1",
    "n_answerable": "可回答题数", "n_unanswerable": "不可回答题数", "n_no_answer": "无答案题数",
    "outcomes": "回答结果", "right_or_clarify_right": "答对或正确澄清", "wrong": "答错文档",
    "right_minus_plain_first": "比基线首位多答对", "first_right": "首位即对", "clarify_share": "澄清占比",
    "top3_right": "前三答对", "baseline": "基线", "plain": "朴素基线",
    "fact_recall": "要点召回率", "citation_correctness": "引用正确率", "refusal_correctness": "拒答正确率",
    "faithfulness": "忠实度", "fact_recall_first": "首段要点召回率", "full_fact_recall_rate": "要点全中比例",
    "false_refusal_rate": "误拒答率", "unsupported_sentences": "无依据句数", "answer_modes": "回答方式",
    "latency_ms_p50": "延迟中位（毫秒）", "latency_ms_p95": "延迟 P95（毫秒）", "ms_per_message": "每条耗时（毫秒）",
    "role_accuracy": "岗位准确率", "grid_accuracy": "网格准确率", "urgency_accuracy": "紧急程度准确率",
    "deadline_accuracy": "时限准确率", "pass_rate": "通过率", "pass_rate_by_category": "各类通过率",
    "pii_leaks": "个人信息泄露", "pii_leaks_by_source": "个人信息泄露（按来源）", "pii_checked": "检查的文本数",
    "quarantine_false_positives": "误隔离段数", "quarantined_passages": "隔离段数",
    "hits": "命中数", "hit": "命中率", "gated": "已纳入门禁", "gated_hit": "复核命中率", "by_resolution": "按修正方式",
    "faq": "常见问题", "scope": "范围示例", "lexicon": "词表", "seconds": "用时（秒）", "share": "占比",
    "satisfaction": "满意度", "reopen_count": "重办次数", "scenarios": "场景", "passed": "通过", "failed": "失败",
}
MAX_FAILURES_KEPT = 50
RUN_TIMEOUT_S = 60 * 60
SUITE_LINE = re.compile(r"^[✓✗–] (\w+) \[(\w+)\]")


def figure_label(path: str, taxonomy: Taxonomy) -> str:
    """"category.per_class.elderly_disabled.f1" → "类别 · 各类 · 为老助残 · F1" (unknown words stay as they are)."""
    words = []
    for part in path.split("."):
        label = FIGURE_LABELS.get(part)
        if label is None:
            named = taxonomy.name_of(part)
            label = named if named != part else part.replace("_", " ")
        words.append(label)
    return " · ".join(words)


def suite_label(name: str) -> str:
    return SUITE_LABELS.get(name, name)


# ---------------- the job ----------------
def _env_of(settings: Any) -> dict[str, str]:
    """The web process's settings as environment variables, so the CLI subprocess sees the same configuration."""
    env = dict(os.environ)
    for name in type(settings).model_fields:
        value = getattr(settings, name)
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        elif isinstance(value, list):
            value = ",".join(str(v) for v in value)
        env[name.upper()] = str(value)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def slim_report(doc: dict[str, Any]) -> dict[str, Any]:
    """What the Job row keeps of a report.json: no chart data, at most MAX_FAILURES_KEPT failing cases a suite."""
    runs: dict[str, dict[str, Any]] = {}
    for mode, suites in (doc.get("runs") or {}).items():
        runs[mode] = {}
        for name, run in suites.items():
            failures = list(run.get("failures") or [])
            runs[mode][name] = {k: run.get(k) for k in ("name", "mode", "status", "reason", "duration_s", "figures",
                                                        "headline", "checks", "gate_failed")}
            runs[mode][name] |= {"failures": failures[:MAX_FAILURES_KEPT], "failure_count": len(failures),
                                 "problem_count": len(run.get("problems") or [])}
    baseline = doc.get("baseline")
    if isinstance(baseline, dict):
        baseline = dict(baseline)
        baseline["new_failing_cases"] = list(baseline.get("new_failing_cases") or [])[:MAX_FAILURES_KEPT]
    return {k: doc.get(k) for k in ("created_at", "quick", "modes", "suites", "duration_s", "notes", "gate")} | {
        "runs": runs, "baseline": baseline}


def previous_run(session: Session, suite: str, before_id: int) -> Job | None:
    """The newest finished run of `suite` with a report, older than job `before_id`."""
    for job in list_jobs(session=session, kind="eval", limit=200):
        if (job.id or 0) < before_id and job.state == JobState.done.value and job.params.get("suite") == suite \
                and job.result.get("report"):
            return job
    return None


@job_runner("eval")
def run_eval(ctx: JobContext) -> dict[str, Any]:
    """`quanbot eval <suite>` in a subprocess; progress from the suite lines it prints; the report kept."""
    settings = ctx.services.settings
    suite = str(ctx.params.get("suite", ""))
    if suite not in SUITES:
        raise JobFailed(f"未知评测套件 {suite}。")
    quick = bool(ctx.params.get("quick", False))
    out_dir = Path(settings.var_dir) / "reports" / f"console-{ctx.job_id}"
    total = len(SUITES) - 1 if suite == "all" else 1
    with session_scope(ctx.services.engine) as session:
        prev = previous_run(session, suite, ctx.job_id)
        prev_id = prev.id if prev is not None else None
        prev_report = dict(prev.result["report"]) if prev is not None else None
        prev_dir = str(prev.result.get("report_dir", "")) if prev is not None else ""
    args = [sys.executable, "-m", "bot.cli", "eval", suite, "--mode", "offline", "--out", str(out_dir)]
    if quick:
        args.append("--quick")
    with tempfile.TemporaryDirectory(prefix="quanbot-eval-") as tmp:
        if prev_report is not None:
            full = Path(prev_dir) / "report.json"
            baseline = full if full.is_file() else Path(tmp) / "baseline.json"
            if baseline != full:
                baseline.write_text(json.dumps(prev_report, ensure_ascii=False), encoding="utf-8")
            args += ["--baseline", str(baseline)]
        err_path = Path(tmp) / "stderr.txt"
        started = time.monotonic()
        with err_path.open("wb") as err, open(os.devnull, "wb") as devnull:
            proc = subprocess.Popen(args, cwd=PROJECT_ROOT, env=_env_of(settings), stdout=devnull, stderr=err)
            last_report = 0.0
            while proc.poll() is None:
                elapsed = time.monotonic() - started
                if elapsed > RUN_TIMEOUT_S:
                    proc.kill()
                    proc.wait()
                    raise JobFailed(f"评测超过 {RUN_TIMEOUT_S // 60} 分钟没有结束，已停止。")
                if elapsed - last_report >= 2:
                    done = _suites_done(err_path)
                    ctx.progress(min(0.95, 0.02 + 0.93 * len(done) / total),
                                 f"已完成 {len(done)}/{total} 个套件，用时 {elapsed:.0f} 秒")
                    last_report = elapsed
                time.sleep(0.3)
        lines = err_path.read_text(encoding="utf-8", errors="replace").splitlines()
    report_path = out_dir / "report.json"
    if not report_path.is_file():
        reason = next((ln.strip() for ln in reversed(lines) if ln.strip()), "没有输出")
        raise JobFailed(f"评测没有完成（退出码 {proc.returncode}）：{reason[:200]}")
    doc = json.loads(report_path.read_text(encoding="utf-8"))
    return {"suite": suite, "quick": quick, "exit_code": proc.returncode, "passed": bool(doc["gate"]["passed"]),
            "report_dir": str(out_dir), "baseline_job": prev_id, "report": slim_report(doc)}


def _suites_done(err_path: Path) -> list[str]:
    try:
        text = err_path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return []
    return [m.group(1) for m in (SUITE_LINE.match(line) for line in text.splitlines()) if m]


# ---------------- views of a report ----------------
class RunSummary(BaseModel):
    job: JobPublic
    suite: str
    suite_label: str
    quick: bool
    passed: bool | None
    figures: list[dict[str, Any]]  # the gated checks: figure, label, value, op, threshold, passed


class StartRun(BaseModel):
    suite: str = Field(max_length=40)
    quick: bool = False


def _checks(report: dict[str, Any], taxonomy: Taxonomy) -> list[dict[str, Any]]:
    rows = []
    for mode, suites in (report.get("runs") or {}).items():
        for name, run in suites.items():
            for c in run.get("checks") or []:
                rows.append({"mode": mode, "mode_label": MODE_LABELS.get(mode, mode), "suite": name,
                             "suite_label": suite_label(name), "figure": c["figure"],
                             "label": figure_label(c["figure"], taxonomy), "value": c["value"], "op": c["op"],
                             "threshold": c["threshold"], "passed": c["passed"]})
    return rows


def _summary(job: Job, taxonomy: Taxonomy) -> RunSummary:
    report = job.result.get("report") or {}
    suite = str(job.params.get("suite", ""))
    return RunSummary(job=job_public(job, with_result=False), suite=suite, suite_label=suite_label(suite),
                      quick=bool(job.params.get("quick")), passed=job.result.get("passed") if report else None,
                      figures=_checks(report, taxonomy))


def _changes(report: dict[str, Any], taxonomy: Taxonomy) -> dict[str, Any] | None:
    """The baseline diff for display: changed figures (gated first), counts of unchanged and new/removed."""
    diff = report.get("baseline")
    if not diff:
        return None
    gated = {(r["mode"], r["suite"], r["figure"]): r["op"] for r in _checks(report, taxonomy)}
    rows, unchanged, added = [], 0, 0
    for c in diff.get("changes") or []:
        if c["change"] is None:
            added += 1
            continue
        if c["change"] == 0:
            unchanged += 1
            continue
        op = gated.get((c["mode"], c["suite"], c["figure"]))
        better = None if op is None else (c["change"] > 0) == (op == ">=")
        rows.append({"suite_label": suite_label(c["suite"]), "mode_label": MODE_LABELS.get(c["mode"], c["mode"]),
                     "figure": c["figure"], "label": figure_label(c["figure"], taxonomy), "before": c["before"],
                     "after": c["after"], "change": c["change"], "up": c["change"] > 0, "gated": op is not None,
                     "better": better})
    rows.sort(key=lambda r: (not r["gated"], r["suite_label"], r["figure"]))
    new_failures = [dict(f, label=figure_label(f["figure"], taxonomy), suite_label=suite_label(f["suite"]))
                    for f in diff.get("new_gate_failures") or []]
    return {"baseline_created_at": _parse_time(diff.get("baseline_created_at")), "rows": rows,
            "unchanged": unchanged, "added_or_removed": added, "new_gate_failures": new_failures,
            "new_failing_cases": len(diff.get("new_failing_cases") or [])}


def _parse_time(value: Any) -> datetime | None:
    try:
        return datetime.fromisoformat(str(value)) if value else None
    except ValueError:
        return None


def _report_view(job: Job, taxonomy: Taxonomy) -> dict[str, Any]:
    report = job.result.get("report") or {}
    suites = []
    for mode, runs in (report.get("runs") or {}).items():
        for name, run in runs.items():
            headline = [{"figure": k, "label": figure_label(k, taxonomy), "value": v}
                        for k, v in (run.get("headline") or {}).items()]
            failures = [json.dumps(f, ensure_ascii=False)[:300] for f in (run.get("failures") or [])[:20]]
            suites.append({"name": name, "label": suite_label(name), "mode_label": MODE_LABELS.get(mode, mode),
                           "status_label": STATUS_LABELS.get(run.get("status", ""), run.get("status", "")),
                           "status": run.get("status"), "reason": run.get("reason") or "",
                           "duration_s": run.get("duration_s"), "gate_failed": run.get("gate_failed"),
                           "headline": headline, "failure_count": run.get("failure_count", 0),
                           "failures": failures})
    return {"created_at": _parse_time(report.get("created_at")), "duration_s": report.get("duration_s"),
            "notes": report.get("notes") or [], "passed": (report.get("gate") or {}).get("passed"),
            "checks": _checks(report, taxonomy), "suites": suites, "diff": _changes(report, taxonomy)}


def _taxonomy(request: Request) -> Taxonomy:
    return request.app.state.services.policies.taxonomy  # type: ignore[no-any-return]


def _start(request: Request, staff: Staff, session: Session, suite: str, quick: bool) -> Job:
    if not staff.scope.is_street:
        raise PermissionDenied("eval: street only", "只有街道账号可以运行评测。")
    if suite not in SUITES:
        raise DomainError(f"unknown suite {suite}", f"没有评测套件 {suite}。可选：{'、'.join(SUITES)}。")
    return enqueue_job(session=session, kind="eval", params={"suite": suite, "quick": quick}, actor=staff.actor,
                       now=request.app.state.services.clock.now())


def _eval_job(session: Session, job_id: int) -> Job:
    """Reports are readable by every account (they hold no case data), whoever started the run."""
    job = session.get(Job, job_id)
    if job is None or job.kind != "eval":
        raise NotFound(f"eval {job_id} not found", "没有这次评测。")
    return job


# ---------------- API ----------------
@api.get("/evals/suites", summary="可运行的评测套件（中文名）")
def suites_api(_staff: StaffDep) -> dict[str, str]:
    return {name: suite_label(name) for name in SUITES}


@api.post("/evals/runs", response_model=JobPublic, status_code=202, summary="在后台运行一个评测套件")
def start_api(request: Request, staff: StaffDep, session: DbDep, body: StartRun) -> JobPublic:
    return job_public(_start(request, staff, session, body.suite, body.quick))


@api.get("/evals/runs", response_model=list[RunSummary], summary="评测历史（最新在前）")
def runs_api(request: Request, _staff: StaffDep, session: DbDep) -> list[RunSummary]:
    taxonomy = _taxonomy(request)
    return [_summary(j, taxonomy) for j in list_jobs(session=session, kind="eval", limit=100)]


@api.get("/evals/runs/{job_id}", summary="一次评测的报告（中文标签）与基线对比")
def run_api(request: Request, staff: StaffDep, session: DbDep, job_id: RowId) -> dict[str, Any]:
    job = _eval_job(session, job_id)
    view = _report_view(job, _taxonomy(request))
    return {"job": job_public(job, with_result=False).model_dump(mode="json"),
            "suite": job.params.get("suite"), "suite_label": suite_label(str(job.params.get("suite", ""))),
            **json.loads(json.dumps(view, default=str, ensure_ascii=False))}


# ---------------- pages ----------------
@pages.get("/evals")
def evals_page(request: Request, staff: StaffDep, session: DbDep) -> Response:
    taxonomy = _taxonomy(request)
    runs = [_summary(j, taxonomy) for j in list_jobs(session=session, kind="eval", limit=50)]
    return page(request, "evals.html", staff, runs=runs, suites=[(s, suite_label(s)) for s in SUITES])


@pages.post("/evals/run")
def start_page(request: Request, staff: StaffDep, session: DbDep,
               suite: Annotated[str, Form(max_length=40)] = "",
               quick: Annotated[str, Form(max_length=5)] = "") -> Response:
    job = _start(request, staff, session, suite, bool(quick))
    return RedirectResponse(f"/evals/{job.id}", status_code=303)


@pages.get("/evals/{job_id}")
def report_page(request: Request, staff: StaffDep, session: DbDep, job_id: RowId) -> Response:
    job = _eval_job(session, job_id)
    suite = str(job.params.get("suite", ""))
    return page(request, "evals_report.html", staff, job=job_public(job, with_result=False),
                suite_label=suite_label(suite), quick=bool(job.params.get("quick")),
                view=_report_view(job, _taxonomy(request)),
                baseline_job=job.result.get("baseline_job"))
