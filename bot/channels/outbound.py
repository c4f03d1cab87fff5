"""Outbound side of the Telegram channel: the rate limiter, the per-chat ordered send queue, the sender that
delivers the reply outbox, and the Telegram `Notifier` used for pushes recorded as Notification rows.

`ReplySender` (replies to residents' and workers' messages, `OutboundReply` rows): runs in the background from
start to stop, so a reply leaves as soon as it is committed and keeps trying without waiting for a restart or
the person's next message. Chats are served concurrently, each chat's rows in order. A 429 is waited out
inline up to TELEGRAM_SEND_RETRIES times, then the row is put back until its retry_after has passed and tried
again, as often as Telegram asks: flood control never drops a reply and never counts as a failure. Network
errors retry with backoff (up to 30 s apart) for REPLY_MAX_AGE; a refusal for good (blocked bot, unknown chat)
fails the row at once. A long message split into several sends resumes after the last part accepted.

Why not PTB's `AIORateLimiter` as is: it throttles the whole bot and groups, but not private chats
(Telegram asks for about one message a second per chat), and its `rate_limit_args=0` cannot mean "no
retries" (0 falls back to the default), which the Notifier needs so that a 429 becomes `RetryLater` and
the Notification row stays pending. `ChatRateLimiter` is the same idea on the same `aiolimiter`
buckets, with a per-chat bucket and an explicit retry count.

Must not: decide what to say (the engine does) or how it looks (telegram_render does).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
import weakref
from collections import deque
from collections.abc import Callable, Coroutine, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from aiolimiter import AsyncLimiter
from sqlalchemy.engine import Engine
from telegram import Bot
from telegram.constants import ChatAction
from telegram.error import BadRequest, Forbidden, NetworkError, RetryAfter, TimedOut
from telegram.ext import BaseRateLimiter

from bot.channels.telegram_render import TelegramPart, TelegramRenderer
from casestore.clock import Clock
from casestore.dispatch import (
    REPLY_MAX_AGE,
    REPLY_MAX_ERRORS,
    ClaimedReply,
    claim_replies,
    fail_reply,
    mark_replies_sent,
    next_reply_due,
    retry_reply,
)
from casestore.notify import DeliveryError, OutboundMessage, RetryLater
from policies.masking import mask_text

log = logging.getLogger(__name__)

VOICE_UNAVAILABLE = "🔊 居民发来的语音无法转发到这里，请在工单中查看或联系居民。"
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
                # answerCallbackQuery, setMyCommands ...: not throttled; "typing…" is not a message either
                if chat_id is None or endpoint == "sendChatAction":
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

    async def typing(self, chat_id: int) -> None:
        """Show "typing…" in the chat (Telegram shows it for about five seconds)."""
        await self.bot.send_chat_action(chat_id=chat_id, action=ChatAction.TYPING)

    async def send_parts(self, chat_id: int, parts: list[TelegramPart], *, on_part: Callable[[], None]) -> None:
        """Send rendered `parts` in order under the chat's lock, calling `on_part` after each accepted one."""
        async with self._lock(chat_id):
            for part in parts:
                await self._send_part(chat_id, part, None)
                on_part()

    async def _send_part(self, chat_id: int, part: TelegramPart, retries: int | None) -> None:
        extra: dict[str, Any] = {}
        if retries is not None:
            extra["rate_limit_args"] = RetryBudget(retries)
        if part.voice:
            try:
                await self.bot.send_voice(chat_id=chat_id, voice=part.voice, caption=part.text or None,
                                          reply_markup=part.reply_markup, **extra)
                return
            except BadRequest as exc:  # a file id this bot cannot send: the push itself must still go out
                log.warning("voice not forwarded to chat %s: %s", chat_id, exc.message[:100])
                await self.bot.send_message(chat_id=chat_id, text=VOICE_UNAVAILABLE, reply_markup=part.reply_markup,
                                            **extra)
                return
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


def _backoff(attempts: int) -> float:
    return float(min(30, 2 ** max(0, attempts - 1)))


