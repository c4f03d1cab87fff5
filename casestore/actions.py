"""Worker actions on a case (处置): accept, first response, in progress, resolve, transfer, extensions.

Every action first checks `permissions.require(action, case, actor)` (scope and state, one rule for the
dialogue, the console and the tests) and then changes the case only through `cases.apply_action` (state
machine + audit event + version guard), in the caller's transaction, together with any Notification it
causes. The case row is
read FOR UPDATE so that a worker's tap waits for a running sweep instead of failing on the version guard.
The resident hears every step (accepted, contacted, an approved extension with its time and reason, a transfer
by position, the resolution with the worker's note and photo) as a Notification in the same transaction
(`notices.PROGRESS`, `notices.rating_request`). `list_pending_extensions` is a supervisor's approval queue.
Above the assignee (a supervisor, or the console's admin `Actor`): `close` with a note, `merge_duplicate`
into an open original, `reopen` with a reason (routed back like a resident's 没解决).
Must not: know the channel; the handlers parse buttons and call these functions.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlmodel import Session, col, select

from casestore import notices
from casestore.cases import apply_action, get_case
from casestore.clock import Clock
from casestore.deadlines import SlaPolicy
from casestore.dispatch import record_notification
from casestore.duplicates import BigramSimilarity, case_text, merge_into
from casestore.errors import DomainError, IllegalTransition
from casestore.feedback import request_rating
from casestore.intake import assign_to
from casestore.models import Case, CaseEvent, CaseStatus, Worker
from casestore.permissions import Actor, can, require
from casestore.relay import position_label
from casestore.routing import (
    STAFF_GRID_POSITIONS,
    Assignment,
    find_holder,
    is_available,
    kept_away,
    route,
    supervisor_for,
)
from casestore.states import OPEN
from casestore.sweep import first_reminder_at, next_point
from policies.masking import mask_text
from policies.models import Policies

_EXTENDABLE = frozenset({CaseStatus.assigned, CaseStatus.accepted, CaseStatus.in_progress})
CLOSED_BY_STAFF = "closed_by_staff"  # Case.close_reason of `close`
NOTE_MAX = 2000
_KEPT_AWAY = "这是投诉本网格或社区工作人员的工单，不能转给被投诉的人员或本网格人员，请转给网格长或街道指挥中心。"


def _load(session: Session, code: str) -> Case:
    return get_case(session=session, code=code.strip().upper(), for_update=True)


def _tell_resident(session: Session, case: Case, step: str, now: datetime, *, until: datetime | None = None,
                   reason: str | None = None, original: str | None = None, sla: SlaPolicy | None = None) -> None:
    """Queue the resident's progress push for `step` (once per change: keyed by the case's version)."""
    if case.resident_id is None:
        return
    handler = position_label(session=session, role=case.assignee_role, grid_id=case.grid_id)
    message = notices.progress(case, step, handler=handler, until=until, reason=reason, original=original,
                               **({"tz": sla.tz} if sla is not None else {}))
    record_notification(session=session, case_id=case.id, kind=f"progress_{step}", level=case.version,
                        recipient=f"resident:{case.resident_id}", now=now, message=message)


def accept(*, session: Session, code: str, actor: Actor, clock: Clock) -> Case:
    """接单."""
    now = clock.now()
    case = _load(session, code)
    require("accept", case, actor)
    apply_action(session=session, case=case, action="accept", actor=actor.label, now=now)
    _tell_resident(session, case, "accepted", now)
    return case


def _first_response_changes(case: Case, sla: SlaPolicy, now: datetime) -> dict[str, object]:
    """Set the first response and move the cursor to the resolution window (its own ladder from level 0)."""
    if case.first_response_at is not None:
        return {}
    start = case.clock_started_at or case.created_at
    due = case.resolve_due_at or now
    return {"first_response_at": now, "escalation_level": 0,
            "next_reminder_at": first_reminder_at(sla, case.urgency, start, due, now)}


def respond(*, session: Session, sla: SlaPolicy, code: str, actor: Actor, clock: Clock, note: str) -> Case:
    """已联系: the first contact with the resident, which meets (or misses) the response promise."""
    now = clock.now()
    case = _load(session, code)
    require("respond", case, actor)
    apply_action(session=session, case=case, action="respond", actor=actor.label, now=now, note=note,
                 changes=_first_response_changes(case, sla, now))
    _tell_resident(session, case, "contacted", now, sla=sla)
    return case


def resolve(*, session: Session, sla: SlaPolicy, code: str, actor: Actor, clock: Clock, note: str,
            photo: str | None = None) -> Case:
    """办结 with a note and an optional photo; asks the resident to confirm and rate."""
    now = clock.now()
    case = _load(session, code)
    require("resolve", case, actor)
    if case.status == CaseStatus.assigned:  # 办结 straight from the task push: it was accepted implicitly
        apply_action(session=session, case=case, action="accept", actor=actor.label, now=now, note="办结时自动接单")
    changes: dict[str, object] = {"resolved_at": now,
                                  "next_reminder_at": now + sla.sla.resident_feedback.auto_close_delta}
    if case.first_response_at is None:
        changes["first_response_at"] = now
    if photo:
        changes["attachments"] = [*case.attachments, {"type": "photo", "file_id": photo, "by": actor.label}]
    apply_action(session=session, case=case, action="resolve", actor=actor.label, now=now, note=note,
                 changes=changes, data={"photo": photo} if photo else None)
    request_rating(session=session, case=case, now=now, photo=photo, note=note)
    return case


def transfer(*, session: Session, policies: Policies, sla: SlaPolicy, code: str, actor: Actor, clock: Clock,
             reason: str, to_worker_id: int | None = None, to_role: str | None = None) -> Case:
    """转派 to a named worker or a role in the case's grid; restarts the response clock."""
    if not reason.strip():
        raise DomainError("transfer needs a reason", "请说明转派原因。")
    now = clock.now()
    case = _load(session, code)
    require("transfer", case, actor)
    away = kept_away(session=session, case=case)  # a complaint about staff never reaches the ones it is about
    if to_worker_id is not None:
        target = session.get(Worker, to_worker_id)
        if target is None or not is_available(target):
            raise DomainError(f"worker {to_worker_id} cannot take cases", "该人员当前不能接单，请选择其他人员。")
        if target.id in away:
            raise DomainError(f"staff complaint {case.code} kept away from worker {to_worker_id}", _KEPT_AWAY)
        assignment = Assignment(worker=target, role=target.role, wanted_role=target.role,
                                reason=f"transfer by {actor.label}: {reason}")
    else:
        wanted = to_role or policies.routing.default.role
        holder = find_holder(session=session, role=wanted, grid_id=case.grid_id, community_id=case.community_id)
        if away and (wanted in STAFF_GRID_POSITIONS or (holder is not None and holder.id in away)):
            raise DomainError(f"staff complaint {case.code} kept away from {wanted}", _KEPT_AWAY)
        routed = route(session=session, policies=policies, intent=case.intent, category=case.category,
                       urgency=case.urgency, grid_id=case.grid_id, community_id=case.community_id,
                       role=wanted,
                       exclude_worker_ids=(frozenset({case.assignee_id}) if case.assignee_id else frozenset()) | away)
        assignment = Assignment(worker=routed.worker, role=routed.role, wanted_role=routed.wanted_role,
                                reason=f"transfer by {actor.label}: {reason}; {routed.reason}", cc=routed.cc)
    if assignment.worker.id == case.assignee_id:
        raise DomainError("transfer to the current assignee", "工单已经在该人员手中。")
    assign_to(session=session, policies=policies, sla=sla, case=case, assignment=assignment,
              action="transfer", actor=actor.label, now=now, keep_resolve_due=True, note=reason,
              extra_changes={"clock_cycle": case.clock_cycle + 1}, push="transferred")
    _tell_resident(session, case, "transferred", now)
    return case


