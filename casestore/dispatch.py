"""The outbound queue: recording `Notification` rows once, and delivering pending rows through a Notifier.

Delivery order (what "exactly once" means here):

1. **Record** — a service inserts the row (state `pending`) in the same transaction as the case change
   that caused it, with INSERT ... ON CONFLICT DO NOTHING on `uq_notification_once` (case, kind, level,
   recipient). A repeated sweep, a second scheduler or a retried transaction can never create a second
   row: each push exists exactly once.
2. **Claim** — a dispatcher selects due rows (`pending`, or `sending` whose lease has expired) with
   FOR UPDATE SKIP LOCKED on PostgreSQL, sets `sending`, `attempts+1` and `next_attempt_at = now + LEASE`
   (the lease), and COMMITS before calling the channel. Any other dispatcher skips the row while it is
   locked and ignores it afterwards until the lease runs out, so two schedulers never send one row.
3. **Send** — `await notifier.send(...)` outside any transaction.
4. **Mark** — `sent` (+ sent_at) in a short transaction, guarded by (state, attempts) so a stale
   dispatcher cannot overwrite a newer claim. `RetryLater(s)` puts the row back to `pending` with
   next_attempt_at = now + s (never dropped, not counted as a failure); `DeliveryError` or any other
   error retries with backoff and becomes `failed` after MAX_ATTEMPTS attempts; a row without a chat id
   fails at once.

A crash between 3 and 4 (the message left, the mark did not) leaves the row `sending`. When its lease
expires a dispatcher sends it again: delivery is AT-LEAST-ONCE in that single window, chosen because a
lost reminder breaks the city's promise while a repeated one only annoys (Telegram offers no idempotency
key to do better). Everywhere else it is exactly once. Nothing is ever sent before its row is committed.

The reply outbox (`OutboundReply` rows) follows the same four steps for the answers to inbound updates, with
two differences. Recording happens in the transaction that marks the update handled (bot.channels.inbox), so
a handled update always has its reply and an unhandled one none. And a chat's rows go out in id order: only a
chat's oldest unsent row (its head) can be claimed, so a reply waiting out a 429 holds back the later ones of
that chat and of no other. Rows stay until sent: flood control and network errors only move `next_attempt_at`.

Must not: decide what to send (services do) or know a channel's API (Notifiers do).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Table, and_, bindparam, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine
from sqlmodel import Session, col

from casestore.accounts import Address, address_of
from casestore.clock import Clock
from casestore.db import session_scope
from casestore.models import Notification, NotificationState, OutboundReply
from casestore.notify import DeliveryError, Notifier, OutboundMessage, RetryLater

log = logging.getLogger(__name__)

LEASE = timedelta(minutes=5)  # a claimed row is re-sent after this if its dispatcher never marked it
MAX_ATTEMPTS = 5
BACKOFF = (timedelta(seconds=30), timedelta(minutes=2), timedelta(minutes=10), timedelta(minutes=30))
_UNIQUE = ["case_id", "kind", "level", "recipient"]


def _insert(session: Session) -> Any:
    """A Core INSERT on the table (not the ORM entity): executemany then skips the ORM bulk-insert layer."""
    dialect = session.get_bind().dialect.name
    table: Table = Notification.__table__  # type: ignore[attr-defined]  # SQLModel does not declare __table__
    return (postgresql.insert if dialect == "postgresql" else sqlite.insert)(table)


def _payload(message: OutboundMessage) -> dict[str, Any]:
    """`OutboundMessage.to_payload()` without dataclasses.asdict's deep copies (hot in the sweep)."""
    rows = [[{"label": b.label, "action": b.action, "case_code": b.case_code, "arg": b.arg} for b in row]
            for row in message.buttons]
    voice = {"voice": message.voice} if message.voice else {}  # rows without a voice stay as they were
    return {"text": message.text, "buttons": rows, "photo": message.photo, **voice}


def notification_row(*, case_id: int | None, kind: str, level: int, recipient: str, address: Address | None,
                     message: OutboundMessage, now: datetime) -> dict[str, Any]:
    """One row for `record_many`; `address` is where the recipient is reached (None: the row fails at once)."""
    return {"case_id": case_id, "kind": kind, "level": level, "recipient": recipient,
            "channel": address.channel if address else "none", "chat_id": address.chat_id if address else None,
            "payload": _payload(message), "state": NotificationState.pending.value, "attempts": 0,
            "created_at": now, "next_attempt_at": now}


