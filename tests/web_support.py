"""Helpers for console tests: a real uvicorn server on 127.0.0.1, accounts, a signed-in httpx client, and
Debian's Chromium through Playwright (skipped with the reason when it is absent)."""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from sqlalchemy.engine import Engine

from bot.services import Services
from casestore.admins import create_admin, parse_scope
from casestore.db import session_scope

CHROMIUM = Path("/usr/bin/chromium")
PASSWORD = "城市大脑-2026"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def console_server(services: Services, *, run_jobs: bool = False, demo: bool = False) -> Iterator[str]:
    """Serve the console over `services` on a free port; yields its base URL."""
    from bot.web.app import create_app

    port = free_port()
    config = uvicorn.Config(create_app(services, run_jobs=run_jobs, demo=demo), host="127.0.0.1", port=port,
                            log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("console server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def make_admin(engine: Engine, username: str, *, scope: str = "street", password: str = PASSWORD,
               now: datetime | None = None) -> None:
    kind, ident = parse_scope(scope)
    with session_scope(engine) as session:
        create_admin(session=session, username=username, password=password, scope_kind=kind, scope_id=ident,
                     actor="test", now=now or datetime.now().astimezone())


def form_token(html: str) -> str:
    found = re.search(r'name="form_token" value="([^"]+)"', html)
    assert found, "the login page has no form token"
    return found.group(1)


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, "the page carries no CSRF token"
    return found.group(1)


def login(base: str, username: str, password: str = PASSWORD, **kwargs: Any) -> httpx.Client:
    """An httpx client signed in as `username` (its CSRF token in `client.headers`)."""
    client = httpx.Client(base_url=base, follow_redirects=False, timeout=30, **kwargs)
    page = client.get("/login")
    response = client.post("/login", data={"username": username, "password": password,
                                           "form_token": form_token(page.text), "next": "/"})
    assert response.status_code == 303, response.text[:500]
    home = client.get("/")
    assert home.status_code == 200, home.text[:500]
    client.headers["X-CSRF-Token"] = csrf_of(home.text)
    return client


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    """Debian's Chromium driven by Playwright (no browser download)."""
    if not CHROMIUM.exists():
        pytest.skip("/usr/bin/chromium is absent: install it with `apt-get install -y chromium`")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox", "--disable-gpu"])
        try:
            yield browser
        finally:
            browser.close()


def browser_login(browser: Any, base: str, username: str, password: str = PASSWORD) -> Any:
    """A fresh browser page signed in as `username`, on the overview."""
    context = browser.new_context(locale="zh-CN", timezone_id="Asia/Shanghai")
    pg = context.new_page()
    pg.goto(f"{base}/login")
    pg.fill("input[name=username]", username)
    pg.fill("input[name=password]", password)
    pg.click("button[type=submit]")
    pg.wait_for_url(f"{base}/")
    return pg
