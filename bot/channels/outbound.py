"""Outbound side of the Telegram channel: the rate limiter, the per-chat ordered send queue, and the
Telegram `Notifier` used for pushes recorded as Notification rows.

Why not PTB's `AIORateLimiter` as is: it throttles the whole bot and groups, but not private chats
(Telegram asks for about one message a second per chat), and its `rate_limit_args=0` cannot mean "no
retries" (0 falls back to the default), which the Notifier needs so that a 429 becomes `RetryLater` and
the Notification row stays pending. `ChatRateLimiter` is the same idea on the same `aiolimiter`
buckets, with a per-chat bucket and an explicit retry count.

Must not: decide what to say (the engine does) or how it looks (telegram_render does).
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from aiolimiter import AsyncLimiter
from telegram import Bot
from telegram.error import BadRequest, Forbidden, NetworkError, RetryAfter, TimedOut
from telegram.ext import BaseRateLimiter

from bot.channels.telegram_render import TelegramPart, TelegramRenderer
from casestore.notify import DeliveryError, OutboundMessage, RetryLater

log = logging.getLogger(__name__)

PER_CHAT_BURST = 3  # a private chat may get a short burst (a split reply) before 1/s applies
GROUP_PER_MINUTE = 20


def retry_after_seconds(exc: RetryAfter) -> float:
    """`RetryAfter.retry_after` is an int or a timedelta depending on PTB's PTB_TIMEDELTA switch."""
    value: Any = getattr(exc, "_retry_after", None)
    if value is None:
        value = exc.retry_after
    return float(value.total_seconds()) if hasattr(value, "total_seconds") else float(value)


@dataclass(frozen=True)
class RetryBudget:
    """Per-call `rate_limit_args`: how many 429 waits this call may take (0 = raise RetryAfter at once).

    An object rather than a bare int because ExtBot drops falsy rate_limit_args, so 0 would never arrive.
    """

    retries: int


class ChatRateLimiter(BaseRateLimiter[RetryBudget]):
    """Bot-wide and per-chat throttling for requests that carry a chat_id; honours 429 retry_after.

    ``rate_limit_args`` (per call, a RetryBudget) overrides the default number of 429 retries.
    A 429 pauses every request for retry_after + 0.1 s, because Telegram's flood control is bot-wide.
    At most ``max_in_flight`` requests (long polls excepted) are on the wire at once: a burst of
    updates handled together must not open hundreds of connections at the same moment (a server's
    accept queue overflows and sends fail with connection errors); 16 in flight still allow ~50
    requests/s at a 300 ms round trip, above Telegram's 30 msg/s, so normal traffic is not throttled.
    """

    def __init__(self, *, overall_rate: float = 30.0, per_chat_rate: float = 1.0, max_retries: int = 8,
                 max_in_flight: int = 16):
        self._overall = AsyncLimiter(overall_rate, 1) if overall_rate > 0 else None
        self._per_chat_rate = per_chat_rate
        self._chats: dict[int | str, AsyncLimiter] = {}
        self._max_retries = max_retries
        self._resume_at = 0.0  # monotonic time before which nothing is sent (after a 429)
        self.retries_seen = 0  # 429s honoured so far (for logs and tests)
        self._in_flight = asyncio.Semaphore(max_in_flight) if max_in_flight > 0 else None

    async def initialize(self) -> None:
        pass

    async def shutdown(self) -> None:
        pass

    def _chat_limiter(self, chat_id: int | str) -> AsyncLimiter | None:
        is_group = isinstance(chat_id, str) or chat_id < 0
        if not is_group and self._per_chat_rate <= 0:
            return None
        if chat_id not in self._chats:
            if len(self._chats) > 2048:  # forget idle buckets (full capacity = unused)
                for key, lim in list(self._chats.items()):
                    if lim.has_capacity(lim.max_rate):
                        del self._chats[key]
            if is_group:
                self._chats[chat_id] = AsyncLimiter(GROUP_PER_MINUTE, 60)
            else:
                self._chats[chat_id] = AsyncLimiter(PER_CHAT_BURST, PER_CHAT_BURST / self._per_chat_rate)
        return self._chats[chat_id]

    async def _call(self, callback: Callable[..., Coroutine[Any, Any, Any]], args: Any,
                    kwargs: dict[str, Any]) -> Any:
        if self._in_flight is None:
            return await callback(*args, **kwargs)
        async with self._in_flight:
            return await callback(*args, **kwargs)

    async def process_request(
        self,
        callback: Callable[..., Coroutine[Any, Any, bool | dict[str, Any] | list[dict[str, Any]]]],
        args: Any,
        kwargs: dict[str, Any],
        endpoint: str,
        data: dict[str, Any],
        rate_limit_args: RetryBudget | None,
    ) -> bool | dict[str, Any] | list[dict[str, Any]]:
        retries = self._max_retries if rate_limit_args is None else rate_limit_args.retries
        chat_id = data.get("chat_id")
        if isinstance(chat_id, str) and chat_id.lstrip("-").isdigit():
            chat_id = int(chat_id)
        attempt = 0
        while True:
            wait = self._resume_at - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            try:
                if chat_id is None:  # answerCallbackQuery, setMyCommands ...: not throttled
                    return await self._call(callback, args, kwargs)
                chat_limiter = self._chat_limiter(chat_id)
                if chat_limiter is not None:
                    await chat_limiter.acquire()
                if self._overall is not None:
                    await self._overall.acquire()
                if self._resume_at - time.monotonic() > 0:  # a 429 arrived while we queued
                    continue
                return await self._call(callback, args, kwargs)
            except RetryAfter as exc:
                seconds = retry_after_seconds(exc)
                self._resume_at = max(self._resume_at, time.monotonic() + seconds + 0.1)
                if attempt >= retries:
                    raise
                attempt += 1
                self.retries_seen += 1
                log.warning("telegram 429 on %s: waiting %.1fs (retry %d/%d)", endpoint, seconds, attempt, retries)


