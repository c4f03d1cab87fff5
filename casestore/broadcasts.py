"""Notices from staff to the residents of a grid: one Notification per consenting resident, audited.

Must not: send anything (the dispatcher does) or hold raw personal data in the text (callers mask it).
"""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Session, col, select

from casestore.audit import record_audit
from casestore.dispatch import record_notification
from casestore.models import Resident
from casestore.notify import OutboundMessage


def broadcast_to_grid(*, session: Session, grid_id: str, message: OutboundMessage, actor: str, now: datetime) -> int:
    """Queue `message` once for every resident of `grid_id` who consented; returns how many were queued."""
    stmt = select(col(Resident.id)).where(col(Resident.grid_id) == grid_id, col(Resident.consent_at).is_not(None))
    level = int(now.timestamp())  # one broadcast: (kind, level, recipient) unique
    queued = sum(1 for resident_id in session.exec(stmt)
                 if record_notification(session=session, case_id=None, kind="broadcast", level=level,
                                        recipient=f"resident:{resident_id}", message=message, now=now))
    record_audit(session=session, actor=actor, action="broadcast", subject=f"grid:{grid_id}", now=now,
                 data={"recipients": queued, "chars": len(message.text)})
    return queued
