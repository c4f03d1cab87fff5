"""The webhook over real HTTP on 127.0.0.1: the secret is checked before a byte of the body is read, bodies over
1 MB get 413, and an update that cannot be parsed (malformed, or JSON nested far too deep) gets 200 and is stored
as failed, so that Telegram does not retry it for ever and the updates behind it are still handled."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from typing import Any

import pytest
from pydantic import SecretStr
from sqlalchemy.engine import Engine

from bot.channels.inbox import Inbox
from bot.channels.telegram import MAX_WEBHOOK_BODY, SECRET_HEADER
from bot.settings import Settings
from tests.servers.botapi import BotApiServer
from tests.servers.tg_factories import make_text_update
from tests.test_telegram_e2e import RecordingHandler, Running, free_port, handler, start, tg, tg_settings, wait_text

__all__ = ["handler", "tg", "tg_settings"]

SECRET = "s3cret_Token-1"
PATH = "/tg/hook"


@pytest.fixture
async def hooked(tg_settings: Settings, handler: RecordingHandler, engine: Engine) -> Any:
    port = free_port()
    settings = tg_settings.model_copy(update={
        "webhook_url": f"http://127.0.0.1:{port}{PATH}", "webhook_secret": SecretStr(SECRET),
        "webhook_listen": "127.0.0.1", "webhook_port": port})
    running = await start(settings, handler, engine)
    yield running, port
    await running.stop()


def _request(port: int, headers: dict[str, str], body: bytes = b"", *, chunks: list[bytes] | None = None,
             timeout: float = 5.0) -> tuple[int | None, float]:
    """Send a raw HTTP POST (headers, then `body` or `chunks` chunked) and read the status line; returns
    (status or None if the server hung up first, seconds until the status line)."""
    t0 = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        sock.sendall(f"POST {PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\n{head}\r\n".encode())
        try:
            if body:
                sock.sendall(body)
            for chunk in chunks or ():
                sock.sendall(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
            if chunks is not None:
                sock.sendall(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered and closed before taking the rest: read what it said
        try:
            line = sock.makefile("rb").readline()
        except (ConnectionResetError, TimeoutError):
            return None, time.monotonic() - t0
    elapsed = time.monotonic() - t0
    return (int(line.split()[1]) if line.startswith(b"HTTP/") else None), elapsed


def _post(port: int, update: dict[str, Any] | bytes, secret: str | None = SECRET) -> int | None:
    body = update if isinstance(update, bytes) else json.dumps(update, ensure_ascii=False).encode()
    headers = {"Content-Type": "application/json", "Content-Length": str(len(body))}
    if secret is not None:
        headers[SECRET_HEADER] = secret
    return _request(port, headers, body)[0]


async def test_a_wrong_secret_is_refused_before_the_body_is_read(hooked: tuple[Running, int], engine: Engine):
    """Finding: a 60 MB body was read in full before the 403 (peak RSS 359 -> 496 MB)."""
    _, port = hooked
    huge = {"Content-Type": "application/json", "Content-Length": str(60 * 1024 * 1024)}
    # only the headers go out: an answer that comes without the body proves the body was never awaited
    status, took = await asyncio.to_thread(_request, port, {**huge, SECRET_HEADER: "wrong"})
    assert status == 403 and took < 2
    status, took = await asyncio.to_thread(_request, port, huge)  # no secret at all
    assert status == 403 and took < 2
    answers = await asyncio.gather(*(asyncio.to_thread(_request, port, {**huge, SECRET_HEADER: "x"})
                                     for _ in range(6)))  # six at once: none is buffered
    assert [a[0] for a in answers] == [403] * 6
    assert Inbox(engine).count() == 0


async def test_a_body_over_one_megabyte_gets_413(hooked: tuple[Running, int], engine: Engine):
    _, port = hooked
    declared = {"Content-Type": "application/json", "Content-Length": str(20 * 1024 * 1024), SECRET_HEADER: SECRET}
    status, took = await asyncio.to_thread(_request, port, declared)
    assert status == 413 and took < 2
    chunked = {"Content-Type": "application/json", "Transfer-Encoding": "chunked", SECRET_HEADER: SECRET}
    chunks = [b" " * 65536] * (MAX_WEBHOOK_BODY // 65536 + 2)
    status, _ = await asyncio.to_thread(_request, port, chunked, chunks=chunks)
    assert status == 413
    assert Inbox(engine).count() == 0


async def test_unparseable_updates_get_200_are_failed_and_do_not_block_the_queue(
        hooked: tuple[Running, int], tg: BotApiServer, handler: RecordingHandler, engine: Engine):
    """Finding: a malformed update or a deeply nested body got 500 (an uncaught RecursionError), and Telegram
    retries a 500, so one poison update blocked the webhook."""
    _, port = hooked
    nested = b'{"update_id": 7001, "message": ' + b"[" * 200_000 + b"]" * 200_000 + b"}"
    assert len(nested) < MAX_WEBHOOK_BODY
    assert await asyncio.to_thread(_post, port, nested) == 200
    assert await asyncio.to_thread(_post, port, {"update_id": 7002, "message": "不是对象"}) == 200
    assert await asyncio.to_thread(_post, port, {"update_id": 7003, "message": {"text": "缺了 chat 和 date"}}) == 200
    assert await asyncio.to_thread(_post, port, b"not json at all 13812345678") == 200  # no id: logged only
    assert await asyncio.to_thread(_post, port, {"update_id": 7002, "message": "不是对象"}) == 200  # a retry: same row
    inbox = Inbox(engine)
    for uid in (7001, 7002, 7003):
        entry = inbox.get(update_id=uid)
        assert entry is not None and entry.state == "failed" and entry.update == {}
    good = make_text_update("坏消息后面的好消息", user_id=10020)
    assert await asyncio.to_thread(_post, port, good) == 200
    await wait_text(tg, 10020, "坏消息后面的好消息")
    assert [c.text for c in handler.calls] == ["坏消息后面的好消息"] and inbox.count(state="failed") == 3


async def test_a_stored_update_whose_content_breaks_the_parser_fails_after_its_retries(
        hooked: tuple[Running, int], tg: BotApiServer, engine: Engine):
    """An update PTB accepts but our parser chokes on (text that is a number) is a handler failure: retried,
    then failed with a notice to the person; never a 500."""
    running, port = hooked
    odd = make_text_update("x", user_id=10021)
    odd["message"]["text"] = 12345
    assert await asyncio.to_thread(_post, port, odd) == 200
    await tg.async_wait_for(lambda c: Inbox(engine).get(update_id=odd["update_id"]).state == "failed",  # type: ignore[union-attr]
                            timeout=10)
    assert running.channel.stats.errors == 3
