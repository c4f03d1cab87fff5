"""The console's doors: login with argon2 hashes, the signed HttpOnly SameSite cookie, CSRF on every form, the
failed-login limit, API bearer tokens from `quanbot admin token`, scopes, the OpenAPI document, and one real
browser login. Served by a real uvicorn on 127.0.0.1."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import httpx
import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from bot.services import Services
from bot.settings import Settings
from casestore.admins import FAILED_LOGIN_LIMIT
from casestore.audit import list_audit
from casestore.clock import FakeClock
from casestore.models import AdminUser
from policies.models import Policies
from tests.web_support import PASSWORD, browser_login, chromium, console_server, form_token, login, make_admin

__all__ = ["chromium"]


@pytest.fixture
def services(settings: Settings, engine: Engine, policies: Policies, clock: FakeClock) -> Services:
    return Services(settings, clock=clock, engine=engine, policies=policies)


@pytest.fixture
def base(services: Services) -> Iterator[str]:
    make_admin(services.engine, "street_chief")
    make_admin(services.engine, "fu_admin", scope="community:furong")
    with console_server(services) as url:
        yield url


def test_password_is_stored_only_as_an_argon2_hash(engine: Engine) -> None:
    make_admin(engine, "hash_check")
    with Session(engine) as session:
        admin = session.exec(select(AdminUser).where(AdminUser.username == "hash_check")).one()
    assert admin.password_hash.startswith("$argon2")
    assert PASSWORD not in admin.password_hash


def test_login_sets_a_signed_httponly_strict_cookie_and_audits(base: str, engine: Engine) -> None:
    client = httpx.Client(base_url=base)
    page = client.get("/login")
    assert page.status_code == 200 and "登录指挥中心控制台" in page.text
    response = client.post("/login", data={"username": "street_chief", "password": PASSWORD,
                                           "form_token": form_token(page.text), "next": "/"})
    assert response.status_code == 303 and response.headers["location"] == "/"
    cookie = response.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie.replace("Strict", "strict")
    me = client.get("/api/me").json()
    assert me["username"] == "street_chief" and me["scope_kind"] == "street"
    with Session(engine) as session:
        assert [e.action for e in list_audit(session=session, action="console_login")] == ["console_login"]


def test_wrong_password_and_then_the_rate_limit(base: str) -> None:
    client = httpx.Client(base_url=base)
    token = form_token(client.get("/login").text)
    for _ in range(FAILED_LOGIN_LIMIT):
        bad = client.post("/login", data={"username": "street_chief", "password": "猜一猜", "form_token": token})
        assert bad.status_code == 401 and "用户名或密码不对" in bad.text
    # the right password is refused too while the limit holds: a guesser learns nothing
    locked = client.post("/login", data={"username": "street_chief", "password": PASSWORD, "form_token": token})
    assert locked.status_code == 429 and "15 分钟后再试" in locked.text


def test_a_forged_cookie_or_login_form_is_refused(base: str) -> None:
    client = httpx.Client(base_url=base, cookies={"qb_console": "eyJ0b2tlbiI6ImZvcmdlZCJ9.forged"})
    assert client.get("/api/me").status_code == 401
    page = client.get("/", follow_redirects=False)
    assert page.status_code == 303 and page.headers["location"].startswith("/login")
    forged = client.post("/login", data={"username": "street_chief", "password": PASSWORD,
                                         "form_token": "not-signed"})
    assert forged.status_code == 403 and "已过期" in forged.text


def test_an_unsafe_request_without_the_csrf_token_is_refused(base: str) -> None:
    client = login(base, "street_chief")
    token = client.headers.pop("X-CSRF-Token")
    refused = client.post("/logout")
    assert refused.status_code == 403 and "CSRF" in refused.text
    assert client.get("/api/me").status_code == 200  # still signed in
    done = client.post("/logout", data={"csrf_token": token})
    assert done.status_code == 303
    assert client.get("/api/me").status_code == 401  # the session ended in the database


def test_api_token_from_the_cli_reads_the_api_and_a_wrong_one_does_not(settings: Settings, engine: Engine,
                                                                    services: Services) -> None:
    env = {"DATABASE_URL": settings.database_url, "PATH": "/usr/bin:/bin"}
    created = subprocess.run([sys.executable, "-m", "bot.cli", "admin", "create", "--username", "city12345",
                              "--scope", "community:furong", "--password-stdin"], input="长长的密码-123\n",
                             capture_output=True, text=True, env=env, timeout=120)
    assert created.returncode == 0, created.stderr
    issued = subprocess.run([sys.executable, "-m", "bot.cli", "admin", "token", "--username", "city12345"],
                            capture_output=True, text=True, env=env, timeout=120)
    assert issued.returncode == 0, issued.stderr
    token = issued.stdout.strip().splitlines()[-1]
    assert token.startswith("qb_")
    with console_server(services) as url:
        me = httpx.get(f"{url}/api/me", headers={"Authorization": f"Bearer {token}"})
        assert me.status_code == 200 and me.json()["scope_id"] == "furong"
        wrong = httpx.get(f"{url}/api/me", headers={"Authorization": "Bearer qb_wrong"})
        assert wrong.status_code == 401 and "令牌无效" in wrong.json()["detail"]


def test_cli_refuses_an_unknown_scope_and_a_short_password_in_one_line(settings: Settings, engine: Engine) -> None:
    env = {"DATABASE_URL": settings.database_url, "PATH": "/usr/bin:/bin"}
    unknown = subprocess.run([sys.executable, "-m", "bot.cli", "admin", "create", "--username", "x",
                              "--scope", "community:NOPE", "--password-stdin"], input="长长的密码-123\n",
                             capture_output=True, text=True, env=env, timeout=120)
    assert unknown.returncode == 2 and "grids.yaml 里没有" in unknown.stderr and "Traceback" not in unknown.stderr
    short = subprocess.run([sys.executable, "-m", "bot.cli", "admin", "create", "--username", "y",
                            "--password-stdin"], input="123\n", capture_output=True, text=True, env=env, timeout=120)
    assert short.returncode == 2 and "至少 8 位" in short.stderr


def test_openapi_document_lists_the_api_and_no_page(base: str) -> None:
    doc = httpx.get(f"{base}/api/openapi.json").json()
    assert "/api/me" in doc["paths"] and "/api/overview" in doc["paths"]
    assert not [p for p in doc["paths"] if not p.startswith("/api/")]


def test_pages_send_a_strict_content_security_policy(base: str) -> None:
    response = httpx.get(f"{base}/login")
    assert "script-src 'self'" in response.headers["content-security-policy"]
    assert response.headers["x-frame-options"] == "DENY"
    assert httpx.get(f"{base}/static/htmx.min.js").status_code == 200
    assert httpx.get(f"{base}/static/chart.umd.min.js").status_code == 200


def test_unknown_page_and_bad_input_get_chinese_answers(base: str) -> None:
    client = login(base, "street_chief")
    missing = client.get("/no-such-page")
    assert missing.status_code == 404 and "没有这个页面" in missing.text
    api_missing = client.get("/api/no-such")
    assert api_missing.status_code == 404 and api_missing.json()["detail"] == "没有这个页面。"
    binary = client.post("/login", content=b"\xff\xfe\x00garbage",
                         headers={"content-type": "application/x-www-form-urlencoded"})
    assert binary.status_code in (401, 403, 422) and "Traceback" not in binary.text


def test_a_browser_signs_in_and_sees_the_overview(base: str, chromium: object) -> None:
    pg = browser_login(chromium, base, "fu_admin")
    assert pg.locator("h1").inner_text().startswith("总览")
    assert pg.locator(".scope").inner_text() == "芙蓉社区"
    pg.context.close()
