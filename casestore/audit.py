"""The audit trail of changes that are not a case's own (accounts, staff, contact phones, answer feedback).

A case's changes are audited by `cases.apply_action` as CaseEvents; everything else a person or the system
changes writes one `AuditEvent` here, in the caller's transaction. Must not: hold raw personal data (callers
pass masked values or ids).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlmodel import Session, col, select

from casestore.models import AuditEvent


def record_audit(*, session: Session, actor: str, action: str, subject: str, now: datetime,
                 data: dict[str, Any] | None = None) -> AuditEvent:
    event = AuditEvent(at=now, actor=actor, action=action, subject=subject, data=dict(data or {}))
    session.add(event)
    session.flush()
    return event


def list_audit(*, session: Session, subject: str | None = None, action: str | None = None) -> list[AuditEvent]:
    stmt = select(AuditEvent)
    if subject is not None:
        stmt = stmt.where(col(AuditEvent.subject) == subject)
    if action is not None:
        stmt = stmt.where(col(AuditEvent.action) == action)
    return list(session.exec(stmt.order_by(col(AuditEvent.at), col(AuditEvent.id))))
