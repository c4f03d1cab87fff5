"""The inbox: every channel update is stored (unique per channel and update id) before it is handled.

Life of a row: ``received`` (stored; ``attempts`` counts processing attempts) -> the engine's reply is
saved into the row (``payload["reply"]``) -> the reply is sent -> ``done``. After a crash, rows still
``received`` are replayed once per start: a row that already carries a reply is only re-sent, so the
engine is not asked twice. A row that failed ``max_attempts`` times becomes ``failed`` (poison update).
A second delivery of the same update id conflicts on insert and is skipped: that is what makes Telegram
retries and several webhook replicas harmless.
Retention (`purge_inbox`, run hourly by the scheduler): a handled or failed update's content (the resident's
message, the reply) is erased after the retention period; the row itself (channel, update id, state, times)
stays KEEP_KEYS longer as the duplicate-delivery guard, then goes. Rows still `received` are never touched.

Synchronous (one short transaction per call, on a plain connection: no ORM session for one-statement
writes); async callers run it in a worker thread (the Telegram channel keeps one dedicated thread for
it). ``record_many`` stores a whole getUpdates batch in one transaction (one commit instead of one per
update). Must not: parse Telegram updates or talk to the network.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine
from sqlmodel import col

from casestore.clock import Clock, SystemClock
from casestore.db import session_scope
from casestore.models import InboundState, InboundUpdate

KEEP_KEYS = timedelta(days=30)  # an erased row's key outlives any retry of its update by far


@dataclass(frozen=True)
class PurgeReport:
    erased: int
    deleted: int


def purge_inbox(engine: Engine, *, now: datetime, retention: timedelta,
                keep_keys: timedelta = KEEP_KEYS) -> PurgeReport:
    """Erase the content of updates handled (or failed) more than `retention` ago, and delete rows erased more
    than `keep_keys` ago; every channel, two statements, one transaction."""
    finished = col(InboundUpdate.state).in_([InboundState.done.value, InboundState.failed.value])
    handled = func.coalesce(col(InboundUpdate.handled_at), col(InboundUpdate.received_at))
    with engine.begin() as conn:
        erased = conn.execute(
            update(InboundUpdate)
            .where(finished & col(InboundUpdate.erased_at).is_(None) & (handled < now - retention))
            .values(payload={}, error=None, erased_at=now)).rowcount
        deleted = conn.execute(
            delete(InboundUpdate).where(col(InboundUpdate.erased_at) < now - keep_keys)).rowcount
    return PurgeReport(erased=int(erased or 0), deleted=int(deleted or 0))


@dataclass(frozen=True)
class InboxEntry:
    update_id: int
    update: dict[str, Any]
    reply: list[dict[str, Any]] | None  # OutboundMessage payloads once the engine has answered
    attempts: int
    state: str


def _entry(row: InboundUpdate) -> InboxEntry:
    payload = row.payload or {}
    return InboxEntry(update_id=row.update_id, update=payload.get("update", {}), reply=payload.get("reply"),
                      attempts=row.attempts, state=row.state)


class Inbox:
    """Inbox rows of one channel."""

    def __init__(self, engine: Engine, *, channel: str = "telegram", clock: Clock | None = None,
                 max_attempts: int = 3):
        self.engine = engine
        self.channel = channel
        self.clock = clock or SystemClock()
        self.max_attempts = max_attempts
        # SQLite has one writer: threads that collide sleep in its busy handler (1, 2, 5 ... 100 ms), which
        # wrecks throughput; queueing our own writes on a lock instead costs nothing. PostgreSQL needs none.
        self._write_lock = threading.Lock() if engine.dialect.name == "sqlite" else None

    def _writing(self) -> AbstractContextManager[object]:
        return self._write_lock if self._write_lock is not None else nullcontext()

    def _where(self, update_id: int) -> Any:
        return (InboundUpdate.channel == self.channel) & (InboundUpdate.update_id == update_id)  # type: ignore[arg-type]

    def _insert(self, update_id: int, update_data: dict[str, Any]) -> Any:
        # RETURNING, not rowcount, tells a new row from a duplicate: psycopg reports rowcount -1 for
        # INSERT ... ON CONFLICT DO NOTHING, which made every update look like a duplicate on PostgreSQL
        insert = postgresql.insert if self.engine.dialect.name == "postgresql" else sqlite.insert
        return insert(InboundUpdate).values(
            channel=self.channel, update_id=update_id, payload={"update": update_data},
            state=InboundState.received.value, attempts=1, received_at=self.clock.now(),
        ).on_conflict_do_nothing(index_elements=["channel", "update_id"]).returning(col(InboundUpdate.id))

    def record(self, *, update_id: int, update_data: dict[str, Any]) -> bool:
        """Store a new update as received with one attempt taken; False if this update id is already here."""
        with self._writing(), self.engine.begin() as conn:
            return conn.execute(self._insert(update_id, update_data)).first() is not None

    def record_many(self, items: Sequence[tuple[int, dict[str, Any]]]) -> list[int]:
        """`record` for a batch, in one transaction (all stored or none); returns the ids that were new,
        in the given order."""
        new: list[int] = []
        with self._writing(), self.engine.begin() as conn:
            for update_id, update_data in items:
                if conn.execute(self._insert(update_id, update_data)).first() is not None:
                    new.append(update_id)
        return new

    def get(self, *, update_id: int) -> InboxEntry | None:
        with session_scope(self.engine) as session:
            stmt = select(InboundUpdate).where(self._where(update_id))
            row: InboundUpdate | None = session.execute(stmt).scalar_one_or_none()
            return _entry(row) if row else None

    def save_reply(self, *, update_id: int, reply: list[dict[str, Any]],
                   update_data: dict[str, Any] | None = None) -> None:
        """Keep the engine's answer so that a replay re-sends it instead of asking the engine again.

        With `update_data` (the update as stored, which the caller already has) this is one UPDATE
        statement; without it the stored payload is read first."""
        if update_data is not None:
            with self._writing(), self.engine.begin() as conn:
                conn.execute(update(InboundUpdate).where(self._where(update_id)).values(
                    payload={"update": update_data, "reply": reply}))
            return
        with self._writing(), session_scope(self.engine) as session:
            row: InboundUpdate = session.execute(select(InboundUpdate).where(self._where(update_id))).scalar_one()
            row.payload = {**(row.payload or {}), "reply": reply}  # a new dict: JSON columns track assignment
            session.add(row)

    def mark_done(self, *, update_id: int) -> None:
        with self._writing(), self.engine.begin() as conn:
            conn.execute(update(InboundUpdate).where(self._where(update_id)).values(
                state=InboundState.done.value, handled_at=self.clock.now(), error=None))

    def mark_error(self, *, update_id: int, error: str) -> None:
        """Record a failed attempt; the row stays received (replayed at the next start) until it has
        used up its attempts, then it becomes failed."""
        with self._writing(), session_scope(self.engine) as session:
            row: InboundUpdate = session.execute(select(InboundUpdate).where(self._where(update_id))).scalar_one()
            row.error = error[:500]
            if row.attempts >= self.max_attempts:
                row.state = InboundState.failed.value
            session.add(row)

    def claim_unfinished(self) -> list[InboxEntry]:
        """Rows left received by a stopped process, each claimed for one more attempt (oldest first).

        The claim is a compare-and-set on ``attempts``, so two processes starting together do not both
        replay the same row. Rows out of attempts are marked failed instead.
        """
        claimed: list[InboxEntry] = []
        with session_scope(self.engine) as session:
            rows: list[InboundUpdate] = list(session.execute(
                select(InboundUpdate)
                .where((InboundUpdate.channel == self.channel) & (InboundUpdate.state == InboundState.received.value))  # type: ignore[arg-type]
                .order_by(InboundUpdate.update_id)  # type: ignore[arg-type]
            ).scalars().all())
            seen = [(r.update_id, r.attempts) for r in rows]
        for update_id, attempts in seen:
            with session_scope(self.engine) as session:
                if attempts >= self.max_attempts:
                    session.execute(update(InboundUpdate).where(self._where(update_id)).values(
                        state=InboundState.failed.value))
                    continue
                res = session.execute(
                    update(InboundUpdate)
                    .where(self._where(update_id) & (InboundUpdate.attempts == attempts)  # type: ignore[arg-type]
                           & (InboundUpdate.state == InboundState.received.value))
                    .values(attempts=attempts + 1))
                if res.rowcount != 1:  # type: ignore[attr-defined]
                    continue
                row: InboundUpdate = session.execute(select(InboundUpdate).where(self._where(update_id))).scalar_one()
                claimed.append(_entry(row))
        return claimed

    def count(self, *, state: str | None = None) -> int:
        stmt = select(func.count()).select_from(InboundUpdate).where(InboundUpdate.channel == self.channel)  # type: ignore[arg-type]
        if state is not None:
            stmt = stmt.where(InboundUpdate.state == state)  # type: ignore[arg-type]
        with session_scope(self.engine) as session:
            return int(session.execute(stmt).scalar_one())
