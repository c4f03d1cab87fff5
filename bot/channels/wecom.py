"""The WeCom (企业微信) self-built app channel for grid workers: the same callback path, inbox, handler run and
reply outbox as the Official Account (bot.channels.wechat.WeChatChannel), with WeCom's crypto, API and cards.

What differs from the Official Account:
* the verification GET carries an encrypted echostr under `msg_signature` (wechatpy.enterprise.crypto
  .WeChatCrypto.check_signature decrypts it), and the AES payload names the CorpID;
* messages go out with `message/send` from the app (agentid), with no 48-hour window;
* a push with buttons (a task page: 接单 / 已联系 / 办结 ...) goes as its full text with numbered choices, then a
  `button_interaction` template card whose buttons carry the same signed tokens as Telegram's callback_data
  (bot.channels.callback, at most MAX_CARD_BUTTONS of them: the numbered choices cover every one). A press comes
  back as a `template_card_event` whose EventKey is that token: verified by the same signer, it becomes the
  same button Incoming as a Telegram press; forged or stale ones get TEXT_BUTTON_EXPIRED and change nothing.
  Once a verified press is handled, the card is updated (update_template_card with the press's ResponseCode) to
  one grey button saying what was chosen, so its old buttons are no longer live;
* a worker's photo (a 办结 proof) arrives as WeCom media and goes on the case by its media id; a push's photo held
  by the Official Account (a resident's) is downloaded there and uploaded here (wechat.photo_media);
* a worker is the account (wecom, alias of their UserID); the same person may also hold a Telegram account.

Must not: hold business rules or read the environment.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Sequence
from typing import Any

from sqlalchemy.engine import Engine
from wechatpy.enterprise import parse_message as parse_enterprise_message
from wechatpy.enterprise.crypto import WeChatCrypto as EnterpriseCrypto
from wechatpy.enterprise.exceptions import InvalidCorpIdException
from wechatpy.exceptions import InvalidSignatureException

from bot.channels.callback import CallbackSigner
from bot.channels.wechat import (
    TEXT_BUTTON_EXPIRED,
    ChannelConfig,
    PhotoFetch,
    WeChatChannel,
    WeChatNotifier,
    WeChatOutbound,
    _payload,
    _send_image,
    _set_menu,
    event_key,
    photo_fetchers,
    send_photo,
    wechat_signing_key,
)
from bot.channels.wechat_api import (
    OfficialAccountApi,
    WeChatLimited,
    WeChatRefused,
    WeChatUnavailable,
    WeComApi,
)
from bot.channels.wechat_render import WeChatRenderer
from bot.channels.wechat_store import get_menu, user_of
from bot.dialogue.types import Incoming
from bot.settings import Settings
from casestore.clock import Clock
from casestore.notify import DeliveryError, OutboundMessage, RetryLater

log = logging.getLogger(__name__)

CHANNEL = "wecom"
TEXT_CARD_TITLE = "请选择操作"
CARD_DONE = "已选择：{label}"
CARD_DONE_PLAIN = "已处理"


class WeComNotifier:
    """Pushes to grid workers on WeCom: the text with numbered choices, the photo (a resident's, uploaded from the
    account that holds it: wechat.photo_media) as an image, then the button card."""

    def __init__(self, outbound: WeChatOutbound, clock: Clock, fetchers: Sequence[PhotoFetch] = ()):
        self.outbound = outbound
        self.clock = clock
        self.fetchers = tuple(fetchers)

    async def send(self, *, chat_id: int, message: OutboundMessage) -> None:
        user = await asyncio.to_thread(user_of, self.outbound.engine, chat_id)
        if user is None:
            raise DeliveryError("unknown wecom user")
        api: WeComApi = self.outbound.api  # type: ignore[assignment]
        parts, media = await send_photo(api, user[1], message.photo, self.fetchers, self.outbound.renderer.render,
                                        message)
        if parts[-1].choices:  # before the send: a number typed the moment the message shows must find them
            await asyncio.to_thread(_set_menu, self.outbound.engine, chat_id, parts[-1].choices, self.clock)
        try:
            for part in parts:
                await asyncio.to_thread(api.send_text, user[1], part.text)
            if media is not None:
                await _send_image(api, user[1], media)
            choices = parts[-1].choices
            if choices:
                title = message.text.strip().splitlines()[0] if message.text.strip() else TEXT_CARD_TITLE
                await asyncio.to_thread(api.send_card, user[1], title=title, choices=choices)
        except WeChatLimited as exc:
            raise RetryLater(exc.retry_after) from exc
        except WeChatRefused as exc:
            raise DeliveryError(str(exc)) from exc
        except WeChatUnavailable as exc:
            raise RetryLater(5.0) from exc


def card_event_key(from_user: str, create_time: int | str, task_id: str, key: str) -> int:
    """The inbox key of a card press: one per (user, time, card, button) — a second press of the same button a
    second later is a second press, WeChat's retries of one press are one."""
    digest = hashlib.sha256(f"{task_id}\x00{key}".encode()).hexdigest()[:16]
    return event_key(from_user, create_time, f"template_card_event:{digest}")


