"""Relayed messages between the worker who handles a case and its resident, like a ride-hailing virtual number.

Owns: a worker's words to the resident and the resident's answer, each a `note` CaseEvent (data `relay`, the words
masked) with the Notification that carries it, in the caller's transaction; whether a relay is open for a
resident (`open_relay`: the bot's last word on one of their cases, less than `RELAY_WINDOW` ago and not answered
yet); the call-back phone asked for only on the worker's request, kept in one place (the resident's row, via
`casestore.residents.update_contact_phone`) and shown only to the case's assignee (`reveal_phone`, audited).
Relay events: "to_resident", "ask_phone", "reply_opened" (the resident pressed 回复网格员) open a relay;
"to_worker" and "phone_given" answer it.
Must not: put a phone number into a relayed message, an event or a Notification row (words are masked here, and
the given number is only named, masked), or know any channel.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlmodel import Session, col, select

from casestore import notices
from casestore.audit import record_audit
from casestore.cases import apply_action, get_case
from casestore.clock import as_utc
from casestore.dispatch import record_notification
from casestore.errors import DomainError, IllegalTransition, NotFound, PermissionDenied
from casestore.models import Case, CaseEvent, CaseStatus, Grid, Resident, Worker
from casestore.permissions import Actor, require
from casestore.residents import update_contact_phone
from casestore.routing import STAFF_GRID_POSITIONS
from policies.masking import mask_text

RELAY_WINDOW = timedelta(hours=24)  # a relay waits this long for the resident's answer, then closes
# this soon after the worker's words, whatever the resident writes next is taken for an answer unless it plainly
# is something new (a new report or a question: the dialogue decides, bot.dialogue.relay_reply); later only a
# plain reply (a thank-you, "明天不在家") or a text after 回复网格员 was pressed
REPLY_WINDOW = timedelta(minutes=30)
WORDS_MAX = 500
OPENING = frozenset({"to_resident", "ask_phone", "reply_opened"})
_LIVE = (CaseStatus.assigned, CaseStatus.accepted, CaseStatus.in_progress, CaseStatus.reopened, CaseStatus.resolved)


@dataclass(frozen=True)
class OpenRelay:
    """A relay waiting for the resident's answer: their case, whether a call-back phone was asked for, what
    opened it ("to_resident", "ask_phone", or "reply_opened": the resident pressed 回复网格员) and when."""

    code: str
    wants_phone: bool
    kind: str = "to_resident"
    at: datetime | None = None
    category: str = "other"  # the case's, so that more words about the same problem count as an answer
    title: str = ""

    @property
    def explicit(self) -> bool:
        """The resident said they are answering (pressed 回复网格员)."""
        return self.kind == "reply_opened"

    def fresh(self, now: datetime) -> bool:
        """The worker's words are recent enough that the next text is most likely the answer."""
        return self.at is not None and now - as_utc(self.at) <= REPLY_WINDOW


def position_label(*, session: Session, role: str | None, grid_id: str | None) -> str:
    """"芙蓉社区第一网格专职网格员" for a grid's own positions, "物业项目经理" for the others: never a name."""
    grid = session.get(Grid, grid_id) if grid_id and role in STAFF_GRID_POSITIONS else None
    return f"{grid.name}{notices.role_name(role)}" if grid else notices.role_name(role) or "网格工作人员"


def sender_label(*, session: Session, worker: Worker | None) -> str:
    """How the resident sees who wrote: "网格员（芙蓉社区第一网格）", or the position above the grid."""
    if worker is None:
        return "网格工作人员"
    grid = session.get(Grid, worker.grid_id) if worker.grid_id else None
    return f"网格员（{grid.name}）" if grid else notices.role_name(worker.role) or "网格工作人员"


def _words(text: str) -> str:
    return mask_text(text.strip())[:WORDS_MAX]


def _count(session: Session, case: Case) -> int:
    rows = session.exec(select(CaseEvent).where(col(CaseEvent.case_id) == case.id, col(CaseEvent.action) == "note"))
    return sum(1 for e in rows if "relay" in (e.data or {}))


def _staff_case(session: Session, code: str, actor: Actor) -> Case:
    case = get_case(session=session, code=code.strip().upper(), for_update=True)
    require("note", case, actor)  # the assignee, the community's supervisor, the street command centre, an admin
    if case.resident_id is None:
        raise DomainError(f"case {case.code} has no resident to reach", "这个工单没有登记居民，无法联系。")
    return case


def send_to_resident(*, session: Session, code: str, actor: Actor, text: str, now: datetime) -> Case:
    """The worker's words to the case's resident, from the bot, masked; opens the relay for their answer."""
    case = _staff_case(session, code, actor)
    words = _words(text)
    n = _count(session, case)
    apply_action(session=session, case=case, action="note", actor=actor.label, now=now, note=words,
                 data={"relay": "to_resident", "n": n})
    sender = sender_label(session=session, worker=actor.worker)
    message = notices.relay_to_resident(case, sender=sender, words=words)
    record_notification(session=session, case_id=case.id, kind="relay", level=n,
                        recipient=f"resident:{case.resident_id}", message=message, now=now)
    return case


