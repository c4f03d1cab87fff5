"""quanbot subcommands of the closed loop: `quanbot stats` and `quanbot scheduler` (registered on import)."""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import UTC, date, datetime, time, timedelta

import typer
from rich.table import Table

from bot.cli import app, console, err_console, settings_or_exit
from casestore.notify import OutboundMessage

log = logging.getLogger("quanbot.scheduler")


class LogNotifier:
    """Prints pushes to the terminal/log: for `quanbot scheduler` without a Telegram token."""

    async def send(self, *, chat_id: int, message: OutboundMessage) -> None:
        buttons = " ".join(f"[{b.label}]" for row in message.buttons for b in row)
        log.info("→ chat %s: %s %s", chat_id, message.text.replace("\n", " / "), buttons)


@app.command("stats")
def stats_cmd(
    since: str = typer.Option("", "--since", help="起始日期 YYYY-MM-DD（上海时间），默认全部。"),
    grid: str = typer.Option("", "--grid", help="只看某个网格，例如 FU01。"),
    as_json: bool = typer.Option(False, "--json", help="输出 JSON。"),
) -> None:
    """闭环指标：响应时长、按时响应/办结率、超时、退回率、满意度、重复与热点。"""
    from sqlmodel import Session

    from casestore.db import make_engine
    from casestore.stats import compute
    from policies.loader import load_policies

    settings = settings_or_exit()
    start = None
    if since:
        try:
            start = datetime.combine(date.fromisoformat(since), time(0, 0), tzinfo=settings.tz).astimezone(UTC)
        except ValueError:
            err_console.print(f"[red]日期格式不对：{since!r}，请用 YYYY-MM-DD，例如 2026-11-01。[/red]")
            raise typer.Exit(2) from None
    policies = load_policies(settings.policies_dir)
    names = {k.value: v.name for k, v in policies.taxonomy.categories.items()}
    engine = make_engine(settings.database_url)
    try:
        with Session(engine) as session:
            figures = compute(session=session, now=datetime.now(UTC), since=start, grid_id=grid or None,
                              category_names=names)
    finally:
        engine.dispose()
    if as_json:
        console.print_json(json.dumps({k: [f.to_dict() for f in v] for k, v in figures.items()}, ensure_ascii=False))
        return
    if not figures["total"]:
        console.print("暂无工单数据。")
        return
    titles = {"total": "全街道", "grid": "按网格", "community": "按社区", "category": "按类别"}
    for kind, title in titles.items():
        table = Table(title=title)
        table.add_column("编号", no_wrap=True)
        for header in ("名称", "工单", "响应中位(分)", "响应P90(分)", "按时响应", "按时办结", "在办", "超时",
                       "退回率", "满意度", "评价率", "重复", "热点"):
            table.add_column(header, justify="left" if header == "名称" else "right")
        for f in figures[kind]:
            table.add_row(f.key, f.name, str(f.cases), _n(f.median_response_min), _n(f.p90_response_min),
                          _p(f.on_time_response), _p(f.on_time_resolution), str(f.open), str(f.overdue),
                          _p(f.reopen_rate), _n(f.satisfaction, "{:.1f}"), _p(f.rating_response_rate),
                          str(f.duplicates), str(f.hotspots))
        console.print(table)
    console.print("说明：超时未评价自动办结的工单计入“未评价”，不算满意。")


def _p(x: float | None) -> str:
    return "—" if x is None else f"{x * 100:.0f}%"


def _n(x: float | None, fmt: str = "{:.0f}") -> str:
    return "—" if x is None else fmt.format(x)


@app.command("scheduler")
def scheduler_cmd(
    once: bool = typer.Option(False, "--once", help="只巡检并发送一次后退出。"),
) -> None:
    """单独运行定时巡检：到期提醒、超时升级、自动办结，并发送待发通知（无 Telegram 令牌时打印到终端）。"""
    from bot.cli_run import install_logging
    from bot.scheduler import LoopDeps, build_scheduler, tick
    from bot.services import Services

    settings = settings_or_exit()
    install_logging(settings)
    services = Services(settings)
    channel = None
    if settings.telegram_token.get_secret_value():
        from bot.channels.telegram import TelegramChannel

        channel = TelegramChannel(settings=settings, handler=lambda _incoming: None, db_engine=services.engine,
                                  clock=services.clock)  # type: ignore[arg-type,return-value]
    else:
        err_console.print("[yellow]未配置 TELEGRAM_TOKEN：通知将打印到终端。[/yellow]")
    deps = LoopDeps(engine=services.engine, policies=services.policies, sla=services.sla, clock=services.clock,
                    notifier=channel.notifier if channel is not None else LogNotifier(),
                    inbox_retention=timedelta(days=settings.inbox_retention_days))

    async def main() -> None:
        if channel is not None:
            await channel.application.initialize()
        if once:
            result = await tick(deps)
            console.print(f"到期 {result.sweep.due} 件：提醒 {result.sweep.reminders}，升级 {result.sweep.escalations}，"
                          f"自动办结 {result.sweep.auto_closed}；发送 {result.sent} 条")
            return
        scheduler = build_scheduler(deps, interval_s=settings.sweep_interval_s)
        scheduler.start()
        await tick(deps)  # catch up at start: whatever fell due while we were down goes out now, once
        console.print(f"定时巡检已启动，每 {settings.sweep_interval_s} 秒一次（Ctrl+C 退出）。")
        try:
            await asyncio.Event().wait()
        finally:
            scheduler.shutdown(wait=False)

    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
    finally:
        services.close()

