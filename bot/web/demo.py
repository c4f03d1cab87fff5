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

from sqlalchemy.engine import Engine
from sqlmodel import Session, col, func, select

from bot.demo.runner import demo_settings as runner_settings
from bot.settings import PROJECT_ROOT, Settings
from casestore.admins import create_admin
from casestore.db import make_engine
from casestore.models import AdminScopeKind, AdminUser, CaseEvent

DEMO_DIR = PROJECT_ROOT / "var" / "demo"
DEMO_PREFIX = "demo-"


class DemoMissing(RuntimeError):
    pass


class OffsetClock:
    """Real time shifted back to the end of the demo's day."""

    def __init__(self, start: datetime) -> None:
        self._offset: timedelta = datetime.now(UTC) - start

    def now(self) -> datetime:
        return datetime.now(UTC) - self._offset


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
            last = session.exec(select(func.max(col(CaseEvent.at)))).one()
    finally:
        engine.dispose()
    if isinstance(last, datetime) and last.tzinfo is None:
        last = last.replace(tzinfo=UTC)
    return OffsetClock(last if isinstance(last, datetime) else datetime.now(UTC))


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
