"""The Telegram channel adapter: transports (long polling, webhook), the inbox, the `on_<thing>` parsers,
the handler run and the reply outbox, on python-telegram-bot's `Bot`.

One path for every update, whatever the transport::

    getUpdates batch / webhook POST ─► parse (one unparseable update is stored as failed, the others go on)
        ─► inbox insert, masked (unique update id; a duplicate stops here; a batch in one transaction)
        ─► ChatLanes: one lane per chat, in order; lanes of different chats run concurrently, at most
           `handler_threads` handlers at once ("typing…" shown after a second)
        ─► on_text / on_command / on_callback / on_photo / on_location / on_voice (file fetched) / on_unsupported
           ─► Incoming
        ─► one database transaction: the handler (the dialogue engine's writes), the handled mark, the reply
           as outbox rows ─► commit
        ─► ReplySender (background, per chat in order, retries, honours 429) ─► Telegram ─► row sent

Exactly once (bot.channels.inbox has the rules): an update is handled once however often the process is
killed, because the dialogue engine's writes, the handled mark and the reply commit in one transaction on the
channel's own connection (`_OnConnection`); a run cut off by a kill leaves nothing behind and is run again on
the next start. Failures are counted only when the handler really raised (retried in-process after a pause,
MAX_FAILURES in all, across restarts); runs cut off by stopped processes are counted apart and bounded by
MAX_INTERRUPTED (a poison update), and such suspect updates are replayed alone, before anything else. Replies
are at-least-once only between Telegram accepting a message and its outbox row being marked sent; the rows a
stopped run had claimed are sent again and counted (`stats.reclaimed`; only those in that window arrive twice).

Why our own transports around PTB: PTB's Updater confirms a getUpdates batch (next offset) before its updates
are handled, PTB's webhook server answers 200 before anything is stored (and compares the secret with ``!=``),
and PTB's `get_updates` refuses a whole batch when one update does not parse. Here getUpdates is read raw, the
inbox write happens before the offset is confirmed or the webhook is answered, and the webhook checks the
secret before it reads a byte of the body, reads at most MAX_WEBHOOK_BODY and answers 200 to an update it
cannot parse (stored as failed) so that Telegram does not retry a poison update for ever.

Must not: hold business rules (the handler does) or read the environment (Settings come in).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hmac
import json
import logging
import re
import threading
import traceback
import uuid
import weakref
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, cast
from urllib.parse import urlsplit

import tornado.httpserver
import tornado.netutil
import tornado.web
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine
from telegram import BotCommand, BotCommandScopeChat, BotCommandScopeDefault, Message, Update
from telegram.error import Conflict, InvalidToken, NetworkError, TelegramError
from telegram.ext import Application

from bot.channels.callback import CallbackSigner, signing_key
from bot.channels.inbox import AlreadyHandled, Inbox, InboxEntry, within_depth
from bot.channels.outbound import ChatRateLimiter, Outbound, ReplySender, TelegramNotifier
from bot.channels.telegram_render import TelegramRenderer
from bot.dialogue import COMMANDS_ADMIN, COMMANDS_RESIDENT, COMMANDS_WORKER
from bot.dialogue.engine import DialogueEngine
from bot.dialogue.turn import DialogueServices
from bot.dialogue.types import Incoming, Reply, Voice
from bot.dialogue.voice import MAX_VOICE_BYTES, MAX_VOICE_S
from bot.settings import Settings
from casestore.accounts import list_worker_external_ids
from casestore.clock import Clock, SystemClock
from casestore.db import session_scope
from casestore.dispatch import ClaimedReply, dispatch_pending, release_replies
from casestore.notify import OutboundMessage
from policies.masking import mask_text

log = logging.getLogger(__name__)

CHANNEL = "telegram"
Handler = Callable[[Incoming], Reply]
OnConnection = Callable[[Incoming, Connection], Reply]
ALLOWED_UPDATES = ["message", "edited_message", "callback_query"]
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
MAX_WEBHOOK_BODY = 1 << 20  # 1 MB; a Telegram update is a few KB
RETRY_DELAYS = (2.0, 10.0)  # seconds before running a handler again after it raised (then the last one)
TYPING_AFTER = 1.0  # a handler still running after this shows "typing…", renewed every TYPING_EVERY
TYPING_EVERY = 4.5
STOP_GRACE = 20.0  # seconds a stop waits for handlers in flight

TEXT_BUTTON_EXPIRED = "按钮已失效，请重新发送您的问题或使用菜单。"
TEXT_BUSY = "抱歉，系统暂时出了点问题，您的消息已记下，我们会尽快回复。"
TEXT_FAILED = "抱歉，这条消息没能处理成功，请稍后重新发送一次。急事请拨打 12345；遇到危险请直接拨打 110、119 或 120。"
UNSUPPORTED_KINDS = ("sticker", "video", "video_note", "audio", "document", "animation",
                     "contact", "poll", "dice", "game", "story")
_UPDATE_ID = re.compile(rb'"update_id"\s*:\s*(\d{1,19})')
_HANDLER_CONNECTION = "quanbot_handler_transaction"  # Connection.info flag of the channel's handler runs


@dataclass
class ChannelStats:
    received: int = 0
    duplicates: int = 0
    handled: int = 0
    replayed: int = 0
    refused_buttons: int = 0
    errors: int = 0  # handler runs that raised
    failed: int = 0  # updates given up (out of failures, poison, or unparseable)
    poisoned: int = 0  # of those: cut off by stopped processes MAX_INTERRUPTED times
    unparseable: int = 0
    reclaimed: int = 0  # replies a stopped process had claimed: each is sent (again) and may arrive twice
    sends: int = 0  # reply rows delivered
    latencies: list[float] = field(default_factory=list)  # seconds from ingest to the last reply message sent


class ChatLanes:
    """Per-chat FIFO lanes: the jobs of one chat run one after another, those of different chats concurrently.

    A job waiting for its chat holds nothing, so one busy chat never starves the others (the channel bounds
    how many handlers run at once separately). Stopping lets each lane finish the job it is running."""

    def __init__(self) -> None:
        self._queues: dict[int | str, deque[Callable[[], Awaitable[None]]]] = {}
        self._tasks: dict[int | str, asyncio.Task[None]] = {}
        self._stopping = False

    def submit(self, key: int | str, job: Callable[[], Awaitable[None]]) -> None:
        self._queues.setdefault(key, deque()).append(job)
        if key not in self._tasks:
            self._tasks[key] = asyncio.create_task(self._run(key))

    async def _run(self, key: int | str) -> None:
        queue = self._queues[key]
        try:
            while queue and not self._stopping:
                job = queue.popleft()
                try:
                    await job()
                except Exception:  # a job logs its own failures; this keeps the lane going whatever happens
                    log.exception("a job of chat lane %s failed", key)
        finally:
            self._tasks.pop(key, None)
            self._queues.pop(key, None)

    @property
    def busy(self) -> int:
        return len(self._tasks)

    async def stop(self, timeout: float) -> None:
        self._stopping = True
        tasks = set(self._tasks.values())
        if not tasks:
            return
        _, late = await asyncio.wait(tasks, timeout=timeout)
        for task in late:
            task.cancel()
        if late:
            await asyncio.wait(late, timeout=5)


class _OnConnection:
    """The process's services with `engine` swapped for the channel's open connection, always inside a
    transaction: the dialogue engine's session (a SQLAlchemy Session binds to either) then joins that
    transaction and its commit does not commit. A pass the engine rolls back (its error path, or a replay to ask
    a model outside any transaction) rolls that transaction back; the next pass gets a new one."""

    def __init__(self, services: DialogueServices, connection: Connection) -> None:
        self._services = services
        self._connection = connection

    @property
    def engine(self) -> Connection:
        if not self._connection.in_transaction():
            self._connection.begin()
        return self._connection

    def __getattr__(self, name: str) -> Any:
        return getattr(self._services, name)


def on_connection(handler: Handler) -> OnConnection | None:
    """How to run `handler` inside the channel's transaction: its own `handle_on_connection(incoming,
    connection)`, or, for the dialogue engine's `handle`, the engine over `_OnConnection`; None for any other
    callable (its writes are then its own, at-least-once)."""
    explicit = getattr(handler, "handle_on_connection", None)
    if callable(explicit):
        return cast(OnConnection, explicit)
    engine = getattr(handler, "__self__", None)
    if isinstance(engine, DialogueEngine) and getattr(handler, "__func__", None) is DialogueEngine.handle:
        services = engine.services

        def run(incoming: Incoming, connection: Connection) -> Reply:
            return DialogueEngine(cast(DialogueServices, _OnConnection(services, connection))).handle(incoming)

        return run
    return None


_WRITER_LOCKS: weakref.WeakKeyDictionary[Engine, threading.Lock] = weakref.WeakKeyDictionary()
_HOLDS_WRITER_LOCK = "quanbot_holds_writer_lock"
_DML = ("INSERT", "UPDATE", "DELETE", "REPLACE")


def _sqlite_before_execute(conn: Connection, cursor: Any, statement: str, parameters: Any, context: Any,
                           executemany: bool) -> None:
    """Two things SQLite needs in a process whose threads write concurrently.

    The writer lock: a thread about to open a write transaction takes the engine's lock first and gives it back
    at commit or rollback. SQLite has one writer, and a writer that finds it taken sleeps in SQLite's busy
    handler (1, 2, 5 ... 100 ms at a time, whether or not the lock came free meanwhile), so a small write such
    as an outbox "sent" mark could wait behind handler transactions for hundreds of milliseconds: a long window
    in which a kill makes a delivered reply go out again. Waiters on a Python lock wake the moment it is free.
    Every writer of the process takes it before SQLite's lock, so they cannot deadlock; other processes still
    meet SQLite's own lock and busy timeout, and after 30 s without the lock a writer goes ahead to meet it too.

    The savepoint guard: pysqlite opens a transaction only before INSERT/UPDATE/DELETE, so a SAVEPOINT that comes
    first opens it itself, and its RELEASE then commits everything so far: the engine's writes would be committed
    before the handled mark. On the channel's handler connections a BEGIN IMMEDIATE goes first instead."""
    head = statement.lstrip()[:9].upper()
    savepoint = head == "SAVEPOINT" and bool(conn.info.get(_HANDLER_CONNECTION))
    if not (savepoint or head.startswith(_DML)):
        return
    if conn.connection.dbapi_connection.in_transaction:  # type: ignore[union-attr]
        return
    lock = _WRITER_LOCKS.get(conn.engine)
    if lock is not None and _HOLDS_WRITER_LOCK not in conn.info and lock.acquire(timeout=30):
        conn.info[_HOLDS_WRITER_LOCK] = lock
    if savepoint:
        cursor.execute("BEGIN IMMEDIATE")


def _release_writer_lock(info: dict[Any, Any]) -> None:
    lock = info.pop(_HOLDS_WRITER_LOCK, None)
    if lock is not None:
        lock.release()


def _on_transaction_end(conn: Connection) -> None:
    _release_writer_lock(conn.info)


def _on_checkin(dbapi_connection: Any, record: Any, *_: Any) -> None:  # dropped without commit or rollback
    _release_writer_lock(record.info)


def _prepare_sqlite(engine: Engine) -> None:
    """Install `_sqlite_before_execute` and the lock's releases on a SQLite engine, once."""
    if engine.dialect.name != "sqlite" or engine in _WRITER_LOCKS:
        return
    _WRITER_LOCKS[engine] = threading.Lock()
    event.listen(engine, "before_cursor_execute", _sqlite_before_execute)
    event.listen(engine, "commit", _on_transaction_end)
    event.listen(engine, "rollback", _on_transaction_end)
    event.listen(engine.pool, "checkin", _on_checkin)
    event.listen(engine.pool, "reset", _on_checkin)


def _chat_id(update: Update) -> int | None:
    chat = update.effective_chat
    if chat is not None:
        return chat.id
    user = update.effective_user
    return user.id if user is not None else None


def _commands(pairs: Sequence[tuple[str, str]]) -> list[BotCommand]:
    """The dialogue's (command, description) menu as Bot API commands."""
    return [BotCommand(cmd.lstrip("/"), desc) for cmd, desc in pairs]


def _base_file_url(base_url: str) -> str:
    return base_url[: -len("/bot")] + "/file/bot" if base_url.endswith("/bot") else base_url.rstrip("/") + "/file/bot"


def _masked_error(exc: BaseException) -> str:
    return mask_text(f"{type(exc).__name__}: {exc}")[:300]


class TelegramChannel:
    """Runs one Telegram bot for `handler` (any `Callable[[Incoming], Reply]`, e.g. the dialogue engine)."""

    def __init__(self, *, settings: Settings, handler: Handler, db_engine: Engine, clock: Clock | None = None,
                 poll_timeout: float = 10.0, handler_threads: int = 8,
                 retry_delays: Sequence[float] = RETRY_DELAYS):
        token = settings.telegram_token.get_secret_value()
        if not token:
            raise ValueError("TELEGRAM_TOKEN is empty")
        self.settings = settings
        self.handler = handler
        self._on_connection = on_connection(handler)
        self.db_engine = db_engine
        _prepare_sqlite(db_engine)
        self.clock = clock or SystemClock()
        self.poll_timeout = poll_timeout
        self.retry_delays = tuple(retry_delays) or RETRY_DELAYS
        self.inbox = Inbox(db_engine, channel=CHANNEL, clock=self.clock)
        key = signing_key(configured=settings.callback_signing_key.get_secret_value(), bot_token=token)
        self.signer = CallbackSigner(key, clock=self.clock)
        self.renderer = TelegramRenderer(self.signer)
        self.rate_limiter = ChatRateLimiter(overall_rate=settings.telegram_rate_overall,
                                            per_chat_rate=settings.telegram_rate_per_chat,
                                            max_retries=settings.telegram_send_retries)
        builder = Application.builder().token(token).updater(None).rate_limiter(self.rate_limiter)
        if settings.telegram_base_url:
            builder = builder.base_url(settings.telegram_base_url).base_file_url(
                _base_file_url(settings.telegram_base_url))
        self.application: Application = builder.build()  # type: ignore[type-arg]
        self.outbound = Outbound(self.application.bot, self.renderer)
        self.notifier = TelegramNotifier(self.outbound)
        self.sender = ReplySender(engine=db_engine, outbound=self.outbound, channel=CHANNEL, clock=self.clock,
                                  on_sent=self._on_reply_sent)
        self.stats = ChannelStats()
        self.lanes = ChatLanes()
        self.handler_threads = handler_threads
        self._slots = asyncio.Semaphore(max(1, handler_threads))
        self._ingested_at: dict[int, float] = {}
        self._outstanding: dict[int, int] = {}  # update id -> reply rows not yet sent (for on_handled)
        self._inbox_pool: ThreadPoolExecutor | None = None
        self._handler_pool: ThreadPoolExecutor | None = None
        self._webhook_server: tornado.httpserver.HTTPServer | None = None
        self._stopping = asyncio.Event()
        self.on_handled: Callable[[int], None] | None = None  # observer: an update is handled and its reply sent
        self.webhook_port: int | None = None
        # pushes the engine queued (task pages, rating requests) go out right after the update, not at the next
        # scheduler tick: one coalescing background dispatcher, kicked after every handled update
        self._dispatch_wanted = asyncio.Event()
        self._dispatcher: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------ threads
    async def _in_inbox(self, fn: Callable[..., Any], /, **kwargs: Any) -> Any:
        """Run an inbox call on the inbox thread (created on first use)."""
        if self._inbox_pool is None:
            self._inbox_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tg-inbox")
        return await asyncio.get_running_loop().run_in_executor(self._inbox_pool, functools.partial(fn, **kwargs))

    async def _in_handler(self, fn: Callable[..., Any], /, *args: Any) -> Any:
        if self._handler_pool is None:
            self._handler_pool = ThreadPoolExecutor(max_workers=max(1, self.handler_threads),
                                                    thread_name_prefix="tg-handler")
        return await asyncio.get_running_loop().run_in_executor(self._handler_pool, fn, *args)

    def _close_pools(self) -> None:
        for pool in (self._inbox_pool, self._handler_pool):
            if pool is not None:
                pool.shutdown(wait=False)
        self._inbox_pool = self._handler_pool = None

    # ------------------------------------------------------------------ intake
    async def ingest(self, update: Update) -> bool:
        """Store `update` in the inbox, then queue it for handling; False (and nothing else) if it is a
        duplicate delivery."""
        return bool(await self.ingest_many([update]))

    async def ingest_many(self, updates: Sequence[Update]) -> int:
        """Store a batch of updates in the inbox in one transaction, then queue the new ones for handling
        in their order; returns how many were new (duplicate deliveries are skipped)."""
        if not updates:
            return 0
        self.stats.received += len(updates)
        items = [(u.update_id, u.to_dict()) for u in updates]
        new = set(await self._in_inbox(self.inbox.record_many, items=items))
        now = asyncio.get_running_loop().time()
        queued = 0
        for update in updates:
            uid = update.update_id
            if uid not in new:
                self.stats.duplicates += 1
                log.info("telegram update %s is a duplicate: skipped", uid)
                continue
            new.discard(uid)  # the same id twice in one batch: only the first is new
            self._ingested_at[uid] = now
            self._submit(update)
            queued += 1
        return queued

    async def ingest_json(self, data: dict[str, Any]) -> bool:
        """Parse and ingest one update dict; one that cannot be parsed is stored as failed (False)."""
        update = await self._parse_or_refuse(data)
        return update is not None and await self.ingest(update)

    def _parse(self, data: Any) -> tuple[Update | None, str]:
        """(the update in `data`, "") or (None, why not)."""
        try:
            if isinstance(data, dict) and isinstance(data.get("update_id"), int) and within_depth(data):
                return Update.de_json(data, self.application.bot), ""
            return None, "not an update object, or nested too deeply"
        except Exception as exc:  # noqa: BLE001 - any malformed field: refused by the caller, the rest goes on
            return None, _masked_error(exc)

    async def _parse_or_refuse(self, data: Any, raw: bytes = b"") -> Update | None:
        """The update in `data`, or None after recording it as failed (when it has an id) and logging it."""
        update, reason = self._parse(data)
        if update is not None:
            return update
        cid = uuid.uuid4().hex[:8]
        uid: int | None = data["update_id"] if isinstance(data, dict) and isinstance(
            data.get("update_id"), int) else None
        if uid is None and (found := _UPDATE_ID.search(raw[:4096])):
            uid = int(found.group(1))
        excerpt = raw[:200].decode("utf-8", "replace") if raw else _excerpt(data)
        log.warning("unparseable telegram update %s cid=%s (%s): %s", uid, cid, reason, mask_text(excerpt))
        self.stats.unparseable += 1
        if uid is not None:
            self.stats.failed += 1
            await self._in_inbox(self.inbox.record_unparsed, update_id=uid,
                                 error=f"unparseable update cid={cid}: {reason}")
        return None

    async def receive_webhook(self, body: bytes) -> int:
        """The HTTP status for one webhook body (secret already checked): 200 once stored or refused as
        unparseable, 500 only if the inbox cannot be written (Telegram retries)."""
        try:
            data = json.loads(body)
        except (ValueError, RecursionError):  # RecursionError: JSON nested thousands deep
            data = None
        try:
            update = await self._parse_or_refuse(data, raw=body)
            if update is not None:
                await self.ingest(update)
        except Exception:
            log.exception("webhook update could not be stored")
            return 500
        return 200

    def _submit(self, update: Update, *, retry: bool = True) -> None:
        key = _chat_id(update)
        self.lanes.submit(key if key is not None else f"update:{update.update_id}",  # no chat: a lane of its own
                          functools.partial(self._process, update, retry=retry))

    async def replay_unfinished(self) -> int:
        """Queue the updates a previous run stored but did not finish: poison ones are given up, suspect ones
        (cut off by a stopped process) are run first, one at a time, the rest go to their lanes."""
        entries: list[InboxEntry] = await self._in_inbox(self.inbox.unfinished)
        suspects: list[Update] = []
        clean: list[Update] = []
        replayed = 0
        for entry in entries:
            update, reason = self._parse(entry.update)
            poison = entry.interrupted >= self.inbox.max_interrupted
            if update is None or poison:
                why = (f"poison: {entry.interrupted} runs cut off by a stopped process" if poison
                       else f"the stored update does not parse: {reason}")
                self.stats.failed += 1
                self.stats.poisoned += int(poison)
                log.error("telegram update %s given up: %s", entry.update_id, why)
                await self._in_inbox(self.inbox.fail, update_id=entry.update_id, interrupted=True, error=why,
                                     chat_id=_chat_id(update) if update is not None else None,
                                     final_notice=OutboundMessage(text=TEXT_FAILED))
                self.sender.kick()
                continue
            replayed += 1
            self._ingested_at[entry.update_id] = asyncio.get_running_loop().time()
            (suspects if entry.interrupted > 0 else clean).append(update)
        for update in suspects:  # alone: a kill now is this update's doing, not a bystander's
            log.info("replaying telegram update %s alone (cut off before)", update.update_id)
            await self._process(update, retry=False)
            after = await self._in_inbox(self.inbox.get, update_id=update.update_id)
            if after is not None and after.state == "received":  # it raised: its retries run in its lane
                clean.append(update)
        # only now: a chat's later updates must not overtake its suspect one
        for update in sorted(clean, key=lambda u: u.update_id):
            self._submit(update)
        self.stats.replayed += replayed
        return replayed

    # ------------------------------------------------------------------ handling
    async def _process(self, update: Update, *, retry: bool = True) -> None:
        """Handle one stored update: count the run, run the handler in one transaction with the handled mark
        and the reply, and on an exception count a failure and (while any are left) run it again later."""
        uid = update.update_id
        chat_id = _chat_id(update)
        while not self._stopping.is_set():
            entry = await self._in_inbox(self.inbox.begin, update_id=uid)
            if entry is None:  # handled or given up meanwhile (a replica, a replay)
                return
            try:
                async with self._slots:
                    typing = asyncio.create_task(self._typing(chat_id))
                    try:
                        incoming = await self.to_incoming(update)
                        queued, claimed = await self._in_handler(self._handle_in_transaction, uid, chat_id,
                                                                 incoming)
                    finally:
                        typing.cancel()
            except AlreadyHandled:
                return
            except Exception as exc:  # noqa: BLE001 - counted, logged masked with a correlation id, told
                after = await self._failed(update, chat_id, exc)
                if after is None or after.state != "received" or not retry:
                    return
                delay = self.retry_delays[min(after.failures, len(self.retry_delays)) - 1]
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), timeout=delay)
                continue
            self._handled(uid, chat_id, queued, claimed)
            return

    def _handle_in_transaction(self, uid: int, chat_id: int | None,
                               incoming: Incoming | None) -> tuple[int, list[ClaimedReply]]:
        """In a handler thread: the handler, the handled mark and the reply in one transaction; the number
        of reply messages queued, and those written already claimed for this process to send."""
        messages: list[OutboundMessage] = []
        if incoming is not None and self._on_connection is None:  # a plain handler: its writes are its own
            messages = list(self.handler(incoming).messages)
        with self.db_engine.connect() as conn:
            conn.info[_HANDLER_CONNECTION] = True
            try:
                if incoming is not None and self._on_connection is not None:
                    messages = list(self._on_connection(incoming, conn).messages)
                if not conn.in_transaction():  # a plain handler, or the engine rolled its last pass back
                    conn.begin()
                claimed = self.inbox.finish(connection=conn, update_id=uid, chat_id=chat_id, messages=messages)
                conn.commit()
            except BaseException:
                if conn.in_transaction():
                    conn.rollback()
                raise
            finally:
                conn.info.pop(_HANDLER_CONNECTION, None)
        return (len(messages) if chat_id is not None else 0), claimed

    async def _failed(self, update: Update, chat_id: int | None, exc: Exception) -> InboxEntry | None:
        uid = update.update_id
        cid = uuid.uuid4().hex[:8]
        self.stats.errors += 1
        log.error("telegram update %s: handler failed cid=%s: %s", uid, cid, _masked_error(exc))
        log.error("telegram update %s cid=%s at:\n%s", uid, cid,
                  mask_text("".join(traceback.format_tb(exc.__traceback__))))
        try:
            after: InboxEntry | None = await self._in_inbox(
                self.inbox.fail, update_id=uid, error=f"cid={cid} {_masked_error(exc)}", chat_id=chat_id,
                notice=OutboundMessage(text=TEXT_BUSY), final_notice=OutboundMessage(text=TEXT_FAILED))
        except Exception:  # the database itself is away: the row stays received and is replayed at the next start
            log.exception("telegram update %s: the failure could not be recorded", uid)
            return None
        self.sender.kick()
        if after is not None and after.state == "failed":
            self.stats.failed += 1
            log.error("telegram update %s failed %s times: given up", uid, after.failures)
        return after

    def _handled(self, uid: int, chat_id: int | None, messages: int, claimed: list[ClaimedReply]) -> None:
        self.stats.handled += 1
        if messages and chat_id is not None:
            self._outstanding[uid] = messages
            self.sender.deliver(chat_id, claimed)  # none claimed: they wait behind earlier rows of the chat
        else:
            self._delivered(uid)
        self._kick_dispatch()

    def _on_reply_sent(self, item: ClaimedReply) -> None:
        self.stats.sends += 1
        if item.reclaimed:
            self.stats.reclaimed += 1
        left = self._outstanding.get(item.update_id)
        if left is None or item.position >= 1000:  # a notice, or an update of an earlier run
            return
        if left <= 1:
            del self._outstanding[item.update_id]
            self._delivered(item.update_id)
        else:
            self._outstanding[item.update_id] = left - 1

    def _delivered(self, uid: int) -> None:
        started = self._ingested_at.pop(uid, None)
        if started is not None:
            self.stats.latencies.append(asyncio.get_running_loop().time() - started)
        if self.on_handled is not None:
            self.on_handled(uid)

    async def _typing(self, chat_id: int | None) -> None:
        """"typing…" while a handler runs longer than TYPING_AFTER (cancelled when it returns)."""
        if chat_id is None:
            return
        await asyncio.sleep(TYPING_AFTER)
        while True:
            try:
                await self.outbound.typing(chat_id)
            except TelegramError as exc:  # cosmetic
                log.debug("sendChatAction failed: %s", type(exc).__name__)
            await asyncio.sleep(TYPING_EVERY)

    def _kick_dispatch(self) -> None:
        self._dispatch_wanted.set()
        if self._dispatcher is None or self._dispatcher.done():
            self._dispatcher = asyncio.create_task(self._dispatch_loop())

    async def _dispatch_loop(self) -> None:
        """Deliver pending Notification rows until no update has asked for more (rows are leased, so this
        can run beside the scheduler's own dispatch without sending anything twice)."""
        while self._dispatch_wanted.is_set():
            self._dispatch_wanted.clear()
            try:
                await dispatch_pending(engine=self.db_engine, notifier=self.notifier, clock=self.clock, limit=100,
                                       channel=CHANNEL)
            except Exception:  # the scheduler's sweep delivers what this missed
                log.exception("immediate dispatch failed; the scheduler will retry")

    # ------------------------------------------------------------------ parsing
    async def to_incoming(self, update: Update) -> Incoming | None:
        """The channel-neutral form of `update`, or None if there is nothing for the engine to do."""
        if update.callback_query is not None:
            return await self.on_callback(update)
        msg = update.message
        if msg is None or update.effective_user is None:  # edits, member changes, channel posts: ignored
            return None
        if msg.text and msg.text.startswith("/") and any(
                e.type == "bot_command" and e.offset == 0 for e in (msg.entities or ())):
            return self.on_command(update, msg)
        if msg.text is not None:
            return self.on_text(update, msg)
        if msg.photo:
            return self.on_photo(update, msg)
        if msg.location is not None:
            return self.on_location(update, msg)
        if msg.voice is not None:
            return await self.on_voice(update, msg)
        return self.on_unsupported(update, msg)

    def _base(self, update: Update) -> dict[str, Any]:
        user = update.effective_user
        chat = update.effective_chat
        assert user is not None and chat is not None
        return {"channel": CHANNEL, "user_id": user.id, "chat_id": chat.id, "display_name": user.full_name}

    def on_text(self, update: Update, msg: Message) -> Incoming:
        return Incoming(kind="text", text=msg.text or "", **self._base(update))

    def on_command(self, update: Update, msg: Message) -> Incoming:
        word, _, args = (msg.text or "").partition(" ")
        command = word[1:].split("@", 1)[0].lower()
        return Incoming(kind="command", text=msg.text or "", command=command, args=args.strip(),
                        **self._base(update))

    def on_photo(self, update: Update, msg: Message) -> Incoming:
        largest = max(msg.photo, key=lambda p: (p.width * p.height, p.file_size or 0))
        return Incoming(kind="photo", text=msg.caption or "", photo_file_id=largest.file_id, **self._base(update))

    def on_location(self, update: Update, msg: Message) -> Incoming:
        loc = msg.location
        assert loc is not None
        return Incoming(kind="location", location=(loc.latitude, loc.longitude), text=msg.caption or "",
                        **self._base(update))

    async def on_voice(self, update: Update, msg: Message) -> Incoming:
        """A voice note: its file fetched (getFile, then the file URL) when it is short enough to transcribe and an
        endpoint is configured; the file id always goes along, for the grid worker to listen to."""
        note = msg.voice
        assert note is not None
        audio: bytes | None = None
        failed = False
        length = note.duration  # PTB 22 may hand a timedelta (PTB_TIMEDELTA) or whole seconds
        seconds = int(length.total_seconds()) if isinstance(length, timedelta) else int(length)
        wanted = self.settings.transcription_enabled and seconds <= MAX_VOICE_S
        if wanted and (note.file_size or 0) <= MAX_VOICE_BYTES:
            try:
                file = await self.application.bot.get_file(note.file_id)
                if (file.file_size or 0) > MAX_VOICE_BYTES:
                    raise ValueError(f"{file.file_size} bytes")
                audio = bytes(await file.download_as_bytearray())
            except (TelegramError, ValueError, OSError) as exc:  # the worker can still hear it by its file id
                failed = True
                log.warning("voice of update %s not fetched: %s", update.update_id, _masked_error(exc))
        voice = Voice(file_id=note.file_id, duration=seconds, mime_type=note.mime_type or "", audio=audio,
                      fetch_failed=failed)
        return Incoming(kind="voice", voice=voice, text=msg.caption or "", **self._base(update))

    def on_unsupported(self, update: Update, msg: Message) -> Incoming:
        kind = next((k for k in UNSUPPORTED_KINDS if getattr(msg, k, None)), "other")
        return Incoming(kind="unsupported", unsupported_type=kind, text=msg.caption or "", **self._base(update))

    async def on_callback(self, update: Update) -> Incoming | None:
        """A button press: verified token -> Incoming(kind="button"); forged or stale -> refused with an
        alert and no handler call."""
        query = update.callback_query
        assert query is not None
        label = _label_for(query.message, query.data) if isinstance(query.message, Message) else ""
        button = self.signer.decode(query.data, label=label)
        if button is None:
            self.stats.refused_buttons += 1
            log.info("refused button data on update %s", update.update_id)
            try:
                await query.answer(text=TEXT_BUTTON_EXPIRED, show_alert=True)
            except TelegramError as exc:  # a replayed press: the query is too old to answer, nothing to do
                log.info("could not answer a refused press on update %s (%s)", update.update_id, type(exc).__name__)
            return None
        try:  # stop the client's spinner now; the reply comes as a new message
            await query.answer()
        except TelegramError as exc:  # cosmetic: the press itself must still be handled and answered
            log.warning("answerCallbackQuery failed on update %s (%s)", update.update_id, type(exc).__name__)
        chat = update.effective_chat
        return Incoming(channel=CHANNEL, user_id=query.from_user.id,
                        chat_id=chat.id if chat is not None else query.from_user.id, kind="button",
                        button=button, display_name=query.from_user.full_name)

    # ------------------------------------------------------------------ platform setup
    async def setup_commands(self) -> None:
        """Register the command menus: residents by default, workers and admins per chat."""
        bot = self.application.bot
        await bot.set_my_commands(_commands(COMMANDS_RESIDENT),
                                  scope=BotCommandScopeDefault())
        worker_ids = set(await asyncio.to_thread(self._worker_telegram_ids))
        admin_ids = set(self.settings.admin_telegram_ids)
        worker_cmds = _commands(COMMANDS_WORKER)
        admin_cmds = _commands(COMMANDS_ADMIN)
        for chat_id in sorted(worker_ids | admin_ids):
            cmds = []
            if chat_id in admin_ids:
                cmds += admin_cmds
            if chat_id in worker_ids:
                cmds += [c for c in worker_cmds if c.command not in {a.command for a in cmds}]
            try:
                await bot.set_my_commands(cmds, scope=BotCommandScopeChat(chat_id))
            except TelegramError as exc:  # a worker who never opened the bot: "chat not found"
                log.info("could not set commands for a staff chat: %s", exc)

    def _worker_telegram_ids(self) -> list[int]:
        with session_scope(self.db_engine) as session:
            ids = list_worker_external_ids(session=session, channel=CHANNEL)
        return [int(i) for i in ids if i.lstrip("-").isdigit()]

    # ------------------------------------------------------------------ transports
    async def _get_updates(self, offset: int | None) -> list[Any]:
        """One long poll, raw: each update is parsed on its own, so one that does not parse cannot block the
        rest (PTB's get_updates raises for the whole batch)."""
        kwargs: dict[str, Any] = {"timeout": int(self.poll_timeout), "limit": 100,
                                  "allowed_updates": ALLOWED_UPDATES}
        if offset is not None:
            kwargs["offset"] = offset
        result = await self._raw("getUpdates", kwargs, read_timeout=self.poll_timeout + 10)
        return list(result) if isinstance(result, list) else []

    async def _raw(self, method: str, data: dict[str, Any], **timeouts: float) -> Any:
        # Bot._post is what Bot.do_api_request calls, without its warning that a getUpdates method exists
        return await self.application.bot._post(method, data, **timeouts)

    async def poll(self, stop: asyncio.Event) -> None:
        """Long polling; the offset that confirms a batch is only sent after the batch is in the inbox."""
        offset: int | None = None
        backoff = 1.0
        stopped = asyncio.ensure_future(stop.wait())
        while not stop.is_set():
            fetch = asyncio.ensure_future(self._get_updates(offset))
            await asyncio.wait({fetch, stopped}, return_when=asyncio.FIRST_COMPLETED)
            if not fetch.done():  # stopping mid-poll: whatever that poll would return is redelivered later
                fetch.cancel()
                await asyncio.gather(fetch, return_exceptions=True)
                break
            try:
                raw = fetch.result()
                backoff = 1.0
            except InvalidToken:
                raise
            except (NetworkError, Conflict) as exc:
                log.warning("getUpdates failed (%s); retrying in %.0fs", type(exc).__name__, backoff)
                with contextlib.suppress(TimeoutError):  # the backoff ran out: poll again
                    await asyncio.wait_for(stop.wait(), timeout=backoff)
                backoff = min(backoff * 2, 30.0)
                continue
            ids = [d["update_id"] for d in raw if isinstance(d, dict) and isinstance(d.get("update_id"), int)]
            updates = [u for u in [await self._parse_or_refuse(d) for d in raw] if u is not None]
            if updates:  # the whole batch is stored (one transaction) before its offset is confirmed
                await self.ingest_many(updates)
            if ids:
                offset = max(ids) + 1
        stopped.cancel()
        if offset is not None:  # confirm the last batch so it is not delivered again
            with contextlib.suppress(TelegramError):  # best effort: at worst the batch is delivered again
                await self._raw("getUpdates", {"offset": offset, "timeout": 0})

    async def start_webhook(self) -> int:
        """Serve POST <webhook path> on webhook_listen:webhook_port and register the URL with Telegram.

        The secret header is compared in constant time before the body is read; a wrong or missing one gets
        403 and nothing is read or stored. A body over MAX_WEBHOOK_BODY gets 413. A stored update, a duplicate
        and an update that cannot be parsed (stored as failed) get 200; only a failed inbox write gets 500, so
        that Telegram retries.
        """
        secret = self.settings.webhook_secret.get_secret_value()
        if not secret:
            raise ValueError("WEBHOOK_SECRET is required in webhook mode")
        path = urlsplit(self.settings.webhook_url).path or "/"
        app = tornado.web.Application([(path, _WebhookHandler, {"channel": self, "secret": secret.encode()})])
        server = tornado.httpserver.HTTPServer(app, xheaders=True, max_body_size=64 * MAX_WEBHOOK_BODY)
        sockets = tornado.netutil.bind_sockets(self.settings.webhook_port, self.settings.webhook_listen)
        server.add_sockets(sockets)
        self._webhook_server = server
        self.webhook_port = sockets[0].getsockname()[1]
        await self.application.bot.set_webhook(url=self.settings.webhook_url, secret_token=secret,
                                               allowed_updates=ALLOWED_UPDATES)
        return self.webhook_port

    async def stop_webhook(self) -> None:
        if self._webhook_server is not None:
            self._webhook_server.stop()
            await self._webhook_server.close_all_connections()
            self._webhook_server = None

    async def run(self, stop: asyncio.Event, *, on_started: Callable[[], Awaitable[None]] | None = None) -> None:
        """Run until `stop` is set: set up, start the reply sender, replay unfinished updates, then poll or
        serve the webhook; on stop, let the handlers in flight finish and the sends in flight be marked."""
        self._stopping.clear()
        self.lanes = ChatLanes()
        sender_stop = asyncio.Event()
        async with self.application:  # the bot: getMe, HTTP connections, the rate limiter
            await self.setup_commands()
            webhook = bool(self.settings.webhook_url)
            if not webhook:
                await self.application.bot.delete_webhook(drop_pending_updates=False)
                # long polling has one consumer (Telegram refuses a second): claims on replies are a dead run's
                taken = await asyncio.to_thread(release_replies, engine=self.db_engine, channel=CHANNEL,
                                                now=self.clock.now())
                if taken:
                    log.warning("%s replies were being sent when the last run stopped: sending them again "
                                "(each may arrive twice)", taken)
            sender = asyncio.create_task(self.sender.run(sender_stop))
            try:
                await self.replay_unfinished()
                if webhook:
                    await self.start_webhook()
                if on_started is not None:
                    await on_started()
                if webhook:
                    await stop.wait()
                else:
                    await self.poll(stop)
            finally:
                if webhook:
                    await self.stop_webhook()  # the registration stays: other replicas keep serving
                self._stopping.set()
                try:
                    await self.lanes.stop(STOP_GRACE)
                    if self._dispatcher is not None:
                        await asyncio.gather(self._dispatcher, return_exceptions=True)
                finally:
                    sender_stop.set()
                    await asyncio.gather(sender, return_exceptions=True)
                    self._close_pools()


def _label_for(message: Message | None, data: str | None) -> str:
    """The label of the pressed button, read back from the message's keyboard (for the engine's log)."""
    markup = message.reply_markup if message is not None else None
    for row in (markup.inline_keyboard if markup else ()):
        for b in row:
            if b.callback_data == data:
                return b.text
    return ""



@tornado.web.stream_request_body
class _WebhookHandler(tornado.web.RequestHandler):
    """POST from Telegram. The secret and the declared length are checked in `prepare`, before any of the body
    is read; the body is streamed into a buffer capped at MAX_WEBHOOK_BODY."""

    def initialize(self, channel: TelegramChannel, secret: bytes) -> None:
        self.channel = channel
        self.secret = secret
        self.body = bytearray()
        self.answered = False

    def _answer(self, status: int) -> None:
        self.answered = True
        self.set_status(status)
        self.finish()

    def prepare(self) -> None:
        if self.request.method != "POST":
            self._answer(405)
            return
        given = self.request.headers.get(SECRET_HEADER, "").encode("utf-8", "replace")
        if not hmac.compare_digest(given, self.secret):
            log.warning("webhook request with a wrong or missing secret from %s", self.request.remote_ip)
            self._answer(403)
            return
        declared = self.request.headers.get("Content-Length", "")
        if declared and (not declared.isdigit() or int(declared) > MAX_WEBHOOK_BODY):
            log.warning("webhook body of %s bytes refused (over %s)", declared, MAX_WEBHOOK_BODY)
            self._answer(413)

    def data_received(self, chunk: bytes) -> None:
        if self.answered:
            return
        if len(self.body) + len(chunk) > MAX_WEBHOOK_BODY:  # chunked, without a length: cut off here
            self.body.clear()
            log.warning("webhook body over %s bytes refused", MAX_WEBHOOK_BODY)
            self._answer(413)
            return
        self.body += chunk

    async def post(self) -> None:
        if self.answered:
            return
        self.set_status(await self.channel.receive_webhook(bytes(self.body)))


def _excerpt(data: Any) -> str:
    try:
        return json.dumps(data, ensure_ascii=False, default=str)[:200]
    except (ValueError, RecursionError):
        return repr(type(data))
