"""`quanbot eval`: run evaluation suites, print a summary, write report.json + report.html, gate on thresholds;
and the temporary `eval-classification` / `eval-retrieval` (one suite each, to be folded into `quanbot eval`).

The one module of the product that loads `evals` (inside its commands): `quanbot train` asks it for the test-split
line. Parses options and calls evals.runner / evals.report / the suites; no scoring here. With --json, stdout
carries only the figures (the paths and the progress bar go to stderr).
"""

from __future__ import annotations

import json
import logging
import sys
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from bot.cli.common import console, err_console, settings_or_exit

app = typer.Typer()

MODES = ("offline", "llm", "both")


@app.command("eval")
def eval_command(
    suite: str = typer.Argument(..., help="classification | retrieval | answers | routing | dialogue | safety | "
                                          "reviewed | all"),
    data: Annotated[Path | None,
                    typer.Option("--data", help="数据文件（只对单个套件有效）a data file for one suite")] = None,
    mode: Annotated[str, typer.Option("--mode", help="offline | llm | both")] = "offline",
    baseline: Annotated[Path | None, typer.Option("--baseline", help="上一次的 report.json，显示变化")] = None,
    out: Annotated[Path | None, typer.Option("--out", help="报告目录，默认 var/reports/<时间>/")] = None,
    as_json: bool = typer.Option(False, "--json", help="只在标准输出打印指标 JSON"),
    quick: bool = typer.Option(False, "--quick", help="固定种子的小样本（CI 门禁用）"),
    approaches: Annotated[str, typer.Option(
        "--approaches", help="另外对比的方法，逗号分隔：分类套件的 tfidf,embed,ensemble，检索套件的 window"
                            "（300 字窗口基线）和 refit（按范围示例重拟合拒答模型并核对）；默认只测上线方法和朴素基线",
    )] = "",
) -> None:
    """运行评测套件，写出 report.json 与 report.html；有门禁指标低于阈值时退出码非零。"""
    from bot.understanding.model import APPROACHES
    from evals import runner
    from evals.report import write_report
    from evals.suites.retrieval import REFIT_ARM, WINDOW_ARM

    err = err_console
    compared = tuple(a.strip() for a in approaches.split(",") if a.strip())
    known = (*APPROACHES, WINDOW_ARM, REFIT_ARM)
    if unknown := [a for a in compared if a not in known]:
        err.print(f"[red]未知的对比方法 {', '.join(unknown)}。可选：{', '.join(known)}[/red]")
        raise typer.Exit(2)
    out_console = err_console if as_json else console
    names = runner.suite_names() if suite == "all" else [suite]
    if suite != "all" and suite not in runner.suite_names():
        err.print(f"[red]未知套件 {suite}。可选：{', '.join(runner.suite_names())} 或 all[/red]")
        raise typer.Exit(2)
    if mode not in MODES:
        err.print(f"[red]--mode 只能是 {' / '.join(MODES)}[/red]")
        raise typer.Exit(2)
    if data is not None and suite == "all":
        err.print("[red]--data 只能和单个套件一起用（例如 quanbot eval answers --data my.jsonl）[/red]")
        raise typer.Exit(2)
    if data is not None and not data.exists():
        err.print(f"[red]找不到数据文件 {data}[/red]")
        raise typer.Exit(2)
    base_doc: dict[str, Any] | None = None
    if baseline is not None:
        try:
            base_doc = runner.load_report(baseline)
        except (OSError, ValueError) as exc:
            err.print(f"[red]读不了基线报告：{exc}[/red]")
            raise typer.Exit(2) from None
    try:
        thresholds = runner.load_thresholds()
    except (OSError, ValueError) as exc:
        err.print(f"[red]thresholds.yaml 有误：{exc}[/red]")
        raise typer.Exit(2) from None

    settings = settings_or_exit()
    modes = ["offline", "llm"] if mode == "both" else [mode]
    out_dir = out or settings.var_dir / "reports" / datetime.now().strftime("%Y%m%d-%H%M%S")
    logging.getLogger().setLevel(logging.WARNING)  # suites' info logs would drown the table

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=err, transient=True, disable=not err.is_terminal) as bar:
        tasks: dict[str, Any] = {}

        def progress(label: str, done: int, total: int) -> None:
            if label not in tasks:
                tasks[label] = bar.add_task(label, total=total)
            bar.update(tasks[label], completed=done, total=total)

        def on_suite(run: runner.SuiteRun) -> None:
            mark = {"ok": "✓" if not run.gate_failed else "✗", "unavailable": "–", "error": "✗"}[run.status]
            err.print(f"{mark} {run.name} [{run.mode}] {run.duration_s:.1f}s"
                      + (f" — {run.reason}" if run.reason else ""), highlight=False, markup=False, soft_wrap=True)

        doc = runner.run_all(names, settings=settings, modes=modes, data=data, quick=quick, progress=progress,
                             on_suite=on_suite, thresholds=thresholds, approaches=compared)
    if base_doc is not None:
        doc["baseline"] = runner.diff_baseline(doc, base_doc)
    json_path, html_path = write_report(doc, out_dir)

    for note in doc["notes"]:
        err.print(f"[yellow]ℹ {note}[/yellow]")
    for suites in doc["runs"].values():
        for run in suites.values():
            for p in run.get("problems", []):
                err.print(f"⚠ {p['file']}:{p['line']}: {p['message']}（已跳过 skipped）", style="yellow", markup=False,
                          highlight=False, soft_wrap=True)

    if as_json:
        sys.stdout.write(json.dumps(_json_figures(doc, names, suite), ensure_ascii=False, indent=2) + "\n")
    else:
        _print_summary(out_console, doc)
        if doc.get("baseline"):
            _print_baseline(out_console, doc["baseline"], doc)
    err.print(f"报告 report: {json_path}\n        {html_path}", highlight=False, markup=False, soft_wrap=True)
    if not doc["runs"]:  # --mode llm without an LLM: nothing was measured, which is not a pass
        raise typer.Exit(2)
    if not doc["gate"]["passed"]:
        if not as_json:
            out_console.print(f"[red]✗ {len(doc['gate']['failures'])} 项门禁指标未达标 gated figure(s) below "
                              "threshold[/red]")
        raise typer.Exit(1)


