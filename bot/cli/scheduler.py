"""`quanbot scheduler`: the reminder / escalation sweep and the dispatcher on their own (for extra hosts), pushing
through Telegram, or to the log when no token is configured."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import typer

from bot.cli.common import config_errors, console, err_console, install_logging, settings_or_exit

app = typer.Typer()


@app.command("scheduler")
def scheduler_cmd(
    once: bool = typer.Option(False, "--once", help="只巡检并发送一次后退出。"),
) -> None:
    """单独运行定时巡检：到期提醒、超时升级、自动办结，并发送待发通知（无 Telegram 令牌时打印到终端）。"""
    from bot.channels.notifiers import make_notifier
    from bot.scheduler import LoopDeps, build_scheduler, tick
    from bot.services import Services
    from casestore.db import require_current_schema

    settings = settings_or_exit()
    install_logging(settings)
    if not settings.telegram_token.get_secret_value():
        err_console.print("[yellow]未配置 TELEGRAM_TOKEN：通知将打印到终端。[/yellow]")
    services = Services(settings)
    notifier = make_notifier(settings, clock=services.clock)
    if settings.wechat_enabled or settings.wecom_enabled:  # each push through the channel its chat belongs to
        from bot.channels.wechat import RoutingNotifier
        from bot.channels.wecom import wechat_notifiers

        notifier = RoutingNotifier(notifier, engine=services.engine,
                                   channels=wechat_notifiers(settings, engine=services.engine, clock=services.clock))
    deps = LoopDeps(engine=services.engine, policies=services.policies, sla=services.sla, clock=services.clock,
                    notifier=notifier, inbox_retention=timedelta(days=settings.inbox_retention_days))

    async def main() -> None:
        await notifier.initialize()
        try:
            if once:
                result = await tick(deps)
                sweep = result.sweep
                console.print(f"到期 {sweep.due} 件：提醒 {sweep.reminders}，升级 {sweep.escalations}，"
                              f"自动办结 {sweep.auto_closed}；发送 {result.sent} 条")
                return
            scheduler = build_scheduler(deps, interval_s=settings.sweep_interval_s)
            scheduler.start()
            await tick(deps)  # catch up at start: whatever fell due while we were down goes out now, once
            console.print(f"定时巡检已启动，每 {settings.sweep_interval_s} 秒一次（Ctrl+C 退出）。")
            try:
                await asyncio.Event().wait()
            finally:
                scheduler.shutdown(wait=False)
        finally:
            await notifier.shutdown()

    try:
        with config_errors():
            require_current_schema(services.engine)
            asyncio.run(main())
    except KeyboardInterrupt:
        pass
    finally:
        services.close()