def _extension_events(session: Session, case: Case) -> list[CaseEvent]:
    stmt = (select(CaseEvent).where(col(CaseEvent.case_id) == case.id,
                                    col(CaseEvent.action).in_(["request_extension", "approve_extension", "note"]))
            .order_by(col(CaseEvent.at), col(CaseEvent.id)))
    return [e for e in session.exec(stmt)
            if e.action != "note" or e.data.get("extension") == "denied"]


def request_extension(*, session: Session, sla: SlaPolicy, code: str, actor: Actor, clock: Clock, until: datetime,
                      reason: str) -> Case:
    """申请延期: asks the community supervisor to move the resolution deadline to `until`."""
    now = clock.now()
    case = _load(session, code)
    require("request_extension", case, actor)
    if case.resolve_due_at is not None and until <= case.resolve_due_at:
        raise DomainError("extension must move the deadline later", "延期后的时间必须晚于当前办结时限。")
    n = sum(1 for e in _extension_events(session, case) if e.action == "request_extension")
    apply_action(session=session, case=case, action="request_extension", actor=actor.label, now=now, note=reason,
                 data={"until": until.isoformat(), "n": n})
    supervisor = supervisor_for(session=session, community_id=case.community_id)
    requester = actor.worker or (session.get(Worker, case.assignee_id) if case.assignee_id else None)
    if supervisor is not None and requester is not None:
        record_notification(session=session, case_id=case.id, kind="extension_request", level=n,
                            recipient=f"worker:{supervisor.id}", now=now,
                            message=notices.extension_request(case, worker=requester, until=until, reason=reason,
                                                              tz=sla.tz))
    return case


