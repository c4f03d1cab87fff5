"""Intake (受理 → 分派): turn a resident's report into a routed case with deadlines, audit and task push.

Owns: `Report` (what the dialogue hands over, already masked), `open_case`, and `assign_to`, the one place
that gives a case to a person (used again by transfers and reopens): assignee, deadlines on the SLA clock,
the first reminder cursor, the `assign` audit event with the routing reason, and the task push and cc
Notifications, all in the caller's transaction; and `relocate`, the place a resident gives after the case was
opened (routed again for the new grid; whoever was paged for the old place is told where it went, audited). A
complaint about staff (`Report.target == "staff"`) is never merged into another case and is routed away from
the resident's grid and the case's grid (routing.py).
Must not: know the channel, call an LLM, or send anything (Notification rows are the outbound queue).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from sqlmodel import Session, col, select

from casestore import notices
from casestore.audit import record_audit
from casestore.cases import apply_action, create_case, get_case, next_case_code
from casestore.clock import Clock
from casestore.deadlines import SlaPolicy
from casestore.dispatch import record_notification
from casestore.duplicates import Similarity, case_text, find_duplicate, merge_into
from casestore.errors import NotFound
from casestore.hotspots import check_hotspot
from casestore.models import Case, CaseCreate, CaseEvent, CaseStatus, Grid, Hotspot, Resident
from casestore.residents import community_for_estate
from casestore.routing import STAFF, Assignment, community_of, grid_worker_ids, kept_away, route
from casestore.sweep import first_reminder_at
from casestore.wishes import publish_wish
from policies.hygiene import clean_text
from policies.models import Policies
from policies.taxonomy import Intent

WISH = Intent.wish.value


@dataclass
class Report:
    """A resident's problem as understood by the dialogue. `description` is already masked."""

    intent: str
    category: str
    urgency: str
    title: str
    description: str
    location_text: str | None = None
    estate: str | None = None
    building: int | None = None
    unit: int | None = None
    attachments: list[dict[str, Any]] = field(default_factory=list)
    # whom a complaint is about ("staff": the community's own people) and the positions it names
    target: str | None = None
    target_roles: list[str] = field(default_factory=list)


@dataclass
class IntakeResult:
    case: Case
    duplicate_of: Case | None = None
    hotspot: Hotspot | None = None
    assignment: Assignment | None = None
    hotspot_raised: bool = False



def locate(*, session: Session, policies: Policies, resident: Resident | None,
           report: Report) -> tuple[str | None, str]:
    """(grid id or None, community id) from the report's address, else the resident's bound grid."""
    grid_id = None
    if report.estate and report.building is not None:
        grid_id = policies.grids.grid_for(report.estate, report.building)
    if grid_id is None and resident is not None:
        grid_id = resident.grid_id
    community_id = (community_of(session=session, grid_id=grid_id)
                    or (resident.community_id if resident is not None else None)
                    or (community_for_estate(policies.grids, report.estate) if report.estate else None)
                    or policies.grids.communities[0].id)
    return grid_id, community_id


def assign_to(*, session: Session, policies: Policies, sla: SlaPolicy, case: Case, assignment: Assignment,
              action: str, actor: str, now: datetime, restart_clock: bool = True, keep_resolve_due: bool = False,
              extra_changes: dict[str, Any] | None = None, note: str | None = None, push: str = "new") -> Case:
    """Give `case` to `assignment.worker` through `action` ("assign"/"transfer") and queue the task push."""
    worker = assignment.worker
    changes: dict[str, Any] = {"assignee_id": worker.id, "assignee_role": assignment.role,
                               "cc_roles": [role for role, _ in assignment.cc], **(extra_changes or {})}
    start = case.clock_started_at or now
    response_due, resolve_due = case.response_due_at, case.resolve_due_at
    if restart_clock:
        d = sla.deadlines(case.urgency, now)
        start, response_due = now, d.response_due_at
        resolve_due = case.resolve_due_at if keep_resolve_due and case.resolve_due_at else d.resolve_due_at
        changes.update(clock_started_at=start, response_due_at=response_due, resolve_due_at=resolve_due,
                       first_response_at=None, escalation_level=0)
    if response_due is not None:
        changes["next_reminder_at"] = first_reminder_at(sla, case.urgency, start, response_due, now)
    apply_action(session=session, case=case, action=action, actor=actor, now=now, note=note, changes=changes,
                 data={"assignee": worker.id, "role": assignment.role, "wanted": assignment.wanted_role,
                       "reason": assignment.reason, "cc": [w.id for _, w in assignment.cc]})
    resident = session.get(Resident, case.resident_id) if case.resident_id is not None else None
    message = notices.task_push(case, taxonomy=policies.taxonomy, reopened=push == "reopened",
                                transferred=push == "transferred", tz=sla.tz,
                                contact=resident.contact_masked if resident is not None else None,
                                reason=note if push == "transferred" else None)
    record_notification(session=session, case_id=case.id, kind="task", level=case.clock_cycle,
                        recipient=f"worker:{worker.id}", message=message, now=now)
    for role, cc_worker in assignment.cc:
        record_notification(session=session, case_id=case.id, kind="cc", level=case.clock_cycle,
                            recipient=f"worker:{cc_worker.id}",
                            message=notices.cc_copy(case, role, taxonomy=policies.taxonomy), now=now)
    return case


