"""`quanbot run`: the Telegram bot (long polling, or webhook when WEBHOOK_URL is set) with the notification
sweep in the same process. Parses options and wires services; no business rules here."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal

import typer

from bot.cli.common import config_errors, fail, install_logging, settings_or_exit
from bot.settings import Settings

app = typer.Typer()
log = logging.getLogger("quanbot.run")

NO_TOKEN = "未配置 TELEGRAM_TOKEN，无法连接 Telegram：请在 .env 中填写机器人令牌，或先用 `quanbot chat` 在终端里体验。"
NO_SECRET = "已设置 WEBHOOK_URL 但缺少 WEBHOOK_SECRET：webhook 模式必须配置密钥，请在 .env 中填写后重试。"


async def serve(settings: Settings, *, scheduler: bool, stop: asyncio.Event | None = None) -> None:
    """Run the bot until SIGINT/SIGTERM (or `stop`)."""
    from bot.channels.telegram import TelegramChannel
    from bot.runtime import prepare_database
    from bot.scheduler import run_in_loop
    from bot.services import Services

    # migrate, load the organisation and warm the models before the first resident is kept waiting
    await asyncio.to_thread(prepare_database, settings)
    services = Services(settings)
    await asyncio.to_thread(lambda: (services.classifier, services.knowledge))
    channel = TelegramChannel(settings=settings, handler=services.dialogue.handle, db_engine=services.engine,
                              clock=services.clock)
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    tasks: list[asyncio.Task[None]] = []
    if scheduler:  # the sweep inside the bot process, pushing through this channel's Telegram notifier
        tasks.append(asyncio.create_task(run_in_loop(services=services, notifier=channel.notifier, stop=stop,
                                                     interval_s=settings.sweep_interval_s)))
    mode = f"webhook {settings.webhook_url}" if settings.webhook_url else "长轮询"
    log.info("quanbot 已启动（%s）%s", mode, "，含定时巡检" if scheduler else "")
    try:
        await channel.run(stop)
    finally:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        services.close()


@app.command("run")
def run(
    no_scheduler: bool = typer.Option(False, "--no-scheduler",
                                      help="不在本进程内运行定时巡检（另用 quanbot scheduler）。"),
) -> None:
    """运行 Telegram 机器人：默认长轮询，设置 WEBHOOK_URL 时用 webhook；默认同时运行定时巡检。"""
    settings = settings_or_exit()
    if not settings.telegram_token.get_secret_value():
        fail(NO_TOKEN, code=2)
    if settings.webhook_url and not settings.webhook_secret.get_secret_value():
        fail(NO_SECRET, code=2)
    install_logging(settings)
    try:
        with config_errors():
            asyncio.run(serve(settings, scheduler=not no_scheduler))
    except KeyboardInterrupt:  # pragma: no cover - second Ctrl-C
        pass
