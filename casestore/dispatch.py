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

Must not: decide what to send (services do) or know a channel's API (Notifiers do).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Table, and_, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine
from sqlmodel import Session, col

from casestore.accounts import Address, address_of
from casestore.clock import Clock
from casestore.db import session_scope
from casestore.models import Notification, NotificationState
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
    return {"text": message.text, "buttons": rows, "photo": message.photo}


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
    result = session.execute(_insert(session).values(**row).on_conflict_do_nothing(index_elements=_UNIQUE))
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]


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


def claim_due(*, engine: Engine, now: datetime, limit: int = 100, channel: str | None = None) -> list[Claimed]:
    """Step 2: take due rows (of one channel, if given) under a lease and commit, so no other dispatcher sends
    them."""
    due = or_(
        and_(col(Notification.state) == NotificationState.pending.value, col(Notification.next_attempt_at) <= now),
        and_(col(Notification.state) == NotificationState.sending.value, col(Notification.next_attempt_at) <= now),
    )
    with session_scope(engine) as session:
        stmt = (select(col(Notification.id), col(Notification.channel), col(Notification.chat_id),
                       col(Notification.payload), col(Notification.attempts), col(Notification.state))
                .where(due).order_by(col(Notification.next_attempt_at), col(Notification.id)).limit(limit))
        if channel is not None:
            stmt = stmt.where(col(Notification.channel).in_([channel, "none"]))
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
                        next_attempt_at=now + LEASE))
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
                           channel: str | None = None) -> int:
    """Claim due rows (only `channel`'s, when given: each channel's dispatcher sends its own), send each
    through `notifier`, mark the outcome; returns how many were sent."""
    claimed = await asyncio.to_thread(claim_due, engine=engine, now=clock.now(), limit=limit, channel=channel)
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