class Outbound:
    """Sends rendered messages; messages to one chat go out one after another, in order."""

    def __init__(self, bot: Bot, renderer: TelegramRenderer):
        self.bot = bot
        self.renderer = renderer
        self._locks: weakref.WeakValueDictionary[int, asyncio.Lock] = weakref.WeakValueDictionary()

    def _lock(self, chat_id: int) -> asyncio.Lock:
        lock = self._locks.get(chat_id)
        if lock is None:
            lock = asyncio.Lock()
            self._locks[chat_id] = lock
        return lock

    async def send(self, chat_id: int, messages: list[OutboundMessage], *, retries: int | None = None) -> int:
        """Send `messages` to `chat_id` in order; returns the number of Bot API sends.

        `retries` is the 429 retry budget per send (None = the limiter's default). RetryAfter, Forbidden,
        BadRequest and network errors propagate to the caller, which decides what stays pending.
        """
        parts = [p for m in messages for p in self.renderer.render(m)]
        async with self._lock(chat_id):
            for part in parts:
                await self._send_part(chat_id, part, retries)
        return len(parts)

    async def _send_part(self, chat_id: int, part: TelegramPart, retries: int | None) -> None:
        extra: dict[str, Any] = {}
        if retries is not None:
            extra["rate_limit_args"] = RetryBudget(retries)
        if part.photo:
            await self.bot.send_photo(chat_id=chat_id, photo=part.photo, caption=part.text or None,
                                      reply_markup=part.reply_markup, **extra)
        else:
            await self.bot.send_message(chat_id=chat_id, text=part.text, reply_markup=part.reply_markup, **extra)


class TelegramNotifier:
    """`casestore.notify.Notifier` over Telegram: one attempt per call, a 429 becomes RetryLater.

    A message split into several sends that fails half-way is sent again whole on the next attempt
    (the row is the unit of delivery); splitting is rare for pushes.
    """

    def __init__(self, outbound: Outbound):
        self.outbound = outbound

    async def send(self, *, chat_id: int, message: OutboundMessage) -> None:
        try:
            await self.outbound.send(chat_id, [message], retries=0)
        except RetryAfter as exc:
            raise RetryLater(retry_after_seconds(exc)) from exc
        except Forbidden as exc:  # blocked the bot, left the chat
            raise DeliveryError(f"forbidden: {exc.message}") from exc
        except BadRequest as exc:  # chat not found, bad file id: retrying will not help
            raise DeliveryError(f"bad request: {exc.message}") from exc
        except (TimedOut, NetworkError) as exc:
            raise RetryLater(5.0) from exc
