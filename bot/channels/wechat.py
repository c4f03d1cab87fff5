"""The WeChat Official Account (公众号) channel for residents: the callback server, the inbox, the handler run,
the reply outbox and pushes, on wechatpy.

One path for every callback::

    GET  ?signature&timestamp&nonce&echostr   server verification: check_signature -> echostr, else 403
    POST ?timestamp&nonce&msg_signature&encrypt_type=aes   (safe mode)
        ─► timestamp within MAX_SKEW of now, else 403 (a replayed old callback); body at most MAX_BODY (413)
        ─► WeChatCrypto.decrypt_message: msg_signature verified, AES decrypted; a wrong one is 403, nothing stored
        ─► parse_message ─► inbox insert, masked, under MsgId (events: FromUserName + CreateTime + Event)
           (a duplicate — WeChat retries three times when it has no answer within 5 s — stops here)
        ─► answered "success" at once; handled asynchronously in the chat's lane
        ─► on_text / photo / on_voice (file fetched) / location / on_event ─► Incoming (a typed number or label of the
           choices last shown becomes the signed button it stands for, verified like a Telegram press)
        ─► one database transaction: the handler (the dialogue engine's writes), the handled mark, the reply as
           outbox rows (numbered choices rendered in) and the menu of those choices ─► commit
        ─► ReplySender (bot.channels.outbound, shared with Telegram) ─► message/custom/send ─► row sent

Exactly once follows bot.channels.inbox: the engine's writes, the handled mark and the reply commit together on
the channel's own connection (telegram.on_connection), so a kill -9 at any point leaves either nothing (the
update is replayed at the next start) or everything. Replies go through the customer-service API, which only
reaches a user who wrote within 48 hours: replies always are; a push to someone silent for longer is refused
here (DeliveryError) rather than sent into an error.

People and chats are numeric aliases of the OpenID (bot.channels.wechat_store): the dialogue's identity is
(channel "wechat", alias).
Must not: hold business rules (the handler does) or read the environment (Settings come in).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import logging
import time
import traceback
import uuid
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import tornado.httpserver
import tornado.netutil
import tornado.web
from sqlalchemy.engine import Engine
from telegram.error import BadRequest, Forbidden, NetworkError, RetryAfter
from wechatpy import parse_message
from wechatpy.crypto import WeChatCrypto
from wechatpy.exceptions import InvalidAppIdException, InvalidSignatureException
from wechatpy.utils import check_signature

from bot.channels.callback import CallbackSigner, signing_key
from bot.channels.inbox import AlreadyHandled, Inbox, InboxEntry
from bot.channels.outbound import ReplySender, retry_after_seconds
from bot.channels.telegram import _HANDLER_CONNECTION, ChatLanes, Handler, _prepare_sqlite, on_connection
from bot.channels.wechat_api import OfficialAccountApi, WeChatLimited, WeChatRefused, WeChatUnavailable, WeComApi
from bot.channels.wechat_render import WeChatPart, WeChatRenderer
from bot.channels.wechat_store import get_menu, is_alias, remember_user, set_menu, user_of
from bot.dialogue.types import Incoming, Voice
from bot.dialogue.voice import MAX_VOICE_BYTES
from bot.settings import Settings
from casestore.clock import Clock, SystemClock
from casestore.dispatch import ClaimedReply, dispatch_pending, release_replies
from casestore.notify import DeliveryError, Notifier, OutboundMessage, RetryLater
from policies.masking import mask_text

log = logging.getLogger(__name__)

CHANNEL = "wechat"
MAX_BODY = 64 * 1024  # a callback is a few hundred bytes
MAX_SKEW = timedelta(minutes=5)  # a callback whose timestamp is further from now is refused as a replay
WINDOW = timedelta(hours=48)  # the customer-service API reaches a user this long after they last wrote
RETRY_DELAYS = (2.0, 10.0)
STOP_GRACE = 20.0

TEXT_BUTTON_EXPIRED = "这个选项已失效，请重新发送您的问题。"
TEXT_BUSY = "抱歉，系统暂时出了点问题，您的消息已记下，我们会尽快回复。"
TEXT_FAILED = "抱歉，这条消息没能处理成功，请稍后重新发送一次。急事请拨打 12345；遇到危险请直接拨打 110、119 或 120。"
UNSUPPORTED = frozenset({"video", "shortvideo", "link", "file", "music", "news"})


@dataclass
class WeChatStats:
    received: int = 0
    duplicates: int = 0
    refused: int = 0  # callbacks refused: bad signature, stale timestamp, oversized, undecryptable
    handled: int = 0
    replayed: int = 0
    errors: int = 0
    failed: int = 0
    sends: int = 0
    latencies: list[float] = field(default_factory=list)


@dataclass(frozen=True)
class ChannelConfig:
    app_id: str  # the OA's AppID, or the WeCom CorpID (what the AES payload carries)
    token: str
    aes_key: str
    callback_url: str
    listen: str
    port: int
    release_on_start: bool


def event_key(from_user: str, create_time: int | str, event: str) -> int:
    """The inbox key of an event (events have no MsgId): negative, so it never meets a MsgId."""
    digest = hashlib.sha256(f"{from_user}\x00{create_time}\x00{event}".encode()).digest()
    return -1 - int.from_bytes(digest[:8], "big") % (1 << 62)


def wechat_signing_key(settings: Settings) -> bytes:
    """The button key: CALLBACK_SIGNING_KEY, else the Telegram bot's (so a worker's buttons verify on both), else
    one derived from the Official Account's secret, else from the WeCom app's. Every channel of a process signs
    with the same key, so a worker's push on one channel can be acted on from another."""
    token = (settings.telegram_token.get_secret_value()
             or (f"wechat|{settings.wechat_app_id}|{settings.wechat_app_secret.get_secret_value()}"
                 if settings.wechat_app_secret.get_secret_value() else "")
             or f"wecom|{settings.wecom_corp_id}|{settings.wecom_secret.get_secret_value()}")
    return signing_key(configured=settings.callback_signing_key.get_secret_value(), bot_token=token)


