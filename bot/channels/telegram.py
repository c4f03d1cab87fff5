"""The Telegram channel adapter: transports (long polling, webhook), the inbox, the `on_<thing>` parsers
and the reply path, wired on a python-telegram-bot `Application`.

One path for every update, whatever the transport::

    getUpdates batch / webhook POST ─► ingest_many() / ingest(): inbox insert (unique update id; a
        duplicate stops here; a whole getUpdates batch in one transaction)
        ─► application.update_queue ─► PerChatUpdateProcessor (one update at a time per chat)
        ─► on_update(): parse (on_text / on_command / on_callback / on_photo / on_location /
           on_unsupported) ─► handler(Incoming) in the handler thread pool ─► reply saved in the inbox row
        ─► Outbound (rate limiter, per-chat order) ─► inbox row done

Threads: inbox reads and writes run on one dedicated thread (in order, one connection, no SQLite
writer collisions among themselves, never queued behind slow handler calls); the handler runs in its
own small pool (`handler_threads`), not in asyncio's default executor. An update this process has
just stored (or claimed for replay) is handled from what it stored, without reading the row back.

Why our own transports around PTB's Application: PTB's Updater confirms a getUpdates batch (next
offset) before its updates are handled, and PTB's webhook server answers 200 before anything is
stored (and compares the secret with ``!=``). Here the inbox write happens before the offset is
confirmed or the webhook is answered, so a crash loses nothing: Telegram redelivers, the inbox
replays. Why one dispatcher (a single `TypeHandler`) instead of PTB handler groups: the inbox
bookkeeping must wrap every update exactly once, including updates no specific handler would take,
and a later handler group would run "mark done" even after a failing handler.

Must not: hold business rules (the handler does) or read the environment (Settings come in).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hmac
import json
import logging
import weakref
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import tornado.httpserver
import tornado.netutil
import tornado.web
from sqlalchemy.engine import Engine
from telegram import BotCommand, BotCommandScopeChat, BotCommandScopeDefault, Message, Update
from telegram.error import Conflict, InvalidToken, NetworkError, TelegramError
from telegram.ext import Application, BaseUpdateProcessor, ContextTypes, TypeHandler

from bot.channels.callback import CallbackSigner, signing_key
from bot.channels.inbox import Inbox, InboxEntry
from bot.channels.outbound import ChatRateLimiter, Outbound, TelegramNotifier
from bot.channels.telegram_render import TelegramRenderer
from bot.dialogue import COMMANDS_ADMIN, COMMANDS_RESIDENT, COMMANDS_WORKER
from bot.dialogue.types import Incoming, Reply
from bot.settings import Settings
from casestore.accounts import list_worker_external_ids
from casestore.clock import Clock, SystemClock
from casestore.db import session_scope
from casestore.dispatch import dispatch_pending
from casestore.notify import OutboundMessage

log = logging.getLogger(__name__)

CHANNEL = "telegram"
Handler = Callable[[Incoming], Reply]
ALLOWED_UPDATES = ["message", "edited_message", "callback_query"]
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"

TEXT_BUTTON_EXPIRED = "按钮已失效，请重新发送您的问题或使用菜单。"
TEXT_BUSY = "抱歉，系统暂时出了点问题，您的消息已记下，我们会尽快回复。"
UNSUPPORTED_KINDS = ("sticker", "voice", "video", "video_note", "audio", "document", "animation",
                     "contact", "poll", "dice", "game", "story")



@dataclass
class ChannelStats:
    received: int = 0
    duplicates: int = 0
    handled: int = 0
    replayed: int = 0
    refused_buttons: int = 0
    errors: int = 0
    sends: int = 0
    latencies: list[float] = field(default_factory=list)  # seconds from ingest to last reply sent


class PerChatUpdateProcessor(BaseUpdateProcessor):
    """Concurrent across chats, sequential within one chat: a person's messages are handled in the
    order they came, so the dialogue state never sees two of their turns at once."""

    def __init__(self, max_concurrent_updates: int = 256):
        super().__init__(max_concurrent_updates)
        self._locks: weakref.WeakValueDictionary[int, asyncio.Lock] = weakref.WeakValueDictionary()

    async def do_process_update(self, update: object, coroutine: Awaitable[Any]) -> None:
        chat = update.effective_chat if isinstance(update, Update) else None
        key = chat.id if chat is not None else id(update)
        lock = self._locks.get(key)
        if lock is None:
            lock = asyncio.Lock()
            self._locks[key] = lock
        async with lock:
            await coroutine

    async def initialize(self) -> None:
        pass

    async def shutdown(self) -> None:
        pass


def _commands(pairs: Sequence[tuple[str, str]]) -> list[BotCommand]:
    """The dialogue's (command, description) menu as Bot API commands."""
    return [BotCommand(cmd.lstrip("/"), desc) for cmd, desc in pairs]


