"""`quanbot web --demo`: the console over the database `make demo` left in var/demo, on the demo's day.

Owns: the demo's settings, a clock that starts where the simulated day ended and runs on in real time (so
"overdue now" and "today" mean the demo's day), and a one-time login: each start makes a fresh street account
with a random password and retires the previous ones.
Must not: change any case.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from sqlalchemy.engine import Engine
from sqlmodel import Session, col, func, select

from bot.demo.runner import demo_settings as runner_settings
from bot.settings import PROJECT_ROOT, Settings
from casestore.admins import create_admin
from casestore.db import make_engine
from casestore.models import AdminScopeKind, AdminUser, Case, CaseEvent

DEMO_DIR = PROJECT_ROOT / "var" / "demo"
DEMO_PREFIX = "demo-"


class DemoMissing(RuntimeError):
    pass


class OffsetClock:
    """Real time shifted back to the end of the demo's day. `demo_note` tells the admin, in the banner, why 今日 may
    be empty: the demo's follow-up days (ratings, auto-closes) end after the simulated day."""

    def __init__(self, start: datetime, *, first: datetime | None = None, tz: ZoneInfo | None = None) -> None:
        self._offset: timedelta = datetime.now(UTC) - start
        self.demo_note = _note(first, start, tz) if first is not None and tz is not None else ""

    def now(self) -> datetime:
        return datetime.now(UTC) - self._offset


def _note(first: datetime, last: datetime, tz: ZoneInfo) -> str:
    day, end = first.astimezone(tz), last.astimezone(tz)
    if day.date() == end.date():
        return ""
    where = "「本周」和「全部」" if day.isocalendar()[:2] == end.isocalendar()[:2] else "「全部」"
    return (f"模拟日是 {day.month}月{day.day}日；回访和自动结案在其后几天，控制台的时钟从最后一件事"
            f"（{end.month}月{end.day}日 {end:%H:%M}）接着走，所以「今日」里可能没有新工单，模拟日的工单在{where}里。")


def demo_settings(base: Settings, demo_dir: Path | None = None) -> Settings:
    where = (demo_dir or DEMO_DIR).resolve()
    if not (where / "quanbot.db").exists():
        raise DemoMissing(f"{where} 里还没有演示数据：请先运行 `make demo`，再运行 `quanbot web --demo`。")
    return runner_settings(base, where)


def demo_clock(settings: Settings) -> OffsetClock:
    """The clock at the last thing that happened in the demo's day."""
    engine = make_engine(settings.database_url)
    try:
        with Session(engine) as session:
            last_at = _aware(session.exec(select(func.max(col(CaseEvent.at)))).one())
            first_at = _aware(session.exec(select(func.min(col(Case.created_at)))).one())
    finally:
        engine.dispose()
    return OffsetClock(last_at or datetime.now(UTC), first=first_at, tz=settings.tz)


def _aware(at: object) -> datetime | None:
    if not isinstance(at, datetime):
        return None
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at


def one_time_login(*, engine: Engine, now: datetime) -> tuple[str, str]:
    """A fresh street account for this run; earlier demo accounts stop working."""
    username, password = f"{DEMO_PREFIX}{secrets.token_hex(2)}", secrets.token_urlsafe(9)
    with Session(engine) as session:
        for old in session.exec(select(AdminUser).where(col(AdminUser.username).startswith(DEMO_PREFIX))):
            old.active = False
            session.add(old)
        create_admin(session=session, username=username, password=password, scope_kind=AdminScopeKind.street,
                     scope_id=None, actor="cli:web --demo", now=now, display_name="演示 · 街道指挥中心")
        session.commit()
    return username, password