class ReplySender:
    """Delivers the reply outbox of one channel until stopped (see the module docstring).

    Fast path: the rows of a reply written already claimed (casestore.dispatch.record_replies) are handed over
    with `deliver()` and sent without any claim round trip. Everything else (rows that waited behind earlier
    ones, retries coming due, claims of a stopped run, rows of other replicas whose lease ran out) is found by a
    claim round, after a `kick()` or every few seconds. `on_sent(item)` observes each delivered row.
    Its database calls run on one thread of its own, and the "sent" marks of all chats that finished a message
    meanwhile go in one statement and one commit, on another thread: the window between Telegram accepting a
    message and its mark, where a kill makes the message go out twice, stays short."""

    IDLE_POLL_S = 5.0

    def __init__(self, *, engine: Engine, outbound: Outbound, channel: str, clock: Clock,
                 on_sent: Callable[[ClaimedReply], None] | None = None, max_chats: int = 64):
        self.engine = engine
        self.outbound = outbound
        self.channel = channel
        self.clock = clock
        self.on_sent = on_sent
        self.max_chats = max_chats
        self._wake = asyncio.Event()
        self._chats: dict[int, asyncio.Task[None]] = {}  # chat id -> the task delivering its rows
        self._queues: dict[int, deque[ClaimedReply]] = {}  # chat id -> rows claimed for it, in order
        self._waiting: set[int] = set()  # chats with rows that wait as pending in the database
        self._marks: list[tuple[ClaimedReply, int, asyncio.Future[None]]] = []
        self._marker: asyncio.Task[None] | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._mark_pool: ThreadPoolExecutor | None = None
        self._running = False
        self._stopping = False
        self.sent = 0  # rows delivered
        self.resent = 0  # of those, rows a stopped run had claimed (sent again if it had sent them already)
        self.flood_waits = 0  # rows put back by a 429 past the inline retries
        self.errors = 0  # other failed sends (retried or given up)
        self.failed = 0  # rows given up

    def kick(self) -> None:
        self._wake.set()

    def deliver(self, chat_id: int, claimed: Sequence[ClaimedReply]) -> None:
        """Send rows just written for `chat_id`: `claimed` ones at once, or (none given) whatever waits for it."""
        if claimed:
            self._queues.setdefault(chat_id, deque()).extend(claimed)
        else:
            self._waiting.add(chat_id)
        if not self._running or self._stopping:  # the next start (or a claim round) takes them
            return
        if chat_id not in self._chats:
            self._chats[chat_id] = asyncio.create_task(self._deliver_chat(chat_id))

    async def _db(self, fn: Callable[..., Any], /, **kwargs: Any) -> Any:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tg-outbox")
        return await asyncio.get_running_loop().run_in_executor(self._pool, functools.partial(fn, **kwargs))

    async def _db_mark(self, fn: Callable[..., Any], /, **kwargs: Any) -> Any:
        """The "sent" marks on a thread of their own: never queued behind a claim round."""
        if self._mark_pool is None:
            self._mark_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tg-marks")
        return await asyncio.get_running_loop().run_in_executor(self._mark_pool, functools.partial(fn, **kwargs))

    async def run(self, stop: asyncio.Event) -> None:
        self._running, self._stopping = True, False
        for chat_id in list(self._queues) + list(self._waiting):  # handed over before the start
            if chat_id not in self._chats:
                self._chats[chat_id] = asyncio.create_task(self._deliver_chat(chat_id))
        stopped = asyncio.ensure_future(stop.wait())
        try:
            while not stop.is_set():
                self._wake.clear()
                try:
                    await self._claim_round()
                    wait = await self._idle_wait()
                except Exception:  # the database may be away for a moment: look again soon
                    log.exception("reply sender round failed; retrying")
                    wait = 1.0
                woken = asyncio.ensure_future(self._wake.wait())
                await asyncio.wait({woken, stopped}, timeout=wait, return_when=asyncio.FIRST_COMPLETED)
                woken.cancel()
        finally:
            stopped.cancel()
            self._stopping = True  # chat tasks finish the send in flight (and mark it), then stop
            if self._chats:
                _, late = await asyncio.wait(set(self._chats.values()), timeout=15)
                for task in late:
                    task.cancel()
                if late:
                    await asyncio.wait(late, timeout=5)
            if self._marker is not None:
                await asyncio.gather(self._marker, return_exceptions=True)
            for pool in (self._pool, self._mark_pool):
                if pool is not None:
                    pool.shutdown(wait=True)
            self._pool = self._mark_pool = None
            self._running = False

    async def _claim_round(self) -> None:
        room = self.max_chats - len(self._chats)
        if room <= 0:
            return
        claimed = await self._db(claim_replies, engine=self.engine, channel=self.channel, now=self.clock.now(),
                                 limit=room, exclude=set(self._chats))
        for item in claimed:
            self.deliver(item.chat_id, [item])

    async def _idle_wait(self) -> float:
        if len(self._chats) >= self.max_chats:
            return self.IDLE_POLL_S
        due = await self._db(next_reply_due, engine=self.engine, channel=self.channel)
        if due is None:
            return self.IDLE_POLL_S
        return min(self.IDLE_POLL_S, max(0.02, (due - self.clock.now()).total_seconds()))

    async def _deliver_chat(self, chat_id: int) -> None:
        """One chat's rows, one after another: those handed over, then any that waited in the database."""
        queue = self._queues.setdefault(chat_id, deque())
        try:
            while not self._stopping:
                if not queue:
                    if chat_id not in self._waiting:
                        break
                    self._waiting.discard(chat_id)
                    head = await self._db(claim_replies, engine=self.engine, channel=self.channel,
                                          now=self.clock.now(), limit=1, chat_id=chat_id)
                    if head:  # only a chat's head can be claimed: look again after this one
                        queue.extend(head)
                        self._waiting.add(chat_id)
                    else:  # nothing due (its head may wait for a retry: the claim round takes it then)
                        self.kick()
                    continue
                item = queue.popleft()
                parts = await self._send(item)
                if parts is None:  # put back or given up: the rest must not overtake it
                    self.kick()  # the claim round plans for its retry
                    break
                await self._mark_sent(item, parts)
        finally:
            # unregistered before any await: rows handed over from now on start a task of their own (and they can
            # only be claimed ones if nothing of this chat is open, so they never overtake the ones put back here)
            self._chats.pop(chat_id, None)
            self._queues.pop(chat_id, None)
            if queue:  # claimed here but not sent: back to pending, claimable in order
                put_back = asyncio.gather(*(self._db(retry_reply, engine=self.engine, item=item, counts=False,
                                                     parts_sent=item.parts_sent, at=self.clock.now(),
                                                     error="handed back unsent") for item in queue))
                with contextlib.suppress(Exception):
                    await asyncio.shield(put_back)
                self.kick()

    async def _send(self, item: ClaimedReply) -> int | None:
        """Send one row; the number of its Bot API sends, or None after recording why it was not delivered."""
        done = item.parts_sent

        def accepted() -> None:
            nonlocal done
            done += 1

        try:
            parts = self.outbound.renderer.render(OutboundMessage.from_payload(item.payload))[item.parts_sent:]
            await self.outbound.send_parts(item.chat_id, parts, on_part=accepted)
        except asyncio.CancelledError:  # stopped while waiting (e.g. out a long 429): claimable again next start
            put_back = self._db(retry_reply, engine=self.engine, item=item, parts_sent=done, counts=False,
                                at=self.clock.now(), error="stopped before it was sent")
            with contextlib.suppress(Exception):
                await asyncio.shield(put_back)
            raise
        except RetryAfter as exc:
            self.flood_waits += 1
            seconds = retry_after_seconds(exc)
            log.warning("reply %s: 429 past the inline retries; again in %.0fs", item.id, seconds)
            await self._db(retry_reply, engine=self.engine, item=item, parts_sent=done, counts=False,
                           at=self.clock.now() + timedelta(seconds=seconds + 0.1), error=str(exc))
            return None
        except (Forbidden, BadRequest) as exc:  # blocked, left, unknown chat: no retry will help
            self.errors += 1
            self.failed += 1
            log.warning("reply %s refused by Telegram: %s", item.id, mask_text(exc.message))
            await self._db(fail_reply, engine=self.engine, item=item, parts_sent=done,
                           error=mask_text(f"{type(exc).__name__}: {exc.message}"))
            return None
        except (TimedOut, NetworkError) as exc:  # the outcome is unknown: send again (at-least-once)
            self.errors += 1
            await self._retry_or_fail(item, done, exc, give_up=self.clock.now() - item.created_at > REPLY_MAX_AGE)
            return None
        except Exception as exc:  # noqa: BLE001 - a rendering bug or the unexpected: a few tries, then given up
            self.errors += 1
            await self._retry_or_fail(item, done, exc, give_up=item.attempts >= REPLY_MAX_ERRORS)
            return None
        if item.reclaimed:
            self.resent += 1
            log.warning("reply %s sent again: a stopped run had claimed it (it may arrive twice)", item.id)
        self.sent += 1
        if self.on_sent is not None:
            self.on_sent(item)
        return done

    async def _mark_sent(self, item: ClaimedReply, parts: int) -> None:
        """Queue the mark for the next batch and wait for its commit."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._marks.append((item, parts, future))
        if self._marker is None or self._marker.done():
            self._marker = asyncio.create_task(self._flush_marks())
        # shielded: a stop must not fall between "Telegram accepted it" and "marked sent" (that resends it)
        await asyncio.shield(future)

    async def _flush_marks(self) -> None:
        while self._marks:
            batch, self._marks = self._marks, []
            try:  # that commit closes the at-least-once window
                await self._db_mark(mark_replies_sent, engine=self.engine, now=self.clock.now(),
                                    sent=[(item, parts) for item, parts, _ in batch])
            except Exception as exc:  # the rows stay claimed and are sent again once their lease runs out
                log.exception("could not mark %s replies sent", len(batch))
                for _, _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for _, _, future in batch:
                if not future.done():
                    future.set_result(None)

    async def _retry_or_fail(self, item: ClaimedReply, done: int, exc: Exception, *, give_up: bool) -> None:
        error = mask_text(f"{type(exc).__name__}: {exc}")
        if give_up:
            self.failed += 1
            log.error("reply %s given up after %s attempts: %s", item.id, item.attempts, error)
            await self._db(fail_reply, engine=self.engine, item=item, parts_sent=done, error=error)
            return
        delay = _backoff(item.attempts)
        log.warning("reply %s: send failed (%s); again in %.0fs", item.id, error, delay)
        await self._db(retry_reply, engine=self.engine, item=item, parts_sent=done, error=error,
                       at=self.clock.now() + timedelta(seconds=delay))