def open_case(*, session: Session, policies: Policies, sla: SlaPolicy, clock: Clock, resident: Resident | None,
              report: Report, similarity: Similarity | None = None) -> IntakeResult:
    """Create, route and schedule a case (or merge it into the open case it repeats) in the caller's transaction."""
    # stored text is shown on workers' screens and written to logs: no escape sequences, controls or bidi tricks
    report = replace(report, title=clean_text(report.title).strip(),
                     description=clean_text(report.description, multiline=True).strip(),
                     location_text=clean_text(report.location_text).strip() if report.location_text else None)
    now = clock.now()
    grid_id, community_id = locate(session=session, policies=policies, resident=resident, report=report)
    actor = f"resident:{resident.id}" if resident is not None else "system"
    code = next_case_code(session=session, local_day=now.astimezone(sla.tz).strftime("%Y%m%d"),
                          prefix=policies.grids.street.case_code_prefix)
    text = case_text(report.title, report.description)
    staff = report.target == STAFF
    # a complaint about a worker stands on its own: merged into another case it would reach that case's assignee
    # a wish is one resident's own: two residents who both want a wheelchair are two wishes
    match = None if staff or report.intent == WISH else find_duplicate(
        session=session, grid_id=grid_id, category=report.category, text=text, now=now, similarity=similarity)
    case_in = CaseCreate(intent=report.intent, category=report.category, urgency=report.urgency,
                         title=report.title[:200], description=report.description[:4000],
                         location_text=(report.location_text or None) and report.location_text[:300],  # type: ignore[index]
                         resident_id=resident.id if resident is not None else None, grid_id=grid_id,
                         attachments=list(report.attachments))
    case = create_case(session=session, case_in=case_in, code=code, now=now, actor=actor,
                       extra={"community_id": community_id, "needs_address_confirmation": grid_id is None,
                              "complaint_target": report.target if report.intent == "complaint" else None,
                              "complaint_roles": list(report.target_roles) if staff else []})
    if match is not None:
        original, score = match
        merge_into(session=session, new_case=case, original=original, score=score, actor="system", now=now)
        hotspot, raised = check_hotspot(session=session, policies=policies, case=case, now=now)
        return IntakeResult(case=case, duplicate_of=original, hotspot=hotspot, hotspot_raised=raised)
    # a staff complaint skips the resident's own grid too, when the problem's address is another grid
    own_grid = grid_worker_ids(session=session, grid_ids=[resident.grid_id]) if staff and resident else frozenset()
    assignment = route(session=session, policies=policies, intent=case.intent, category=case.category,
                       urgency=case.urgency, grid_id=grid_id, community_id=community_id,
                       exclude_worker_ids=own_grid, target=report.target, target_roles=report.target_roles, now=now)
    assign_to(session=session, policies=policies, sla=sla, case=case, assignment=assignment, action="assign",
              actor="system", now=now, note=assignment.reason)
    if case.intent == WISH:  # the 微心愿 wall: volunteers and party members see and claim it
        publish_wish(session=session, policies=policies, case=case, now=now, estate=report.estate)
    hotspot, raised = check_hotspot(session=session, policies=policies, case=case, now=now)
    return IntakeResult(case=case, hotspot=hotspot, assignment=assignment, hotspot_raised=raised)