def record_notification(*, session: Session, case_id: int | None, kind: str, level: int, recipient: str,
                        message: OutboundMessage, now: datetime) -> bool:
    """Queue one push to "worker:7" / "resident:3" in the caller's transaction, addressed to the account the
    person used last; False if this (case, kind, level, recipient) exists."""
    row = notification_row(case_id=case_id, kind=kind, level=level, recipient=recipient,
                           address=address_of(session=session, recipient=recipient), message=message, now=now)
    stmt = _insert(session).values(**row).on_conflict_do_nothing(index_elements=_UNIQUE)
    # RETURNING, not rowcount: psycopg reports no rowcount for ON CONFLICT DO NOTHING through the session
    return session.execute(stmt.returning(Notification.__table__.c.id)).first() is not None  # type: ignore[attr-defined]


def record_push_once(*, session: Session, kind: str, level: int, recipient: str, message: OutboundMessage,
                     now: datetime) -> bool:
    """Queue one push of no case (a digest) in the caller's transaction; False if this (kind, level, recipient)
    exists (uq_notification_nocase_once: `level` is the idempotency key, such as a local day)."""
    row = notification_row(case_id=None, kind=kind, level=level, recipient=recipient,
                           address=address_of(session=session, recipient=recipient), message=message, now=now)
    stmt = _insert(session).values(**row).on_conflict_do_nothing()
    return session.execute(stmt.returning(Notification.__table__.c.id)).first() is not None  # type: ignore[attr-defined]


def record_many(*, session: Session, rows: list[dict[str, Any]]) -> None:
    """Queue many pushes with one executemany; existing (case, kind, level, recipient) rows are kept."""
    if rows:
        session.connection().execute(_insert(session).on_conflict_do_nothing(index_elements=_UNIQUE), rows)


@dataclass(frozen=True)
class Claimed:
    id: int
    channel: str
    chat_id: int | None
    payload: dict[str, Any]
    attempts: int


def claim_due(*, engine: Engine, now: datetime, limit: int = 100, channel: str | None = None,
              chat_id: int | None = None, except_channel: str | None = None,
              lease: timedelta = LEASE) -> list[Claimed]:
    """Step 2: take due rows (of one channel, if given; of one chat on it, if given; of no row on
    `except_channel`) under a lease and commit, so no other dispatcher sends them. A short `lease` with a small
    `limit` (a claim that is sent within seconds) lets a crashed dispatcher's claims be sent again sooner."""
    due = or_(
        and_(col(Notification.state) == NotificationState.pending.value, col(Notification.next_attempt_at) <= now),
        and_(col(Notification.state) == NotificationState.sending.value, col(Notification.next_attempt_at) <= now),
    )
    with session_scope(engine) as session:
        stmt = (select(col(Notification.id), col(Notification.channel), col(Notification.chat_id),
                       col(Notification.payload), col(Notification.attempts), col(Notification.state))
                .where(due).order_by(col(Notification.next_attempt_at), col(Notification.id)).limit(limit))
        if channel is not None and chat_id is not None:  # one account's own pushes (a terminal window)
            stmt = stmt.where(col(Notification.channel) == channel, col(Notification.chat_id) == chat_id)
        elif channel is not None:
            stmt = stmt.where(col(Notification.channel).in_([channel, "none"]))
        if except_channel is not None:
            stmt = stmt.where(col(Notification.channel) != except_channel)
        if engine.dialect.name == "postgresql":
            stmt = stmt.with_for_update(skip_locked=True, of=Notification)
        rows = session.execute(stmt).all()
        claimed: list[Claimed] = []
        for row in rows:
            if row.state == NotificationState.sending.value:
                log.warning("notification %s: lease expired without a mark; sending again (at-least-once)", row.id)
            result = session.execute(
                update(Notification)
                .where(col(Notification.id) == row.id, col(Notification.state) == row.state,
                       col(Notification.attempts) == row.attempts)
                .values(state=NotificationState.sending.value, attempts=row.attempts + 1,
                        next_attempt_at=now + lease))
            if result.rowcount == 1:  # type: ignore[attr-defined]
                claimed.append(Claimed(row.id, row.channel, row.chat_id, row.payload, row.attempts + 1))
        return claimed


