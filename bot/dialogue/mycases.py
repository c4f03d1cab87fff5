"""A resident's own cases: the status list (/mycases), one case by its code, rating and written feedback.

Owns: what a resident may see of their cases (their own only, masked) and the rating turn.
Must not: change a case except through casestore.feedback.
"""

from __future__ import annotations

import logging

from bot.dialogue import texts
from bot.dialogue.turn import Turn
from bot.dialogue.words import THANKS
from casestore.actions import view
from casestore.cases import list_cases_for_resident
from casestore.errors import DomainError, NotFound, PermissionDenied
from casestore.feedback import rate
from casestore.models import Case, CaseStatus
from casestore.notify import Button
from casestore.permissions import actor_for

log = logging.getLogger(__name__)


def _status_line(turn: Turn, case: Case) -> str:
    status = texts.STATUS_NAMES.get(case.status, case.status)
    promise = ""
    if case.status in (CaseStatus.new, CaseStatus.assigned, CaseStatus.reopened) and case.first_response_at is None \
            and case.response_due_at:
        promise = texts.PROMISE_RESPONSE.format(when=turn.local(case.response_due_at))
    elif case.status in (CaseStatus.assigned, CaseStatus.accepted, CaseStatus.in_progress, CaseStatus.reopened) \
            and case.resolve_due_at:
        promise = texts.PROMISE_RESOLVE.format(when=turn.local(case.resolve_due_at))
    category = turn.services.policies.taxonomy.name_of(case.category)
    return texts.MYCASES_ITEM.format(code=case.code, category=category, title=case.title, status=status,
                                     promise=promise)


def my_cases(turn: Turn) -> None:
    resident = turn.resident()
    cases = list_cases_for_resident(session=turn.session, resident_id=resident.id) if resident and resident.id else []
    if not cases:
        turn.say(texts.MYCASES_EMPTY)
        return
    lines = [texts.MYCASES_HEADER] + [_status_line(turn, c) for c in cases]
    turn.say("\n".join(lines))
    for case in cases:
        if case.status == CaseStatus.resolved:
            turn.say(texts.RATE_ASK.format(code=case.code), _rating_buttons(case.code))


def _rating_buttons(code: str) -> list[list[Button]]:
    return [[Button(f"⭐{n}", "rate", code, str(n)) for n in range(1, 6)],
            [Button(texts.BTN_NOT_FIXED, "rate", code, "not_fixed")]]


def one_case(turn: Turn, code: str) -> None:
    actor = actor_for(session=turn.session, channel=turn.channel, external_id=turn.external_id)
    try:
        case = view(session=turn.session, code=code, actor=actor)
    except (NotFound, PermissionDenied):
        turn.say(texts.CASE_NOT_FOUND)  # never reveal that someone else's case exists
        return
    turn.say(_status_line(turn, case))


def on_rate(turn: Turn, code: str | None, arg: str) -> None:
    resident = turn.resident()
    if not code or resident is None or resident.id is None:
        turn.expired()
        return
    if arg == "fixed":
        fixed, rating = True, None
    elif arg == "not_fixed":
        fixed, rating = False, None
    elif arg.isdigit() and 1 <= int(arg) <= 5:
        fixed, rating = True, int(arg)
    else:
        turn.expired()
        return
    try:
        with turn.session.begin_nested():
            case = rate(session=turn.session, policies=turn.services.policies, sla=turn.services.sla,
                        clock=turn.services.clock, resident_id=resident.id, code=code, fixed=fixed, rating=rating)
    except DomainError as exc:  # someone else's case, or not waiting for a rating: nothing changes
        log.info("rating refused cid=%s: %s", turn.cid, type(exc).__name__)
        turn.expired()
        return
    reopened = case.status in (CaseStatus.reopened, CaseStatus.assigned)
    turn.say(texts.RATE_REOPENED.format(code=case.code) if reopened else texts.RATE_THANKS)


def text_feedback(turn: Turn, text: str) -> None:
    resident = turn.resident()
    cases = list_cases_for_resident(session=turn.session, resident_id=resident.id) if resident and resident.id else []
    resolved = [c for c in cases if c.status == CaseStatus.resolved]
    if resolved:
        turn.say(texts.RATE_ASK.format(code=resolved[0].code), _rating_buttons(resolved[0].code))
        return
    turn.say(texts.THANKS_REPLY if THANKS.match(text) else texts.FEEDBACK_NO_CASE)
