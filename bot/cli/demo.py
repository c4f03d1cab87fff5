"""`quanbot demo`: set up a fresh embedded environment and play a simulated day (registered by bot.cli)."""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from bot.cli.common import settings_or_exit
from bot.settings import PROJECT_ROOT

app = typer.Typer()


@app.command("demo")
def demo(
    seed: int = typer.Option(42, "--seed", help="随机种子：同一种子两次运行得到相同的统计数字。"),
    messages: int | None = typer.Option(None, "--messages", min=1, help="居民消息条数（默认按剧本，约 300）。"),
    out: Annotated[Path | None, typer.Option("--out", help="演示目录（每次运行前清空；默认 var/demo）。")] = None,
    no_live: bool = typer.Option(False, "--no-live", help="不用实时面板，只打印简短进度行。"),
    scenario: Annotated[Path | None,
                        typer.Option("--scenario", help="另一个剧本 YAML（默认 bot/demo/data/day.yaml）。")] = None,
) -> None:
    """模拟网格里的一天：约 60 位居民、300 条消息，经真实对话引擎、案件库、催办升级，最后出统计和 HTML 报告。"""
    from bot.demo.live import LiveView, ProgressLines
    from bot.demo.runner import DemoDirError, demo_settings, prepare_dir, run_day, setup_environment
    from bot.demo.scenario import ScenarioError, load_scenario
    from bot.demo.summary import print_summary

    console = Console()
    base = settings_or_exit()
    try:
        sc = load_scenario(scenario)
    except ScenarioError as exc:
        console.print(f"[red]剧本文件有误：{exc}[/red]")
        raise typer.Exit(2) from None
    out = (out or PROJECT_ROOT / "var" / "demo").resolve()
    try:
        prepare_dir(out)
    except DemoDirError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None
    _log_to_file(out / "demo.log")
    settings = demo_settings(base, out)

    console.rule("[bold]泉小智 演示：准备环境")
    t0 = time.perf_counter()
    with console.status("准备中…") as status:
        def step(name: str, text: str, ok: bool) -> None:
            console.print(f"  [green]✓[/green] {text}" if ok else f"  [red]✗ {text}[/red]", highlight=False)

        def ingest_progress(done: int, total: int, name: str) -> None:
            status.update(f"知识库入库 {done + 1}/{total}：{name}")

        status.update("建库并同步网格与人员…")
        setup = setup_environment(settings, step=step, ingest_progress=ingest_progress)
    setup_s = time.perf_counter() - t0
    console.print(f"  环境准备用时 {setup_s:.1f} 秒；演示目录 {out}")
    if setup.missing:
        console.print("[red]缺少必需的部件，无法模拟这一天（不会用假数据代替）：[/red]")
        for line in setup.missing:
            console.print(f"  [red]• {line}[/red]", highlight=False)
        console.print(f"详细日志：{out / 'demo.log'}")
        raise typer.Exit(1)

    console.rule(f"[bold]模拟 {sc.date} 的一天（{sc.day_start:%H:%M}–{sc.day_end:%H:%M}，种子 {seed}）")
    live = sys.stdout.isatty() and not no_live
    t1 = time.perf_counter()
    if live:
        with LiveView(console, sc.tz) as view:
            result = run_day(setup, out=out, seed=seed, messages=messages, scenario=sc, observer=view)
    else:
        result = run_day(setup, out=out, seed=seed, messages=messages, scenario=sc,
                         observer=ProgressLines(console, sc.tz, day_end=sc.end))
    sim_s = time.perf_counter() - t1

    console.rule("[bold]统计")
    print_summary(console, result.figures, setup.policies, missing=result.missing, grids=result.grids)
    console.print(f"\n用时：环境准备 {setup_s:.1f} 秒，模拟 {sim_s:.1f} 秒"
                  f"（其中对话与调度 {result.sim.wall_seconds:.1f} 秒）")
    console.print(f"HTML 报告：[bold]{result.report_path}[/bold]")
    if result.missing:
        raise typer.Exit(1)


def _log_to_file(path: Path) -> None:
    """Library logs go to the demo's log file, so warnings do not tear the live view."""
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    import jieba  # it adds its own stderr handler on import; its notes belong in the log file too

    jieba.setLogLevel(logging.INFO)
    jieba_log = logging.getLogger("jieba")
    jieba_log.handlers.clear()
    jieba_log.filters.clear()  # the CLI's terminal filter (bot.cli.common.quiet_libraries): the file takes all
    jieba_log.propagate = True
