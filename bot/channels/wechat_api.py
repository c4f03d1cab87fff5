"""The Official Account API as the channel uses it, on wechatpy's `WeChatClient`: the customer-service send
(message/custom/send), temporary media upload and download, and the access token from the shared TokenStore.

Error codes (the API answers HTTP 200 with an errcode):
* 40001 / 40014 / 42001 (token invalid or expired): the shared token is invalidated if it is still the one that
  failed, refreshed once (under the row lock: replicas never refresh twice) and the call retried once; a
  second refusal is `WeChatUnavailable` (retried later by the caller).
* -1 (system busy): retried here after BUSY_DELAYS, then `WeChatUnavailable`.
* 45047 (too many customer-service messages without an answer from the user) and 45009 (API frequency limit):
  `WeChatLimited` with the seconds to wait; the caller keeps the message and tries again then.
* 45015 (outside the 48-hour window), 43004 (unsubscribed), 40003 (unknown OpenID), 48001 (no permission) and
  any other code: `WeChatRefused`, which no retry will cure.
* network errors and HTTP 5xx: `WeChatUnavailable`.

wechatpy's own retry on 40001 is off (auto_retry=False): it would refresh outside the row lock.
Synchronous (requests): async callers run it in a thread. Must not: decide what to say or render it.
"""

from __future__ import annotations

import io
import logging
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import requests
from wechatpy import WeChatClient
from wechatpy.enterprise import WeChatClient as EnterpriseClient
from wechatpy.exceptions import WeChatClientException

from bot.channels.wechat_store import TokenStore

log = logging.getLogger(__name__)

OA_BASE_URL = "https://api.weixin.qq.com"
TOKEN_CODES = frozenset({40001, 40014, 42001})
LIMIT_CODES = frozenset({45047, 45009})
BUSY_DELAYS = (0.2, 0.5, 1.0)
T = TypeVar("T")


class WeChatError(Exception):
    def __init__(self, message: str, *, code: int | None = None):
        super().__init__(message)
        self.code = code


class WeChatLimited(WeChatError):
    """A send limit: try again after `retry_after` seconds (the message is kept)."""

    def __init__(self, message: str, *, code: int | None, retry_after: float):
        super().__init__(message, code=code)
        self.retry_after = retry_after


class WeChatRefused(WeChatError):
    """Refused for good (outside the 48-hour window, unsubscribed, unknown user)."""


class WeChatUnavailable(WeChatError):
    """Busy, unreachable or a token that would not work: the outcome is unknown, try again later."""


class _Client(WeChatClient):  # type: ignore[misc]
    """WeChatClient whose base URL is configurable and whose token comes from the shared TokenStore."""

    def __init__(self, *, appid: str, secret: str, base_url: str, timeout: float) -> None:
        super().__init__(appid, secret, timeout=timeout, auto_retry=False)
        self.API_BASE_URL = base_url.rstrip("/") + "/cgi-bin/"
        self.tokens: TokenStore | None = None
        self._used = threading.local()

    def fetch_access_token(self) -> dict[str, Any]:
        return self._fetch_access_token(url=self.API_BASE_URL + "token", params={
            "grant_type": "client_credential", "appid": self.appid, "secret": self.secret})

    @property
    def access_token(self) -> str:
        assert self.tokens is not None
        token = self.tokens.get()
        self._used.token = token  # what this thread's call carries, for a conditional invalidate on 40001
        return token

    @property
    def used_token(self) -> str:
        return getattr(self._used, "token", "")


class OfficialAccountApi:
    """The calls the channel makes, with the error handling above; one instance per account and process."""

    def __init__(self, *, appid: str, secret: str, tokens_engine: Any, base_url: str = "", timeout: float = 5.0,
                 clock: Any = None, busy_delays: Sequence[float] = BUSY_DELAYS, limit_retry_s: float = 60.0,
                 sleep: Callable[[float], None] = time.sleep):
        self.client = _Client(appid=appid, secret=secret, base_url=base_url or OA_BASE_URL, timeout=timeout)
        self.tokens = TokenStore(tokens_engine, name=f"wechat:{appid}", fetch=self._fetch_token, clock=clock)
        self.client.tokens = self.tokens
        self.busy_delays = tuple(busy_delays)
        self.limit_retry_s = limit_retry_s
        self._sleep = sleep

    def _fetch_token(self) -> tuple[str, int]:
        try:
            result = self.client.fetch_access_token()
        except WeChatClientException as exc:
            raise WeChatUnavailable(f"token refused: {exc.errcode}", code=exc.errcode) from exc
        except requests.RequestException as exc:
            raise WeChatUnavailable(f"token endpoint unreachable: {type(exc).__name__}") from exc
        log.info("wechat access token refreshed")
        return str(result["access_token"]), int(result.get("expires_in", 7200))

    def call(self, fn: Callable[[], T]) -> T:
        """Run one API call with the token, busy and limit rules of the module docstring."""
        refreshed = False
        busy = 0
        while True:
            try:
                return fn()
            except WeChatClientException as exc:
                code = exc.errcode
                if code in TOKEN_CODES and not refreshed:
                    refreshed = True
                    self.tokens.invalidate(self.client.used_token)
                    log.info("wechat token refused (%s): refreshed once and retried", code)
                    continue
                if code == -1 and busy < len(self.busy_delays):
                    self._sleep(self.busy_delays[busy])
                    busy += 1
                    continue
                if code in LIMIT_CODES:
                    raise WeChatLimited(f"limit {code}: {exc.errmsg}", code=code,
                                        retry_after=self.limit_retry_s) from exc
                if code is None or code == -1 or code in TOKEN_CODES:
                    raise WeChatUnavailable(f"wechat unavailable ({code})", code=code) from exc
                raise WeChatRefused(f"refused {code}: {exc.errmsg}", code=code) from exc
            except requests.RequestException as exc:
                raise WeChatUnavailable(f"wechat unreachable: {type(exc).__name__}") from exc

    def send_text(self, openid: str, text: str) -> None:
        self.call(lambda: self.client.message.send_text(openid, text))

    def send_image(self, openid: str, media_id: str) -> None:
        self.call(lambda: self.client.message.send_image(openid, media_id))

    def upload_image(self, data: bytes, *, filename: str = "photo.jpg") -> str:
        """A temporary image (kept 3 days by WeChat); its media_id."""
        def upload() -> Any:
            return self.client.media.upload("image", (filename, io.BytesIO(data), "image/jpeg"))

        return str(self.call(upload)["media_id"])

    def download(self, media_id: str) -> bytes:
        """A temporary media file's bytes (a resident's photo or voice message)."""
        result = self.call(lambda: self.client.media.download(media_id))
        if isinstance(result, dict):  # an error body that was not an errcode
            raise WeChatRefused(f"media {media_id!r} not found")
        return bytes(result.content)


