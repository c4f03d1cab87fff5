"""The resident loop (反馈 → 评价): rating requests, confirm or reopen, and a resident's view of their cases.

After a resolution the resident is asked "已解决 / ⭐1..5 / 没解决". "Not fixed" or a rating at or below
`resident_feedback.reopen_at_or_below` reopens the case, routes it back (the same assignee if still
available) and restarts the clock; a higher rating closes it as `rated`. No answer: the sweep auto-closes it
(`auto_closed_without_rating`, not counted as satisfied).
A resident's later words about their own open case join it as a `note` (`add_resident_note`).
Also: the resident's 有用/没用 on a knowledge answer (`create_answer_feedback`), audited like every change.
Must not: reveal another resident's case (NotFound, exactly as for a code that does not exist).
"""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Session, col, select

from casestore import notices
from casestore.audit import record_audit
from casestore.cases import apply_action
from casestore.clock import Clock
from casestore.deadlines import SlaPolicy
from casestore.dispatch import record_notification
from casestore.duplicates import list_subscribers
from casestore.errors import IllegalTransition, NotFound
from casestore.intake import assign_to
from casestore.models import Case, CaseEvent, CaseStatus, CloseReason, Feedback, Worker
from casestore.notify import Button, OutboundMessage
from casestore.routing import Assignment, is_available, kept_away, route
from policies.models import Policies


def request_rating(*, session: Session, case: Case, now: datetime, photo: str | None = None,
                   note: str | None = None) -> None:
    """Queue the rating request to the reporter (with the worker's note and photo) and an update to residents
    who follow the case."""
    assert case.id is not None
    if case.resident_id is not None:
        msg = notices.rating_request(case, note=note, photo=photo)
        record_notification(session=session, case_id=case.id, kind="rating_request", level=case.reopen_count,
                            recipient=f"resident:{case.resident_id}", message=msg, now=now)
    merged = {c.resident_id: c for c in session.exec(select(Case).where(col(Case.duplicate_of_id) == case.id))}
    for resident_id in list_subscribers(session=session, case_id=case.id):
        own = merged.get(resident_id)
        if own is None:  # a follower must hear of their own report only; without one there is nothing to say
            continue
        record_notification(session=session, case_id=case.id, kind="subscriber_update", level=case.reopen_count,
                            recipient=f"resident:{resident_id}", message=notices.subscriber_update(own), now=now)


def get_case_for_resident(*, session: Session, resident_id: int, code: str) -> Case:
    """The resident's own case by code; NotFound for anyone else's (its existence is not revealed)."""
    case = session.exec(select(Case).where(Case.code == code.strip().upper())).first()
    if case is None or case.resident_id != resident_id:
        raise NotFound(f"case {code} not found for resident {resident_id}")
    return case


def rate(*, session: Session, policies: Policies, sla: SlaPolicy, clock: Clock, resident_id: int, code: str,
         fixed: bool, rating: int | None = None) -> Case:
    """Record the resident's answer: close as rated, or reopen and route back with a fresh clock."""
    if rating is not None and not 1 <= rating <= 5:
        raise ValueError("rating must be 1..5")
    now = clock.now()
    case = get_case_for_resident(session=session, resident_id=resident_id, code=code)
    if case.status != CaseStatus.resolved:
        raise IllegalTransition(f"case {case.code} is {case.status}, not waiting for a rating",
                                "这个工单现在不需要评价，谢谢您。")
    actor = f"resident:{resident_id}"
    threshold = policies.sla.resident_feedback.reopen_at_or_below
    if fixed and (rating is None or rating > threshold):
        return apply_action(session=session, case=case, action="confirm", actor=actor, now=now,
                            changes={"satisfaction": rating, "close_reason": CloseReason.rated.value,
                                     "closed_at": now, "next_reminder_at": None},
                            data={"rating": rating, "fixed": True})
    apply_action(session=session, case=case, action="reopen", actor=actor, now=now,
                 note="居民反馈没解决" if not fixed else f"居民评分 {rating} 分，重新办理",
                 changes={"satisfaction": rating, "reopen_count": case.reopen_count + 1,
                          "clock_cycle": case.clock_cycle + 1, "resolved_at": None, "closed_at": None,
                          "close_reason": None, "next_reminder_at": None},
                 data={"rating": rating, "fixed": fixed})
    previous = session.get(Worker, case.assignee_id) if case.assignee_id is not None else None
    if previous is not None and is_available(previous):
        assignment = Assignment(worker=previous, role=case.assignee_role or previous.role,
                                wanted_role=case.assignee_role or previous.role, reason="reopened: same assignee")
    else:
        assignment = route(session=session, policies=policies, intent=case.intent, category=case.category,
                           urgency=case.urgency, grid_id=case.grid_id, community_id=case.community_id,
                           target=case.complaint_target, target_roles=case.complaint_roles or [],
                           exclude_worker_ids=kept_away(session=session, case=case), now=now)
        assignment = Assignment(worker=assignment.worker, role=assignment.role, wanted_role=assignment.wanted_role,
                                reason="reopened; previous assignee unavailable; " + assignment.reason,
                                cc=assignment.cc)
    return assign_to(session=session, policies=policies, sla=sla, case=case, assignment=assignment,
                     action="assign", actor="system", now=now, note=assignment.reason, push="reopened")


def add_resident_note(*, session: Session, resident_id: int, code: str, note: str, now: datetime,
                      data: dict[str, object] | None = None, tell_assignee: bool = False) -> Case:
    """The resident's own words (masked) added to their own open or resolved case, with its audit event;
    `tell_assignee`: the worker who handles it gets them too (补充 typed by the resident, not a reopen's reason,
    which comes with the 退回 push)."""
    case = get_case_for_resident(session=session, resident_id=resident_id, code=code)
    told = 0
    if tell_assignee:
        events = session.exec(select(CaseEvent).where(col(CaseEvent.case_id) == case.id,
                                                      col(CaseEvent.action) == "note")).all()
        told = sum(1 for e in events if (e.data or {}).get("told"))
    extra: dict[str, object] = {"told": True} if tell_assignee else {}
    case = apply_action(session=session, case=case, action="note", actor=f"resident:{resident_id}", now=now,
                        note=note[:2000], data={"by": "resident", **(data or {}), **extra})
    if tell_assignee and case.assignee_id is not None:
        record_notification(session=session, case_id=case.id, kind="resident_note", level=told + 1,
                            recipient=f"worker:{case.assignee_id}", message=_note_push(case, note), now=now)
    return case


def _note_push(case: Case, words: str) -> OutboundMessage:
    """The resident's added words (masked) to the worker who handles the case, with the way to answer them."""
    return OutboundMessage(text=f"📝 居民补充（工单 {case.code}「{case.title}」）：{words[:500]}",
                           buttons=[[Button("回复居民", "relay", case.code)]])


def create_answer_feedback(*, session: Session, resident_id: int | None, question: str, useful: bool,
                           now: datetime) -> Feedback:
    """Store a 有用/没用 on a knowledge answer (the question already masked) with its audit event."""
    row = Feedback(resident_id=resident_id, question=question[:500], useful=useful, at=now)
    session.add(row)
    session.flush()
    record_audit(session=session, actor=f"resident:{resident_id}" if resident_id else "anonymous",
                 action="answer_feedback", subject=f"feedback:{row.id}", now=now, data={"useful": useful})
    return row