def _mark(engine: Engine, item: Claimed, **values: Any) -> None:
    with session_scope(engine) as session:
        session.execute(
            update(Notification)
            .where(col(Notification.id) == item.id, col(Notification.state) == NotificationState.sending.value,
                   col(Notification.attempts) == item.attempts)
            .values(**values))


def _failure(item: Claimed, now: datetime, error: str) -> dict[str, Any]:
    if item.attempts >= MAX_ATTEMPTS:
        return {"state": NotificationState.failed.value, "last_error": error[:500], "next_attempt_at": None}
    delay = BACKOFF[min(item.attempts - 1, len(BACKOFF) - 1)]
    return {"state": NotificationState.pending.value, "last_error": error[:500], "next_attempt_at": now + delay}


async def dispatch_pending(*, engine: Engine, notifier: Notifier, clock: Clock, limit: int = 100,
                           channel: str | None = None, chat_id: int | None = None,
                           except_channel: str | None = None, lease: timedelta = LEASE) -> int:
    """Claim due rows (only `channel`'s, when given: each channel's dispatcher sends its own; only one chat's
    with `chat_id`; none of `except_channel`), send each through `notifier`, mark the outcome; returns how
    many were sent."""
    claimed = await asyncio.to_thread(claim_due, engine=engine, now=clock.now(), limit=limit, channel=channel,
                                      chat_id=chat_id, except_channel=except_channel, lease=lease)
    sent = 0
    for item in claimed:
        if item.chat_id is None:
            await asyncio.to_thread(_mark, engine, item, state=NotificationState.failed.value,
                                    last_error="recipient has no chat id", next_attempt_at=None)
            continue
        try:
            await notifier.send(chat_id=item.chat_id, message=OutboundMessage.from_payload(item.payload))
        except RetryLater as exc:
            # flood control is not a failure: back to pending, attempts not held against it
            await asyncio.to_thread(_mark, engine, item, state=NotificationState.pending.value,
                                    attempts=item.attempts - 1, last_error=str(exc),
                                    next_attempt_at=clock.now() + timedelta(seconds=max(exc.seconds, 1.0)))
            continue
        except DeliveryError as exc:
            log.warning("notification %s refused by the channel (attempt %s): %s", item.id, item.attempts, exc)
            await asyncio.to_thread(_mark, engine, item, **_failure(item, clock.now(), f"DeliveryError: {exc}"))
            continue
        except Exception as exc:  # noqa: BLE001 - outcome unknown (timeout, network): retry, at-least-once
            log.warning("notification %s: send error (attempt %s): %s", item.id, item.attempts, type(exc).__name__)
            await asyncio.to_thread(_mark, engine, item, **_failure(item, clock.now(), f"{type(exc).__name__}: {exc}"))
            continue
        await asyncio.to_thread(_mark, engine, item, state=NotificationState.sent.value, sent_at=clock.now(),
                                next_attempt_at=None, last_error=None)
        sent += 1
    return sent


def list_notifications(*, session: Session, case_id: int | None = None, kind: str | None = None) -> list[Notification]:
    stmt = select(Notification)
    if case_id is not None:
        stmt = stmt.where(col(Notification.case_id) == case_id)
    if kind is not None:
        stmt = stmt.where(col(Notification.kind) == kind)
    return list(session.execute(stmt.order_by(col(Notification.id))).scalars())


# ---------------------------------------------------------------- the reply outbox
# a claimed reply is claimable again after this: longer than a send that waits out its inline 429 retries; a
# sender that is the channel's only one (long polling) takes back a stopped process's claims at once instead
REPLY_LEASE = timedelta(minutes=5)
REPLY_MAX_ERRORS = 5  # unexplained send errors before a reply is given up (flood control never counts)
REPLY_MAX_AGE = timedelta(hours=24)  # network errors are retried this long, then the reply is given up
_OPEN = (NotificationState.pending.value, NotificationState.sending.value)


@dataclass(frozen=True)
class ClaimedReply:
    id: int
    update_id: int
    position: int
    chat_id: int
    payload: dict[str, Any]
    attempts: int
    parts_sent: int
    created_at: datetime
    reclaimed: bool  # its earlier claim ran out without a mark: the message may have been delivered already


def _reply_insert(dialect: str) -> Any:
    table: Table = OutboundReply.__table__  # type: ignore[attr-defined]  # SQLModel does not declare __table__
    return (postgresql.insert if dialect == "postgresql" else sqlite.insert)(table)


