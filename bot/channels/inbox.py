"""The inbox: every channel update is stored (unique per channel and update id) before it is handled, and is
handled once.

Life of a row::

    received (stored, masked; attempts = failures = 0)
      ─ begin(): attempts + 1, committed before the handler runs
      ─ the handler runs inside one database transaction, which also holds finish(): the row becomes done (its
        content erased) and the reply becomes outbox rows (casestore.dispatch). Commit = handled; any stop before
        it rolls everything back, the handler's own writes included, and the update is simply handled again.
      ─ the handler raised: fail() counts a failure; after MAX_FAILURES the row is failed
      ─ a start with attempts > failures found the row received: that many handler runs were cut off by a stopped
        process. That is not a handler failure (kill -9 mid-burst cuts off whatever is in flight) and is not
        counted as one; but an update whose handling itself kills the process (a poison update) would loop for
        ever, so after MAX_INTERRUPTED cut-off runs the row is failed too. The channel replays such "suspect" rows
        one at a time before anything else, so a poison update cannot drag innocent updates in flight with it
        towards that bound.

What exactly-once means here: the handler's writes, the handled mark and the reply commit together or not at
all, and the mark is conditional (``state = received``), so a second handler run of the same update (a replay
racing a slow first run, two replicas) rolls back instead of committing twice. Delivering the reply is
at-least-once in one window only: between Telegram accepting a message and the outbox row being marked sent.
A handler that is a plain callable (not run on the channel's connection) gets at-least-once for its own writes.

At rest: the update is stored with every free-text field masked (policies.masking: phone and ID numbers), so
raw numbers never reach the database; the first handling uses the update as received, in memory, and a replay
after a crash uses the masked copy (a number typed just before a crash comes back masked and is asked again).
A handled update's content is erased in the transaction that marks it done; a failed one keeps its masked
content for INBOX_RETENTION_DAYS (`purge_inbox`, run hourly by the scheduler), and every row's key stays
KEEP_KEYS longer as the duplicate-delivery guard. A second delivery of an update id conflicts on insert and is
skipped: that is what makes Telegram's retries and several webhook replicas harmless.

Synchronous (short transactions on plain connections); async callers run it in a worker thread. Must not:
parse Telegram updates or talk to the network.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Table, bindparam, delete, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine
from sqlmodel import col

from casestore.clock import Clock, SystemClock
from casestore.dispatch import ClaimedReply, record_replies
from casestore.models import InboundState, InboundUpdate, NotificationState, OutboundReply
from casestore.notify import OutboundMessage
from policies.masking import mask_text

KEEP_KEYS = timedelta(days=30)  # an erased row's key outlives any retry of its update by far
MAX_FAILURES = 3  # handler runs that raised, across restarts, before an update is failed
MAX_INTERRUPTED = 5  # handler runs cut off by a stopped process before an update is failed as poison
MAX_DEPTH = 32  # nesting an update may have (Telegram's go about 6 deep); deeper is refused as unparseable
NOTICE_POSITION = 1000  # outbox positions of the channel's own notices about an update (the reply uses 0, 1 ...)

# machine fields kept as they are: the signed button token must verify on replay, file ids must still resolve
KEEP_RAW = frozenset({"data", "file_id", "file_unique_id", "chat_instance", "inline_message_id", "type",
                      "mime_type", "language_code"})


def within_depth(value: Any, limit: int = MAX_DEPTH) -> bool:
    """True if `value` (parsed JSON) nests at most `limit` containers deep; iterative, so any depth is safe."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth > limit:
                return False
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return True


def mask_update(value: Any, key: str = "", depth: int = 0) -> Any:
    """A copy of an update with every string masked except the machine fields in KEEP_RAW.

    Raises ValueError past MAX_DEPTH (check `within_depth` first: the recursion is bounded by it)."""
    if depth > MAX_DEPTH:
        raise ValueError("update nested too deeply")
    if isinstance(value, dict):
        return {k: mask_update(v, k, depth + 1) for k, v in value.items()}
    if isinstance(value, list):
        return [mask_update(v, key, depth + 1) for v in value]
    if isinstance(value, str) and key not in KEEP_RAW:
        return mask_text(value)
    return value


@dataclass(frozen=True)
class PurgeReport:
    erased: int
    deleted: int
    replies_deleted: int = 0