def relocate(*, session: Session, policies: Policies, sla: SlaPolicy, clock: Clock, resident_id: int, code: str,
             location_text: str, estate: str | None = None, building: int | None = None, unit: int | None = None,
             attachment: dict[str, Any] | None = None) -> Case:
    """The resident tells the place of their own open case after it was opened (an emergency filed before any
    address): the place, grid and community change with a `note` event (data `relocated`), and a case whose grid
    changes is routed again for the new grid (task push and copies), keeping its deadlines."""
    case = get_case(session=session, code=code, for_update=True)
    if case.resident_id != resident_id:
        raise NotFound(f"case {code} not found for resident {resident_id}")
    now = clock.now()
    grid_id = policies.grids.grid_for(estate, building) if estate and building is not None else None
    community_id = (community_of(session=session, grid_id=grid_id)
                    or (community_for_estate(policies.grids, estate) if estate else None))
    changes: dict[str, Any] = {"location_text": clean_text(location_text).strip()[:300] or case.location_text}
    if attachment is not None:
        changes["attachments"] = [*case.attachments, attachment]
    moved = grid_id is not None and grid_id != case.grid_id
    if moved:
        changes.update(grid_id=grid_id, community_id=community_id, needs_address_confirmation=False)
    elif community_id is not None and case.grid_id is None:
        changes["community_id"] = community_id
    paged = _paged(session, case)  # who was paged for the old place: told below if the case leaves them
    from_grid = case.grid_id
    apply_action(session=session, case=case, action="note", actor=f"resident:{resident_id}", now=now,
                 note=f"居民补充地点：{changes['location_text']}", changes=changes,
                 data={"relocated": True, "grid": case.grid_id})
    if moved and case.status in (CaseStatus.assigned, CaseStatus.accepted, CaseStatus.in_progress,
                                 CaseStatus.reopened):
        routed = route(session=session, policies=policies, intent=case.intent, category=case.category,
                       urgency=case.urgency, grid_id=case.grid_id, community_id=case.community_id,
                       target=case.complaint_target, target_roles=case.complaint_roles or [],
                       exclude_worker_ids=kept_away(session=session, case=case), now=now)
        if routed.worker.id != case.assignee_id or routed.cc:
            assign_to(session=session, policies=policies, sla=sla, case=case, assignment=routed, action="transfer",
                      actor="system", now=now, restart_clock=False, note="居民补充了地点，按新地点重新分派",
                      push="transferred")
            _tell_moved(session=session, case=case, told=[w for w in paged if w != routed.worker.id],
                        handler=routed, from_grid=from_grid, now=now)
    return case


def _paged(session: Session, case: Case) -> list[int]:
    """The assignee and the copied workers of the case's latest assignment (its assign/transfer event)."""
    event = session.exec(select(CaseEvent).where(col(CaseEvent.case_id) == case.id,
                                                 col(CaseEvent.action).in_(("assign", "transfer")))
                         .order_by(col(CaseEvent.id).desc()).limit(1)).first()
    data = event.data or {} if event is not None else {}
    ids = [data.get("assignee"), *(data.get("cc") or [])]
    return list(dict.fromkeys(i for i in ids if isinstance(i, int)))


def _tell_moved(*, session: Session, case: Case, told: list[int], handler: Assignment, from_grid: str | None,
                now: datetime) -> None:
    """Those paged for the old place (a duty desk, the street command centre) hear that the case moved, where
    and to whom, so that nobody sets out for the wrong place; one `relocate_notice` audit event names them."""
    if not told:
        return
    level = sum(1 for e in session.exec(select(CaseEvent).where(col(CaseEvent.case_id) == case.id,
                                                                col(CaseEvent.action) == "note"))
                if (e.data or {}).get("relocated"))
    grid = session.get(Grid, case.grid_id) if case.grid_id else None
    message = notices.moved_away(case, grid=grid.name if grid else None, handler=notices.role_name(handler.role))
    for worker_id in told:
        record_notification(session=session, case_id=case.id, kind="moved", level=level,
                            recipient=f"worker:{worker_id}", message=message, now=now)
    record_audit(session=session, actor="system", action="relocate_notice", subject=f"case:{case.code}", now=now,
                 data={"told": told, "from_grid": from_grid, "to_grid": case.grid_id, "assignee": handler.worker.id})
