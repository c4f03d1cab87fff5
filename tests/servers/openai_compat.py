"""A small, standard-library-only OpenAI-compatible test server.

For the *real* ``openai`` client / ``langchain_openai`` to talk to over HTTP::

    with OpenAICompatServer() as llm:
        client = openai.OpenAI(base_url=llm.base_url, api_key="test", max_retries=0)
        llm.queue_reply('{"category": "噪音"}')
        client.chat.completions.create(model="m", messages=[...])

Endpoints: ``POST /v1/chat/completions`` (JSON, or SSE when ``stream: true``),
``POST /v1/embeddings`` (float or base64, deterministic hashed embeddings),
``POST /v1/audio/transcriptions`` (multipart upload, as whisper / FunASR / SenseVoice servers take it: the
scripted text of ``queue_transcription``, else the words after ``SAY:`` in the uploaded bytes, else ""; a file
that starts like no audio container gets whisper's 400 "Invalid file format"),
``GET /v1/models`` and ``GET /v1/models/{id}``. Runs a ``ThreadingHTTPServer`` in a daemon
thread, so it never blocks the asyncio loop of the code under test.

``obey_injections()`` turns the server into a gullible model: it answers by repeating, word for word, every
line of the last user message that carries an instruction, a link, an account or a fee (what a poisoned
document plants), as a grounded answer citing [1].

``set_latency(s)`` makes every later call slow and ``hang()`` makes every later call wait until the server
stops (an endpoint that never answers); ``peak_in_flight`` is the most requests the server was serving at once.
``answer_sensibly(labels)`` makes it a well-behaved model for load tests: a structured-output call gets
``labels(user message)``, any other call a grounded answer (the first sentence of passage 1, citing [1]).

Per-call directives are FIFOs consumed by the next matching call, in this order: a queued
delay (sleep first), then the latency mode, then a queued failure (``queue_error`` / ``queue_malformed``; a failing
call does NOT consume a queued reply), then a queued reply, else the responder.
``endpoint`` ("chat" / "embeddings" / "audio" / None = any) restricts which call a delay/failure
applies to.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import math
import re
import struct
import threading
import time
import uuid
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler
from typing import Any, Self

from tests.servers._threaded import OwnedHTTPServer, ThreadedServer

__all__ = ["OpenAICompatServer", "pseudo_embedding"]

_EP_BY_PATH = {
    "/v1/chat/completions": "chat",
    "/chat/completions": "chat",
    "/v1/embeddings": "embeddings",
    "/embeddings": "embeddings",
    "/v1/audio/transcriptions": "audio",
    "/audio/transcriptions": "audio",
}
# the first bytes of the containers a speech server decodes (what ffmpeg would accept), at their offsets
_AUDIO_MAGIC = ((b"OggS", 0), (b"RIFF", 0), (b"fLaC", 0), (b"ID3", 0), (b"\x1a\x45\xdf\xa3", 0), (b"ftyp", 4),
                (b"#!AMR", 0))


def _parse_multipart(raw: bytes, content_type: str) -> dict[str, Any]:
    """A multipart/form-data body as {field: str} with the file as {"filename", "content_type", "data"}."""
    from email import policy
    from email.parser import BytesParser

    msg = BytesParser(policy=policy.HTTP).parsebytes(
        b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + raw)
    fields: dict[str, Any] = {}
    for part in msg.iter_parts():
        name = part.get_param("name", header="content-disposition")
        data = part.get_payload(decode=True) or b""
        if part.get_filename() is not None:
            fields[str(name)] = {"filename": part.get_filename(), "content_type": part.get_content_type(),
                                 "data": data}
        else:
            fields[str(name)] = data.decode("utf-8", "replace")
    return fields


def _spoken(data: bytes) -> str:
    """The words a test audio file "says": the UTF-8 text after b"SAY:" (to a newline), else nothing."""
    _, found, rest = data.partition(b"SAY:")
    return rest.split(b"\n", 1)[0].decode("utf-8", "replace").strip() if found else ""


def _tokens_of(value: Any) -> str:
    """Text used to derive an embedding: str, or a token-id list rendered as text."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return " ".join(str(v) for v in value)
    return str(value)