def purge_inbox(engine: Engine, *, now: datetime, retention: timedelta,
                keep_keys: timedelta = KEEP_KEYS) -> PurgeReport:
    """Erase the (masked) content of updates finished more than `retention` ago, delete rows erased more than
    `keep_keys` ago, and delete delivered or given-up replies older than `retention`; one transaction."""
    finished = col(InboundUpdate.state).in_([InboundState.done.value, InboundState.failed.value])
    handled = func.coalesce(col(InboundUpdate.handled_at), col(InboundUpdate.received_at))
    closed = col(OutboundReply.state).in_([NotificationState.sent.value, NotificationState.failed.value])
    with engine.begin() as conn:
        erased = conn.execute(
            update(InboundUpdate)
            .where(finished & col(InboundUpdate.erased_at).is_(None) & (handled < now - retention))
            .values(payload={}, error=None, erased_at=now)).rowcount
        deleted = conn.execute(
            delete(InboundUpdate).where(col(InboundUpdate.erased_at) < now - keep_keys)).rowcount
        replies = conn.execute(
            delete(OutboundReply).where(closed & (col(OutboundReply.created_at) < now - retention))).rowcount
    return PurgeReport(erased=int(erased or 0), deleted=int(deleted or 0), replies_deleted=int(replies or 0))


@dataclass(frozen=True)
class InboxEntry:
    update_id: int
    update: dict[str, Any]  # as stored: masked (and empty once handled)
    attempts: int  # handler runs started
    failures: int  # handler runs that raised
    state: str

    @property
    def interrupted(self) -> int:
        """Handler runs cut off by a stopped process (only meaningful while the row is received)."""
        return max(0, self.attempts - self.failures)


class AlreadyHandled(Exception):
    """The update was marked handled (or failed) by another run: roll this run's transaction back."""


_INBOX: Table = InboundUpdate.__table__  # type: ignore[attr-defined]  # SQLModel does not declare __table__
_THIS_RECEIVED = ((_INBOX.c.channel == bindparam("b_channel")) & (_INBOX.c.update_id == bindparam("b_update"))
                  & (_INBOX.c.state == InboundState.received.value))
# built once: these run for every update, and building the statement costs more than running it
_BEGIN = (update(_INBOX).where(_THIS_RECEIVED).values(attempts=_INBOX.c.attempts + 1)
          .returning(_INBOX.c.attempts, _INBOX.c.failures))
_FINISH = update(_INBOX).where(_THIS_RECEIVED).values(
    state=InboundState.done.value, handled_at=bindparam("b_now"), payload={}, error=None,
    erased_at=bindparam("b_now"))


def _entry(row: Any) -> InboxEntry:
    payload = row.payload or {}
    return InboxEntry(update_id=row.update_id, update=payload.get("update", {}), attempts=row.attempts,
                      failures=row.failures, state=row.state)