class WeComChannel(WeChatChannel):
    channel = CHANNEL

    def _config(self, settings: Settings) -> ChannelConfig:
        token = settings.wecom_token.get_secret_value()
        aes_key = settings.wecom_encoding_aes_key.get_secret_value()
        if not (settings.wecom_corp_id and token and aes_key):
            raise ValueError("WECOM_CORP_ID, WECOM_TOKEN and WECOM_ENCODING_AES_KEY are required")
        return ChannelConfig(app_id=settings.wecom_corp_id, token=token, aes_key=aes_key,
                             callback_url=settings.wecom_callback_url, listen=settings.wecom_listen,
                             port=settings.wecom_port, release_on_start=settings.wecom_release_on_start)

    def _crypto(self, config: ChannelConfig) -> Any:
        return EnterpriseCrypto(config.token, config.aes_key, config.app_id)

    def _api(self, settings: Settings, engine: Engine) -> Any:
        return WeComApi(corp_id=settings.wecom_corp_id, agent_id=settings.wecom_agent_id,
                        secret=settings.wecom_secret.get_secret_value(), tokens_engine=engine,
                        base_url=settings.wecom_base_url, clock=self.clock)

    def _notifier(self) -> Any:
        return WeComNotifier(self.outbound, self.clock,
                             photo_fetchers(self.settings, self.db_engine, self.clock, besides=self.channel))

    def _parse(self, xml: str) -> Any:
        return parse_enterprise_message(xml)

    def _raw_event(self, message: Any) -> dict[str, Any]:
        data = getattr(message, "_data", {}) or {}
        return data if isinstance(data, dict) else {}

    def _key(self, message: Any) -> int:
        raw = self._raw_event(message)
        if str(raw.get("Event", "")).lower() == "template_card_event":
            return card_event_key(message.source, message.time, str(raw.get("TaskId", "")),
                                  str(raw.get("EventKey", "")))
        return super()._key(message)

    def _payload(self, message: Any, alias: int) -> dict[str, Any]:
        raw = self._raw_event(message)
        if str(raw.get("Event", "")).lower() == "template_card_event":
            # the signed token is a machine field: stored under `data`, which the inbox's masking leaves as it is
            return {"type": "event", "alias": alias, "create_time": int(message.time or 0),
                    "event": "template_card_event", "data": str(raw.get("EventKey", "")),
                    "response_code": str(raw.get("ResponseCode", "") or "")}
        return _payload(message, alias)

    async def to_incoming(self, data: dict[str, Any]) -> tuple[Incoming | None, str | None]:
        if data.get("event") == "template_card_event" and data.get("response_code"):
            # the pressed button's label, for the card's update, from the choices shown with the card (the reply
            # to the press replaces them)
            menu = await self._in_inbox(get_menu, engine=self.db_engine, alias=int(data.get("alias") or 0),
                                        now=self.clock.now())
            token = str(data.get("data") or "")
            data["label"] = next((c[0] for c in menu if c[1] == token), "")
        return await super().to_incoming(data)

    async def _after_handled(self, data: dict[str, Any], incoming: Incoming | None) -> None:
        """A press acted on (its token verified): the card shows the choice instead of live buttons. Best effort:
        the press is already handled; a card left live answers a second press as the dialogue does."""
        code = str(data.get("response_code") or "")
        if incoming is None or incoming.kind != "button" or data.get("event") != "template_card_event" or not code:
            return
        label = str(data.get("label") or "")
        try:
            user = await asyncio.to_thread(user_of, self.db_engine, int(data.get("alias") or 0))
            api: WeComApi = self.api  # type: ignore[assignment]
            if user is not None:
                await asyncio.to_thread(api.update_card, user[1], code,
                                        CARD_DONE.format(label=label) if label else CARD_DONE_PLAIN)
        except Exception as exc:  # noqa: BLE001 - logged; the press itself went through
            log.warning("wecom card not updated after a press: %s", type(exc).__name__)

    def verify_get(self, query: dict[str, str]) -> tuple[int, str]:
        """WeCom's URL check: the echostr is encrypted; its plain text goes back."""
        try:
            echo = self.crypto.check_signature(query.get("msg_signature", ""), query.get("timestamp", ""),
                                               query.get("nonce", ""), query.get("echostr", ""))
        except (InvalidSignatureException, InvalidCorpIdException):
            self.stats.refused += 1
            return 403, ""
        except Exception:  # noqa: BLE001 - an echostr that does not decrypt
            self.stats.refused += 1
            return 403, ""
        return 200, echo if isinstance(echo, str) else echo.decode()

    def on_event(self, base: dict[str, Any], event: str, key: str,
                 data: dict[str, Any]) -> tuple[Incoming | None, str | None]:
        if event == "template_card_event":
            button = self.signer.decode(str(data.get("data", "")))
            if button is None:
                self.stats.refused += 1
                log.info("refused a wecom card press with forged or stale data")
                return None, TEXT_BUTTON_EXPIRED
            return Incoming(kind="button", button=button, **base), None
        if event == "enter_agent":
            return None, None
        return super().on_event(base, event, key, data)


