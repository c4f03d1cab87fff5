"""Console accounts: staff users with a scope, argon2 password hashes, browser sessions, API tokens and the
failed-login limit.

Owns: `create_admin`, `authenticate` (with the rate limit), `open_session` / `session_admin` / `end_session`,
`issue_token` / `token_admin`, `console_key`. Tokens and session ids are random, shown once and stored only as
SHA-256; passwords only as argon2. Every change is audited (`admin:web:<username>`).
Must not: know about HTTP, cookies or templates (bot/web does).
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, func, select

from casestore.audit import record_audit
from casestore.errors import DomainError
from casestore.models import AdminScopeKind, AdminUser, ApiToken, ConsoleKey, ConsoleSession, LoginAttempt

SESSION_HOURS = 12
FAILED_LOGIN_LIMIT = 5  # failures per username or per address ...
FAILED_LOGIN_WINDOW = timedelta(minutes=15)  # ... within this window lock further attempts
_hasher = PasswordHasher()


class TooManyAttempts(DomainError):
    """Too many failed logins for this username or address."""


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def actor_label(admin: AdminUser) -> str:
    return f"admin:web:{admin.username}"


def parse_scope(text: str) -> tuple[AdminScopeKind, str | None]:
    """`street`, `community:<id>` or `grid:<id>` (the CLI's --scope) to (kind, id); DomainError otherwise."""
    kind, _, ident = text.strip().partition(":")
    try:
        scope = AdminScopeKind(kind)
    except ValueError:
        raise DomainError(f"bad scope {text!r}", f"范围写法不对：{text!r}，应为 street、community:<社区编号> 或 "
                                                 "grid:<网格号>。") from None
    if scope is AdminScopeKind.street:
        return scope, None
    if not ident.strip():
        raise DomainError(f"scope without id {text!r}", f"范围 {kind} 需要编号，例如 {kind}:FU01。")
    return scope, ident.strip()


def get_admin(*, session: Session, username: str) -> AdminUser | None:
    return session.exec(select(AdminUser).where(col(AdminUser.username) == username)).first()


def create_admin(*, session: Session, username: str, password: str, scope_kind: AdminScopeKind,
                 scope_id: str | None, actor: str, now: datetime, display_name: str = "") -> AdminUser:
    """A new console account; DomainError when the username is taken or the password too short."""
    username = username.strip()
    if not username or len(username) > 64:
        raise DomainError("bad username", "用户名不能为空，且不超过 64 个字符。")
    if len(password) < 8:
        raise DomainError("short password", "密码至少 8 位。")
    if get_admin(session=session, username=username) is not None:
        raise DomainError("username taken", f"用户名 {username} 已存在。")
    admin = AdminUser(username=username, display_name=display_name or username, scope_kind=scope_kind.value,
                      scope_id=scope_id, password_hash=_hasher.hash(password), created_at=now)
    session.add(admin)
    try:
        session.flush()
    except IntegrityError:
        raise DomainError("username taken", f"用户名 {username} 已存在。") from None
    record_audit(session=session, actor=actor, action="create_admin", subject=f"admin:{admin.id}", now=now,
                 data={"username": username, "scope": scope_kind.value, "scope_id": scope_id})
    return admin


def _failures(session: Session, *, username: str, address: str, now: datetime) -> int:
    since = now - FAILED_LOGIN_WINDOW
    base = select(func.count()).select_from(LoginAttempt).where(col(LoginAttempt.at) >= since,
                                                                col(LoginAttempt.ok).is_(False))
    by_user = session.exec(base.where(col(LoginAttempt.username) == username)).one()
    by_address = session.exec(base.where(col(LoginAttempt.address) == address)).one() if address else 0
    return max(int(by_user), int(by_address))


def authenticate(*, session: Session, username: str, password: str, address: str, now: datetime) -> AdminUser | None:
    """The active account these credentials open, or None; raises TooManyAttempts past the limit."""
    username = username.strip()[:64]
    if _failures(session, username=username, address=address[:64], now=now) >= FAILED_LOGIN_LIMIT:
        raise TooManyAttempts("login rate limited", "登录失败次数过多，请 15 分钟后再试。")
    admin = get_admin(session=session, username=username)
    ok = False
    if admin is not None and admin.active:
        try:
            ok = _hasher.verify(admin.password_hash, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            ok = False
    else:
        _hasher.hash(password)  # the same work for an unknown name, so timing does not tell names apart
    session.add(LoginAttempt(username=username, address=address[:64], ok=ok, at=now))
    session.flush()
    if ok and admin is not None:
        record_audit(session=session, actor=actor_label(admin), action="console_login",
                     subject=f"admin:{admin.id}", now=now, data={"address": address[:64]})
        return admin
    return None


@dataclass(frozen=True)
class OpenedSession:
    token: str  # goes into the signed cookie; never stored
    csrf_token: str
    admin: AdminUser


def open_session(*, session: Session, admin: AdminUser, now: datetime) -> OpenedSession:
    token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(24)
    assert admin.id is not None
    session.add(ConsoleSession(token_hash=_digest(token), admin_id=admin.id, csrf_token=csrf, created_at=now,
                               expires_at=now + timedelta(hours=SESSION_HOURS)))
    session.flush()
    return OpenedSession(token, csrf, admin)


def session_admin(*, session: Session, token: str, now: datetime) -> tuple[AdminUser, ConsoleSession] | None:
    """The account and session row behind a cookie token, if the session is live and the account active."""
    row = session.exec(select(ConsoleSession).where(col(ConsoleSession.token_hash) == _digest(token))).first()
    if row is None or row.ended_at is not None or row.expires_at <= now:
        return None
    admin = session.get(AdminUser, row.admin_id)
    if admin is None or not admin.active:
        return None
    return admin, row


def end_session(*, session: Session, token: str, now: datetime) -> None:
    row = session.exec(select(ConsoleSession).where(col(ConsoleSession.token_hash) == _digest(token))).first()
    if row is not None and row.ended_at is None:
        row.ended_at = now
        session.add(row)
        admin = session.get(AdminUser, row.admin_id)
        if admin is not None:
            record_audit(session=session, actor=actor_label(admin), action="console_logout",
                         subject=f"admin:{admin.id}", now=now)
        session.flush()


def issue_token(*, session: Session, username: str, actor: str, now: datetime, label: str = "") -> str:
    """A new API bearer token for `username`, returned once."""
    admin = get_admin(session=session, username=username)
    if admin is None or not admin.active:
        raise DomainError("no such admin", f"没有这个用户：{username}。")
    assert admin.id is not None
    token = "qb_" + secrets.token_urlsafe(32)
    session.add(ApiToken(token_hash=_digest(token), admin_id=admin.id, label=label[:64], created_at=now))
    session.flush()
    record_audit(session=session, actor=actor, action="issue_api_token", subject=f"admin:{admin.id}", now=now,
                 data={"label": label[:64]})
    return token


def token_admin(*, session: Session, token: str, now: datetime) -> AdminUser | None:
    """The active account an API bearer token belongs to (its last use is recorded), or None."""
    row = session.exec(select(ApiToken).where(col(ApiToken.token_hash) == _digest(token))).first()
    if row is None or row.revoked_at is not None:
        return None
    admin = session.get(AdminUser, row.admin_id)
    if admin is None or not admin.active:
        return None
    row.last_used_at = now
    session.add(row)
    return admin


def console_key(*, session: Session) -> str:
    """The shared cookie-signing key, made on first use; every replica reads the same row."""
    row = session.get(ConsoleKey, 1)
    if row is not None:
        return row.key
    key = secrets.token_urlsafe(48)
    try:
        with session.begin_nested():
            session.add(ConsoleKey(id=1, key=key))
    except IntegrityError:  # another replica made it first
        pass
    row = session.get(ConsoleKey, 1)
    assert row is not None
    return row.key