WECOM_BASE_URL = "https://qyapi.weixin.qq.com"
MAX_CARD_BUTTONS = 6  # WeCom's button_interaction card shows at most 6 buttons
MAX_CARD_TITLE = 26


class _EnterpriseClient(EnterpriseClient):  # type: ignore[misc]
    def __init__(self, *, corp_id: str, secret: str, base_url: str, timeout: float) -> None:
        super().__init__(corp_id, secret, timeout=timeout, auto_retry=False)
        self.API_BASE_URL = base_url.rstrip("/") + "/cgi-bin/"
        self.tokens: TokenStore | None = None
        self._last = ""

    def fetch_access_token(self) -> dict[str, Any]:
        return self._fetch_access_token(url=self.API_BASE_URL + "gettoken",
                                        params={"corpid": self.corp_id, "corpsecret": self.secret})

    @property
    def access_token(self) -> str:
        assert self.tokens is not None
        self._last = self.tokens.get()
        return self._last

    @property
    def used_token(self) -> str:
        return self._last


class WeComApi(OfficialAccountApi):
    """The app's calls with the same token, busy and limit rules as the Official Account's."""

    def __init__(self, *, corp_id: str, agent_id: int, secret: str, tokens_engine: Any, base_url: str = "",
                 timeout: float = 5.0, clock: Any = None, limit_retry_s: float = 60.0):
        self.client = _EnterpriseClient(corp_id=corp_id, secret=secret, base_url=base_url or WECOM_BASE_URL,
                                        timeout=timeout)
        self.tokens = TokenStore(tokens_engine, name=f"wecom:{corp_id}:{agent_id}", fetch=self._fetch_token,
                                 clock=clock)
        self.client.tokens = self.tokens
        self.agent_id = agent_id
        self.busy_delays = (0.2, 0.5, 1.0)
        self.limit_retry_s = limit_retry_s
        self._sleep = time.sleep

    def send_text(self, openid: str, text: str) -> None:
        self.call(lambda: self.client.message.send_text(self.agent_id, openid, text))

    def send_image(self, userid: str, media_id: str) -> None:
        self.call(lambda: self.client.message.send_image(self.agent_id, userid, media_id))

    def download(self, media_id: str) -> bytes:
        """A temporary media file's bytes (a worker's photo). wechatpy's enterprise download goes to a fixed host
        and passes an error body off as the file, so the request is made here, its errcode raised as usual."""
        def fetch() -> bytes:
            resp = requests.get(self.client.API_BASE_URL + "media/get", timeout=self.client.timeout,
                                params={"access_token": self.client.access_token, "media_id": media_id})
            resp.raise_for_status()
            if "json" in resp.headers.get("Content-Type", ""):
                body = resp.json()
                raise WeChatClientException(body.get("errcode"), body.get("errmsg", ""), client=self.client,
                                            request=resp.request, response=resp)
            return bytes(resp.content)

        return self.call(fetch)

    def update_card(self, userid: str, response_code: str, label: str) -> None:
        """After a press: the card's buttons become one grey button saying what was chosen (update_template_card,
        the press's ResponseCode, usable once)."""
        body = {"userids": [userid], "agentid": self.agent_id, "response_code": response_code,
                "button": {"replace_name": label[:MAX_CARD_TITLE]}}
        self.call(lambda: self.client.post("message/update_template_card", data=body))

    def send_card(self, userid: str, *, title: str, choices: list[list[str]]) -> None:
        """A button_interaction template card; each button's key is a signed action token."""
        card = {"card_type": "button_interaction", "task_id": uuid.uuid4().hex,
                "main_title": {"title": title[:MAX_CARD_TITLE]},
                "button_list": [{"text": label[:10], "style": 1, "key": token}
                                for label, token in choices[:MAX_CARD_BUTTONS]]}
        self.call(lambda: self.client.message.send(self.agent_id, userid,
                                                   msg={"msgtype": "template_card", "template_card": card}))