def _json_figures(doc: dict[str, Any], names: list[str], suite: str) -> Any:
    def figures_of(suites: dict[str, Any]) -> Any:
        if suite != "all":
            return suites.get(suite, {}).get("figures", {})
        return {name: suites[name]["figures"] for name in names if name in suites}

    runs = doc["runs"]
    if len(runs) == 1:
        return figures_of(next(iter(runs.values())))
    return {mode: figures_of(suites) for mode, suites in runs.items()}


def _fmt(value: Any) -> str:
    if value is None:
        return "—"
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def _print_summary(out: Console, doc: dict[str, Any]) -> None:
    table = Table(title=f"评测结果 eval results（{', '.join(doc['modes']) or '—'}，{doc['duration_s']} s）")
    for col in ("套件 suite", "模式 mode", "指标 figure", "数值 value", "阈值 threshold", ""):
        table.add_column(col, overflow="fold")
    for mode, suites in doc["runs"].items():
        for name, run in suites.items():
            if run["status"] != "ok":
                mark = "–" if run["status"] == "unavailable" else "[red]✗[/red]"
                table.add_row(name, mode, escape(run["reason"]), "", "", mark)
                continue
            if not run["checks"]:
                table.add_row(name, mode, "(无门禁指标 no gated figure)", "", "", "")
            for c in run["checks"]:
                mark = "[green]✓[/green]" if c["passed"] else "[red]✗[/red]"
                table.add_row(name, mode, c["figure"], _fmt(c["value"]), f"{c['op']} {_fmt(c['threshold'])}", mark)
    out.print(table)


def _print_baseline(out: Console, diff: dict[str, Any], doc: dict[str, Any]) -> None:
    """Top-level figures that moved (gated ones first); nested ones (per class, per category) are counted here
    and listed in report.html."""
    gated = {(m, n, c["figure"]) for m, suites in doc["runs"].items() for n, r in suites.items() for c in r["checks"]}
    table = Table(title=f"与基线对比 change since {diff.get('baseline_created_at')}")
    for col in ("套件 suite", "模式 mode", "指标 figure", "之前 before", "现在 after", "变化 change"):
        table.add_column(col, overflow="fold")
    unchanged = nested = 0
    rows = sorted(diff["changes"],
                  key=lambda c: (c["mode"], c["suite"], (c["mode"], c["suite"], c["figure"]) not in gated))
    for c in rows:
        ch = c["change"]
        if ch == 0:
            unchanged += 1
            continue
        if "." in c["figure"] and (c["mode"], c["suite"], c["figure"]) not in gated:
            nested += 1
            continue
        text = "(new/removed)" if ch is None else (f"[green]{ch:+.4f}[/green]" if ch > 0 else f"[red]{ch:+.4f}[/red]")
        table.add_row(c["suite"], c["mode"], escape(c["figure"]), _fmt(c["before"]), _fmt(c["after"]), text)
    table.caption = (f"另有 {nested} 项细分指标有变化、{unchanged} 项没有变化，见 report.html "
                     f"(+{nested} nested changes, {unchanged} unchanged: see report.html)")
    out.print(table)
    if diff["new_gate_failures"]:
        out.print("[red]新的门禁失败 new gate failures:[/red]")
        for f in diff["new_gate_failures"]:
            out.print(f"  • {f['suite']} [{f['mode']}] {f['figure']} = {_fmt(f['value'])} "
                          f"({f['op']} {_fmt(f['threshold'])})")
    if diff["new_failing_cases"]:
        out.print(f"[yellow]新的失败样例 new failing cases: {len(diff['new_failing_cases'])}[/yellow]")
        for c in diff["new_failing_cases"][:20]:
            out.print(f"  • {c['suite']}: {json.dumps(c['case'], ensure_ascii=False)[:160]}", highlight=False)