def ask_for_phone(*, session: Session, code: str, actor: Actor, reason: str, now: datetime) -> Case:
    """Asks the resident for a call-back phone with the worker's reason (the bot never asks on its own)."""
    case = _staff_case(session, code, actor)
    why = _words(reason)
    n = _count(session, case)
    apply_action(session=session, case=case, action="note", actor=actor.label, now=now, note=f"请居民留电话：{why}",
                 data={"relay": "ask_phone", "n": n})
    sender = sender_label(session=session, worker=actor.worker)
    message = notices.phone_request(case, sender=sender, reason=why)
    record_notification(session=session, case_id=case.id, kind="relay", level=n,
                        recipient=f"resident:{case.resident_id}", message=message, now=now)
    return case


def open_relay(*, session: Session, resident_id: int, now: datetime) -> OpenRelay | None:
    """The relay waiting for this resident's answer, if any (the latest relay event of their live cases)."""
    stmt = (select(CaseEvent, Case.code, Case.category, Case.title)
            .join(Case, col(Case.id) == col(CaseEvent.case_id))
            .where(col(Case.resident_id) == resident_id, col(Case.status).in_([s.value for s in _LIVE]),
                   col(CaseEvent.action) == "note", col(CaseEvent.at) >= now - RELAY_WINDOW)
            .order_by(col(CaseEvent.at).desc(), col(CaseEvent.id).desc()).limit(50))
    for event, code, category, title in session.exec(stmt):
        kind = (event.data or {}).get("relay")
        if kind is None:
            continue
        if kind not in OPENING:
            return None
        return OpenRelay(code=code, wants_phone=kind == "ask_phone", kind=kind, at=event.at, category=category,
                         title=title)
    return None


def _resident_case(session: Session, resident_id: int, code: str) -> Case:
    case = get_case(session=session, code=code.strip().upper(), for_update=True)
    if case.resident_id != resident_id:
        raise NotFound(f"case {code} not found for resident {resident_id}")
    if case.status not in _LIVE:
        raise IllegalTransition(f"case {case.code} is {case.status}", "这个工单已经办完了，有新情况请直接告诉我。")
    return case


def open_reply(*, session: Session, resident_id: int, code: str, now: datetime) -> Case:
    """The resident pressed 回复网格员: their next text goes to the worker."""
    case = _resident_case(session, resident_id, code)
    apply_action(session=session, case=case, action="note", actor=f"resident:{resident_id}", now=now,
                 data={"relay": "reply_opened", "n": _count(session, case)})
    return case


def send_to_worker(*, session: Session, resident: Resident, code: str, text: str, now: datetime,
                   phone: tuple[str, str] | None = None) -> Case:
    """The resident's answer, masked, to the case's assignee. `phone` (raw, masked), given when the worker asked
    for one, is kept on the resident's row and the assignee is told it is there, never the number itself."""
    assert resident.id is not None
    case = _resident_case(session, resident.id, code)
    words = _words(text)
    n = _count(session, case)
    actor = f"resident:{resident.id}"
    if phone is not None and resident.consent_at is not None:
        raw, masked = phone
        update_contact_phone(session=session, resident=resident, phone=raw, masked=masked, now=now)
        apply_action(session=session, case=case, action="note", actor=actor, now=now, note=f"居民留了回电号码 {masked}",
                     data={"relay": "phone_given", "n": n})
        message = notices.phone_given(case)
    else:
        apply_action(session=session, case=case, action="note", actor=actor, now=now, note=words,
                     data={"relay": "to_worker", "n": n})
        message = notices.relay_to_worker(case, words=words)
    if case.assignee_id is not None:
        record_notification(session=session, case_id=case.id, kind="relay", level=n,
                            recipient=f"worker:{case.assignee_id}", message=message, now=now)
    return case


def reveal_phone(*, session: Session, code: str, actor: Actor, now: datetime) -> str | None:
    """The resident's call-back phone, for the case's assignee only (audited, masked); None if none was left."""
    case = get_case(session=session, code=code.strip().upper())
    worker = actor.worker
    if worker is None or worker.id != case.assignee_id or case.status not in _LIVE or case.resident_id is None:
        raise PermissionDenied(f"{actor.label} may not see the phone of case {case.code}")
    resident = session.get(Resident, case.resident_id)
    if resident is None or not resident.contact_phone:
        return None
    record_audit(session=session, actor=actor.label, action="view_contact", subject=f"resident:{resident.id}",
                 now=now, data={"case": case.code, "contact": resident.contact_masked})
    return resident.contact_phone
