"""Who is asking: the signed session cookie or an API bearer token, the CSRF check, and the request's DB session.

Owns: `db_session` (one unit of work per request, committed before the response is sent), `current_staff`
(a `Staff`: the account, its scope, how it signed in), the cookie's signing and the CSRF rule: every unsafe
request made with the cookie carries the session's token in the `X-CSRF-Token` header or a `csrf_token` form
field. Bearer requests carry no cookie, so they need none.
Must not: decide what a person may do to a case (casestore.permissions does).
"""

from __future__ import annotations

import hmac
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated, Literal

from fastapi import Depends, HTTPException, Path, Request
from itsdangerous import BadSignature, URLSafeSerializer, URLSafeTimedSerializer
from sqlmodel import Session

from bot.web.scope import Scope, scope_of
from casestore.admins import actor_label, console_key, session_admin, token_admin
from casestore.db import session_scope
from casestore.models import AdminUser

COOKIE = "qb_console"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class LoginRequired(Exception):
    """No valid session: a page redirects to /login, the API answers 401."""


@dataclass(frozen=True)
class Staff:
    admin: AdminUser
    scope: Scope
    via: Literal["cookie", "token"]
    csrf_token: str = ""

    @property
    def actor(self) -> str:
        return actor_label(self.admin)


def db_session(request: Request) -> Iterator[Session]:
    # declared with scope="function": FastAPI runs the exit (the commit) when the route returns, before the
    # response is sent; the default scope commits after sending, so a redirect's next GET could miss the change
    with session_scope(request.app.state.services.engine) as session:
        yield session


def signing_key(request: Request, session: Session) -> str:
    """WEB_SECRET_KEY, or the key kept in the database (the same for every replica); immutable, so kept."""
    key: str | None = getattr(request.app.state, "signing_key", None)
    if key is None:
        configured = request.app.state.services.settings.web_secret_key.get_secret_value()
        key = configured or console_key(session=session)
        request.app.state.signing_key = key
    return key


def session_serializer(key: str) -> URLSafeSerializer:
    return URLSafeSerializer(key, salt="quanbot-console-session")


def login_form_serializer(key: str) -> URLSafeTimedSerializer:
    """Signs the login form's token, so another site cannot post a login (login CSRF)."""
    return URLSafeTimedSerializer(key, salt="quanbot-console-login")


async def _sent_csrf(request: Request) -> str:
    header = request.headers.get("x-csrf-token")
    if header:
        return header
    content_type = request.headers.get("content-type", "")
    if content_type.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
        form = await request.form()  # Starlette keeps the parsed form, so Form(...) parameters still read it
        value = form.get("csrf_token")
        return value if isinstance(value, str) else ""
    return ""


async def current_staff(request: Request, session: Annotated[Session, Depends(db_session, scope="function")]) -> Staff:
    services = request.app.state.services
    now = services.clock.now()
    grids = services.policies.grids
    auth = request.headers.get("authorization", "")
    if auth[:7].lower() == "bearer ":
        admin = token_admin(session=session, token=auth[7:].strip(), now=now)
        if admin is None:
            raise HTTPException(401, "API 令牌无效或已停用，请用 `quanbot admin token` 重新申请。")
        return Staff(admin, scope_of(admin, grids), "token")
    raw = request.cookies.get(COOKIE, "")
    if not raw:
        raise LoginRequired()
    try:
        token = session_serializer(signing_key(request, session)).loads(raw)
    except BadSignature:
        raise LoginRequired() from None
    found = session_admin(session=session, token=str(token), now=now) if isinstance(token, str) else None
    if found is None:
        raise LoginRequired()
    admin, row = found
    if request.method not in SAFE_METHODS:
        sent = await _sent_csrf(request)
        if not sent or not hmac.compare_digest(sent, row.csrf_token):
            raise HTTPException(403, "页面已过期或来源不明（CSRF 校验失败），请刷新页面后重试。")
    return Staff(admin, scope_of(admin, grids), "cookie", row.csrf_token)


# what a route declares: `def view(staff: StaffDep, session: DbDep)`
DbDep = Annotated[Session, Depends(db_session, scope="function")]
StaffDep = Annotated[Staff, Depends(current_staff)]
# a row id in a URL: a larger integer than the database's never names a row and must not reach the driver (the API
# fuzz test found 500s from 10**22); forms and queries bound their ids with MAX_ROW_ID as well
MAX_ROW_ID = 2**31 - 1
RowId = Annotated[int, Path(ge=1, le=MAX_ROW_ID)]
