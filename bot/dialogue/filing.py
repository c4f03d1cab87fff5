"""From a finished draft to cases: one case per problem through casestore intake, and how to tell the resident.

Owns: building `casestore.intake.Report`s from a `ReportDraft`, the words for who handles a case and by when.
Must not: route, set deadlines or merge duplicates (casestore does) or phrase replies inline (texts.py does).
"""

from __future__ import annotations

import re

from bot.dialogue import texts
from bot.dialogue.drafts import ReportDraft, ReportItem
from bot.dialogue.turn import Turn
from bot.dialogue.wishes import published_text as wish_published
from bot.understanding.target import TargetDetector
from casestore.errors import DomainError
from casestore.intake import Report, open_case
from casestore.models import Case, Grid, Resident, Worker
from casestore.notices import role_name
from policies.hygiene import clean_text
from policies.masking import mask_text

TITLE_CHARS = 30


def title_of(text: str) -> str:
    """The first sentence or line of `text`, shortened, without control characters (it is shown and logged)."""
    first = re.split(r"[。！？!?\n]", clean_text(text, multiline=True).strip(), maxsplit=1)[0].strip()
    return (first[:TITLE_CHARS] + "…") if len(first) > TITLE_CHARS else (first or "居民反映")


def handler_text(turn: Turn, case: Case) -> str:
    """"芙蓉社区第一网格专职网格员", "芙蓉社区人民调解员": the position of the worker routing assigned (the one the
    task push goes to), never a person's name."""
    # the assignee's own position is the one source: a community role (调解员, 网格长, 值班台) is not the grid's
    worker = turn.session.get(Worker, case.assignee_id) if case.assignee_id is not None else None
    if worker is not None and worker.name:
        return worker.name
    grid = turn.session.get(Grid, case.grid_id) if case.grid_id else None
    role = role_name(case.assignee_role)
    return f"{grid.name}{role}" if grid else (role or "网格工作人员")


def due_text(turn: Turn, case: Case) -> str:
    return texts.DUE_RESPONSE.format(when=turn.local(case.response_due_at)) if case.response_due_at else texts.DUE_NONE


def complaint_target(turn: Turn, item: ReportItem, text: str) -> tuple[str | None, list[str]]:
    """Whom the item complains about: the understanding's reading, else read now from its (masked) words (an
    item made before the target existed, or its intent changed on the confirm screen)."""
    if item.intent != "complaint":
        return None, []
    if item.target is not None:
        return item.target, list(item.target_roles)
    reading = TargetDetector(turn.services.policies.taxonomy.staff_terms).read(text)
    return reading.target, list(reading.roles)


def open_cases(turn: Turn, resident: Resident | None, draft: ReportDraft, *, announce: bool) -> list[Case]:
    """One case per item of the draft (routing, deadlines, duplicates and pushes are casestore's)."""
    opened: list[Case] = []
    for item in draft.items:
        text = mask_text(item.text)  # already masked by understanding; masking twice is harmless
        target, target_roles = complaint_target(turn, item, text)
        report = Report(intent=item.intent, category=item.category, urgency=item.urgency, title=title_of(text),
                        description=text[:4000], location_text=draft.where or None, estate=draft.estate,
                        building=draft.building, unit=draft.unit, attachments=list(draft.attachments),
                        target=target, target_roles=target_roles)
        try:
            with turn.session.begin_nested():
                result = open_case(session=turn.session, policies=turn.services.policies, sla=turn.services.sla,
                                   clock=turn.services.clock, resident=resident, report=report)
        except DomainError as exc:
            turn.say(exc.user_message)
            continue
        case = result.case
        opened.append(case)
        if result.duplicate_of is not None:
            # the resident hears their own case code: the original's code and words are another resident's
            turn.say(texts.CASE_DUPLICATE.format(code=case.code, handler=handler_text(turn, result.duplicate_of)))
            continue
        wish_text = wish_published(turn, case.code) if case.intent == "wish" else None
        if announce and wish_text:
            turn.say(wish_text)
        elif announce:
            turn.say(texts.CASE_OPENED.format(code=case.code, handler=handler_text(turn, case),
                                              due=due_text(turn, case)))
            if case.grid_id is None:
                turn.say(texts.ADDRESS_UNCONFIRMED_DUTY if draft.address_unconfirmed else texts.NO_ADDRESS_DUTY)
        if result.hotspot is not None and announce:
            turn.say(texts.CASE_HOTSPOT)
    return opened
