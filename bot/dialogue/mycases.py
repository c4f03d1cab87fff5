"""A resident's own cases: the status list (/mycases), one case by its code, rating and written feedback.

Owns: what a resident may see of their cases (their own only, masked), the rating turn, and words about a case
already filed: "没修好 / 又坏了" after 办结 reopens the latest resolved case, and later words about an open case
("灯还是一闪一闪的") join it as a resident note (asked with buttons when it is not clear).
Must not: change a case except through casestore.feedback.
"""

from __future__ import annotations

import logging
import re

from bot.dialogue import texts
from bot.dialogue.turn import Turn
from bot.dialogue.words import THANKS
from casestore.actions import view
from casestore.cases import list_cases_for_resident
from casestore.errors import DomainError, NotFound, PermissionDenied
from casestore.feedback import add_resident_note, rate
from casestore.models import Case, CaseStatus
from casestore.notify import Button
from casestore.permissions import actor_for
from casestore.states import OPEN
from policies.masking import mask_text

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


# ====================================================================== words about a case already filed
# "not fixed" in words (the 没解决 button typed): after 办结 it reopens the case
NOT_FIXED = re.compile(r"没修好|没有修好|没弄好|没修|还是不行|还不行|又坏了|又坏|又不亮|还是不亮|还不亮|"
                       r"没解决|没有解决|根本没|白修|还是老样子|还是一样|跟没修一样|又漏|还在漏|又堵|还是堵")
# the same problem still there: words that continue a case rather than start one
_STILL = re.compile(r"还是|还在|仍然|依然|依旧|一直|又|还没|没好|老是|总是")


def about_filed_case(turn: Turn, text: str, category: str) -> bool:
    """Words about the resident's own filed case: True if handled here (reopened, noted, or asked which)."""
    resident = turn.resident()
    if resident is None or resident.id is None or not turn.consented():
        return False
    cases = list_cases_for_resident(session=turn.session, resident_id=resident.id)
    resolved = [c for c in cases if c.status == CaseStatus.resolved]
    if NOT_FIXED.search(text) and resolved:
        _reopen(turn, resident.id, resolved[0], text)
        return True
    still = bool(_STILL.search(text))
    open_ = [c for c in cases if c.status in OPEN and c.intent != "inquiry" and c.urgency != "emergency"]
    again = [c for c in open_ if c.reopen_count > 0]
    if NOT_FIXED.search(text) and len(again) == 1:  # 没修好 once more, after a reopen: that case, whatever the class
        _note(turn, resident.id, again[0], text)
        return True
    same = [c for c in open_ if c.category == category and category != "other"]
    if len(same) == 1 and still:
        _note(turn, resident.id, same[0], text)
        return True
    unsure = same[:1] or (open_[:1] if still and category == "other" else [])
    if unsure:
        case = unsure[0]
        turn.data.note_pending = mask_text(text)[:500]
        turn.say(texts.NOTE_WHICH.format(code=case.code, title=case.title),
                 [[Button(texts.BTN_NOTE_ATTACH.format(code=case.code), "note", case.code, "attach"),
                   Button(texts.BTN_NOTE_NEW, "note", None, "new")]])
        return True
    return False


def _reopen(turn: Turn, resident_id: int, case: Case, text: str) -> None:
    try:
        with turn.session.begin_nested():
            case = rate(session=turn.session, policies=turn.services.policies, sla=turn.services.sla,
                        clock=turn.services.clock, resident_id=resident_id, code=case.code, fixed=False)
            add_resident_note(session=turn.session, resident_id=resident_id, code=case.code,
                              note=mask_text(text)[:500], now=turn.now, data={"reopen": True})
    except DomainError as exc:
        log.info("reopen in words refused cid=%s: %s", turn.cid, type(exc).__name__)
        turn.expired()
        return
    turn.say(texts.REOPENED_IN_WORDS.format(code=case.code, title=case.title))


def _note(turn: Turn, resident_id: int, case: Case, text: str) -> None:
    try:
        with turn.session.begin_nested():
            add_resident_note(session=turn.session, resident_id=resident_id, code=case.code,
                              note=mask_text(text)[:500], now=turn.now, tell_assignee=True)
    except DomainError as exc:
        log.info("resident note refused cid=%s: %s", turn.cid, type(exc).__name__)
        turn.expired()
        return
    turn.say(texts.NOTE_ADDED.format(code=case.code, title=case.title))


def on_note_choice(turn: Turn, code: str | None, arg: str) -> str | None:
    """补充到工单 / 新问题 pressed (or typed): the note is added, or its text returned to be handled as new."""
    pending, turn.data.note_pending = turn.data.note_pending, None
    resident = turn.resident()
    if not pending or resident is None or resident.id is None:
        turn.expired()
        return None
    if arg == "new":
        return pending
    case = next((c for c in list_cases_for_resident(session=turn.session, resident_id=resident.id)
                 if c.code == code and c.status in OPEN | {CaseStatus.resolved}), None) if code else None
    if case is None:
        turn.expired()
        return None
    _note(turn, resident.id, case, pending)
    return None


def latest_open_code(turn: Turn, resident_id: int) -> str | None:
    """The code of the resident's latest open case, or None."""
    cases = list_cases_for_resident(session=turn.session, resident_id=resident_id)
    return next((c.code for c in cases if c.status in OPEN), None)