class Inbox:
    """Inbox rows of one channel."""

    def __init__(self, engine: Engine, *, channel: str = "telegram", clock: Clock | None = None,
                 max_failures: int = MAX_FAILURES, max_interrupted: int = MAX_INTERRUPTED):
        self.engine = engine
        self.channel = channel
        self.clock = clock or SystemClock()
        self.max_failures = max_failures
        self.max_interrupted = max_interrupted
        # SQLite has one writer: threads that collide sleep in its busy handler (1, 2, 5 ... 100 ms), which
        # wrecks throughput; queueing our own small writes on a lock instead costs nothing. PostgreSQL needs none.
        self._write_lock = threading.Lock() if engine.dialect.name == "sqlite" else None

    def _writing(self) -> AbstractContextManager[object]:
        return self._write_lock if self._write_lock is not None else nullcontext()

    def _where(self, update_id: int) -> Any:
        return (col(InboundUpdate.channel) == self.channel) & (col(InboundUpdate.update_id) == update_id)

    def _insert(self, update_id: int, values: dict[str, Any]) -> Any:
        # RETURNING, not rowcount, tells a new row from a duplicate: psycopg reports rowcount -1 for
        # INSERT ... ON CONFLICT DO NOTHING, which made every update look like a duplicate on PostgreSQL
        insert = postgresql.insert if self.engine.dialect.name == "postgresql" else sqlite.insert
        return insert(InboundUpdate).values(
            channel=self.channel, update_id=update_id, attempts=0, failures=0, received_at=self.clock.now(),
            **values,
        ).on_conflict_do_nothing(index_elements=["channel", "update_id"]).returning(col(InboundUpdate.id))

    def _received(self, update_id: int, update_data: dict[str, Any]) -> Any:
        return self._insert(update_id, {"payload": {"update": mask_update(update_data)},
                                        "state": InboundState.received.value})

    def record(self, *, update_id: int, update_data: dict[str, Any]) -> bool:
        """Store a new update (masked) as received; False if this update id is already here."""
        with self._writing(), self.engine.begin() as conn:
            return conn.execute(self._received(update_id, update_data)).first() is not None

    def record_many(self, items: Sequence[tuple[int, dict[str, Any]]]) -> list[int]:
        """`record` for a batch, in one transaction (all stored or none); returns the ids that were new,
        in the given order."""
        new: list[int] = []
        with self._writing(), self.engine.begin() as conn:
            for update_id, update_data in items:
                if conn.execute(self._received(update_id, update_data)).first() is not None:
                    new.append(update_id)
        return new

    def record_unparsed(self, *, update_id: int, error: str) -> bool:
        """Store an update that could not be parsed as failed at once, without its content; False if the id is
        already here."""
        now = self.clock.now()
        with self._writing(), self.engine.begin() as conn:
            return conn.execute(self._insert(update_id, {
                "payload": {}, "state": InboundState.failed.value, "error": mask_text(error)[:500],
                "handled_at": now})).first() is not None

    def get(self, *, update_id: int) -> InboxEntry | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(InboundUpdate.__table__).where(self._where(update_id))).first()  # type: ignore[attr-defined]
            return _entry(row) if row is not None else None

    def begin(self, *, update_id: int) -> InboxEntry | None:
        """Count a handler run as started (committed before the handler runs); None if the update is no longer
        received (handled or failed meanwhile, e.g. by another replica)."""
        with self._writing(), self.engine.begin() as conn:
            if conn.dialect.name == "postgresql":  # a server crash may lose the count (not a kill): no WAL flush
                conn.exec_driver_sql("SET LOCAL synchronous_commit TO OFF")
            row = conn.execute(_BEGIN, {"b_channel": self.channel, "b_update": update_id}).first()
        if row is None:
            return None
        return InboxEntry(update_id=update_id, update={}, attempts=row.attempts, failures=row.failures,
                          state=InboundState.received.value)

    def finish(self, *, connection: Connection, update_id: int, chat_id: int | None,
               messages: Sequence[OutboundMessage]) -> list[ClaimedReply]:
        """In the handler's transaction: mark the update done (its content erased) and queue its reply; returns
        the reply rows written already claimed for the caller to send (see casestore.dispatch.record_replies).

        Raises AlreadyHandled if the row is no longer received, so that the caller rolls back: the mark comes
        first, which on PostgreSQL also makes a concurrent second run wait here and then see `done`."""
        now = self.clock.now()
        result = connection.execute(_FINISH, {"b_channel": self.channel, "b_update": update_id, "b_now": now})
        if result.rowcount != 1:
            raise AlreadyHandled(f"{self.channel} update {update_id}")
        if chat_id is None:
            return []
        return record_replies(connection=connection, channel=self.channel, update_id=update_id, chat_id=chat_id,
                              messages=messages, now=now, claim=True)

    def fail(self, *, update_id: int, error: str, chat_id: int | None = None,
             notice: OutboundMessage | None = None, final_notice: OutboundMessage | None = None,
             interrupted: bool = False) -> InboxEntry | None:
        """Count a handler failure (or, with `interrupted`, give up on a poison update at once); the row
        becomes failed once it is out of failures. `notice` is queued for `chat_id` on the first failure,
        `final_notice` when the row fails. Returns the row afterwards (None if it is no longer received)."""
        now = self.clock.now()
        with self._writing(), self.engine.begin() as conn:
            row = conn.execute(select(InboundUpdate.__table__).where(  # type: ignore[attr-defined]
                self._where(update_id) & (col(InboundUpdate.state) == InboundState.received.value))).first()
            if row is None:
                return None
            failures = row.failures if interrupted else row.failures + 1
            failed = interrupted or failures >= self.max_failures
            values: dict[str, Any] = {"failures": failures, "error": mask_text(error)[:500]}
            if failed:
                values.update(state=InboundState.failed.value, handled_at=now)
            conn.execute(update(InboundUpdate).where(
                self._where(update_id) & (col(InboundUpdate.state) == InboundState.received.value)).values(**values))
            said = [m for m, when in ((notice, failures == 1 and not failed), (final_notice, failed))
                    if m is not None and when]
            if chat_id is not None and said:
                record_replies(connection=conn, channel=self.channel, update_id=update_id, chat_id=chat_id,
                               messages=said, now=now, first_position=NOTICE_POSITION + failures * 2)
            return InboxEntry(update_id=row.update_id, update=(row.payload or {}).get("update", {}),
                              attempts=row.attempts, failures=failures,
                              state=InboundState.failed.value if failed else row.state)

    def unfinished(self) -> list[InboxEntry]:
        """Rows still received (left by a stopped process, or failed and waiting for a retry), oldest first."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(InboundUpdate.__table__).where(  # type: ignore[attr-defined]
                (col(InboundUpdate.channel) == self.channel)
                & (col(InboundUpdate.state) == InboundState.received.value))
                .order_by(col(InboundUpdate.update_id))).all()
            return [_entry(r) for r in rows]

    def count(self, *, state: str | None = None) -> int:
        stmt = select(func.count()).select_from(InboundUpdate).where(col(InboundUpdate.channel) == self.channel)
        if state is not None:
            stmt = stmt.where(col(InboundUpdate.state) == state)
        with self.engine.connect() as conn:
            return int(conn.execute(stmt).scalar_one())