@app.command("eval-retrieval")
def eval_retrieval(data: Path | None = typer.Option(None, "--data", help="单个 JSONL 数据文件"),
                   as_json: bool = typer.Option(False, "--json"),
                   quick: bool = typer.Option(False, "--quick", help="固定种子的约60题子集")) -> None:
    """（临时）检索评测：hit@k、MRR、拒答 P/R/F1，与基线对比。"""
    from evals.core import EvalContext
    from evals.suites import retrieval

    settings = settings_or_exit()
    result = retrieval.run(EvalContext(settings=settings, data=data, quick=quick,
                                       approaches=(retrieval.WINDOW_ARM,)))  # this command prints that arm
    if as_json:
        print(json.dumps({"figures": result.figures, "extra": result.extra,
                          "failures": result.failures,
                          "problems": [p.__dict__ for p in result.problems]}, ensure_ascii=False))
        return
    f, b = result.figures, result.figures["baseline"]
    for key in ("hit_at_1", "hit_at_5", "mrr", "no_answer_precision", "no_answer_recall", "no_answer_f1"):
        console.print(f"{key:22s} {f[key]:.3f}   baseline {b[key]:.3f}")
    console.print(f"n={f['n']}  failures={len(result.failures)}  malformed lines={len(result.problems)}")
    for p in result.problems:
        err_console.print(f"[yellow]⚠ {p.file}:{p.line} {p.message}[/yellow]")


@app.command("eval-classification")
def eval_classification_command(
    data: Path | None = typer.Option(None, "--data", help="JSONL 文件，默认测试集"),
    as_json: bool = typer.Option(False, "--json", help="输出 JSON"),
    quick: bool = typer.Option(False, "--quick", help="只测默认模型，不做方法对比"),
) -> None:
    """（临时）在标注数据上评测消息分类，并对比 tfidf / embed / ensemble 三种方法。"""
    from bot.understanding.model import APPROACHES
    from evals.core import EvalContext
    from evals.suites import classification

    settings = settings_or_exit()
    ctx = EvalContext(settings=settings, data=data, mode="llm" if settings.llm_enabled else "offline", quick=quick)
    result = classification.run(ctx, approaches=APPROACHES)
    if as_json:
        out = {"name": result.name, "headline": result.headline, "figures": result.figures, "extra": result.extra,
               "problems": [asdict(p) for p in result.problems]}
        print(json.dumps(out, ensure_ascii=False, indent=1))
        return
    for p in result.problems:
        err_console.print(f"[yellow]跳过 {p.file} 第 {p.line} 行：{p.message}[/yellow]")
    f = result.figures
    console.print(f"{result.extra.get('data')}：{f['n']} 条，方法 {result.extra.get('approach')}，"
                  f"模式 {result.extra.get('mode')}")
    for axis in ("intent", "category", "urgency"):
        console.print(f"  {axis:9s} accuracy {f[axis]['accuracy']:.3f}  macro-F1 {f[axis]['macro_f1']:.3f}")
    console.print(f"  紧急召回 {f['emergency_recall']:.3f}  紧急精确率 {f['emergency_precision']:.3f}  "
                  f"错误 {len(f['errors'])} 条")
    for name, h in result.extra.get("comparison", {}).items():
        console.print(f"  对比 {name:9s} " + "  ".join(f"{k} {v:.3f}" for k, v in h.items()))


def classification_test_line(model_dir: Path, models: Any) -> str | None:
    """The held-out test split's headline figures for freshly trained `models`, as one line (None without it)."""
    from bot.understanding.service import MessageClassifier
    from evals.suites.classification import TEST_FILE, headline, load_rows, score

    if not TEST_FILE.exists():
        return None
    rows = load_rows(TEST_FILE, [])
    clf = MessageClassifier(model_dir=model_dir, models=models)
    h = headline(score(rows, [clf.understand(r["text"]).labels() for r in rows]))
    return (f"测试集 {len(rows)} 条：意图 macro-F1 {h['intent_macro_f1']:.3f}，类别 {h['category_macro_f1']:.3f}，"
            f"紧急程度 {h['urgency_macro_f1']:.3f}；紧急召回 {h['emergency_recall']:.2f}，"
            f"紧急精确率 {h['emergency_precision']:.2f}")