def _payload(message: Any, alias: int) -> dict[str, Any]:
    """What the inbox keeps of a parsed message: the fields the channel uses, under names the inbox's masking
    leaves alone where they are machine ids (`file_id`, `type`)."""
    out: dict[str, Any] = {"type": str(message.type), "alias": alias, "create_time": int(message.time or 0)}
    if message.type == "text":
        out["text"] = message.content or ""
    elif message.type == "image":
        out["file_id"] = message.media_id or ""
    elif message.type == "voice":
        out["file_id"] = message.media_id or ""
        out["recognition"] = getattr(message, "recognition", None) or ""
    elif message.type == "location":
        out["lat"], out["lon"] = float(message.location_x), float(message.location_y)
        out["text"] = message.label or ""
    elif message.type == "event":
        out["event"] = str(message.event)
        out["text"] = str(getattr(message, "key", "") or "")
    return out


class WeChatOutbound:
    """What ReplySender needs of a channel (`renderer.render`, `send_parts`) over the Official Account API.

    ReplySender speaks PTB's error types: a send limit becomes RetryAfter (the row waits, never dropped), a
    refusal for good Forbidden (the row fails), busy or unreachable NetworkError (retried with backoff)."""

    def __init__(self, api: OfficialAccountApi, renderer: WeChatRenderer, engine: Engine):
        self.api = api
        self.renderer = renderer
        self.engine = engine
        self._users: dict[int, str] = {}

    async def openid(self, alias: int) -> str:
        found = self._users.get(alias)
        if found is None:
            row = await asyncio.to_thread(user_of, self.engine, alias)
            if row is None:
                raise BadRequest("unknown wechat user")
            found = self._users[alias] = row[1]
        return found

    async def send_parts(self, chat_id: int, parts: list[WeChatPart], *, on_part: Callable[[], None]) -> None:
        openid = await self.openid(chat_id)
        for part in parts:
            try:
                await asyncio.to_thread(self.api.send_text, openid, part.text)
            except WeChatLimited as exc:
                raise RetryAfter(max(1, int(exc.retry_after))) from exc
            except WeChatRefused as exc:
                raise Forbidden(str(exc)) from exc
            except WeChatUnavailable as exc:
                raise NetworkError(str(exc)) from exc
            on_part()


PhotoFetch = Callable[[str], bytes]  # another account's media download: a photo id -> its bytes