def record_replies(*, connection: Connection, channel: str, update_id: int, chat_id: int,
                   messages: Sequence[OutboundMessage], now: datetime, first_position: int = 0,
                   claim: bool = False) -> list[ClaimedReply]:
    """Queue `messages` as the reply to one update, in the caller's transaction; a (channel, update id,
    position) already queued is kept as it is.

    With `claim`, and nothing of this chat waiting to be sent before them, the rows are written already claimed
    by the caller (who delivers them next, without a claim round trip) and returned; otherwise they wait their
    turn as pending and [] is returned."""
    if not messages:
        return []
    if claim:
        waiting = connection.execute(_OPEN_ROW_OF_CHAT, {"b_channel": channel, "b_chat": chat_id}).first()
        claim = waiting is None
    state = NotificationState.sending.value if claim else NotificationState.pending.value
    payloads = {first_position + i: _payload(m) for i, m in enumerate(messages)}
    rows = [{"channel": channel, "update_id": update_id, "position": position, "chat_id": chat_id,
             "payload": payload, "state": state, "attempts": 1 if claim else 0, "parts_sent": 0,
             "created_at": now, "next_attempt_at": now + REPLY_LEASE if claim else now}
            for position, payload in payloads.items()]
    stmt = _reply_insert(connection.dialect.name).on_conflict_do_nothing(
        index_elements=["channel", "update_id", "position"])
    if not claim:
        connection.execute(stmt, rows)
        return []
    table: Table = OutboundReply.__table__  # type: ignore[attr-defined]
    inserted = connection.execute(stmt.returning(table.c.id, table.c.position), rows).all()
    return sorted((ClaimedReply(id=row.id, update_id=update_id, position=row.position, chat_id=chat_id,
                                payload=payloads[row.position], attempts=1, parts_sent=0,
                                created_at=now, reclaimed=False) for row in inserted), key=lambda c: c.position)


_OUTBOX: Table = OutboundReply.__table__  # type: ignore[attr-defined]  # SQLModel does not declare __table__
_MARK_SENT = (update(_OUTBOX)
              .where(_OUTBOX.c.id == bindparam("b_id"), _OUTBOX.c.attempts == bindparam("b_attempts"),
                     _OUTBOX.c.state == NotificationState.sending.value)
              .values(state=NotificationState.sent.value, sent_at=bindparam("b_now"), payload={},
                      next_attempt_at=None, last_error=None, parts_sent=bindparam("b_parts")))
_OPEN_ROW_OF_CHAT = (select(_OUTBOX.c.id)
                     .where(_OUTBOX.c.channel == bindparam("b_channel"), _OUTBOX.c.chat_id == bindparam("b_chat"),
                            _OUTBOX.c.state.in_([NotificationState.pending.value, NotificationState.sending.value]))
                     .limit(1))


def _open_reply(channel: str) -> Any:
    return (col(OutboundReply.channel) == channel) & col(OutboundReply.state).in_(_OPEN)


def claim_replies(*, engine: Engine, channel: str, now: datetime, limit: int = 200, chat_id: int | None = None,
                  exclude: set[int] | None = None) -> list[ClaimedReply]:
    """Claim the due head (oldest unsent row) of up to `limit` chats (or of `chat_id` only; never of the chats
    in `exclude`, which the caller is serving already) under a lease."""
    with engine.begin() as conn:
        return _claim(conn, channel=channel, now=now, limit=limit,
                      chat_ids=[chat_id] if chat_id is not None else None, exclude=exclude)


def _claim(conn: Connection, *, channel: str, now: datetime, limit: int, chat_ids: list[int] | None,
           exclude: set[int] | None) -> list[ClaimedReply]:
    heads = (select(func.min(col(OutboundReply.id))).where(_open_reply(channel))
             .group_by(col(OutboundReply.chat_id)).order_by(func.min(col(OutboundReply.id))).limit(limit))
    if chat_ids is not None:
        heads = heads.where(col(OutboundReply.chat_id).in_(chat_ids))
    if exclude:
        heads = heads.where(col(OutboundReply.chat_id).not_in(sorted(exclude)))
    ids = [r[0] for r in conn.execute(heads).all()]
    if not ids:
        return []
    rows = conn.execute(select(OutboundReply.__table__).where(  # type: ignore[attr-defined]
        col(OutboundReply.id).in_(ids), col(OutboundReply.next_attempt_at) <= now)
        .order_by(col(OutboundReply.id))).all()
    claimed: list[ClaimedReply] = []
    for row in rows:
        result = conn.execute(update(OutboundReply).where(
            col(OutboundReply.id) == row.id, col(OutboundReply.state) == row.state,
            col(OutboundReply.attempts) == row.attempts,
        ).values(state=NotificationState.sending.value, attempts=row.attempts + 1,
                 next_attempt_at=now + REPLY_LEASE))
        if result.rowcount == 1:
            claimed.append(ClaimedReply(
                id=row.id, update_id=row.update_id, position=row.position, chat_id=row.chat_id,
                payload=row.payload, attempts=row.attempts + 1, parts_sent=row.parts_sent,
                created_at=row.created_at, reclaimed=row.state == NotificationState.sending.value))
    return claimed