def decide_extension(*, session: Session, sla: SlaPolicy, code: str, actor: Actor, clock: Clock,
                     approve: bool) -> Case:
    """The supervisor (or an admin) approves or denies the pending extension request."""
    now = clock.now()
    case = _load(session, code)
    require("approve_extension" if approve else "deny_extension", case, actor)
    events = _extension_events(session, case)
    if not events or events[-1].action != "request_extension":
        raise IllegalTransition(f"case {case.code} has no pending extension request", "这个工单没有待审批的延期申请。")
    request = events[-1]
    n = int(request.data.get("n", 0))
    if approve:
        until = datetime.fromisoformat(request.data["until"])
        changes: dict[str, object] = {"resolve_due_at": until}
        if case.first_response_at is not None:  # in the resolution phase: its reminders and ladder restart
            probe = case.model_copy(update={"resolve_due_at": until, "escalation_level": 0})
            changes.update(escalation_level=0, next_reminder_at=next_point(probe, sla, now))
        apply_action(session=session, case=case, action="approve_extension", actor=actor.label, now=now,
                     changes=changes, data={"until": request.data["until"], "n": n})
        _tell_resident(session, case, "extended", now, until=until, reason=request.note, sla=sla)
    else:
        apply_action(session=session, case=case, action="note", actor=actor.label, now=now, note="延期申请未获批准",
                     data={"extension": "denied", "n": n})
    assignee = session.get(Worker, case.assignee_id) if case.assignee_id else None
    if assignee is not None:
        record_notification(session=session, case_id=case.id, kind="extension_decision", level=n,
                            recipient=f"worker:{assignee.id}", now=now,
                            message=notices.extension_decided(case, approved=approve, tz=sla.tz))
    return case


@dataclass(frozen=True)
class PendingExtension:
    """An extension request waiting for a decision: the case and what was asked."""

    case: Case
    until: datetime
    reason: str
    requested_by: str  # the requester's audit label ("worker:7")


def list_pending_extensions(*, session: Session, actor: Actor, limit: int = 20) -> list[PendingExtension]:
    """Extension requests `actor` may decide now (`can("approve_extension")`), oldest first."""
    if actor.worker is None and not actor.is_admin:
        return []
    requested = select(col(CaseEvent.case_id)).where(col(CaseEvent.action) == "request_extension")
    stmt = select(Case).where(col(Case.id).in_(requested),  # not DISTINCT: PostgreSQL cannot compare JSON columns
                              col(Case.status).in_([CaseStatus.assigned.value, CaseStatus.accepted.value,
                                                    CaseStatus.in_progress.value]))
    if not actor.is_admin and actor.worker is not None and actor.worker.role != "street_command":
        stmt = stmt.where(col(Case.community_id) == actor.worker.community_id)
    pending: list[PendingExtension] = []
    for case in session.exec(stmt):
        events = _extension_events(session, case)
        if not events or events[-1].action != "request_extension" or not can("approve_extension", case, actor):
            continue
        request = events[-1]
        pending.append(PendingExtension(case=case, until=datetime.fromisoformat(request.data["until"]),
                                        reason=request.note or "", requested_by=request.actor))
    pending.sort(key=lambda p: (p.case.resolve_due_at or p.until, p.case.code))
    return pending[:limit]


def approve_extension(*, session: Session, sla: SlaPolicy, code: str, actor: Actor, clock: Clock) -> Case:
    """Approve the pending extension: resolve_due_at moves to the requested time."""
    return decide_extension(session=session, sla=sla, code=code, actor=actor, clock=clock, approve=True)


def view(*, session: Session, code: str, actor: Actor) -> Case:
    """A case to show, if `actor` may see it (NotFound for a code that does not exist)."""
    case = get_case(session=session, code=code.strip().upper())
    require("view", case, actor)
    return case


