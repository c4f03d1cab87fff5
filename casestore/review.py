"""The review queue: every knowledge answer that missed, kept for an admin to turn into a fix.

A miss is a question the knowledge base could not answer, an answer rated 没用, a 转人工 right after an answer, or a
clarification whose candidates went unpicked. Each becomes one `ReviewItem`, with the question (and the resident's
next message, the best hint of what they meant) masked before it is stored. An admin resolves an item with an FAQ
entry, a scope example or a lexicon term, naming the document that answers it; resolved items with a document are
the `reviewed` regression eval. Every write records its audit event in the caller's transaction.
Must not: hold raw personal data, know about channels, or read or write the FAQ, scope or lexicon files (the CLI
does that and calls `resolve_item`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

from sqlmodel import Session, col, select

from casestore.audit import record_audit
from casestore.errors import IllegalTransition, NotFound
from casestore.models import ReviewItem, ReviewKind, ReviewResolution, ReviewStatus
from policies.masking import mask_text

# A second miss of the same kind on the same question by the same resident within this window is the same miss
# (a double tap on 没用, a retried message); the next message counts only within it too.
DEDUPE_WINDOW = timedelta(minutes=10)
MAX_RETRIEVED = 5
MAX_TEXT = 500


class ReviewNotFound(NotFound):
    user_message = "没有这条待审记录，请用 quanbot review list 核对编号。"


class ReviewClosed(IllegalTransition):
    user_message = "这条记录已经处理过了。"


def _actor(resident_id: int | None) -> str:
    return f"resident:{resident_id}" if resident_id is not None else "anonymous"


def _masked(text: str) -> str:
    return mask_text(text.strip())[:MAX_TEXT]


def _retrieved(rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The top passages as {doc_id, title, section, score}; anything else a caller passes is dropped."""
    out: list[dict[str, Any]] = []
    for row in list(rows)[:MAX_RETRIEVED]:
        score = row.get("score")
        out.append({"doc_id": str(row.get("doc_id") or ""), "title": str(row.get("title") or ""),
                    "section": str(row.get("section") or ""),
                    "score": round(float(score), 4) if isinstance(score, (int, float)) else None})
    return out


def record_miss(*, session: Session, kind: ReviewKind | str, question: str,
                retrieved: Iterable[Mapping[str, Any]], answer_mode: str, resident_id: int | None,
                now: datetime) -> ReviewItem:
    """Queue a missed question (masked); the same miss within DEDUPE_WINDOW gives back the item already queued."""
    kind = ReviewKind(kind)
    masked = _masked(question)
    stmt = (select(ReviewItem)
            .where(col(ReviewItem.kind) == kind.value, col(ReviewItem.question) == masked,
                   col(ReviewItem.created_at) >= now - DEDUPE_WINDOW)
            .where(col(ReviewItem.resident_id).is_(None) if resident_id is None
                   else col(ReviewItem.resident_id) == resident_id)
            .order_by(col(ReviewItem.created_at).desc(), col(ReviewItem.id).desc()))
    existing = session.exec(stmt).first()
    if existing is not None:
        return existing
    item = ReviewItem(kind=kind.value, question=masked, retrieved=_retrieved(retrieved),
                      answer_mode=answer_mode[:30], resident_id=resident_id, created_at=now)
    session.add(item)
    session.flush()
    record_audit(session=session, actor=_actor(resident_id), action="review_record", subject=f"review:{item.id}",
                 now=now, data={"kind": kind.value, "answer_mode": item.answer_mode})
    return item


def attach_next_message(*, session: Session, resident_id: int, text: str, now: datetime) -> None:
    """Keep what the resident said next (masked) on their newest open item of the last DEDUPE_WINDOW without one."""
    if not text.strip():
        return
    stmt = (select(ReviewItem)
            .where(col(ReviewItem.resident_id) == resident_id, col(ReviewItem.status) == ReviewStatus.open.value,
                   col(ReviewItem.next_message).is_(None), col(ReviewItem.created_at) >= now - DEDUPE_WINDOW,
                   col(ReviewItem.created_at) <= now)
            .order_by(col(ReviewItem.created_at).desc(), col(ReviewItem.id).desc()))
    item = session.exec(stmt).first()
    if item is None:
        return
    item.next_message = _masked(text)
    session.add(item)
    session.flush()
    record_audit(session=session, actor=_actor(resident_id), action="review_next_message",
                 subject=f"review:{item.id}", now=now)


def list_items(*, session: Session, status: ReviewStatus | str | None = ReviewStatus.open,
               limit: int = 50) -> list[ReviewItem]:
    """Items with `status` (None: all), newest first."""
    stmt = select(ReviewItem)
    if status is not None:
        stmt = stmt.where(col(ReviewItem.status) == ReviewStatus(status).value)
    stmt = stmt.order_by(col(ReviewItem.created_at).desc(), col(ReviewItem.id).desc()).limit(limit)
    return list(session.exec(stmt))


def list_resolved_with_doc(*, session: Session) -> list[ReviewItem]:
    """Resolved items that name their right document, oldest first (the regression eval's questions)."""
    stmt = (select(ReviewItem)
            .where(col(ReviewItem.status) == ReviewStatus.resolved.value, col(ReviewItem.resolved_doc).is_not(None))
            .order_by(col(ReviewItem.created_at), col(ReviewItem.id)))
    return list(session.exec(stmt))


def get_item(*, session: Session, item_id: int) -> ReviewItem:
    """The item, or ReviewNotFound."""
    item = session.get(ReviewItem, item_id)
    if item is None:
        raise ReviewNotFound(f"review item {item_id} not found")
    return item


def _open_item(session: Session, item_id: int) -> ReviewItem:
    """The item, locked until the transaction ends (PostgreSQL): two admins cannot both resolve it."""
    item = session.exec(select(ReviewItem).where(col(ReviewItem.id) == item_id).with_for_update()
                        .execution_options(populate_existing=True)).first()
    if item is None:
        raise ReviewNotFound(f"review item {item_id} not found")
    if item.status != ReviewStatus.open:
        raise ReviewClosed(f"review item {item_id} is {item.status}",
                           f"第 {item_id} 条已经{'处理' if item.status == ReviewStatus.resolved else '忽略'}过了"
                           f"（{item.resolved_by or '未知'}）。")
    return item


def resolve_item(*, session: Session, item_id: int, resolution: ReviewResolution | str, doc: str | None,
                 by: str, now: datetime) -> ReviewItem:
    """Mark an open item resolved by `by` with how it was fixed and the document that answers it."""
    resolution = ReviewResolution(resolution)
    item = _open_item(session, item_id)
    item.status, item.resolution = ReviewStatus.resolved.value, resolution.value
    item.resolved_doc, item.resolved_by, item.resolved_at = (doc or None), by, now
    session.add(item)
    session.flush()
    record_audit(session=session, actor=by, action="review_resolve", subject=f"review:{item.id}", now=now,
                 data={"resolution": resolution.value, "doc": item.resolved_doc})
    return item


def dismiss_item(*, session: Session, item_id: int, by: str, now: datetime) -> ReviewItem:
    """Mark an open item dismissed (nothing to fix: a test message, an abusive one, a one-off)."""
    item = _open_item(session, item_id)
    item.status, item.resolved_by, item.resolved_at = ReviewStatus.dismissed.value, by, now
    session.add(item)
    session.flush()
    record_audit(session=session, actor=by, action="review_dismiss", subject=f"review:{item.id}", now=now)
    return item