def pseudo_embedding(text: str, dim: int = 64) -> list[float]:
    """Deterministic, L2-normalised pseudo-embedding of ``text``.

    Signed feature hashing (sha256) of character unigrams and bigrams, so that identical
    texts give identical vectors and texts sharing characters/words are closer (cosine)
    than unrelated ones - enough for retrieval tests. Empty text -> a fixed unit vector.
    """
    vec = [0.0] * dim
    chars = [c for c in text.lower() if not c.isspace()]
    grams = chars + [a + b for a, b in itertools.pairwise(chars)]
    for g in grams:
        h = hashlib.sha256(g.encode("utf-8")).digest()
        idx = int.from_bytes(h[:4], "little") % dim
        sign = 1.0 if h[4] & 1 else -1.0
        weight = 1.0 if len(g) == 1 else 1.5
        vec[idx] += sign * weight
        idx2 = int.from_bytes(h[5:9], "little") % dim  # second hash spreads mass
        vec[idx2] += (1.0 if h[9] & 1 else -1.0) * weight * 0.5
    norm = math.sqrt(sum(v * v for v in vec))
    if norm == 0.0:
        vec[0] = 1.0
        return vec
    return [v / norm for v in vec]


_Server = OwnedHTTPServer
_FIRST_PASSAGE = re.compile(r'<passage id="1"[^>]*>\n(.*?)\n</passage>', re.DOTALL)
LISTEN_BACKLOG = 256
HANG_S = 24 * 3600.0  # "forever" for a test: Event.wait cannot take infinity

# What a gullible model acts on in the data it was given: lines that address it, links, personal accounts, fees
# and verification codes. Lines with markup (the caller's own wrapper tags) are not data and are skipped.
OBEY_CUES = re.compile(
    r"assistant\s*[:：]|system\s*[:：]|以上规则已失效|忽略|https?://|www\.|微信\s*[A-Za-z0-9_]{5,}|"
    r"个人账户|收款码|转账|\d+\s*元|验证码", re.IGNORECASE)


def _grounded_json(text: str) -> str:
    return json.dumps({"answerable": True, "answer": text}, ensure_ascii=False)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.0"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    def _handle(self, method: str) -> None:
        owner = self.server.owner
        owner._enter()
        try:
            owner._dispatch(self, method)
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError):
            pass  # client gave up (e.g. timeout test)
        finally:
            owner._leave()

    # helpers used by the owner
    def send_body(
        self,
        status: int,
        body: bytes,
        ctype: str = "application/json",
        headers: dict[str, str] | None = None,
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)


