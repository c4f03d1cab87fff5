"""The record of each policy question a resident asked: answered from the knowledge base, or not found.

Owns: `record_question`, one audit event per question (action `knowledge_question`) with its outcome, the answer
mode and the resident's grid, so `casestore.stats` can count answered questions and refusals per window and
scope. It stores no question text (the review queue keeps the misses, masked). Must not: know about channels,
the knowledge base or the LLM.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlmodel import Session

from casestore.audit import record_audit
from casestore.models import AuditEvent, Resident

QUESTION_ACTION = "knowledge_question"


class Outcome(StrEnum):
    answered = "answered"  # a cited answer was given
    not_found = "not_found"  # the knowledge base had no answer (a refusal)
    clarify = "clarify"  # candidates were offered instead of an answer


def record_question(*, session: Session, outcome: Outcome | str, resident_id: int | None, answer_mode: str,
                    now: datetime) -> AuditEvent:
    """Record that a question was answered, refused (not found) or met with a clarifying offer."""
    resident = session.get(Resident, resident_id) if resident_id is not None else None
    return record_audit(session=session, actor=f"resident:{resident_id}" if resident_id is not None else "anonymous",
                        action=QUESTION_ACTION, subject=f"resident:{resident_id}" if resident_id else "anonymous",
                        now=now, data={"outcome": Outcome(outcome).value, "mode": answer_mode[:30],
                                       "grid": resident.grid_id if resident is not None else None})
