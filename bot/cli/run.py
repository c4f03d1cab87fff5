"""`quanbot run`: the configured channels — the Telegram bot (long polling, or webhook when WEBHOOK_URL is set),
the WeChat Official Account callback (WECHAT_*) and the WeCom app callback (WECOM_*) — with the notification
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

NO_TOKEN = ("未配置任何渠道：请在 .env 中填写 TELEGRAM_TOKEN，或微信公众号的 WECHAT_APP_ID、WECHAT_TOKEN、"
            "WECHAT_ENCODING_AES_KEY，或企业微信的 WECOM_CORP_ID、WECOM_TOKEN、WECOM_ENCODING_AES_KEY，"
            "或先用 `quanbot chat` 在终端里体验。")
NO_SECRET = "已设置 WEBHOOK_URL 但缺少 WEBHOOK_SECRET：webhook 模式必须配置密钥，请在 .env 中填写后重试。"


async def serve(settings: Settings, *, scheduler: bool, stop: asyncio.Event | None = None) -> None:
    """Run the configured channels (Telegram, the WeChat Official Account) until SIGINT/SIGTERM (or `stop`)."""
    from bot.channels.notifiers import LogNotifier
    from bot.channels.telegram import TelegramChannel
    from bot.channels.wechat import RoutingNotifier, WeChatChannel
    from bot.channels.wecom import WeComChannel
    from bot.runtime import prepare_database
    from bot.scheduler import run_in_loop
    from bot.services import Services
    from casestore.notify import Notifier

    # migrate, load the organisation and warm the models before the first resident is kept waiting
    await asyncio.to_thread(prepare_database, settings)
    services = Services(settings)
    await asyncio.to_thread(lambda: (services.classifier, services.knowledge))
    telegram = (TelegramChannel(settings=settings, handler=services.dialogue.handle, db_engine=services.engine,
                                clock=services.clock) if settings.telegram_token.get_secret_value() else None)
    wechat = (WeChatChannel(settings=settings, handler=services.dialogue.handle, db_engine=services.engine,
                            clock=services.clock) if settings.wechat_enabled else None)
    wecom = (WeComChannel(settings=settings, handler=services.dialogue.handle, db_engine=services.engine,
                          clock=services.clock) if settings.wecom_enabled else None)
    wechats = [c for c in (wechat, wecom) if c is not None]
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    tasks: list[asyncio.Task[None]] = []
    # the sweep pushes through the channel that owns each chat (a WeChat alias to WeChat or WeCom, the rest to
    # Telegram), and so do the WeChat channels right after an update: a resident's report on the Official Account
    # reaches the worker on WeCom (or Telegram) at once
    default: Notifier = telegram.notifier if telegram is not None else LogNotifier()
    notifier: Notifier = (RoutingNotifier(default, engine=services.engine,
                                          channels={c.channel: c.notifier for c in wechats})
                          if wechats else default)
    for channel in wechats:
        channel.push_notifier = notifier
    if scheduler:
        tasks.append(asyncio.create_task(run_in_loop(services=services, notifier=notifier, stop=stop,
                                                     interval_s=settings.sweep_interval_s)))
    for channel in wechats:
        tasks.append(asyncio.create_task(channel.run(stop)))
    modes = []
    if telegram is not None:
        modes.append(f"Telegram webhook {settings.webhook_url}" if settings.webhook_url else "Telegram 长轮询")
    if wechat is not None:
        modes.append("微信公众号回调")
    if wecom is not None:
        modes.append("企业微信回调")
    log.info("quanbot 已启动（%s）%s", "，".join(modes), "，含定时巡检" if scheduler else "")
    try:
        if telegram is not None:
            await telegram.run(stop)
        else:
            await stop.wait()
    finally:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        services.close()


@app.command("run")
def run(
    no_scheduler: bool = typer.Option(False, "--no-scheduler",
                                      help="不在本进程内运行定时巡检（另用 quanbot scheduler）。"),
) -> None:
    """运行已配置的渠道（Telegram 长轮询或 webhook；微信公众号、企业微信回调）；默认同时运行定时巡检。"""
    settings = settings_or_exit()
    if not (settings.telegram_token.get_secret_value() or settings.wechat_enabled or settings.wecom_enabled):
        fail(NO_TOKEN, code=2)
    if settings.webhook_url and not settings.webhook_secret.get_secret_value():
        fail(NO_SECRET, code=2)
    install_logging(settings)
    try:
        with config_errors():
            asyncio.run(serve(settings, scheduler=not no_scheduler))
    except KeyboardInterrupt:  # pragma: no cover - second Ctrl-C
        pass