def _base_file_url(base_url: str) -> str:
    return base_url[: -len("/bot")] + "/file/bot" if base_url.endswith("/bot") else base_url.rstrip("/") + "/file/bot"


class TelegramChannel:
    """Runs one Telegram bot for `handler` (any `Callable[[Incoming], Reply]`, e.g. the dialogue engine)."""

    def __init__(self, *, settings: Settings, handler: Handler, db_engine: Engine, clock: Clock | None = None,
                 poll_timeout: float = 10.0, handler_threads: int = 8):
        token = settings.telegram_token.get_secret_value()
        if not token:
            raise ValueError("TELEGRAM_TOKEN is empty")
        self.settings = settings
        self.handler = handler
        self.db_engine = db_engine
        self.clock = clock or SystemClock()
        self.poll_timeout = poll_timeout
        self.inbox = Inbox(db_engine, channel=CHANNEL, clock=self.clock)
        key = signing_key(configured=settings.callback_signing_key.get_secret_value(), bot_token=token)
        self.signer = CallbackSigner(key, clock=self.clock)
        self.renderer = TelegramRenderer(self.signer)
        self.rate_limiter = ChatRateLimiter(overall_rate=settings.telegram_rate_overall,
                                            per_chat_rate=settings.telegram_rate_per_chat,
                                            max_retries=settings.telegram_send_retries)
        builder = (Application.builder().token(token).updater(None).rate_limiter(self.rate_limiter)
                   .concurrent_updates(PerChatUpdateProcessor()))
        if settings.telegram_base_url:
            builder = builder.base_url(settings.telegram_base_url).base_file_url(
                _base_file_url(settings.telegram_base_url))
        self.application: Application = builder.build()
        self.application.add_handler(TypeHandler(Update, self.on_update))
        self.application.add_error_handler(self._on_error)
        self.outbound = Outbound(self.application.bot, self.renderer)
        self.notifier = TelegramNotifier(self.outbound)
        self.stats = ChannelStats()
        self._ingested_at: dict[int, float] = {}
        # update id -> its inbox entry, for updates this process stored or claimed and has not handled yet
        self._known: dict[int, InboxEntry] = {}
        self.handler_threads = handler_threads
        self._inbox_pool: ThreadPoolExecutor | None = None
        self._handler_pool: ThreadPoolExecutor | None = None
        self._webhook_server: tornado.httpserver.HTTPServer | None = None
        self.on_handled: Callable[[int], None] | None = None  # observer (metrics, benchmarks): update id done
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

    async def _in_handler(self, incoming: Incoming) -> Reply:
        if self._handler_pool is None:
            self._handler_pool = ThreadPoolExecutor(max_workers=max(1, self.handler_threads),
                                                    thread_name_prefix="tg-handler")
        return await asyncio.get_running_loop().run_in_executor(self._handler_pool, self.handler, incoming)

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
        for update, (uid, data) in zip(updates, items, strict=True):
            if uid not in new:
                self.stats.duplicates += 1
                log.info("telegram update %s is a duplicate: skipped", uid)
                continue
            new.discard(uid)  # the same id twice in one batch: only the first is new
            self._known[uid] = InboxEntry(update_id=uid, update=data, reply=None, attempts=1, state="received")
            self._ingested_at[uid] = now
            await self.application.update_queue.put(update)
            queued += 1
        return queued

    async def ingest_json(self, data: dict[str, Any]) -> bool:
        return await self.ingest(Update.de_json(data, self.application.bot))

    async def replay_unfinished(self) -> int:
        """Queue the updates a previous run stored but did not finish (each claimed for one attempt)."""
        entries = await self._in_inbox(self.inbox.claim_unfinished)
        for entry in entries:
            log.info("replaying telegram update %s (attempt %s)", entry.update_id, entry.attempts)
            self._known[entry.update_id] = entry
            self._ingested_at[entry.update_id] = asyncio.get_running_loop().time()
            await self.application.update_queue.put(Update.de_json(entry.update, self.application.bot))
        self.stats.replayed += len(entries)
        return len(entries)

    # ------------------------------------------------------------------ the one dispatcher
    async def on_update(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        uid = update.update_id
        # stored or claimed by this process: that row is ours and unchanged since, no need to read it back
        entry = self._known.pop(uid, None)
        if entry is None:
            entry = await self._in_inbox(self.inbox.get, update_id=uid)
        if entry is None:  # fed straight to process_update (not through ingest): store it first
            await self._in_inbox(self.inbox.record, update_id=uid, update_data=update.to_dict())
            entry = await self._in_inbox(self.inbox.get, update_id=uid)
        if entry is None or entry.state != "received":
            return
        chat = update.effective_chat
        engine_failed = False
        try:
            if entry.reply is not None:  # the engine already answered before a crash: only re-send
                messages = [OutboundMessage.from_payload(p) for p in entry.reply]
            else:
                incoming = await self.to_incoming(update)
                if incoming is None:
                    await self._in_inbox(self.inbox.mark_done, update_id=uid)
                    return
                engine_failed = True
                reply = await self._in_handler(incoming)
                engine_failed = False
                messages = list(reply.messages)
                await self._in_inbox(self.inbox.save_reply, update_id=uid,
                                     reply=[m.to_payload() for m in messages], update_data=entry.update)
            if chat is not None and messages:
                self.stats.sends += await self.outbound.send(chat.id, messages)
            await self._in_inbox(self.inbox.mark_done, update_id=uid)
            self.stats.handled += 1
            self._kick_dispatch()
            if self.on_handled is not None:
                self.on_handled(uid)
            started = self._ingested_at.pop(uid, None)
            if started is not None:
                self.stats.latencies.append(asyncio.get_running_loop().time() - started)
        except Exception as exc:
            self.stats.errors += 1
            log.exception("telegram update %s failed (%s); kept for replay", uid, type(exc).__name__)
            await self._in_inbox(self.inbox.mark_error, update_id=uid, error=f"{type(exc).__name__}: {exc}")
            if engine_failed and chat is not None:
                try:
                    await self.outbound.send(chat.id, [OutboundMessage(text=TEXT_BUSY)])
                except TelegramError:
                    log.warning("could not send the busy notice for update %s", uid)

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
            await query.answer(text=TEXT_BUTTON_EXPIRED, show_alert=True)
            return None
        try:  # stop the client's spinner now; the reply comes as a new message
            await query.answer()
        except TelegramError as exc:  # cosmetic: the press itself must still be handled and answered
            log.warning("answerCallbackQuery failed on update %s (%s)", update.update_id, type(exc).__name__)
        chat = update.effective_chat
        return Incoming(channel=CHANNEL, user_id=query.from_user.id,
                        chat_id=chat.id if chat is not None else query.from_user.id, kind="button",
                        button=button, display_name=query.from_user.full_name)

    async def _on_error(self, update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
        log.error("telegram handler error: %s", type(context.error).__name__, exc_info=context.error)

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
    async def poll(self, stop: asyncio.Event) -> None:
        """Long polling; the offset that confirms a batch is only sent after the batch is in the inbox."""
        bot = self.application.bot
        offset: int | None = None
        backoff = 1.0
        stopped = asyncio.ensure_future(stop.wait())
        while not stop.is_set():
            fetch = asyncio.ensure_future(bot.get_updates(offset=offset, timeout=int(self.poll_timeout), limit=100,
                                                          allowed_updates=ALLOWED_UPDATES))
            await asyncio.wait({fetch, stopped}, return_when=asyncio.FIRST_COMPLETED)
            if not fetch.done():  # stopping mid-poll: whatever that poll would return is redelivered later
                fetch.cancel()
                await asyncio.gather(fetch, return_exceptions=True)
                break
            try:
                updates = fetch.result()
                backoff = 1.0
            except InvalidToken:
                raise
            except (NetworkError, Conflict) as exc:
                log.warning("getUpdates failed (%s); retrying in %.0fs", type(exc).__name__, backoff)
                with contextlib.suppress(TimeoutError):  # the backoff ran out: poll again
                    await asyncio.wait_for(stop.wait(), timeout=backoff)
                backoff = min(backoff * 2, 30.0)
                continue
            if updates:  # the whole batch is stored (one transaction) before its offset is confirmed
                await self.ingest_many(updates)
                offset = max(u.update_id for u in updates) + 1
        stopped.cancel()
        if offset is not None:  # confirm the last batch so it is not delivered again
            with contextlib.suppress(TelegramError):  # best effort: at worst the batch is delivered again
                await bot.get_updates(offset=offset, timeout=0)

    async def start_webhook(self) -> int:
        """Serve POST <webhook path> on webhook_listen:webhook_port and register the URL with Telegram.

        The secret header is compared in constant time; a wrong or missing one gets 403 and nothing is
        stored. A stored update gets 200; if the inbox write fails the answer is 500 so Telegram retries.
        """
        secret = self.settings.webhook_secret.get_secret_value()
        if not secret:
            raise ValueError("WEBHOOK_SECRET is required in webhook mode")
        path = urlsplit(self.settings.webhook_url).path or "/"
        app = tornado.web.Application([(path, _WebhookHandler, {"channel": self, "secret": secret.encode()})])
        server = tornado.httpserver.HTTPServer(app, xheaders=True)
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
        """Run until `stop` is set: set up, replay unfinished updates, then poll or serve the webhook."""
        async with self.application:
            await self.setup_commands()
            webhook = bool(self.settings.webhook_url)
            if webhook:
                await self.start_webhook()
            else:
                await self.application.bot.delete_webhook(drop_pending_updates=False)
            await self.application.start()
            try:
                await self.replay_unfinished()
                if on_started is not None:
                    await on_started()
                if webhook:
                    await stop.wait()
                else:
                    await self.poll(stop)
            finally:
                if webhook:
                    await self.stop_webhook()  # the registration stays: other replicas keep serving
                try:
                    await self.application.stop()  # drains the update queue first
                finally:
                    self._close_pools()


def _label_for(message: Message | None, data: str | None) -> str:
    """The label of the pressed button, read back from the message's keyboard (for the engine's log)."""
    markup = message.reply_markup if message is not None else None
    for row in (markup.inline_keyboard if markup else ()):
        for b in row:
            if b.callback_data == data:
                return b.text
    return ""


class _WebhookHandler(tornado.web.RequestHandler):
    def initialize(self, channel: TelegramChannel, secret: bytes) -> None:
        self.channel = channel
        self.secret = secret

    async def post(self) -> None:
        given = self.request.headers.get(SECRET_HEADER, "").encode("utf-8", "replace")
        if not hmac.compare_digest(given, self.secret):
            log.warning("webhook request with a wrong or missing secret from %s", self.request.remote_ip)
            self.set_status(403)
            return
        try:
            data = json.loads(self.request.body)
        except ValueError:
            data = None
        if not isinstance(data, dict) or not isinstance(data.get("update_id"), int):
            self.set_status(400)
            return
        try:
            await self.channel.ingest_json(data)
        except Exception:
            log.exception("webhook update could not be stored")
            self.set_status(500)
            return
        self.set_status(200)