def photo_media(api: Any, photo: str, fetchers: Sequence[PhotoFetch]) -> str | None:
    """A media id under which `api`'s account can send the photo of a push: the id itself when the photo is this
    account's own media, else the bytes from the account that holds it (a resident's OA photo for a worker on
    WeCom, a worker's WeCom photo for a resident) uploaded here. None: no account holds it (a Telegram file id,
    media past WeChat's 3 days); the push text keeps its mention of the photo. Synchronous (run in a thread)."""
    for fetch in (api.download, *fetchers):
        try:
            data = fetch(photo)
        except Exception as exc:  # noqa: BLE001 - not this account's media, or the account away: try the next
            log.debug("photo %s not at this source: %s", photo[:16], type(exc).__name__)
            continue
        if not data:
            continue
        if fetch is api.download:
            return photo
        try:
            return str(api.upload_image(data))
        except Exception as exc:  # noqa: BLE001 - the push goes without its image
            log.warning("photo of a push not uploaded: %s", type(exc).__name__)
            return None
    return None


async def send_photo(api: Any, user: str, photo: str | None, fetchers: Sequence[PhotoFetch],
                     render: Callable[[OutboundMessage], list[WeChatPart]],
                     message: OutboundMessage) -> tuple[list[WeChatPart], str | None]:
    """The parts of a push and the media id of its photo to send after them (None: mentioned in the text)."""
    media = await asyncio.to_thread(photo_media, api, photo, fetchers) if photo else None
    if media is None:
        return render(message), None
    return render(OutboundMessage(text=message.text, buttons=message.buttons, photo=None,
                                  voice=message.voice)), media


class WeChatNotifier:
    """`casestore.notify.Notifier` for pushes to Official Account users (one attempt per call). A push's photo
    goes as an image after its text when this account or one of `fetchers` holds it (photo_media)."""

    def __init__(self, outbound: WeChatOutbound, clock: Clock, fetchers: Sequence[PhotoFetch] = ()):
        self.outbound = outbound
        self.clock = clock
        self.fetchers = tuple(fetchers)

    async def send(self, *, chat_id: int, message: OutboundMessage) -> None:
        user = await asyncio.to_thread(user_of, self.outbound.engine, chat_id)
        if user is None:
            raise DeliveryError("unknown wechat user")
        last = user[2]
        if last is None or self.clock.now() - last > WINDOW:
            raise DeliveryError("outside the 48-hour customer-service window")
        parts, media = await send_photo(self.outbound.api, user[1], message.photo, self.fetchers,
                                        self.outbound.renderer.render, message)
        if parts[-1].choices:  # before the send: a number typed the moment the message shows must find them
            await asyncio.to_thread(_set_menu, self.outbound.engine, chat_id, parts[-1].choices, self.clock)
        try:
            await self.outbound.send_parts(chat_id, parts, on_part=lambda: None)
            if media is not None:
                await _send_image(self.outbound.api, user[1], media)
        except RetryAfter as exc:
            raise RetryLater(retry_after_seconds(exc)) from exc
        except (Forbidden, BadRequest) as exc:
            raise DeliveryError(str(exc)) from exc
        except NetworkError as exc:
            raise RetryLater(5.0) from exc


async def _send_image(api: Any, user: str, media: str) -> None:
    """The image after a push's text: a failure is logged, not retried (the text went; a retry would repeat it)."""
    try:
        await asyncio.to_thread(api.send_image, user, media)
    except Exception as exc:  # noqa: BLE001
        log.warning("image of a push not sent: %s", type(exc).__name__)


def photo_fetchers(settings: Settings, engine: Engine, clock: Clock, *, besides: str) -> list[PhotoFetch]:
    """The media downloads of the configured WeChat accounts other than `besides` ("wechat" or "wecom")."""
    out: list[PhotoFetch] = []
    if besides != "wechat" and settings.wechat_app_id and settings.wechat_app_secret.get_secret_value():
        oa = OfficialAccountApi(appid=settings.wechat_app_id, secret=settings.wechat_app_secret.get_secret_value(),
                                tokens_engine=engine, base_url=settings.wechat_base_url, clock=clock)
        out.append(oa.download)
    if besides != "wecom" and settings.wecom_corp_id and settings.wecom_secret.get_secret_value():
        out.append(WeComApi(corp_id=settings.wecom_corp_id, agent_id=settings.wecom_agent_id,
                            secret=settings.wecom_secret.get_secret_value(), tokens_engine=engine,
                            base_url=settings.wecom_base_url, clock=clock).download)
    return out


