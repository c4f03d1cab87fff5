"""`quanbot eval`: run evaluation suites, print a summary, write report.json + report.html, gate on thresholds.

Parses options and calls evals.runner / evals.report; no scoring here. With --json, stdout carries only the
figures (the paths and the progress bar go to stderr).
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from bot.cli import app, settings_or_exit

MODES = ("offline", "llm", "both")


@app.command("eval")
def eval_command(
    suite: str = typer.Argument(..., help="classification | retrieval | answers | routing | dialogue | safety | all"),
    data: Annotated[Path | None, typer.Option("--data", help="数据文件（只对单个套件有效）a data file for one suite")] = None,
    mode: Annotated[str, typer.Option("--mode", help="offline | llm | both")] = "offline",
    baseline: Annotated[Path | None, typer.Option("--baseline", help="上一次的 report.json，显示变化")] = None,
    out: Annotated[Path | None, typer.Option("--out", help="报告目录，默认 var/reports/<时间>/")] = None,
    as_json: bool = typer.Option(False, "--json", help="只在标准输出打印指标 JSON"),
    quick: bool = typer.Option(False, "--quick", help="固定种子的小样本（CI 门禁用）"),
) -> None:
    """运行评测套件，写出 report.json 与 report.html；有门禁指标低于阈值时退出码非零。"""
    from evals import runner
    from evals.report import write_report

    err = Console(stderr=True)
    out_console = err if as_json else Console()
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
                             on_suite=on_suite, thresholds=thresholds)
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


def _print_summary(console: Console, doc: dict[str, Any]) -> None:
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
    console.print(table)


def _print_baseline(console: Console, diff: dict[str, Any], doc: dict[str, Any]) -> None:
    """Top-level figures that moved (gated ones first); nested ones (per class, per category) are counted here
    and listed in report.html."""
    gated = {(m, n, c["figure"]) for m, suites in doc["runs"].items() for n, r in suites.items() for c in r["checks"]}
    table = Table(title=f"与基线对比 change since {diff.get('baseline_created_at')}")
    for col in ("套件 suite", "模式 mode", "指标 figure", "之前 before", "现在 after", "变化 change"):
        table.add_column(col, overflow="fold")
    unchanged = nested = 0
    rows = sorted(diff["changes"], key=lambda c: (c["mode"], c["suite"], (c["mode"], c["suite"], c["figure"]) not in gated))
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
    console.print(table)
    if diff["new_gate_failures"]:
        console.print("[red]新的门禁失败 new gate failures:[/red]")
        for f in diff["new_gate_failures"]:
            console.print(f"  • {f['suite']} [{f['mode']}] {f['figure']} = {_fmt(f['value'])} "
                          f"({f['op']} {_fmt(f['threshold'])})")
    if diff["new_failing_cases"]:
        console.print(f"[yellow]新的失败样例 new failing cases: {len(diff['new_failing_cases'])}[/yellow]")
        for c in diff["new_failing_cases"][:20]:
            console.print(f"  • {c['suite']}: {json.dumps(c['case'], ensure_ascii=False)[:160]}", highlight=False)
