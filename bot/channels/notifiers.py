"""The Notifier for a process that pushes without running a channel of its own (the standalone scheduler).

`make_notifier(settings)`: with a TELEGRAM_TOKEN, Telegram's notifier over a bare bot that has the bot process's
rate limits and button signing key (so a button pushed from here is accepted when it is pressed there); without
one, a notifier that writes each push to the log. Either needs `initialize()` before the first send and
`shutdown()` after the last.
Must not: decide what to say (the engine does) or how it looks (telegram_render does), or read the environment.
"""

from __future__ import annotations

import logging
from typing import Protocol

from telegram.ext import ExtBot

from bot.channels.callback import CallbackSigner, signing_key
from bot.channels.outbound import ChatRateLimiter, Outbound, RetryBudget, TelegramNotifier
from bot.channels.telegram_render import TelegramRenderer
from bot.settings import Settings
from casestore.clock import Clock
from casestore.notify import Notifier, OutboundMessage

log = logging.getLogger(__name__)
TELEGRAM_BASE_URL = "https://api.telegram.org/bot"


class ManagedNotifier(Notifier, Protocol):
    """A Notifier that holds resources (a bot's HTTP connections) between `initialize` and `shutdown`."""

    async def initialize(self) -> None: ...

    async def shutdown(self) -> None: ...


class LogNotifier:
    """Writes each push to the log (masked like every log line): the scheduler without a Telegram token."""

    async def initialize(self) -> None:
        pass

    async def shutdown(self) -> None:
        pass

    async def send(self, *, chat_id: int, message: OutboundMessage) -> None:
        buttons = " ".join(f"[{b.label}]" for row in message.buttons for b in row)
        log.info("→ chat %s: %s %s", chat_id, message.text.replace("\n", " / "), buttons)


class BotNotifier(TelegramNotifier):
    """`TelegramNotifier` over a bot of its own, with no Application, updater or inbox around it."""

    def __init__(self, bot: ExtBot[RetryBudget], renderer: TelegramRenderer) -> None:
        super().__init__(Outbound(bot, renderer))
        self.bot = bot

    async def initialize(self) -> None:
        await self.bot.initialize()  # getMe: a wrong token fails here, not at the first push

    async def shutdown(self) -> None:
        await self.bot.shutdown()


def base_file_url(base_url: str) -> str:
    """The Bot API file URL that belongs to a custom `base_url` (…/bot → …/file/bot)."""
    return base_url[: -len("/bot")] + "/file/bot" if base_url.endswith("/bot") else base_url.rstrip("/") + "/file/bot"


def make_notifier(settings: Settings, *, clock: Clock | None = None) -> ManagedNotifier:
    """Telegram's notifier when a token is configured, else the log notifier."""
    token = settings.telegram_token.get_secret_value()
    if not token:
        return LogNotifier()
    key = signing_key(configured=settings.callback_signing_key.get_secret_value(), bot_token=token)
    renderer = TelegramRenderer(CallbackSigner(key, clock=clock))
    limiter = ChatRateLimiter(overall_rate=settings.telegram_rate_overall,
                              per_chat_rate=settings.telegram_rate_per_chat,
                              max_retries=settings.telegram_send_retries)
    base = settings.telegram_base_url or TELEGRAM_BASE_URL
    return BotNotifier(ExtBot(token, base_url=base, base_file_url=base_file_url(base), rate_limiter=limiter), renderer)