def _mark_reply(conn: Connection, item: ClaimedReply, **values: Any) -> bool:
    result = conn.execute(update(OutboundReply).where(
        col(OutboundReply.id) == item.id, col(OutboundReply.state) == NotificationState.sending.value,
        col(OutboundReply.attempts) == item.attempts).values(**values))
    return bool(result.rowcount == 1)


def mark_replies_sent(*, engine: Engine, sent: Sequence[tuple[ClaimedReply, int]], now: datetime) -> int:
    """Mark delivered rows `sent` (their text no longer kept), each with its number of Bot API sends: one
    statement, one commit, for as many as the caller collected. Returns how many rows it marked."""
    if not sent:
        return 0
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":  # only a server crash could lose the mark (a resend): no WAL flush wait
            conn.exec_driver_sql("SET LOCAL synchronous_commit TO OFF")
        result = conn.execute(_MARK_SENT, [{"b_id": item.id, "b_attempts": item.attempts, "b_parts": parts,
                                            "b_now": now} for item, parts in sent])
        return int(result.rowcount or 0)


def retry_reply(*, engine: Engine, item: ClaimedReply, at: datetime, error: str, parts_sent: int,
                counts: bool = True) -> None:
    """Back to pending until `at`; `counts=False` (flood control) does not use up an attempt."""
    attempts = item.attempts if counts else item.attempts - 1
    with engine.begin() as conn:
        _mark_reply(conn, item, state=NotificationState.pending.value, next_attempt_at=at, attempts=attempts,
                    parts_sent=parts_sent, last_error=error[:500])


def fail_reply(*, engine: Engine, item: ClaimedReply, error: str, parts_sent: int) -> None:
    """The channel refused the message for good (blocked bot, unknown chat), or it kept failing."""
    with engine.begin() as conn:
        _mark_reply(conn, item, state=NotificationState.failed.value, next_attempt_at=None, parts_sent=parts_sent,
                    last_error=error[:500])


def release_replies(*, engine: Engine, channel: str, now: datetime) -> int:
    """Make the claims of a stopped process claimable now (the only sender of `channel` is starting); returns
    how many: each may already have been delivered, and will be sent again."""
    with engine.begin() as conn:
        result = conn.execute(update(OutboundReply).where(
            col(OutboundReply.channel) == channel, col(OutboundReply.state) == NotificationState.sending.value,
        ).values(next_attempt_at=now))
        return int(result.rowcount or 0)


def next_reply_due(*, engine: Engine, channel: str) -> datetime | None:
    """When the earliest chat head of `channel` may be claimed (None: nothing is waiting)."""
    heads = select(func.min(col(OutboundReply.id))).where(_open_reply(channel)).group_by(col(OutboundReply.chat_id))
    with engine.connect() as conn:
        value: datetime | None = conn.execute(select(func.min(col(OutboundReply.next_attempt_at)))
                                              .where(col(OutboundReply.id).in_(heads))).scalar()
    return value


def count_replies(*, engine: Engine, channel: str, update_id: int | None = None, state: str | None = None,
                  unsent: bool = False) -> int:
    """Reply rows of `channel` (of one update, in one state, or still unsent)."""
    stmt = select(func.count()).select_from(OutboundReply).where(col(OutboundReply.channel) == channel)
    if update_id is not None:
        stmt = stmt.where(col(OutboundReply.update_id) == update_id)
    if state is not None:
        stmt = stmt.where(col(OutboundReply.state) == state)
    if unsent:
        stmt = stmt.where(col(OutboundReply.state).in_(_OPEN))
    with engine.connect() as conn:
        return int(conn.execute(stmt).scalar_one())
