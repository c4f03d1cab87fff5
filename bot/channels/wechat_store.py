"""What the WeChat channels keep in the database besides the inbox and the outboxes: the numeric alias of each
WeChat user (OpenID / WeCom UserID), the numbered menu last shown to them, and the API access token shared by
every replica.

Why an alias: the dialogue, the inbox and the outboxes key people and chats by a 64-bit integer (Telegram's ids).
`alias_of` derives one from (channel, user) with a hash, placed in [2**62, 2**62 + 2**61) so it can never equal
a Telegram id (those stay far below 2**53) nor be negative (a Telegram group); every replica computes the same
alias without a round trip, and `remember_user` stores the way back (an insert that a second replica's identical
insert leaves alone).

Why a row lock for the token: WeChat invalidates the previous access_token a few minutes after a new one is
issued, and the token endpoint has a daily quota; two replicas refreshing at once would each break the other's.
`TokenStore.get` reads the shared row; only when it is stale does it lock the row (SELECT ... FOR UPDATE on
PostgreSQL, SQLite's single writer), look again, and refresh while holding the lock, so
the replicas that waited find the new token and never refresh twice. `invalidate(bad)` is conditional on the
row still holding the token that failed (40001), so a late report cannot throw away a newer token.

Synchronous (short transactions); async callers use a thread. Must not: talk to WeChat (the fetch function
is handed in) or know message formats.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Table, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine

from casestore.clock import Clock, SystemClock
from casestore.models import ChannelToken, ChannelUser

ALIAS_BASE = 1 << 62
ALIAS_SPAN = 1 << 61
REFRESH_MARGIN = timedelta(minutes=5)  # a token this close to its end is refreshed before use
MENU_MAX_AGE = timedelta(days=2)  # a typed number older than the 48-hour window maps to nothing

_USERS: Table = ChannelUser.__table__  # type: ignore[attr-defined]
_TOKENS: Table = ChannelToken.__table__  # type: ignore[attr-defined]

Fetch = Callable[[], tuple[str, int]]  # () -> (access_token, expires_in seconds); raises on failure


def alias_of(channel: str, user_ref: str) -> int:
    """The stable 64-bit id that stands for `user_ref` on `channel` in the dialogue and the outboxes."""
    digest = hashlib.sha256(f"{channel}\x00{user_ref}".encode()).digest()
    return ALIAS_BASE + int.from_bytes(digest[:8], "big") % ALIAS_SPAN


def is_alias(value: int) -> bool:
    return ALIAS_BASE <= value < ALIAS_BASE + ALIAS_SPAN


def _insert(engine: Engine | Connection) -> Any:
    return postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert


def remember_user(engine: Engine, *, channel: str, user_ref: str, now: datetime, inbound: bool = True) -> int:
    """Store the way back from the alias (once) and, for a message from the user, when they last wrote."""
    alias = alias_of(channel, user_ref)
    with engine.begin() as conn:
        conn.execute(_insert(conn)(_USERS).values(alias=alias, channel=channel, user_ref=user_ref, menu=[],
                                                  created_at=now, last_inbound_at=now if inbound else None)
                     .on_conflict_do_nothing(index_elements=["alias"]))
        if inbound:
            conn.execute(update(_USERS).where(_USERS.c.alias == alias).values(last_inbound_at=now))
    return alias


def user_of(engine: Engine, alias: int) -> tuple[str, str, datetime | None] | None:
    """(channel, user_ref, last_inbound_at) of an alias, or None if it was never seen."""
    with engine.connect() as conn:
        row = conn.execute(select(_USERS.c.channel, _USERS.c.user_ref, _USERS.c.last_inbound_at)
                           .where(_USERS.c.alias == alias)).first()
    return (row.channel, row.user_ref, _aware(row.last_inbound_at)) if row is not None else None


def set_menu(conn: Connection, *, alias: int, choices: list[list[str]], now: datetime) -> None:
    """Remember the numbered choices just shown ([label, signed token] each); in the caller's transaction."""
    conn.execute(update(_USERS).where(_USERS.c.alias == alias).values(menu=choices, menu_at=now))


def get_menu(engine: Engine, *, alias: int, now: datetime) -> list[list[str]]:
    """The numbered choices last shown to `alias`, or [] when none (or too old to mean anything)."""
    with engine.connect() as conn:
        row = conn.execute(select(_USERS.c.menu, _USERS.c.menu_at).where(_USERS.c.alias == alias)).first()
    if row is None or not row.menu or row.menu_at is None or now - _aware(row.menu_at) > MENU_MAX_AGE:  # type: ignore[operator]
        return []
    return [list(c) for c in row.menu if isinstance(c, list) and len(c) == 2]


def _aware(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


class TokenStore:
    """The access token of one channel account, shared through the `channel_token` row `name`."""

    def __init__(self, engine: Engine, *, name: str, fetch: Fetch, clock: Clock | None = None):
        self.engine = engine
        self.name = name
        self.fetch = fetch
        self.clock = clock or SystemClock()
        self.refreshes = 0  # refreshes this process made (tests and logs)
        # SQLite: one writer per file; threads of this process queue here instead of in SQLite's busy handler
        self._lock = threading.Lock() if engine.dialect.name == "sqlite" else None

    def _fresh(self, row: Any) -> str | None:
        if row is None or not row.token or row.expires_at is None:
            return None
        return row.token if _aware(row.expires_at) - REFRESH_MARGIN > self.clock.now() else None  # type: ignore[operator]

    def get(self) -> str:
        """A valid token: the shared one, or one fetched under the row lock if it is stale (or absent)."""
        with self.engine.connect() as conn:
            token = self._fresh(conn.execute(select(_TOKENS).where(_TOKENS.c.name == self.name)).first())
        if token is not None:
            return token
        if self._lock is not None:
            with self._lock:
                return self._refresh()
        return self._refresh()

    def _refresh(self) -> str:
        # the insert comes first: on SQLite any write statement takes the file's write lock at its start (another
        # process waits there), on PostgreSQL it makes sure there is a row for FOR UPDATE to lock
        with self.engine.begin() as conn:
            conn.execute(_insert(conn)(_TOKENS).values(name=self.name, token="", refreshes=0)
                         .on_conflict_do_nothing(index_elements=["name"]))
            stmt = select(_TOKENS).where(_TOKENS.c.name == self.name)
            row = conn.execute(stmt.with_for_update() if conn.dialect.name == "postgresql" else stmt).first()
            token = self._fresh(row)
            if token is not None:  # another replica refreshed it while this one waited for the lock
                return token
            token, expires_in = self.fetch()
            now = self.clock.now()
            conn.execute(update(_TOKENS).where(_TOKENS.c.name == self.name).values(
                token=token, expires_at=now + timedelta(seconds=max(60, int(expires_in))),
                refreshed_at=now, refreshes=_TOKENS.c.refreshes + 1))
            self.refreshes += 1
            return token

    def invalidate(self, bad: str) -> bool:
        """Mark the shared token stale if it is still `bad` (the API refused it); False if it changed already."""
        with self.engine.begin() as conn:
            result = conn.execute(update(_TOKENS).where((_TOKENS.c.name == self.name) & (_TOKENS.c.token == bad))
                                  .values(expires_at=datetime(2000, 1, 1, tzinfo=UTC)))
        return bool(result.rowcount)

    def refreshed_count(self) -> int:
        """Refreshes of this token by every replica so far (the row's counter)."""
        with self.engine.connect() as conn:
            value = conn.execute(select(_TOKENS.c.refreshes).where(_TOKENS.c.name == self.name)).scalar()
        return int(value or 0)