def _err_body(message: str, type_: str, code: Any = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": None, "code": code}}


class OpenAICompatServer(ThreadedServer):
    """Fake OpenAI API on 127.0.0.1 (random port).

    * ``base_url`` -> ``http://127.0.0.1:PORT/v1``
    * ``requests``: snapshot list of ``{"method", "path", "headers", "body", "t"}`` (body =
      parsed JSON or None); ``chat_requests()``, ``embedding_requests()``, ``last_request``.
    * ``prompts_text()``: every chat message content (+ embedding inputs) joined by "\\n".
    * ``queue_reply(content)``, ``queue_tool_call(name, arguments)``, ``queue_delay(s)``,
      ``queue_error(status, body)``, ``queue_malformed()``, ``set_responder(fn)``.
    * ``default_reply``: ``(request_json) -> str | dict`` used when no reply is queued.
    * ``embedding_dim`` (default 64), ``models`` (list of model ids).
    * ``clear()`` forgets recorded requests and every queued directive.
    """

    def __init__(
        self,
        *,
        embedding_dim: int = 64,
        models: list[str] | None = None,
        api_key: str | None = None,
        host: str = "127.0.0.1",
        stream_chunk_chars: int = 4,
    ):
        super().__init__()
        self.host = host
        self.embedding_dim = embedding_dim
        self.models = list(models or ["test-chat-model", "test-embedding-model"])
        self.api_key = api_key  # when set, other bearer tokens get 401
        self.stream_chunk_chars = stream_chunk_chars
        self.default_reply: Callable[[dict[str, Any]], Any] = lambda req: "好的。"
        self._lock = threading.Lock()
        self._requests: list[dict[str, Any]] = []
        self._replies: list[dict[str, Any]] = []
        self._transcripts: list[str] = []
        self._delays: list[tuple[str | None, float]] = []
        self._failures: list[tuple[str | None, dict[str, Any]]] = []
        self._latency: dict[str | None, float] = {}
        self._in_flight = 0
        self._peak_in_flight = 0
        self._stop_event = threading.Event()
        self._ids = itertools.count(1)

    # ------------------------------------------------------------------ lifecycle
    handler_class = _Handler

    def _on_start(self) -> None:
        self._stop_event.clear()

    def start(self) -> Self:
        super().start()
        if self._httpd is not None:  # socketserver listens with a backlog of 5: a crowd of callers loses SYNs
            self._httpd.socket.listen(LISTEN_BACKLOG)  # (each a 1 s retransmit); Linux takes a second listen()
        return self

    def _on_stop(self) -> None:
        self._stop_event.set()  # wake up delayed handlers

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    # ------------------------------------------------------------------ test controls
    def queue_reply(self, content: str, *, finish_reason: str = "stop") -> None:
        """Queue the content of the next chat answer (FIFO)."""
        with self._lock:
            self._replies.append({"content": content, "finish_reason": finish_reason})

    def queue_tool_call(
        self, name: str, arguments: dict[str, Any] | str, *, call_id: str | None = None
    ) -> None:
        """Queue a chat answer that is a single function tool call."""
        args = arguments if isinstance(arguments, str) else json.dumps(arguments, ensure_ascii=False)
        with self._lock:
            self._replies.append(
                {
                    "content": None,
                    "finish_reason": "tool_calls",
                    "tool_calls": [
                        {
                            "id": call_id or f"call_{uuid.uuid4().hex[:12]}",
                            "type": "function",
                            "function": {"name": name, "arguments": args},
                        }
                    ],
                }
            )

    def queue_transcription(self, text: str) -> None:
        """Queue the text of the next audio transcription (FIFO); "" is a recording with no speech in it."""
        with self._lock:
            self._transcripts.append(text)

    def audio_requests(self) -> list[dict[str, Any]]:
        return [r for r in self.requests if _EP_BY_PATH.get(r["path"]) == "audio"]

    def queue_delay(self, seconds: float, *, endpoint: str | None = None) -> None:
        """The next (matching) call sleeps ``seconds`` before answering."""
        with self._lock:
            self._delays.append((endpoint, seconds))

    def answer_sensibly(self, labels: Callable[[str], dict[str, str]]) -> None:
        """From now on answer like a model that does its job: a call with ``response_format`` (classification)
        gets ``labels(last user message)`` as JSON; any other call the first sentence of ``<passage id="1">``
        with ``[1]`` as ``{"answerable": true, "answer": ...}``, or ``answerable: false`` without passages."""

        def respond(body: dict[str, Any]) -> str:
            users = [m for m in body.get("messages") or [] if m.get("role") == "user"]
            content = str(users[-1].get("content") or "") if users else ""
            if body.get("response_format"):
                return json.dumps(labels(content), ensure_ascii=False)
            found = _FIRST_PASSAGE.search(content)
            if found is None:
                return json.dumps({"answerable": False, "answer": ""})
            first = next((ln.strip() for ln in found.group(1).splitlines() if ln.strip() and "<" not in ln), "")
            sentence = re.split(r"(?<=[。！？])", first, maxsplit=1)[0].rstrip("。") or first
            return json.dumps({"answerable": True, "answer": f"{sentence}[1]。"}, ensure_ascii=False)

        self.set_responder(respond)

    def set_latency(self, seconds: float, *, endpoint: str | None = "chat") -> None:
        """Every later (matching) call sleeps ``seconds`` before answering, after any queued delay; 0 = none."""
        with self._lock:
            self._latency[endpoint] = max(0.0, seconds)

    def hang(self, *, endpoint: str | None = "chat") -> None:
        """Every later (matching) call waits until the server stops and then drops the connection unanswered."""
        self.set_latency(HANG_S, endpoint=endpoint)

    @property
    def in_flight(self) -> int:
        """Requests being served right now (including ones sleeping in a delay or hang)."""
        with self._lock:
            return self._in_flight

    @property
    def peak_in_flight(self) -> int:
        """The most requests served at the same moment since start (or ``clear()``)."""
        with self._lock:
            return self._peak_in_flight

    def _enter(self) -> None:
        with self._lock:
            self._in_flight += 1
            self._peak_in_flight = max(self._peak_in_flight, self._in_flight)

    def _leave(self) -> None:
        with self._lock:
            self._in_flight -= 1

    def queue_error(
        self,
        status: int = 500,
        body: Any = None,
        *,
        endpoint: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        """The next (matching) call fails with HTTP ``status``.

        ``body``: dict (sent as JSON), str/bytes (sent raw) or None (an OpenAI error object).
        """
        if body is None:
            type_ = {
                400: "invalid_request_error",
                401: "authentication_error",
                403: "permission_error",
                404: "not_found_error",
                429: "rate_limit_error",
            }.get(status, "server_error")
            body = _err_body(f"test error {status}", type_)
        with self._lock:
            self._failures.append(
                (endpoint, {"kind": "error", "status": status, "body": body, "headers": headers or {}})
            )

    def queue_malformed(self, *, endpoint: str | None = None, body: bytes | None = None) -> None:
        """The next (matching) call answers HTTP 200 with a body that is not valid JSON."""
        with self._lock:
            self._failures.append(
                (
                    endpoint,
                    {
                        "kind": "malformed",
                        "body": body if body is not None else b'{"id": "chatcmpl-broken", ',
                    },
                )
            )

    def set_responder(self, fn: Callable[[dict[str, Any]], Any] | None) -> None:
        """``fn(request_json)`` -> str (content) or dict (full chat.completion JSON to send).

        Used when no reply is queued. ``None`` restores the default ("好的。").
        """
        self.default_reply = fn if fn is not None else (lambda req: "好的。")

    def obey_injections(self, render: Callable[[str], str] = _grounded_json) -> None:
        """From now on, answer like a model that obeys injected lines: the cue-carrying lines of the last user
        message (``OBEY_CUES``), verbatim, followed by ``[1]``; with none, the first data line. ``render``
        turns that text into the reply content (default: ``{"answerable": true, "answer": text}``)."""

        def respond(body: dict[str, Any]) -> str:
            users = [m for m in body.get("messages") or [] if m.get("role") == "user"]
            content = users[-1].get("content") if users else ""
            lines = [ln.strip() for ln in str(content or "").splitlines()]
            data = [ln for ln in lines if ln and "<" not in ln and ">" not in ln]
            obeyed = [ln for ln in data if OBEY_CUES.search(ln)]
            text = " ".join(obeyed) if obeyed else (data[0] if data else "好的。")
            return render(f"{text} [1]")

        self.set_responder(respond)

    @property
    def requests(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._requests)

    @property
    def last_request(self) -> dict[str, Any] | None:
        with self._lock:
            return self._requests[-1] if self._requests else None

    def chat_requests(self) -> list[dict[str, Any]]:
        return [r for r in self.requests if _EP_BY_PATH.get(r["path"]) == "chat"]

    def embedding_requests(self) -> list[dict[str, Any]]:
        return [r for r in self.requests if _EP_BY_PATH.get(r["path"]) == "embeddings"]

    def prompts_text(self, include_embeddings: bool = True) -> str:
        """All message contents (and tool-call arguments, and embedding inputs) joined."""
        parts: list[str] = []
        for r in self.requests:
            body = r.get("body")
            if not isinstance(body, dict):
                continue
            for m in body.get("messages") or []:
                content = m.get("content")
                if isinstance(content, str):
                    parts.append(content)
                elif isinstance(content, list):
                    for c in content:
                        if isinstance(c, dict) and isinstance(c.get("text"), str):
                            parts.append(c["text"])
                for tc in m.get("tool_calls") or []:
                    fn = tc.get("function") or {}
                    if fn.get("arguments"):
                        parts.append(str(fn["arguments"]))
            if include_embeddings and "input" in body:
                inp = body["input"]
                if isinstance(inp, str):
                    parts.append(inp)
                elif isinstance(inp, list):
                    parts.extend(x for x in inp if isinstance(x, str))
        return "\n".join(parts)

    def embed(self, text: str, dim: int | None = None) -> list[float]:
        """The vector the server returns for ``text``."""
        return pseudo_embedding(text, dim or self.embedding_dim)

    def clear(self) -> None:
        with self._lock:
            self._requests.clear()
            self._replies.clear()
            self._transcripts.clear()
            self._delays.clear()
            self._failures.clear()
            self._peak_in_flight = self._in_flight

    # ------------------------------------------------------------------ HTTP plumbing
    def _pop_matching(self, queue: list[tuple[str | None, Any]], endpoint: str) -> Any:
        for i, (ep, item) in enumerate(queue):
            if ep is None or ep == endpoint:
                del queue[i]
                return item
        return None

    def _dispatch(self, h: _Handler, method: str) -> None:
        path = h.path.split("?", 1)[0].rstrip("/")
        length = int(h.headers.get("Content-Length") or 0)
        raw = h.rfile.read(length) if length else b""
        body: Any = None
        parse_error: str | None = None
        ctype = h.headers.get("Content-Type") or ""
        if raw and ctype.startswith("multipart/form-data"):
            try:
                body = _parse_multipart(raw, ctype)
            except Exception as exc:  # noqa: BLE001 - a broken upload is the client's 400
                parse_error = str(exc)
        elif raw:
            try:
                body = json.loads(raw.decode("utf-8"))
            except ValueError as exc:
                parse_error = str(exc)
        with self._lock:
            self._requests.append(
                {
                    "method": method,
                    "path": path,
                    "headers": {k.lower(): v for k, v in h.headers.items()},
                    "body": body,
                    "t": time.monotonic(),
                }
            )

        if self.api_key is not None:
            auth = h.headers.get("Authorization", "")
            if auth != f"Bearer {self.api_key}":
                self._send_json(
                    h,
                    401,
                    _err_body("Incorrect API key provided", "invalid_request_error", "invalid_api_key"),
                )
                return

        if method == "GET" and path in ("/v1/models", "/models"):
            self._send_json(h, 200, {"object": "list", "data": [self._model(m) for m in self.models]})
            return
        if method == "GET" and path.startswith(("/v1/models/", "/models/")):
            mid = path.split("/models/", 1)[1]
            if mid in self.models:
                self._send_json(h, 200, self._model(mid))
            else:
                self._send_json(
                    h,
                    404,
                    _err_body(
                        f"The model '{mid}' does not exist", "invalid_request_error", "model_not_found"
                    ),
                )
            return

        endpoint = _EP_BY_PATH.get(path)
        if method != "POST" or endpoint is None:
            self._send_json(
                h,
                404,
                _err_body(f"Unknown request URL: {method} {path}", "invalid_request_error", "unknown_url"),
            )
            return

        with self._lock:
            delay = self._pop_matching(self._delays, endpoint)
            failure = self._pop_matching(self._failures, endpoint)
        if delay and self._stop_event.wait(delay):
            return  # server stopping: drop the connection
        with self._lock:
            lag = self._latency.get(endpoint, self._latency.get(None, 0.0))
        if lag and self._stop_event.wait(lag):
            return  # server stopping (the end of a hang): drop the connection
        if failure is not None:
            if failure["kind"] == "malformed":
                h.send_body(200, failure["body"])
            else:
                fb = failure["body"]
                if isinstance(fb, (dict, list)):
                    data = json.dumps(fb, ensure_ascii=False).encode("utf-8")
                    ctype = "application/json"
                else:
                    data = fb.encode("utf-8") if isinstance(fb, str) else bytes(fb)
                    ctype = "text/plain; charset=utf-8"
                h.send_body(failure["status"], data, ctype, failure["headers"])
            return

        if parse_error is not None or not isinstance(body, dict):
            self._send_json(
                h, 400, _err_body(f"We could not parse the JSON body: {parse_error}", "invalid_request_error")
            )
            return

        if endpoint == "embeddings":
            self._embeddings(h, body)
        elif endpoint == "audio":
            self._transcription(h, body)
        else:
            self._chat(h, body)

    @staticmethod
    def _send_json(h: _Handler, status: int, payload: Any) -> None:
        h.send_body(status, json.dumps(payload, ensure_ascii=False).encode("utf-8"))

    def _model(self, mid: str) -> dict[str, Any]:
        return {"id": mid, "object": "model", "created": 1700000000, "owned_by": "quanbot-test"}

    # ------------------------------------------------------------------ endpoints
    def _embeddings(self, h: _Handler, body: dict[str, Any]) -> None:
        inp = body.get("input")
        if inp is None or inp == [] or inp == "":
            self._send_json(h, 400, _err_body("'input' is required", "invalid_request_error"))
            return
        if isinstance(inp, str) or (isinstance(inp, list) and inp and isinstance(inp[0], int)):
            items = [inp]
        else:
            items = list(inp)
        dim = int(body.get("dimensions") or self.embedding_dim)
        b64 = body.get("encoding_format") == "base64"
        data = []
        total = 0
        for i, item in enumerate(items):
            text = _tokens_of(item)
            total += len(item) if isinstance(item, list) else max(1, len(text))
            vec = pseudo_embedding(text, dim)
            emb: Any = base64.b64encode(struct.pack(f"<{dim}f", *vec)).decode("ascii") if b64 else vec
            data.append({"object": "embedding", "index": i, "embedding": emb})
        self._send_json(
            h,
            200,
            {
                "object": "list",
                "data": data,
                "model": body.get("model", "test-embedding-model"),
                "usage": {"prompt_tokens": total, "total_tokens": total},
            },
        )

    def _transcription(self, h: _Handler, body: dict[str, Any]) -> None:
        upload = body.get("file")
        if not isinstance(upload, dict) or not upload.get("data"):
            self._send_json(h, 400, _err_body("'file' is required", "invalid_request_error"))
            return
        data: bytes = upload["data"]
        if not any(data[at:at + len(magic)] == magic for magic, at in _AUDIO_MAGIC):
            self._send_json(h, 400, _err_body(
                "Invalid file format. Supported formats: ['flac', 'm4a', 'mp3', 'mp4', 'mpeg', 'mpga', 'oga', "
                "'ogg', 'wav', 'webm']", "invalid_request_error"))
            return
        with self._lock:
            text = self._transcripts.pop(0) if self._transcripts else _spoken(data)
        self._send_json(h, 200, {"text": text})

    def _next_reply(self, body: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            if self._replies:
                return self._replies.pop(0)
        result = self.default_reply(body)
        if isinstance(result, dict):
            return {"full": result}
        return {"content": "" if result is None else str(result), "finish_reason": "stop"}

    @staticmethod
    def _prompt_tokens(body: dict[str, Any]) -> int:
        n = 0
        for m in body.get("messages") or []:
            c = m.get("content")
            if isinstance(c, str):
                n += len(c)
            elif isinstance(c, list):
                n += sum(len(x.get("text", "")) for x in c if isinstance(x, dict))
        return max(n, 1)

    def _chat(self, h: _Handler, body: dict[str, Any]) -> None:
        if not body.get("messages"):
            self._send_json(h, 400, _err_body("'messages' is a required property", "invalid_request_error"))
            return
        reply = self._next_reply(body)
        model = body.get("model") or "test-chat-model"
        cid = f"chatcmpl-test{next(self._ids)}"
        created = int(time.time())
        if "full" in reply:
            full = reply["full"]
            if body.get("stream"):
                # flatten to content and stream it
                try:
                    content = full["choices"][0]["message"].get("content") or ""
                except (KeyError, IndexError, TypeError):
                    content = ""
                reply = {"content": content, "finish_reason": "stop"}
            else:
                self._send_json(h, 200, full)
                return
        content = reply.get("content")
        tool_calls = reply.get("tool_calls")
        finish = reply.get("finish_reason", "stop")
        prompt_tokens = self._prompt_tokens(body)
        completion_tokens = max(1, len(content or "")) if content or not tool_calls else 10
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        }
        n = max(1, int(body.get("n") or 1))
        if body.get("stream"):
            self._stream(h, body, cid, created, model, content, tool_calls, finish, usage, n)
            return
        message: dict[str, Any] = {"role": "assistant", "content": content, "refusal": None}
        if tool_calls:
            message["tool_calls"] = tool_calls
        self._send_json(
            h,
            200,
            {
                "id": cid,
                "object": "chat.completion",
                "created": created,
                "model": model,
                "choices": [
                    {"index": i, "message": message, "logprobs": None, "finish_reason": finish}
                    for i in range(n)
                ],
                "usage": usage,
                "system_fingerprint": "fp_test",
            },
        )

    def _stream(
        self,
        h: _Handler,
        body: dict[str, Any],
        cid: str,
        created: int,
        model: str,
        content: str | None,
        tool_calls: list[dict[str, Any]] | None,
        finish: str,
        usage: dict[str, int],
        n: int,
    ) -> None:
        h.send_response(200)
        h.send_header("Content-Type", "text/event-stream; charset=utf-8")
        h.send_header("Cache-Control", "no-cache")
        h.send_header("Connection", "close")
        h.end_headers()

        def chunk(choices: list[dict[str, Any]], **extra: Any) -> None:
            payload = {
                "id": cid,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "system_fingerprint": "fp_test",
                "choices": choices,
            }
            payload.update(extra)
            h.wfile.write(b"data: " + json.dumps(payload, ensure_ascii=False).encode("utf-8") + b"\n\n")
            h.wfile.flush()

        for i in range(n):
            chunk(
                [
                    {
                        "index": i,
                        "delta": {"role": "assistant", "content": ""},
                        "logprobs": None,
                        "finish_reason": None,
                    }
                ]
            )
            if content:
                step = max(1, self.stream_chunk_chars)
                for start in range(0, len(content), step):
                    chunk(
                        [
                            {
                                "index": i,
                                "delta": {"content": content[start : start + step]},
                                "logprobs": None,
                                "finish_reason": None,
                            }
                        ]
                    )
            if tool_calls:
                deltas = [{"index": j, **tc} for j, tc in enumerate(tool_calls)]
                chunk(
                    [{"index": i, "delta": {"tool_calls": deltas}, "logprobs": None, "finish_reason": None}]
                )
            chunk([{"index": i, "delta": {}, "logprobs": None, "finish_reason": finish}])
        if (body.get("stream_options") or {}).get("include_usage"):
            chunk([], usage=usage)
        h.wfile.write(b"data: [DONE]\n\n")
        h.wfile.flush()