def wechat_notifiers(settings: Settings, *, engine: Engine, clock: Clock) -> dict[str, Any]:
    """The pushers of the configured WeChat channels without their callback servers (the standalone scheduler
    pushes through these): {"wechat": ..., "wecom": ...}, signing buttons with the channels' key."""
    renderer = WeChatRenderer(CallbackSigner(wechat_signing_key(settings), clock=clock))
    out: dict[str, Any] = {}
    if settings.wechat_enabled:
        api = OfficialAccountApi(appid=settings.wechat_app_id, secret=settings.wechat_app_secret.get_secret_value(),
                                 tokens_engine=engine, base_url=settings.wechat_base_url, clock=clock,
                                 limit_retry_s=settings.wechat_limit_retry_s)
        out["wechat"] = WeChatNotifier(WeChatOutbound(api, renderer, engine), clock,
                                       photo_fetchers(settings, engine, clock, besides="wechat"))
    if settings.wecom_enabled:
        wecom_api = WeComApi(corp_id=settings.wecom_corp_id, agent_id=settings.wecom_agent_id,
                             secret=settings.wecom_secret.get_secret_value(), tokens_engine=engine,
                             base_url=settings.wecom_base_url, clock=clock)
        out["wecom"] = WeComNotifier(WeChatOutbound(wecom_api, renderer, engine), clock,
                                     photo_fetchers(settings, engine, clock, besides="wecom"))
    return out