def _set_menu(engine: Engine, alias: int, choices: list[list[str]], clock: Clock) -> None:
    with engine.begin() as conn:
        set_menu(conn, alias=alias, choices=choices, now=clock.now())


class RoutingNotifier:
    """One Notifier for a process that runs several channels: a WeChat alias goes to the WeChat channel that
    owns it, every other chat id to `default` (Telegram)."""

    def __init__(self, default: Notifier, *, engine: Engine, channels: dict[str, Notifier]):
        self.default = default
        self.engine = engine
        self.channels = channels

    async def initialize(self) -> None:  # the default may hold a bot's connections (a ManagedNotifier)
        start = getattr(self.default, "initialize", None)
        if start is not None:
            await start()

    async def shutdown(self) -> None:
        stop = getattr(self.default, "shutdown", None)
        if stop is not None:
            await stop()

    async def send(self, *, chat_id: int, message: OutboundMessage) -> None:
        if is_alias(chat_id):
            user = await asyncio.to_thread(user_of, self.engine, chat_id)
            notifier = self.channels.get(user[0]) if user is not None else None
            if notifier is None:
                raise DeliveryError("no running channel for this wechat user")
            await notifier.send(chat_id=chat_id, message=message)
            return
        await self.default.send(chat_id=chat_id, message=message)