def pending_extension(*, session: Session, case: Case) -> PendingExtension | None:
    """The extension request of `case` still waiting for a decision, if any (what the worker asked and why)."""
    if CaseStatus(case.status) not in _EXTENDABLE:
        return None
    events = _extension_events(session, case)
    if not events or events[-1].action != "request_extension":
        return None
    request = events[-1]
    return PendingExtension(case=case, until=datetime.fromisoformat(request.data["until"]),
                            reason=request.note or "", requested_by=request.actor)


def close(*, session: Session, code: str, actor: Actor, clock: Clock, note: str) -> Case:
    """结案 from above the assignee with a note: an open or resolved case closes now (a resolution time is set
    if it had none, so the on-time resolution figure still sees a late case)."""
    note = note.strip()
    if not note:
        raise DomainError("close needs a note", "请填写结案说明。")
    now = clock.now()
    case = _load(session, code)
    require("close", case, actor)
    changes: dict[str, object] = {"closed_at": now, "close_reason": CLOSED_BY_STAFF, "next_reminder_at": None}
    if case.resolved_at is None:
        changes["resolved_at"] = now
    apply_action(session=session, case=case, action="close", actor=actor.label, now=now, note=note[:NOTE_MAX],
                 changes=changes)
    _tell_resident(session, case, "closed", now, reason=mask_text(note[:NOTE_MAX]))  # staff notes may hold numbers
    return case


def merge_duplicate(*, session: Session, code: str, into: str, actor: Actor, clock: Clock) -> Case:
    """合并重复: close the open case `code` as a duplicate of the open case `into` (its reporter follows the
    original); both must be within the actor's reach."""
    now = clock.now()
    case = _load(session, code)
    original = _load(session, into)
    if case.id == original.id:
        raise DomainError("merge into itself", "不能把工单合并到它自己。")
    require("merge_duplicate", case, actor)
    require("view", original, actor)
    if CaseStatus(original.status) not in OPEN or original.duplicate_of_id is not None:
        raise IllegalTransition(f"merge target {original.code} is not an open original",
                                "目标工单已办结或本身是重复工单，请选择一个在办的原工单。")
    score = BigramSimilarity().similarity(case_text(case.title, case.description),
                                          case_text(original.title, original.description))
    merge_into(session=session, new_case=case, original=original, score=score, actor=actor.label, now=now)
    _tell_resident(session, case, "merged", now, original=original.code)
    return case


def reopen(*, session: Session, policies: Policies, sla: SlaPolicy, code: str, actor: Actor, clock: Clock,
           reason: str) -> Case:
    """重新办理 from above the assignee: a resolved or closed case is reopened with a fresh clock and routed back
    (the same assignee if still available), as a resident's 没解决 does (casestore.feedback.rate)."""
    reason = reason.strip()
    if not reason:
        raise DomainError("reopen needs a reason", "请说明重新办理的原因。")
    now = clock.now()
    case = _load(session, code)
    require("reopen", case, actor)
    if case.duplicate_of_id is not None:
        original = session.get(Case, case.duplicate_of_id)
        raise IllegalTransition(f"case {case.code} was merged", "这是已合并的重复工单，请重新办理原工单 "
                                f"{original.code if original else ''}。")
    apply_action(session=session, case=case, action="reopen", actor=actor.label, now=now, note=reason[:NOTE_MAX],
                 changes={"reopen_count": case.reopen_count + 1, "clock_cycle": case.clock_cycle + 1,
                          "resolved_at": None, "closed_at": None, "close_reason": None, "next_reminder_at": None},
                 data={"by": "staff"})
    previous = session.get(Worker, case.assignee_id) if case.assignee_id is not None else None
    away = kept_away(session=session, case=case)
    if previous is not None and is_available(previous) and previous.id not in away:
        assignment = Assignment(worker=previous, role=case.assignee_role or previous.role,
                                wanted_role=case.assignee_role or previous.role, reason="reopened: same assignee")
    else:
        routed = route(session=session, policies=policies, intent=case.intent, category=case.category,
                       urgency=case.urgency, grid_id=case.grid_id, community_id=case.community_id,
                       target=case.complaint_target, target_roles=case.complaint_roles or [], exclude_worker_ids=away,
                       now=now)
        assignment = Assignment(worker=routed.worker, role=routed.role, wanted_role=routed.wanted_role,
                                reason="reopened; previous assignee unavailable; " + routed.reason, cc=routed.cc)
    return assign_to(session=session, policies=policies, sla=sla, case=case, assignment=assignment,
                     action="assign", actor="system", now=now, note=assignment.reason, push="reopened")
