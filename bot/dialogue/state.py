"""Per-user conversation state on the `Conversation` table, so a restart resumes mid-conversation.

Owns: reading and writing one account's (channel, user_id) state name and its JSON data (the typed
`drafts.DialogueData`, dumped), and the list of state names. Must not: decide transitions (the
resident/worker/admin tables do).
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import select
from sqlmodel import Session, col

from casestore.models import Conversation


class State(StrEnum):
    start = "start"  # never talked to us
    consent = "consent"  # privacy notice shown, waiting for 同意/不同意
    address = "address"  # picking community/estate/building/unit (data.addr holds the picks)
    idle = "idle"  # nothing pending
    clarify = "clarify"  # low-confidence understanding: waiting for the path choice
    report_where = "report_where"  # waiting for the location of a report
    report_what = "report_what"  # waiting for a more specific description
    report_photo = "report_photo"  # waiting for a photo or 跳过
    report_confirm = "report_confirm"  # waiting for 对 / 不对
    report_edit = "report_edit"  # 不对: waiting for the correction
    voice_confirm = "voice_confirm"  # a voice message read back: waiting for 对 / 不对 (data.voice)
    worker_note = "worker_note"  # worker: waiting for the note of a respond/resolve/transfer
    worker_photo = "worker_photo"  # worker: waiting for the resolve photo or 跳过
    wish_note = "wish_note"  # volunteer / party member: waiting for a 微心愿's progress note (data.wish_note)


def get_conversation(*, session: Session, channel: str, user_id: int, now: datetime) -> Conversation:
    """The person's conversation row, created in state `start` on first contact."""
    stmt = select(Conversation).where(col(Conversation.channel) == channel, col(Conversation.user_id) == user_id)
    conv = session.execute(stmt).scalars().first()
    if conv is None:
        conv = Conversation(channel=channel, user_id=user_id, state=State.start.value, data={}, updated_at=now)
        session.add(conv)
        session.flush()
    return conv


def update_conversation(*, session: Session, conv: Conversation, state: str, data: dict[str, Any],
                        now: datetime) -> Conversation:
    """Store the new state and data; the JSON column is replaced whole so the change is always seen."""
    conv.state = state
    conv.data = dict(data)
    conv.updated_at = now
    session.add(conv)
    session.flush()
    return conv
