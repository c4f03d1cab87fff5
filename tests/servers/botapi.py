"""A small, standard-library-only Telegram Bot API test server.

It speaks enough of the Bot API (https://core.telegram.org/bots/api) over real HTTP
for the *real* python-telegram-bot (PTB) client to run against it::

    with BotApiServer() as server:
        app = (Application.builder().token(TOKEN)
               .base_url(server.base_url).base_file_url(server.base_file_url).build())
        ...
        server.push_update(make_text_update("你好"))
        call = await server.async_wait_for(lambda c: c["method"] == "sendMessage")

The server runs a ``ThreadingHTTPServer`` in a daemon thread, so it never touches the
asyncio loop of the code under test. NOTE: ``wait_for`` and ``post_webhook`` block the
calling thread; inside an ``async`` test that drives the bot on the same loop use
``async_wait_for`` / ``async_post_webhook`` instead, otherwise the bot cannot run.

How PTB 22 sends requests: every method is a POST to ``base_url + token + "/" + method``;
parameters go as ``application/x-www-form-urlencoded`` (or ``multipart/form-data`` when a
file is uploaded), strings raw and every other value JSON-encoded (ints ``"123"``, bools
``"true"``, nested objects as JSON text). JSON bodies and query strings are accepted too.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from email import policy
from email.parser import BytesParser
from http.server import BaseHTTPRequestHandler
from typing import Any

from tests.servers._threaded import OwnedHTTPServer, ThreadedServer

__all__ = ["DEFAULT_TOKEN", "BotApiServer"]

DEFAULT_TOKEN = "123456789:TEST-quanbot-token"
_COMMAND_NAME = re.compile(r"[a-z0-9_]{1,32}")

# Parameters whose value is always a string in the Bot API; never JSON-decode these
# (so that e.g. text="123" or secret_token="true" stay strings).
_STRING_PARAMS = frozenset(
    {
        "text",
        "caption",
        "parse_mode",
        "url",
        "secret_token",
        "callback_query_id",
        "inline_message_id",
        "action",
        "description",
        "short_description",
        "name",
        "language_code",
        "ip_address",
        "title",
        "file_id",
        "emoji",
        "query",
        "address",
        "first_name",
        "last_name",
        "phone_number",
        "message_effect_id",
        "business_connection_id",
        "photo",
        "document",
        "audio",
        "voice",
        "video",
        "sticker",
        "animation",
        "thumbnail",
        "certificate",
    }
)

# Methods whose params messages_to() reports.
_MESSAGE_METHODS = ("sendMessage", "sendPhoto", "sendVoice", "editMessageText")


def _decode_value(key: str, value: str) -> Any:
    if key in _STRING_PARAMS:
        return value
    try:
        decoded = json.loads(value)
    except (ValueError, TypeError):
        return value
    if isinstance(decoded, (dict, list, int, float, bool)):
        return decoded
    return value  # "null" or a JSON string literal: keep the raw text


def _normalise_chat_id(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            return value
    return value


class _Rejection:
    def __init__(self, n: int, status: int, payload: dict[str, Any]):
        self.remaining = n
        self.status = status
        self.payload = payload


_Server = OwnedHTTPServer


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.0"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def _handle(self) -> None:
        try:
            status, body, ctype = self.server.owner._dispatch(self)
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError):
            pass


class BotApiServer(ThreadedServer):
    """Fake Telegram Bot API server on 127.0.0.1 (random port).

    Public attributes / methods:

    * ``base_url`` (``http://127.0.0.1:PORT/bot``), ``base_file_url`` (``.../file/bot``),
      ``token`` (the default token, any token is accepted), ``bot_user`` (the getMe dict).
    * ``push_update(update) -> update_id`` queue a raw update for getUpdates.
    * ``sent`` snapshot list of recorded successful calls ``{"method", "params", "t",
      "token", "files"}``; ``rejected`` the calls answered by ``fail_next``.
    * ``calls(method)``, ``messages_to(chat_id)``, ``last(method)``.
    * ``wait_for(pred, timeout)`` (blocking) / ``await async_wait_for(pred, timeout)``;
      ``pred`` is a callable on a call record or a method name.
    * ``fail_next(method, n, status, retry_after, description)``.
    * ``webhook`` dict of the last setWebhook params (``url``, ``secret_token`` ...) or None;
      ``post_webhook(update, secret)`` / ``await async_post_webhook(...)``.
    * ``on(method, fn)`` override/add a method: ``fn(params) -> result`` (the ``result``
      field), or raise ``BotApiServer.Error(code, description)``.
    * ``add_file(file_id, content, file_path=None)`` makes getFile + file download work.
    * ``messages`` dict ``(chat_id, message_id) -> Message dict`` of what the bot sent.
    * ``clear()`` forget recorded calls (not the queue / webhook / commands).
    """

    class Error(Exception):
        """Raise from an ``on()`` handler to answer ``{"ok": false, ...}``."""

        def __init__(self, error_code: int, description: str, parameters: dict | None = None):
            super().__init__(description)
            self.error_code = error_code
            self.description = description
            self.parameters = parameters

    def __init__(
        self,
        token: str = DEFAULT_TOKEN,
        *,
        bot_username: str = "quanbot_test_bot",
        bot_first_name: str = "泉小智测试",
        host: str = "127.0.0.1",
        strict_edits: bool = False,
    ):
        self.token = token
        super().__init__()
        self.host = host
        self.strict_edits = strict_edits
        try:
            bot_id = int(token.split(":", 1)[0])
        except ValueError:
            bot_id = 7000000001
        self.bot_user: dict[str, Any] = {
            "id": bot_id,
            "is_bot": True,
            "first_name": bot_first_name,
            "username": bot_username,
            "can_join_groups": True,
            "can_read_all_group_messages": False,
            "supports_inline_queries": False,
            "can_connect_to_business": False,
            "has_main_web_app": False,
        }
        self._cond = threading.Condition()
        self._updates: list[dict[str, Any]] = []
        self._next_update_id = 1
        self._confirmed_offset = 0
        self._sent: list[dict[str, Any]] = []
        self._rejected: list[dict[str, Any]] = []
        self._failures: dict[str, list[_Rejection]] = {}
        self._msg_counters: dict[Any, int] = {}
        self.messages: dict[tuple[Any, int], dict[str, Any]] = {}
        self._commands: dict[str, list[dict[str, Any]]] = {}
        self._files: dict[str, tuple[str, bytes]] = {}
        self._custom: dict[str, Callable[[dict[str, Any]], Any]] = {}
        self.webhook: dict[str, Any] | None = None
        self._stopping = False
        self._file_counter = itertools.count(1)

    # ------------------------------------------------------------------ lifecycle
    handler_class = _Handler

    def _on_start(self) -> None:
        self._stopping = False

    def _on_stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        return f"{self.url}/bot"

    @property
    def base_file_url(self) -> str:
        return f"{self.url}/file/bot"

    # ------------------------------------------------------------------ test controls
    def push_update(self, update: dict[str, Any]) -> int:
        """Queue a raw update dict for getUpdates; returns its update_id."""
        update = dict(update)
        with self._cond:
            uid = update.get("update_id")
            if uid is None:
                uid = self._next_update_id
                update["update_id"] = uid
            if uid < self._confirmed_offset:
                raise ValueError(
                    f"update_id {uid} is below the already confirmed offset "
                    f"{self._confirmed_offset}; getUpdates would never deliver it"
                )
            self._next_update_id = max(self._next_update_id, uid + 1)
            # keep the bot's per-chat message_id counter above incoming message ids
            for key in ("message", "edited_message", "channel_post"):
                msg = update.get(key)
                if isinstance(msg, dict) and "chat" in msg and "message_id" in msg:
                    cid = msg["chat"].get("id")
                    self._msg_counters[cid] = max(self._msg_counters.get(cid, 0), msg["message_id"])
            self._updates.append(update)
            self._updates.sort(key=lambda u: u["update_id"])
            self._cond.notify_all()
        return uid

    @property
    def pending_updates(self) -> list[dict[str, Any]]:
        with self._cond:
            return list(self._updates)

    @property
    def sent(self) -> list[dict[str, Any]]:
        with self._cond:
            return list(self._sent)

    @property
    def rejected(self) -> list[dict[str, Any]]:
        with self._cond:
            return list(self._rejected)

    def calls(self, method: str) -> list[dict[str, Any]]:
        return [c for c in self.sent if c["method"] == method]

    def last(self, method: str) -> dict[str, Any] | None:
        found = self.calls(method)
        return found[-1] if found else None

    def messages_to(self, chat_id: Any) -> list[dict[str, Any]]:
        """Params of sendMessage/sendPhoto/editMessageText calls for ``chat_id``."""
        cid = _normalise_chat_id(chat_id)
        return [
            c["params"]
            for c in self.sent
            if c["method"] in _MESSAGE_METHODS and c["params"].get("chat_id") == cid
        ]

    def texts_to(self, chat_id: Any) -> list[str]:
        """Just the text / caption of ``messages_to(chat_id)``."""
        return [p.get("text", p.get("caption", "")) or "" for p in self.messages_to(chat_id)]

    def clear(self) -> None:
        with self._cond:
            self._sent.clear()
            self._rejected.clear()

    def _find(self, predicate: Callable[[dict[str, Any]], bool] | str) -> dict[str, Any] | None:
        if isinstance(predicate, str):
            method = predicate

            def matches(c: dict[str, Any]) -> bool:
                return bool(c["method"] == method)
        else:
            matches = predicate
        for call in self.sent:
            try:
                if matches(call):
                    return call
            except (KeyError, TypeError, AttributeError, IndexError):
                continue
        return None

    def _timeout_error(self, predicate: Any, timeout: float) -> TimeoutError:
        lines = [f"no recorded Bot API call matched {predicate!r} within {timeout}s."]
        lines.append(f"recorded calls ({len(self._sent)}):")
        for c in self.sent[-30:]:
            lines.append(f"  {c['method']}: {json.dumps(c['params'], ensure_ascii=False)[:300]}")
        if self._rejected:
            lines.append(f"rejected calls ({len(self._rejected)}):")
            for c in self.rejected[-10:]:
                lines.append(f"  {c['method']}: {json.dumps(c['params'], ensure_ascii=False)[:200]}")
        lines.append(f"pending updates: {[u['update_id'] for u in self.pending_updates]}")
        return TimeoutError("\n".join(lines))

    def wait_for(
        self, predicate: Callable[[dict[str, Any]], bool] | str, timeout: float = 5.0
    ) -> dict[str, Any]:
        """Block (polling every 10 ms) until a recorded call matches; return it.

        Blocks the calling thread: do not use it from a coroutine on the loop the bot runs
        on, use :meth:`async_wait_for` there.
        """
        deadline = time.monotonic() + timeout
        while True:
            found = self._find(predicate)
            if found is not None:
                return found
            if time.monotonic() >= deadline:
                raise self._timeout_error(predicate, timeout)
            time.sleep(0.01)

    async def async_wait_for(
        self, predicate: Callable[[dict[str, Any]], bool] | str, timeout: float = 5.0
    ) -> dict[str, Any]:
        """Like :meth:`wait_for` but yields to the event loop while waiting."""
        deadline = time.monotonic() + timeout
        while True:
            found = self._find(predicate)
            if found is not None:
                return found
            if time.monotonic() >= deadline:
                raise self._timeout_error(predicate, timeout)
            await asyncio.sleep(0.01)

    def fail_next(
        self,
        method: str,
        n: int = 1,
        status: int = 429,
        retry_after: int | None = 1,
        description: str | None = None,
        error_code: int | None = None,
    ) -> None:
        """Make the next ``n`` calls of ``method`` fail with a Bot API error.

        429 (default) answers ``{"ok": false, "error_code": 429, "description": "Too Many
        Requests: retry after 1", "parameters": {"retry_after": 1}}`` with HTTP 429 (PTB raises
        ``telegram.error.RetryAfter``). ``parameters.retry_after`` is only sent for 429s
        (``retry_after=None`` omits it). E.g. ``fail_next("sendMessage", status=403)`` gives
        ``telegram.error.Forbidden``, ``status=400`` ``BadRequest``. The HTTP status is
        ``status``; ``error_code`` in the body defaults to it.
        """
        code = error_code if error_code is not None else status
        if description is None:
            description = {
                429: f"Too Many Requests: retry after {retry_after}",
                400: "Bad Request: test failure",
                401: "Unauthorized",
                403: "Forbidden: bot was blocked by the user",
                404: "Not Found",
                409: "Conflict: test failure",
                500: "Internal Server Error",
                502: "Bad Gateway",
            }.get(code, f"Error {code}")
        payload: dict[str, Any] = {"ok": False, "error_code": code, "description": description}
        if retry_after is not None and (status == 429 or code == 429):
            payload["parameters"] = {"retry_after": retry_after}
        with self._cond:
            self._failures.setdefault(method, []).append(_Rejection(n, status, payload))

    def on(self, method: str, fn: Callable[[dict[str, Any]], Any] | None) -> None:
        """Override (or add) a method; ``fn(params)`` returns the ``result``. None removes."""
        with self._cond:
            if fn is None:
                self._custom.pop(method, None)
            else:
                self._custom[method] = fn

    def add_file(self, file_id: str, content: bytes, file_path: str | None = None) -> None:
        with self._cond:
            self._files[file_id] = (file_path or f"files/{file_id}", content)

    def commands(self, scope: dict | None = None, language_code: str = "") -> list[dict]:
        with self._cond:
            return list(self._commands.get(self._commands_key(scope, language_code), []))

    def post_webhook(self, update: dict[str, Any], secret: str | None = None, timeout: float = 10.0) -> int:
        """POST ``update`` as JSON to the registered webhook URL; returns the HTTP status."""
        if not self.webhook or not self.webhook.get("url"):
            raise RuntimeError("no webhook registered (setWebhook was not called)")
        if "update_id" not in update:
            with self._cond:
                update = {**update, "update_id": self._next_update_id}
                self._next_update_id += 1
        data = json.dumps(update, ensure_ascii=False).encode("utf-8")
        req = urllib.request.Request(self.webhook["url"], data=data, method="POST")
        req.add_header("Content-Type", "application/json")
        if secret is not None:
            req.add_header("X-Telegram-Bot-Api-Secret-Token", secret)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                return resp.status
        except urllib.error.HTTPError as exc:
            return exc.code

    async def async_post_webhook(
        self, update: dict[str, Any], secret: str | None = None, timeout: float = 10.0
    ) -> int:
        """:meth:`post_webhook` run in a worker thread (use this inside async tests)."""
        return await asyncio.to_thread(self.post_webhook, update, secret, timeout)

    # ------------------------------------------------------------------ HTTP plumbing
    def _dispatch(self, handler: _Handler) -> tuple[int, bytes, str]:
        parsed = urllib.parse.urlsplit(handler.path)
        path = parsed.path
        if path.startswith("/file/bot"):
            return self._serve_file(path[len("/file/bot") :])
        if not path.startswith("/bot") or "/" not in path[4:]:
            return self._json(404, {"ok": False, "error_code": 404, "description": "Not Found"})
        token, method = path[4:].split("/", 1)
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        try:
            params, files = self._parse_params(handler.headers.get("Content-Type", ""), body, parsed.query)
        except Exception as exc:  # noqa: BLE001
            return self._json(
                400,
                {"ok": False, "error_code": 400, "description": f"Bad Request: {exc}"},
            )
        record = {
            "method": method,
            "params": params,
            "t": time.monotonic(),
            "token": token,
            "files": files,
        }

        with self._cond:
            queue = self._failures.get(method)
            if queue:
                rej = queue[0]
                rej.remaining -= 1
                if rej.remaining <= 0:
                    queue.pop(0)
                self._rejected.append({**record, "response": rej.payload})
                return self._json(rej.status, rej.payload)

        try:
            if method in self._custom:
                result = self._custom[method](params)
            else:
                impl = getattr(self, f"_m_{method}", None)
                if impl is None:
                    # Method names are case-insensitive in the Bot API
                    for name in dir(self):
                        if name.startswith("_m_") and name[3:].lower() == method.lower():
                            impl = getattr(self, name)
                            break
                if impl is None:
                    with self._cond:
                        self._rejected.append({**record, "response": "not found"})
                    return self._json(
                        404,
                        {
                            "ok": False,
                            "error_code": 404,
                            "description": "Not Found: method not found",
                        },
                    )
                result = impl(params)
        except BotApiServer.Error as err:
            payload: dict[str, Any] = {
                "ok": False,
                "error_code": err.error_code,
                "description": err.description,
            }
            if err.parameters:
                payload["parameters"] = err.parameters
            with self._cond:
                self._rejected.append({**record, "response": payload})
            return self._json(err.error_code, payload)

        # getUpdates polls are very chatty: do not record the empty ones.
        if not (method == "getUpdates" and not result):
            with self._cond:
                record["result"] = result
                self._sent.append(record)
        return self._json(200, {"ok": True, "result": result})

    @staticmethod
    def _json(status: int, payload: Any) -> tuple[int, bytes, str]:
        return (
            status,
            json.dumps(payload, ensure_ascii=False).encode("utf-8"),
            "application/json",
        )

    @staticmethod
    def _parse_params(
        content_type: str, body: bytes, query: str
    ) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
        params: dict[str, Any] = {}
        files: dict[str, dict[str, Any]] = {}
        for k, v in urllib.parse.parse_qsl(query, keep_blank_values=True):
            params[k] = _decode_value(k, v)
        ctype = content_type.split(";", 1)[0].strip().lower()
        if not body:
            pass
        elif ctype == "application/json":
            data = json.loads(body.decode("utf-8"))
            if not isinstance(data, dict):
                raise ValueError("JSON body must be an object")
            params.update(data)
        elif ctype == "multipart/form-data":
            msg = BytesParser(policy=policy.HTTP).parsebytes(
                b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + body
            )
            for part in msg.iter_parts():
                raw_name = part.get_param("name", header="content-disposition")
                if raw_name is None:
                    continue
                name = raw_name if isinstance(raw_name, str) else str(raw_name[2])
                payload = part.get_payload(decode=True) or b""
                if not isinstance(payload, bytes):
                    payload = str(payload).encode("utf-8")
                filename = part.get_filename()
                if filename is not None:
                    files[name] = {
                        "filename": filename,
                        "content_type": part.get_content_type(),
                        "content": payload,
                        "size": len(payload),
                    }
                else:
                    params[name] = _decode_value(name, payload.decode("utf-8"))
            # files uploaded directly under the parameter name (not via attach://)
            for name, info in files.items():
                params.setdefault(
                    name,
                    {"filename": info["filename"], "size": info["size"], "upload": True},
                )
        else:  # application/x-www-form-urlencoded or unspecified
            for k, v in urllib.parse.parse_qsl(body.decode("utf-8"), keep_blank_values=True):
                params[k] = _decode_value(k, v)
        if "chat_id" in params:
            params["chat_id"] = _normalise_chat_id(params["chat_id"])
        return params, files

    def _serve_file(self, rest: str) -> tuple[int, bytes, str]:
        # rest = TOKEN/file_path
        _, _, file_path = rest.partition("/")
        file_path = urllib.parse.unquote(file_path)
        with self._cond:
            for path, content in self._files.values():
                if path == file_path:
                    return 200, content, "application/octet-stream"
        return 404, b"Not Found", "text/plain"

    # ------------------------------------------------------------------ helpers
    def _chat(self, chat_id: Any) -> dict[str, Any]:
        if isinstance(chat_id, int) and chat_id < 0:
            if str(chat_id).startswith("-100"):
                return {"id": chat_id, "type": "supergroup", "title": "测试群"}
            return {"id": chat_id, "type": "group", "title": "测试群"}
        if isinstance(chat_id, str):  # @channelusername
            return {
                "id": -1001000000001,
                "type": "channel",
                "title": chat_id,
                "username": chat_id.lstrip("@"),
            }
        return {"id": chat_id, "type": "private", "first_name": "用户"}

    def _new_message(self, params: dict[str, Any], **content: Any) -> dict[str, Any]:
        chat_id = params.get("chat_id")
        if chat_id is None or chat_id == "":
            raise BotApiServer.Error(400, "Bad Request: chat_id is empty")
        with self._cond:
            mid = self._msg_counters.get(chat_id, 0) + 1
            self._msg_counters[chat_id] = mid
        msg: dict[str, Any] = {
            "message_id": mid,
            "from": dict(self.bot_user),
            "date": int(time.time()),
            "chat": self._chat(chat_id),
        }
        if params.get("message_thread_id") is not None:
            msg["message_thread_id"] = params["message_thread_id"]
        msg.update({k: v for k, v in content.items() if v is not None})
        markup = params.get("reply_markup")
        if isinstance(markup, dict) and "inline_keyboard" in markup:
            # Telegram only ever echoes inline keyboards in Message.reply_markup
            msg["reply_markup"] = markup
        reply_to = params.get("reply_to_message_id")
        rp = params.get("reply_parameters")
        if isinstance(rp, dict):
            reply_to = rp.get("message_id", reply_to)
        if reply_to is not None:
            original = self.messages.get((chat_id, reply_to))
            if original is not None:
                msg["reply_to_message"] = {k: v for k, v in original.items() if k != "reply_to_message"}
        with self._cond:
            self.messages[(chat_id, mid)] = msg
        return msg

    @staticmethod
    def _commands_key(scope: Any, language_code: Any) -> str:
        if isinstance(scope, str):
            scope = json.loads(scope)
        return json.dumps(scope or {"type": "default"}, sort_keys=True) + "|" + (language_code or "")

    def _edit_target(self, params: dict[str, Any]) -> dict[str, Any] | None:
        if params.get("inline_message_id"):
            return None
        chat_id = params.get("chat_id")
        mid = params.get("message_id")
        if chat_id is None or mid is None:
            raise BotApiServer.Error(400, "Bad Request: message identifier is not specified")
        with self._cond:
            msg = self.messages.get((chat_id, mid))
        if msg is None:
            if self.strict_edits:
                raise BotApiServer.Error(400, "Bad Request: message to edit not found")
            # lenient: the message may come from a factory-made update
            msg = {
                "message_id": mid,
                "from": dict(self.bot_user),
                "date": int(time.time()),
                "chat": self._chat(chat_id),
            }
        return dict(msg)

    # ------------------------------------------------------------------ Bot API methods
    def _m_getMe(self, params: dict[str, Any]) -> Any:
        return dict(self.bot_user)

    def _m_logOut(self, params: dict[str, Any]) -> Any:
        return True

    def _m_close(self, params: dict[str, Any]) -> Any:
        return True

    def _m_getUpdates(self, params: dict[str, Any]) -> Any:
        offset = params.get("offset")
        limit = params.get("limit") or 100
        timeout = float(params.get("timeout") or 0)
        allowed = params.get("allowed_updates")
        limit = max(1, min(int(limit), 100))
        deadline = time.monotonic() + timeout
        with self._cond:
            if self.webhook and self.webhook.get("url"):
                raise BotApiServer.Error(
                    409,
                    "Conflict: can't use getUpdates method while webhook is active; "
                    "use deleteWebhook to delete the webhook first",
                )
            if offset is not None:
                offset = int(offset)
                if offset < 0:
                    self._updates = self._updates[offset:]
                else:
                    self._confirmed_offset = max(self._confirmed_offset, offset)
                    self._updates = [u for u in self._updates if u["update_id"] >= offset]
            while True:
                pending = self._updates
                if allowed:
                    pending = [u for u in pending if any(k in u for k in allowed)]
                if pending or self._stopping:
                    return [dict(u) for u in pending[:limit]]
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return []
                self._cond.wait(min(remaining, 0.1))

    def _m_setWebhook(self, params: dict[str, Any]) -> Any:
        url = params.get("url", "")
        with self._cond:
            if params.get("drop_pending_updates"):
                self._updates.clear()
            self.webhook = dict(params) if url else None
            if self.webhook is not None:
                self.webhook.setdefault("secret_token", None)
        return True

    def _m_deleteWebhook(self, params: dict[str, Any]) -> Any:
        with self._cond:
            if params.get("drop_pending_updates"):
                self._updates.clear()
            self.webhook = None
        return True

    def _m_getWebhookInfo(self, params: dict[str, Any]) -> Any:
        with self._cond:
            info: dict[str, Any] = {
                "url": (self.webhook or {}).get("url", ""),
                "has_custom_certificate": False,
                "pending_update_count": len(self._updates),
            }
            if self.webhook:
                if self.webhook.get("max_connections") is not None:
                    info["max_connections"] = self.webhook["max_connections"]
                if self.webhook.get("allowed_updates"):
                    info["allowed_updates"] = self.webhook["allowed_updates"]
        return info

    def _m_setMyCommands(self, params: dict[str, Any]) -> Any:
        commands = params.get("commands") or []
        if isinstance(commands, str):
            commands = json.loads(commands)
        # the rules Telegram enforces (https://core.telegram.org/bots/api#botcommand): at most 100 commands,
        # each 1-32 of a-z, 0-9 and _, with a description of 1-256 characters
        if not isinstance(commands, list) or len(commands) > 100:
            raise BotApiServer.Error(400, "Bad Request: too many commands specified")
        for cmd in commands:
            name = str((cmd or {}).get("command", ""))
            if not _COMMAND_NAME.fullmatch(name):
                raise BotApiServer.Error(400, "Bad Request: BOT_COMMAND_INVALID")
            if not 1 <= len(str(cmd.get("description", ""))) <= 256:
                raise BotApiServer.Error(400, "Bad Request: command description is empty or too long")
        key = self._commands_key(params.get("scope"), params.get("language_code"))
        with self._cond:
            self._commands[key] = list(commands)
        return True

    def _m_deleteMyCommands(self, params: dict[str, Any]) -> Any:
        key = self._commands_key(params.get("scope"), params.get("language_code"))
        with self._cond:
            self._commands.pop(key, None)
        return True

    def _m_getMyCommands(self, params: dict[str, Any]) -> Any:
        key = self._commands_key(params.get("scope"), params.get("language_code"))
        with self._cond:
            return list(self._commands.get(key, []))

    def _m_sendMessage(self, params: dict[str, Any]) -> Any:
        text = params.get("text")
        if text is None or text == "":
            raise BotApiServer.Error(400, "Bad Request: message text is empty")
        if len(text) > 4096:
            raise BotApiServer.Error(400, "Bad Request: message is too long")
        entities = params.get("entities")
        return self._new_message(params, text=text, entities=entities or None)

    def _m_sendPhoto(self, params: dict[str, Any]) -> Any:
        photo = params.get("photo")
        if photo is None or photo == "":
            raise BotApiServer.Error(400, "Bad Request: there is no photo in the request")
        if isinstance(photo, str) and not photo.startswith(("http://", "https://", "attach://")):
            file_id = photo
        else:
            file_id = f"AgACAgTestPhoto{next(self._file_counter)}"
        sizes = [
            {
                "file_id": f"{file_id}",
                "file_unique_id": f"u_{file_id}"[:32],
                "width": 90,
                "height": 90,
                "file_size": 1024,
            },
            {
                "file_id": f"{file_id}",
                "file_unique_id": f"u_{file_id}"[:32],
                "width": 800,
                "height": 800,
                "file_size": 65536,
            },
        ]
        caption = params.get("caption")
        return self._new_message(
            params,
            photo=sizes,
            caption=caption if caption else None,
            caption_entities=params.get("caption_entities") or None,
        )

    def _m_sendVoice(self, params: dict[str, Any]) -> Any:
        voice = params.get("voice")
        if voice is None or voice == "":
            raise BotApiServer.Error(400, "Bad Request: there is no voice in the request")
        if isinstance(voice, str) and not voice.startswith(("http://", "https://", "attach://")):
            file_id = voice
            with self._cond:
                known = file_id in self._files
            if not known:  # Telegram refuses a file id it never issued
                raise BotApiServer.Error(400, "Bad Request: wrong file identifier/HTTP URL specified")
        else:
            file_id = f"AwACAgTestVoice{next(self._file_counter)}"
        caption = params.get("caption")
        return self._new_message(params, voice={"file_id": file_id, "file_unique_id": f"u_{file_id}"[:32],
                                                "duration": 1, "mime_type": "audio/ogg"},
                                 caption=caption if caption else None)

    def _m_sendChatAction(self, params: dict[str, Any]) -> Any:
        if params.get("chat_id") is None:
            raise BotApiServer.Error(400, "Bad Request: chat_id is empty")
        return True

    def _m_answerCallbackQuery(self, params: dict[str, Any]) -> Any:
        if not params.get("callback_query_id"):
            raise BotApiServer.Error(
                400, "Bad Request: query is too old and response timeout expired or query ID is invalid"
            )
        return True

    def _m_editMessageText(self, params: dict[str, Any]) -> Any:
        text = params.get("text")
        if not text:
            raise BotApiServer.Error(400, "Bad Request: message text is empty")
        msg = self._edit_target(params)
        if msg is None:
            return True
        markup = params.get("reply_markup")
        new_markup = markup if isinstance(markup, dict) and "inline_keyboard" in markup else None
        if self.strict_edits and msg.get("text") == text and msg.get("reply_markup") == new_markup:
            raise BotApiServer.Error(
                400,
                "Bad Request: message is not modified: specified new message content and reply "
                "markup are exactly the same as a current content and reply markup of the message",
            )
        msg.pop("caption", None)
        msg["text"] = text
        msg.pop("reply_markup", None)
        if new_markup is not None:
            msg["reply_markup"] = new_markup
        msg["edit_date"] = int(time.time())
        with self._cond:
            self.messages[(msg["chat"]["id"], msg["message_id"])] = msg
        return msg

    def _m_editMessageReplyMarkup(self, params: dict[str, Any]) -> Any:
        msg = self._edit_target(params)
        if msg is None:
            return True
        markup = params.get("reply_markup")
        msg.pop("reply_markup", None)
        if isinstance(markup, dict) and "inline_keyboard" in markup:
            msg["reply_markup"] = markup
        msg["edit_date"] = int(time.time())
        with self._cond:
            self.messages[(msg["chat"]["id"], msg["message_id"])] = msg
        return msg

    def _m_deleteMessage(self, params: dict[str, Any]) -> Any:
        with self._cond:
            self.messages.pop((params.get("chat_id"), params.get("message_id", 0)), None)
        return True

    def _m_getFile(self, params: dict[str, Any]) -> Any:
        file_id = str(params.get("file_id"))
        with self._cond:
            entry = self._files.get(file_id)
        if entry is None:
            raise BotApiServer.Error(400, "Bad Request: invalid file_id")
        path, content = entry
        return {
            "file_id": file_id,
            "file_unique_id": f"u_{file_id}"[:32],
            "file_size": len(content),
            "file_path": path,
        }
