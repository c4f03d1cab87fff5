"""A WeChat Official Account API test server on 127.0.0.1, and a driver that posts real encrypted callbacks.

The server speaks the parts of the OA API (https://developers.weixin.qq.com/doc/offiaccount/) the channel uses,
over real HTTP for the real wechatpy client::

    GET  /cgi-bin/token?grant_type=client_credential&appid=..&secret=..  -> {"access_token", "expires_in"}
    POST /cgi-bin/message/custom/send?access_token=..                    -> {"errcode": 0, "errmsg": "ok"}
    POST /cgi-bin/media/upload?access_token=..&type=image (multipart)     -> {"type", "media_id", "created_at"}
    GET  /cgi-bin/media/get?access_token=..&media_id=..                   -> the bytes, or an errcode

and of the WeCom API (https://developer.work.weixin.qq.com/document/path/90664): gettoken, message/send (text,
image, template_card), message/update_template_card, and the same media/upload and media/get paths. Media belong to
the account whose token uploaded them (`put_media` for what a user sent): an OA media id is 40007 for WeCom and back.

with WeChat's error codes: 40125 (wrong secret), 40001 (a token it never issued or one replaced), 42001 (an
expired token: `expire_tokens()`), 45002 (text over 2048 bytes), 40007 (unknown media), 44002 (empty body) and
whatever `fail_next(errcode, times)` injects into the next sends (-1 busy, 45047 limit, 45015 window ...).
Every accepted send is recorded in `sent` (touser, msgtype, content).

`CallbackDriver` builds callbacks as WeChat does in safe mode (wechatpy's WeChatCrypto.encrypt_message: AES,
msg_signature over token, timestamp, nonce and the ciphertext) and posts them to the channel's URL.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import deque
from collections.abc import Callable
from email import policy
from email.parser import BytesParser
from http.server import BaseHTTPRequestHandler
from typing import Any

from wechatpy.crypto import WeChatCrypto

from tests.servers._threaded import OwnedHTTPServer, ThreadedServer

APP_ID = "wx1234567890abcdef"
APP_SECRET = "test-app-secret"
TOKEN = "quanbottoken"
AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"  # 43 characters, as the console issues them
MAX_TEXT_BYTES = 2048
CORP_ID = "ww0123456789abcdef"
CORP_SECRET = "test-corp-secret"
AGENT_ID = 1000002
MAX_CARD_BUTTONS = 6


class WeChatApiServer(ThreadedServer):
    def __init__(self, *, app_id: str = APP_ID, secret: str = APP_SECRET, corp_id: str = CORP_ID,
                 corp_secret: str = CORP_SECRET, agent_id: int = AGENT_ID) -> None:
        super().__init__()
        self.app_id = app_id
        self.secret = secret
        self.corp_id = corp_id
        self.corp_secret = corp_secret
        self.agent_id = agent_id
        self.cards: list[dict[str, Any]] = []  # WeCom template cards sent (touser, card)
        self.lock = threading.RLock()
        self.changed = threading.Condition(self.lock)
        self.valid_tokens: set[str] = set()
        self.expired_tokens: set[str] = set()
        self.tokens_issued = 0
        self.sent: list[dict[str, Any]] = []
        self.send_attempts = 0
        self.faults: deque[int] = deque()
        self.media: dict[str, bytes] = {}
        self.media_owner: dict[str, str] = {}  # media id -> "oa" or "corp" (whose token may read or send it)
        self.card_updates: list[dict[str, Any]] = []  # WeCom update_template_card calls accepted
        self.response_codes: set[str] = set()  # ResponseCodes of card presses not yet used for an update
        self._ids = itertools.count(1)

    handler_class: type[BaseHTTPRequestHandler]  # set below

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    # ---- test controls
    def fail_next(self, errcode: int, times: int = 1) -> None:
        with self.lock:
            self.faults.extend([errcode] * times)

    def expire_tokens(self) -> None:
        """Every token issued so far is expired from now on (the next call gets 42001)."""
        with self.lock:
            self.expired_tokens |= self.valid_tokens
            self.valid_tokens.clear()

    def put_media(self, data: bytes, *, corp: bool) -> str:
        """A media file as a user's message puts it on the server (the callback then carries its id)."""
        with self.lock:
            media_id = f"MEDIA-{next(self._ids)}"
            self.media[media_id] = data
            self.media_owner[media_id] = "corp" if corp else "oa"
            return media_id

    def press_code(self) -> str:
        """The ResponseCode WeCom puts in a card press's callback (usable once for update_template_card)."""
        with self.lock:
            code = f"RESP-{next(self._ids)}"
            self.response_codes.add(code)
            return code

    def images_to(self, user: str) -> list[bytes]:
        """The images sent to `user` (OA or WeCom), as bytes."""
        with self.lock:
            return [self.media[m["media_id"]] for m in self.sent if m["touser"] == user and m["msgtype"] == "image"]

    def _media_of(self, media_id: str, token: str) -> bytes | None:
        owner = "corp" if token.startswith("CORP-") else "oa"
        if self.media_owner.get(media_id) != owner:
            return None
        return self.media.get(media_id)

    def texts_to(self, openid: str) -> list[str]:
        with self.lock:
            return [m["content"] for m in self.sent if m["touser"] == openid and m["msgtype"] != "image"]

    def wait_for(self, pred: Callable[[list[dict[str, Any]]], bool], timeout: float = 20.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        with self.changed:
            while not pred(self.sent):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"condition not met; sent so far: {self.sent[-5:]}")
                self.changed.wait(left)
            return list(self.sent)

    async def async_wait_for(self, pred: Callable[[list[dict[str, Any]]], bool],
                             timeout: float = 20.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while True:
            with self.lock:
                if pred(self.sent):
                    return list(self.sent)
            if time.monotonic() > deadline:
                raise TimeoutError(f"condition not met; sent so far: {self.sent[-5:]}")
            await asyncio.sleep(0.02)

    # ---- the API
    def _token_error(self, token: str) -> dict[str, Any] | None:
        if token in self.valid_tokens:
            return None
        if token in self.expired_tokens:
            return {"errcode": 42001, "errmsg": "access_token expired"}
        return {"errcode": 40001, "errmsg": "invalid credential, access_token is invalid or not latest"}

    def api(self, method: str, path: str, query: dict[str, str], body: bytes,
            content_type: str) -> tuple[int, str, bytes]:
        with self.changed:
            out = self._api(method, path, query, body, content_type)
            self.changed.notify_all()
            return out

    def _api(self, method: str, path: str, query: dict[str, str], body: bytes,
             content_type: str) -> tuple[int, str, bytes]:
        if path == "/cgi-bin/gettoken":  # WeCom
            if query.get("corpid") != self.corp_id or query.get("corpsecret") != self.corp_secret:
                return _json({"errcode": 40001, "errmsg": "invalid secret"})
            token = f"CORP-{next(self._ids)}-" + hashlib.sha1(str(time.time()).encode()).hexdigest()[:16]
            self.valid_tokens = {t for t in self.valid_tokens if not t.startswith("CORP-")} | {token}
            self.tokens_issued += 1
            return _json({"errcode": 0, "errmsg": "ok", "access_token": token, "expires_in": 7200})
        if path == "/cgi-bin/token":
            if query.get("appid") != self.app_id or query.get("secret") != self.secret:
                return _json({"errcode": 40125, "errmsg": "invalid appsecret"})
            token = f"TOKEN-{next(self._ids)}-" + hashlib.sha1(str(time.time()).encode()).hexdigest()[:16]
            # WeChat: a new token replaces the previous one of the same account
            self.valid_tokens = {t for t in self.valid_tokens if t.startswith("CORP-")} | {token}
            self.tokens_issued += 1
            return _json({"access_token": token, "expires_in": 7200})
        error = self._token_error(query.get("access_token", ""))
        if error is not None:
            if path == "/cgi-bin/message/custom/send":
                self.send_attempts += 1
            return _json(error)
        if path == "/cgi-bin/message/custom/send" and method == "POST":
            self.send_attempts += 1
            if self.faults:
                code = self.faults.popleft()
                return _json({"errcode": code, "errmsg": f"injected {code}"})
            try:
                data = json.loads(body.decode("utf-8"))
            except ValueError:
                return _json({"errcode": 44002, "errmsg": "empty post data"})
            content = (data.get("text") or {}).get("content", "")
            if data.get("msgtype") == "text" and len(content.encode("utf-8")) > MAX_TEXT_BYTES:
                return _json({"errcode": 45002, "errmsg": "content size out of limit"})
            media_id = (data.get("image") or {}).get("media_id", "")
            if data.get("msgtype") == "image" and self._media_of(media_id, query.get("access_token", "")) is None:
                return _json({"errcode": 40007, "errmsg": "invalid media_id"})
            self.sent.append({"touser": data.get("touser"), "msgtype": data.get("msgtype"), "content": content,
                              "media_id": media_id})
            return _json({"errcode": 0, "errmsg": "ok"})
        if path == "/cgi-bin/message/send" and method == "POST":  # WeCom: an app's message to members
            self.send_attempts += 1
            if self.faults:
                code = self.faults.popleft()
                return _json({"errcode": code, "errmsg": f"injected {code}"})
            data = json.loads(body.decode("utf-8") or "{}")
            if int(data.get("agentid") or 0) != self.agent_id:
                return _json({"errcode": 40056, "errmsg": "invalid agentid"})
            if data.get("msgtype") == "text":
                content = (data.get("text") or {}).get("content", "")
                if len(content.encode("utf-8")) > MAX_TEXT_BYTES:
                    return _json({"errcode": 45002, "errmsg": "content size out of limit"})
                self.sent.append({"touser": data.get("touser"), "msgtype": "text", "content": content})
                return _json({"errcode": 0, "errmsg": "ok"})
            if data.get("msgtype") == "image":
                media_id = (data.get("image") or {}).get("media_id", "")
                if self._media_of(media_id, query.get("access_token", "")) is None:
                    return _json({"errcode": 40007, "errmsg": "invalid media_id"})
                self.sent.append({"touser": data.get("touser"), "msgtype": "image", "content": "",
                                  "media_id": media_id})
                return _json({"errcode": 0, "errmsg": "ok"})
            if data.get("msgtype") == "template_card":
                card = data.get("template_card") or {}
                buttons = card.get("button_list") or []
                if (card.get("card_type") != "button_interaction" or not card.get("task_id")
                        or not 1 <= len(buttons) <= MAX_CARD_BUTTONS
                        or any(len(str(b.get("key", ""))) > 1024 for b in buttons)):
                    return _json({"errcode": 40058, "errmsg": "invalid template_card"})
                self.cards.append({"touser": data.get("touser"), "card": card})
                return _json({"errcode": 0, "errmsg": "ok", "response_code": "RC" + str(next(self._ids))})
            return _json({"errcode": 40008, "errmsg": "invalid message type"})
        if path == "/cgi-bin/message/update_template_card" and method == "POST":  # WeCom: after a card press
            data = json.loads(body.decode("utf-8") or "{}")
            if int(data.get("agentid") or 0) != self.agent_id:
                return _json({"errcode": 40056, "errmsg": "invalid agentid"})
            response_code = str(data.get("response_code", ""))
            if response_code not in self.response_codes:  # each press's code updates its card once
                return _json({"errcode": 40157, "errmsg": "invalid response_code"})
            if not (data.get("button") or {}).get("replace_name") and not data.get("template_card"):
                return _json({"errcode": 40058, "errmsg": "invalid update"})
            self.response_codes.discard(response_code)
            self.card_updates.append(data)
            return _json({"errcode": 0, "errmsg": "ok"})
        if path == "/cgi-bin/media/upload" and method == "POST":
            msg = BytesParser(policy=policy.default).parsebytes(
                f"Content-Type: {content_type}\r\n\r\n".encode() + body)
            for part in msg.iter_parts():
                if part.get_param("name", header="content-disposition") == "media":
                    media_id = f"MEDIA-{next(self._ids)}"
                    self.media[media_id] = part.get_payload(decode=True) or b""
                    self.media_owner[media_id] = "corp" if query.get("access_token", "").startswith("CORP-") else "oa"
                    return _json({"type": query.get("type", "image"), "media_id": media_id,
                                  "created_at": int(time.time())})
            return _json({"errcode": 41005, "errmsg": "media data missing"})
        if path == "/cgi-bin/media/get":
            data_bytes = self._media_of(query.get("media_id", ""), query.get("access_token", ""))
            if data_bytes is None:
                return _json({"errcode": 40007, "errmsg": "invalid media_id"})
            return 200, "image/jpeg", data_bytes
        return _json({"errcode": 48001, "errmsg": "api unauthorized"})


def _json(data: dict[str, Any]) -> tuple[int, str, bytes]:
    return 200, "application/json; charset=utf-8", json.dumps(data, ensure_ascii=False).encode("utf-8")


class _Handler(BaseHTTPRequestHandler):
    server: OwnedHTTPServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def _serve(self, method: str) -> None:
        parts = urllib.parse.urlsplit(self.path)
        query = dict(urllib.parse.parse_qsl(parts.query))
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        status, ctype, out = self.server.owner.api(method, parts.path, query, body,
                                                   self.headers.get("Content-Type", ""))
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")


WeChatApiServer.handler_class = _Handler


class CallbackDriver:
    """Posts callbacks to `url` as WeChat does (safe mode), and the verification GET."""

    def __init__(self, url: str, *, token: str = TOKEN, aes_key: str = AES_KEY, app_id: str = APP_ID,
                 to_user: str = "gh_quanbot"):
        self.url = url
        self.token = token
        self.crypto = WeChatCrypto(token, aes_key, app_id)
        self.to_user = to_user
        self._ids = itertools.count(int(time.time() * 1000) % 10**9 * 1000)

    def next_id(self) -> int:
        return next(self._ids)

    def xml(self, openid: str, msg_type: str, fields: str, *, msg_id: int | None = None,
            create_time: int | None = None) -> str:
        created = create_time if create_time is not None else int(time.time())
        tail = f"<MsgId>{msg_id if msg_id is not None else self.next_id()}</MsgId>" if msg_type != "event" else ""
        return (f"<xml><ToUserName><![CDATA[{self.to_user}]]></ToUserName>"
                f"<FromUserName><![CDATA[{openid}]]></FromUserName><CreateTime>{created}</CreateTime>"
                f"<MsgType><![CDATA[{msg_type}]]></MsgType>{fields}{tail}</xml>")

    def text(self, openid: str, content: str, **kw: Any) -> str:
        return self.xml(openid, "text", f"<Content><![CDATA[{content}]]></Content>", **kw)

    def event(self, openid: str, event: str, key: str = "", **kw: Any) -> str:
        return self.xml(openid, "event", f"<Event><![CDATA[{event}]]></Event><EventKey><![CDATA[{key}]]></EventKey>",
                        **kw)

    def image(self, openid: str, media_id: str, **kw: Any) -> str:
        return self.xml(openid, "image", f"<PicUrl><![CDATA[http://127.0.0.1/{media_id}.jpg]]></PicUrl>"
                        f"<MediaId><![CDATA[{media_id}]]></MediaId>", **kw)

    def voice(self, openid: str, media_id: str, recognition: str = "", **kw: Any) -> str:
        rec = f"<Recognition><![CDATA[{recognition}]]></Recognition>" if recognition else ""
        return self.xml(openid, "voice", f"<MediaId><![CDATA[{media_id}]]></MediaId><Format><![CDATA[amr]]></Format>"
                        f"{rec}", **kw)

    def location(self, openid: str, lat: float, lon: float, label: str = "", **kw: Any) -> str:
        return self.xml(openid, "location", f"<Location_X>{lat}</Location_X><Location_Y>{lon}</Location_Y>"
                        f"<Scale>15</Scale><Label><![CDATA[{label}]]></Label>", **kw)

    def post(self, xml: str, *, timestamp: int | None = None, nonce: str = "", forge: bool = False,
             timeout: float = 10.0) -> tuple[int, str]:
        """Encrypt and post one callback; (status, body). `forge` spoils msg_signature."""
        ts = str(timestamp if timestamp is not None else int(time.time()))
        nonce = nonce or hashlib.md5(f"{time.time_ns()}{xml}".encode()).hexdigest()[:10]
        envelope = self.crypto.encrypt_message(xml, nonce, ts)
        signature = _between(envelope, "<MsgSignature><![CDATA[", "]]></MsgSignature>")
        encrypt = _between(envelope, "<Encrypt><![CDATA[", "]]></Encrypt>")
        if forge:
            signature = hashlib.sha1(b"forged" + signature.encode()).hexdigest()
        body = (f"<xml><ToUserName><![CDATA[{self.to_user}]]></ToUserName>"
                f"<Encrypt><![CDATA[{encrypt}]]></Encrypt></xml>").encode()
        query = urllib.parse.urlencode({"signature": _plain_signature(self.token, ts, nonce), "timestamp": ts,
                                        "nonce": nonce, "openid": "", "encrypt_type": "aes",
                                        "msg_signature": signature})
        return self._send(f"{self.url}?{query}", body, timeout)

    def verify(self, echostr: str, *, forge: bool = False) -> tuple[int, str]:
        ts, nonce = str(int(time.time())), "n0nce"
        signature = _plain_signature(self.token, ts, nonce)
        if forge:
            signature = "0" * 40
        query = urllib.parse.urlencode({"signature": signature, "timestamp": ts, "nonce": nonce, "echostr": echostr})
        try:
            with urllib.request.urlopen(f"{self.url}?{query}", timeout=10) as resp:
                return resp.status, resp.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    @staticmethod
    def _send(url: str, body: bytes, timeout: float) -> tuple[int, str]:
        req = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": "text/xml"})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                return resp.status, resp.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    async def apost(self, xml: str, **kw: Any) -> tuple[int, str]:
        return await asyncio.to_thread(self.post, xml, **kw)


def _plain_signature(token: str, timestamp: str, nonce: str) -> str:
    return hashlib.sha1("".join(sorted([token, timestamp, nonce])).encode()).hexdigest()


def _between(text: str, start: str, end: str) -> str:
    i = text.index(start) + len(start)
    return text[i:text.index(end, i)]


class WeComDriver(CallbackDriver):
    """Posts a WeCom app's callbacks (the AES payload names the CorpID) and its URL check (encrypted echostr)."""

    def __init__(self, url: str, *, token: str = TOKEN, aes_key: str = AES_KEY, corp_id: str = CORP_ID,
                 agent_id: int = AGENT_ID):
        from wechatpy.enterprise.crypto import WeChatCrypto as EnterpriseCrypto

        super().__init__(url, token=token, aes_key=aes_key, app_id=corp_id, to_user=corp_id)
        self.crypto = EnterpriseCrypto(token, aes_key, corp_id)
        self.agent_id = agent_id

    def xml(self, openid: str, msg_type: str, fields: str, **kw: Any) -> str:
        return super().xml(openid, msg_type, fields + f"<AgentID>{self.agent_id}</AgentID>", **kw)

    def card_press(self, userid: str, key: str, task_id: str = "task", response_code: str = "", **kw: Any) -> str:
        code = f"<ResponseCode><![CDATA[{response_code}]]></ResponseCode>" if response_code else ""
        return self.xml(userid, "event", "<Event><![CDATA[template_card_event]]></Event>"
                        f"<EventKey><![CDATA[{key}]]></EventKey><TaskId><![CDATA[{task_id}]]></TaskId>"
                        f"<CardType><![CDATA[button_interaction]]></CardType>{code}", **kw)

    def verify(self, echostr: str, *, forge: bool = False) -> tuple[int, str]:
        ts, nonce = str(int(time.time())), "n0nce"
        envelope = self.crypto.encrypt_message(echostr, nonce, ts)
        encrypted = _between(envelope, "<Encrypt><![CDATA[", "]]></Encrypt>")
        signature = _between(envelope, "<MsgSignature><![CDATA[", "]]></MsgSignature>")
        if forge:
            signature = "0" * 40
        query = urllib.parse.urlencode({"msg_signature": signature, "timestamp": ts, "nonce": nonce,
                                        "echostr": encrypted})
        try:
            with urllib.request.urlopen(f"{self.url}?{query}", timeout=10) as resp:
                return resp.status, resp.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()