class WeChatChannel:
    """Runs the Official Account callback for `handler` (e.g. the dialogue engine's `handle`)."""

    channel = CHANNEL

    def __init__(self, *, settings: Settings, handler: Handler, db_engine: Engine, clock: Clock | None = None,
                 api: OfficialAccountApi | None = None, handler_threads: int = 8,
                 retry_delays: Sequence[float] = RETRY_DELAYS, max_skew: timedelta = MAX_SKEW):
        self.config = self._config(settings)
        token = self.config.token
        self.settings = settings
        self.handler = handler
        self._on_connection = on_connection(handler)
        self.db_engine = db_engine
        _prepare_sqlite(db_engine)
        self.clock = clock or SystemClock()
        self.token = token
        self.crypto = self._crypto(self.config)
        self.max_skew = max_skew
        self.retry_delays = tuple(retry_delays) or RETRY_DELAYS
        self.inbox = Inbox(db_engine, channel=self.channel, clock=self.clock)
        self.signer = CallbackSigner(wechat_signing_key(settings), clock=self.clock)
        self.renderer = WeChatRenderer(self.signer)
        self.api = api or self._api(settings, db_engine)
        self.outbound = WeChatOutbound(self.api, self.renderer, db_engine)
        self.notifier: Notifier = self._notifier()
        # pushes queued by a handled update go out at once through this (quanbot run: a RoutingNotifier over
        # every channel, with push_all, so a resident's report reaches a worker on another channel at once)
        self.push_notifier: Notifier | None = None
        self.sender = ReplySender(engine=db_engine, outbound=self.outbound,  # type: ignore[arg-type]
                                  channel=self.channel, clock=self.clock, on_sent=self._on_reply_sent)
        self.stats = WeChatStats()
        self.lanes = ChatLanes()
        self.handler_threads = handler_threads
        self._slots = asyncio.Semaphore(max(1, handler_threads))
        self._pool: ThreadPoolExecutor | None = None
        self._inbox_pool: ThreadPoolExecutor | None = None
        self._server: tornado.httpserver.HTTPServer | None = None
        self._stopping = asyncio.Event()
        self._ingested_at: dict[int, float] = {}
        self._raw: dict[int, dict[str, Any]] = {}
        self._dispatch_wanted = asyncio.Event()
        self._dispatcher: asyncio.Task[None] | None = None
        self.port: int | None = None
        self.on_handled: Callable[[int], None] | None = None

    # ------------------------------------------------------------------ what differs between OA and WeCom
    def _config(self, settings: Settings) -> ChannelConfig:
        token = settings.wechat_token.get_secret_value()
        aes_key = settings.wechat_encoding_aes_key.get_secret_value()
        if not (settings.wechat_app_id and token and aes_key):
            raise ValueError("WECHAT_APP_ID, WECHAT_TOKEN and WECHAT_ENCODING_AES_KEY are required")
        return ChannelConfig(app_id=settings.wechat_app_id, token=token, aes_key=aes_key,
                             callback_url=settings.wechat_callback_url, listen=settings.wechat_listen,
                             port=settings.wechat_port, release_on_start=settings.wechat_release_on_start)

    def _crypto(self, config: ChannelConfig) -> Any:
        return WeChatCrypto(config.token, config.aes_key, config.app_id)

    def _api(self, settings: Settings, engine: Engine) -> Any:
        return OfficialAccountApi(appid=settings.wechat_app_id, secret=settings.wechat_app_secret.get_secret_value(),
                                  tokens_engine=engine, base_url=settings.wechat_base_url, clock=self.clock,
                                  limit_retry_s=settings.wechat_limit_retry_s)

    def _notifier(self) -> Notifier:
        return WeChatNotifier(self.outbound, self.clock,
                              photo_fetchers(self.settings, self.db_engine, self.clock, besides=self.channel))

    def _parse(self, xml: str) -> Any:
        return parse_message(xml)

    def _key(self, message: Any) -> int:
        if message.type == "event":
            return event_key(message.source, message.time, str(message.event))
        if message.id:
            return int(message.id)
        return event_key(message.source, message.time, str(message.type))

    def _payload(self, message: Any, alias: int) -> dict[str, Any]:
        return _payload(message, alias)

    # ------------------------------------------------------------------ threads
    async def _in_inbox(self, fn: Callable[..., Any], /, **kwargs: Any) -> Any:
        if self._inbox_pool is None:
            self._inbox_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="wx-inbox")
        return await asyncio.get_running_loop().run_in_executor(self._inbox_pool, functools.partial(fn, **kwargs))

    async def _in_handler(self, fn: Callable[..., Any], /, *args: Any) -> Any:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=max(1, self.handler_threads), thread_name_prefix="wx-handler")
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    # ------------------------------------------------------------------ callback
    def verify_get(self, query: dict[str, str]) -> tuple[int, str]:
        """The server-verification GET: (200, echostr) when the signature checks, else (403, "")."""
        try:
            check_signature(self.token, query.get("signature", ""), query.get("timestamp", ""),
                            query.get("nonce", ""))
        except InvalidSignatureException:
            self.stats.refused += 1
            return 403, ""
        return 200, query.get("echostr", "")

    async def receive(self, query: dict[str, str], body: bytes) -> int:
        """One POST: the HTTP status (200 once stored, a duplicate included; 403 refused; 500 store failed)."""
        timestamp = query.get("timestamp", "")
        skew = abs(self.clock.now().timestamp() - int(timestamp)) if timestamp.isdigit() else None
        if skew is None or skew > self.max_skew.total_seconds():
            self.stats.refused += 1
            log.warning("wechat callback with a stale or missing timestamp refused")
            return 403
        try:
            xml = self.crypto.decrypt_message(body, query.get("msg_signature", ""), timestamp, query.get("nonce", ""))
        except (InvalidSignatureException, InvalidAppIdException):
            self.stats.refused += 1
            log.warning("wechat callback with a wrong signature refused")
            return 403
        except Exception as exc:  # noqa: BLE001 - malformed XML, bad padding: nothing usable, nothing stored
            self.stats.refused += 1
            log.warning("wechat callback could not be decrypted: %s", type(exc).__name__)
            return 400
        try:
            message = self._parse(xml)
        except Exception as exc:  # noqa: BLE001 - a signed body we cannot read: 200, so WeChat does not retry it
            log.warning("wechat callback does not parse: %s", type(exc).__name__)
            return 200
        if message is None or not message.source:
            return 200
        key = self._key(message)
        try:
            now = self.clock.now()
            alias = await self._in_inbox(remember_user, engine=self.db_engine, channel=self.channel,
                                         user_ref=message.source, now=now)
            new = await self._in_inbox(self.inbox.record, update_id=key, update_data=self._payload(message, alias))
        except Exception:
            log.exception("wechat callback could not be stored")
            return 500
        self.stats.received += 1
        if not new:
            self.stats.duplicates += 1
            log.info("wechat message %s is a duplicate: skipped", key)
            return 200
        self._ingested_at[key] = asyncio.get_running_loop().time()
        self._raw[key] = self._payload(message, alias)  # the first run uses it as received; a replay the masked copy
        self.lanes.submit(alias, functools.partial(self._process, key))
        return 200

    # ------------------------------------------------------------------ parsing
    async def to_incoming(self, data: dict[str, Any]) -> tuple[Incoming | None, str | None]:
        """(the Incoming of a stored message, None) or (None, a notice to send instead) or (None, None)."""
        alias = int(data.get("alias", 0))
        kind = str(data.get("type", ""))
        base: dict[str, Any] = {"channel": self.channel, "user_id": alias, "chat_id": alias}
        text = str(data.get("text") or "")
        if kind == "text":
            return await self.on_text(base, text)
        if kind == "image":
            return Incoming(kind="photo", photo_file_id=str(data.get("file_id") or ""), **base), None
        if kind == "location":
            return Incoming(kind="location", location=(float(data["lat"]), float(data["lon"])), text=text,
                            **base), None
        if kind == "voice":
            return await self.on_voice(base, str(data.get("file_id") or ""), str(data.get("recognition") or "")), None
        if kind == "event":
            return self.on_event(base, str(data.get("event", "")), text, data)
        return Incoming(kind="unsupported", unsupported_type=kind or "other", **base), None

    async def on_text(self, base: dict[str, Any], text: str) -> tuple[Incoming | None, str | None]:
        stripped = text.strip()
        if stripped.startswith("/") and len(stripped) > 1:
            word, _, args = stripped.partition(" ")
            return Incoming(kind="command", text=stripped, command=word[1:].lower(), args=args.strip(), **base), None
        menu = await self._in_inbox(get_menu, engine=self.db_engine, alias=base["user_id"], now=self.clock.now())
        if menu:
            picked, button = self.renderer.choice_for(stripped, menu)
            if picked and button is None:
                return None, TEXT_BUTTON_EXPIRED
            if button is not None:
                return Incoming(kind="button", button=button, **base), None
        return Incoming(kind="text", text=text, **base), None

    async def on_voice(self, base: dict[str, Any], media_id: str, recognition: str) -> Incoming:
        """A voice message for bot.dialogue.voice: WeChat's own speech recognition (when the account has it on) is
        taken as the transcript to read back; otherwise the AMR file is downloaded for the transcription endpoint
        (when one is configured). Its media id is what the grid worker gets (WeChat keeps it 3 days)."""
        audio: bytes | None = None
        failed = False
        if not recognition and self.settings.transcription_enabled and media_id:
            try:
                data: bytes = await asyncio.to_thread(self.api.download, media_id)
                audio = data if len(data) <= MAX_VOICE_BYTES else None
            except Exception as exc:  # noqa: BLE001 - expired media, WeChat away: the 语音留言 path
                failed = True
                log.warning("wechat voice not fetched: %s", type(exc).__name__)
        voice = Voice(file_id=media_id, duration=0, mime_type="audio/amr", audio=audio, fetch_failed=failed,
                      transcript=recognition.strip() or None)
        return Incoming(kind="voice", voice=voice, **base)

    def on_event(self, base: dict[str, Any], event: str, key: str,
                 data: dict[str, Any]) -> tuple[Incoming | None, str | None]:
        if event in ("subscribe", "subscribe_scan"):
            return Incoming(kind="command", text="/start", command="start", **base), None
        if event == "click" and key:  # a custom menu item: its key is a command ("/mycases") or words
            if key.startswith("/"):
                return Incoming(kind="command", text=key, command=key[1:].lower(), **base), None
            return Incoming(kind="text", text=key, **base), None
        return None, None  # unsubscribe, view, the periodic LOCATION report, template delivery reports: nothing to say

    # ------------------------------------------------------------------ handling
    async def _process(self, key: int, *, retry: bool = True) -> None:
        while not self._stopping.is_set():
            entry: InboxEntry | None = await self._in_inbox(self.inbox.begin, update_id=key)
            if entry is None:
                return
            data = self._raw.pop(key, None)
            if data is None:
                stored = await self._in_inbox(self.inbox.get, update_id=key)
                data = stored.update if stored is not None else {}
            alias = int(data.get("alias", 0)) or None
            try:
                async with self._slots:
                    incoming, notice = await self.to_incoming(data)
                    queued, claimed = await self._in_handler(self._handle_in_transaction, key, alias, incoming,
                                                             notice)
            except AlreadyHandled:
                return
            except Exception as exc:  # noqa: BLE001 - counted, logged masked, the person told
                after = await self._failed(key, alias, exc)
                if after is None or after.state != "received" or not retry:
                    return
                delay = self.retry_delays[min(after.failures, len(self.retry_delays)) - 1]
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), timeout=delay)
                continue
            self.stats.handled += 1
            if alias is not None and queued:
                self.sender.deliver(alias, claimed)
            self._done(key)
            self._kick_dispatch()
            await self._after_handled(data, incoming)
            return

    def _handle_in_transaction(self, key: int, alias: int | None, incoming: Incoming | None,
                               notice: str | None) -> tuple[int, list[ClaimedReply]]:
        """The handler, the handled mark, the reply (choices numbered into the text) and the menu of those
        choices, in one transaction."""
        messages: list[OutboundMessage] = [OutboundMessage(text=notice)] if notice else []
        if incoming is not None and self._on_connection is None:
            messages = list(self.handler(incoming).messages)
        with self.db_engine.connect() as conn:
            conn.info[_HANDLER_CONNECTION] = True
            try:
                if incoming is not None and self._on_connection is not None:
                    messages = list(self._on_connection(incoming, conn).messages)
                if not conn.in_transaction():
                    conn.begin()
                choices = self.renderer.choices(messages)
                flat = [OutboundMessage(text="\n".join(p.text for p in parts), photo=None)
                        for parts in self.renderer.render_reply(messages)]
                claimed = self.inbox.finish(connection=conn, update_id=key, chat_id=alias, messages=flat)
                if alias is not None and messages:
                    set_menu(conn, alias=alias, choices=choices, now=self.clock.now())
                conn.commit()
            except BaseException:
                if conn.in_transaction():
                    conn.rollback()
                raise
            finally:
                conn.info.pop(_HANDLER_CONNECTION, None)
        return (len(flat) if alias is not None else 0), claimed

    async def _failed(self, key: int, alias: int | None, exc: Exception) -> InboxEntry | None:
        cid = uuid.uuid4().hex[:8]
        self.stats.errors += 1
        log.error("wechat message %s: handler failed cid=%s: %s", key, cid,
                  mask_text(f"{type(exc).__name__}: {exc}")[:300])
        log.error("wechat message %s cid=%s at:\n%s", key, cid,
                  mask_text("".join(traceback.format_tb(exc.__traceback__))))
        try:
            after: InboxEntry | None = await self._in_inbox(
                self.inbox.fail, update_id=key, error=f"cid={cid} {type(exc).__name__}", chat_id=alias,
                notice=OutboundMessage(text=TEXT_BUSY), final_notice=OutboundMessage(text=TEXT_FAILED))
        except Exception:
            log.exception("wechat message %s: the failure could not be recorded", key)
            return None
        self.sender.kick()
        if after is not None and after.state == "failed":
            self.stats.failed += 1
        return after

    async def _after_handled(self, data: dict[str, Any], incoming: Incoming | None) -> None:
        """What a channel does once an update's handling has committed (WeCom: update the pressed card)."""

    def _done(self, key: int) -> None:
        started = self._ingested_at.pop(key, None)
        if started is not None:
            self.stats.latencies.append(asyncio.get_running_loop().time() - started)
        if self.on_handled is not None:
            self.on_handled(key)

    def _on_reply_sent(self, item: ClaimedReply) -> None:
        self.stats.sends += 1

    def _kick_dispatch(self) -> None:
        self._dispatch_wanted.set()
        if self._dispatcher is None or self._dispatcher.done():
            self._dispatcher = asyncio.create_task(self._dispatch_loop())

    async def _dispatch_loop(self) -> None:
        while self._dispatch_wanted.is_set():
            self._dispatch_wanted.clear()
            try:
                if self.push_notifier is not None:
                    await dispatch_pending(engine=self.db_engine, notifier=self.push_notifier, clock=self.clock,
                                           limit=100)
                else:
                    await dispatch_pending(engine=self.db_engine, notifier=self.notifier, clock=self.clock,
                                           limit=100, channel=self.channel)
            except Exception:
                log.exception("immediate wechat dispatch failed; the scheduler will retry")

    async def replay_unfinished(self) -> int:
        """Queue what a previous run stored but did not finish: poison rows given up, rows cut off before run
        first and alone, the rest in their lanes."""
        entries: list[InboxEntry] = await self._in_inbox(self.inbox.unfinished)
        clean: list[int] = []
        for entry in entries:
            alias = int(entry.update.get("alias", 0)) or None
            if entry.interrupted >= self.inbox.max_interrupted:
                self.stats.failed += 1
                await self._in_inbox(self.inbox.fail, update_id=entry.update_id, interrupted=True,
                                     error="poison: cut off by stopped processes", chat_id=alias,
                                     final_notice=OutboundMessage(text=TEXT_FAILED))
                continue
            self.stats.replayed += 1
            if entry.interrupted > 0:
                await self._process(entry.update_id, retry=False)
                after = await self._in_inbox(self.inbox.get, update_id=entry.update_id)
                if after is not None and after.state == "received":
                    clean.append(entry.update_id)
            else:
                clean.append(entry.update_id)
        by_key = {e.update_id: e for e in entries}
        for key in sorted(clean, key=lambda k: (by_key[k].update.get("create_time", 0), k)):
            alias = int(by_key[key].update.get("alias", 0))
            self.lanes.submit(alias or f"m:{key}", functools.partial(self._process, key))
        return len(entries)

    # ------------------------------------------------------------------ server
    async def start_server(self) -> int:
        path = urlsplit(self.config.callback_url).path or f"/{self.channel}"
        app = tornado.web.Application([(path, _CallbackHandler, {"channel": self})])
        server = tornado.httpserver.HTTPServer(app, xheaders=True, max_body_size=4 * MAX_BODY)
        sockets = tornado.netutil.bind_sockets(self.config.port, self.config.listen)
        server.add_sockets(sockets)
        self._server = server
        self.port = sockets[0].getsockname()[1]
        return self.port

    async def run(self, stop: asyncio.Event, *, on_started: Callable[[], Awaitable[None]] | None = None) -> None:
        """Serve the callback until `stop`: replay unfinished messages, start the reply sender, then let the
        handlers in flight finish on stop."""
        self._stopping.clear()
        self.lanes = ChatLanes()
        sender_stop = asyncio.Event()
        if self.config.release_on_start:  # one replica: any claim on a reply is a killed run's
            taken = await asyncio.to_thread(release_replies, engine=self.db_engine, channel=self.channel,
                                            now=self.clock.now())
            if taken:
                log.warning("%s wechat replies were being sent when the last run stopped: sending them again "
                            "(each may arrive twice)", taken)
        sender = asyncio.create_task(self.sender.run(sender_stop))
        try:
            await self.replay_unfinished()
            await self.start_server()
            log.info("%s 回调已启动：%s:%s", self.channel, self.config.listen, self.port)
            if on_started is not None:
                await on_started()
            await stop.wait()
        finally:
            if self._server is not None:
                self._server.stop()
                await self._server.close_all_connections()
                self._server = None
            self._stopping.set()
            try:
                await self.lanes.stop(STOP_GRACE)
                if self._dispatcher is not None:
                    await asyncio.gather(self._dispatcher, return_exceptions=True)
            finally:
                sender_stop.set()
                await asyncio.gather(sender, return_exceptions=True)
                for pool in (self._pool, self._inbox_pool):
                    if pool is not None:
                        pool.shutdown(wait=False)
                self._pool = self._inbox_pool = None


class _CallbackHandler(tornado.web.RequestHandler):
    def initialize(self, channel: WeChatChannel) -> None:
        self.channel = channel

    def _query(self) -> dict[str, str]:
        return {k: self.get_query_argument(k, "") for k in
                ("signature", "timestamp", "nonce", "echostr", "msg_signature", "encrypt_type", "openid")}

    def get(self) -> None:
        status, echo = self.channel.verify_get(self._query())
        self.set_status(status)
        self.set_header("Content-Type", "text/plain; charset=utf-8")
        self.finish(echo)

    async def post(self) -> None:
        started = time.monotonic()
        body = self.request.body
        if len(body) > MAX_BODY:
            self.set_status(413)
            self.finish()
            return
        status = await self.channel.receive(self._query(), body)
        self.set_status(status)
        self.set_header("Content-Type", "text/plain; charset=utf-8")
        self.finish("success" if status == 200 else "")
        elapsed = time.monotonic() - started
        if elapsed > 2.0:
            log.warning("wechat callback answered after %.1fs (WeChat waits 5 s)", elapsed)
