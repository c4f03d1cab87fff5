"""Signing in and out of the console, and `/api/me`.

Owns: the login form (its signed anti-CSRF token, the failed-login limit through casestore.admins), the session
cookie (signed, HttpOnly, SameSite=Strict, Secure when served over HTTPS), logout.
Must not: keep anything in memory.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response
from itsdangerous import BadSignature, SignatureExpired
from pydantic import BaseModel
from sqlmodel import Session

from bot.web.render import page
from bot.web.security import COOKIE, DbDep, StaffDep, login_form_serializer, session_serializer, signing_key
from casestore.admins import SESSION_HOURS, TooManyAttempts, authenticate, end_session, open_session

api = APIRouter(tags=["账号"])
pages = APIRouter()
LOGIN_FORM_MAX_AGE_S = 3600


class Me(BaseModel):
    username: str
    display_name: str
    scope_kind: str
    scope_id: str | None
    scope_label: str


@api.get("/me", response_model=Me, summary="当前账号与数据范围")
def me(staff: StaffDep) -> Me:
    return Me(username=staff.admin.username, display_name=staff.admin.display_name,
              scope_kind=staff.admin.scope_kind, scope_id=staff.admin.scope_id, scope_label=staff.scope.label)


def _safe_next(value: str) -> str:
    """Only a path on this site (never //host or a scheme), so the login cannot redirect away."""
    return value if value.startswith("/") and not value.startswith("//") and "\\" not in value else "/"


def _login_page(request: Request, session: Session, *, next_path: str, error: str = "",
                status_code: int = 200) -> Response:
    token = login_form_serializer(signing_key(request, session)).dumps("login")
    return page(request, "login.html", None, status_code=status_code, form_token=token,
                next_path=_safe_next(next_path), error=error)


@pages.get("/login")
def login_form(request: Request, session: DbDep, next: str = "/") -> Response:
    return _login_page(request, session, next_path=next)


@pages.post("/login")
def login(request: Request, session: DbDep, username: Annotated[str, Form(max_length=200)] = "",
          password: Annotated[str, Form(max_length=500)] = "", form_token: Annotated[str, Form(max_length=500)] = "",
          next: Annotated[str, Form(max_length=500)] = "/") -> Response:
    key = signing_key(request, session)
    try:
        login_form_serializer(key).loads(form_token, max_age=LOGIN_FORM_MAX_AGE_S)
    except (BadSignature, SignatureExpired):
        return _login_page(request, session, next_path=next, error="登录页已过期，请重新输入。", status_code=403)
    services = request.app.state.services
    address = request.client.host if request.client else ""
    try:
        admin = authenticate(session=session, username=username, password=password, address=address,
                             now=services.clock.now())
    except TooManyAttempts as exc:
        return _login_page(request, session, next_path=next, error=exc.user_message, status_code=429)
    if admin is None:
        return _login_page(request, session, next_path=next, error="用户名或密码不对。", status_code=401)
    opened = open_session(session=session, admin=admin, now=services.clock.now())
    response = RedirectResponse(_safe_next(next), status_code=303)
    response.set_cookie(COOKIE, session_serializer(key).dumps(opened.token), max_age=SESSION_HOURS * 3600,
                        httponly=True, samesite="strict", secure=request.url.scheme == "https", path="/")
    return response


@pages.post("/logout")
def logout(request: Request, _staff: StaffDep, session: DbDep) -> Response:
    raw = request.cookies.get(COOKIE, "")
    try:
        token = session_serializer(signing_key(request, session)).loads(raw)
    except BadSignature:
        token = None
    if isinstance(token, str):
        end_session(session=session, token=token, now=request.app.state.services.clock.now())
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(COOKIE, path="/")
    return response
