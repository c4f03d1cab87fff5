"""Policy answers from the knowledge base, their buttons, and the hand-off to a person.

Owns: asking the knowledge service and showing what it says: a cited answer (its short `text` first, the rest on
「详细」, with 有用/没用/转人工), a clarification (one button per candidate document and 「都不是，找工作人员」; a pick
asks again in that document only), or no answer. An unanswered question either opens the 转人工 case at once and
says so in one message (who answers, by when), or — noise, a guess, or no consent to register a case — offers the
转人工 button; never both. Also: recording answer feedback and review-queue misses through casestore, and
`hand_off`: a 转人工 case with the question (or what the resident was doing), at most one per question.
Must not: retrieve or compose answers (knowledge/ does) or phrase replies inline (texts.py does).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta

from bot.dialogue import texts
from bot.dialogue.drafts import LastQuestion, ReportDraft, ReportItem, SourceRef
from bot.dialogue.filing import due_text, handler_text, open_cases
from bot.dialogue.places import home_of
from bot.dialogue.state import State
from bot.dialogue.turn import Turn
from bot.dialogue.words import MIN_ACTIONABLE, wants_person
from bot.understanding.types import Understanding
from casestore.cases import list_cases_for_resident
from casestore.feedback import add_resident_note, create_answer_feedback
from casestore.models import Case, Worker
from casestore.notify import Button
from casestore.questions import Outcome, record_question
from casestore.review import attach_next_message, record_miss
from casestore.states import OPEN
from knowledge.types import Answer, Citation
from policies.masking import mask_text

HANDOFF_TEXT = "居民要求人工服务"
HANDOFF_REQUEST = "转人工"  # kept as the pending message when consent must come first
MAX_CANDIDATES = 3
MAX_LABEL = 40  # characters of a candidate's button label


# ====================================================================== asking and showing
def answer(turn: Turn, u: Understanding) -> None:
    result = turn.ask(u.text)  # within the update's deadline, outside its transaction (Turn.ask)
    show(turn, question=u.text, category=u.category.label, result=result, worth_a_person=_worth_a_person(u))


def show(turn: Turn, *, question: str, category: str, result: Answer, worth_a_person: bool,
         may_clarify: bool = True) -> None:
    """Say the knowledge base's answer to `question` (masked) with the buttons that fit it."""
    qid = turn.data.qseq + 1
    turn.data.qseq = qid
    last = LastQuestion(id=qid, text=question[:500], category=category, answered=bool(result.answered),
                        mode=result.mode, sources=_refs(result.citations))
    turn.data.last_q = last
    outcome = (Outcome.answered if result.answered
               else Outcome.clarify if result.clarify and may_clarify else Outcome.not_found)
    record_question(session=turn.session, outcome=outcome, resident_id=_consented_id(turn), answer_mode=result.mode,
                    now=turn.now)
    if not result.answered and result.clarify and may_clarify:
        _offer_candidates(turn, last, result.clarify[:MAX_CANDIDATES])
        return
    if not result.answered:
        _miss(turn, "not_found", last.text, last.sources, last.mode)
        if result.elsewhere:  # another office handles it: say which; a person stays one button away, no case
            turn.say(result.text, [[Button(texts.BTN_HUMAN, "human", None, str(qid))]])
            return
        if worth_a_person and turn.consented():
            hand_off(turn, automatic=True)
        else:  # noise or a guess, or no consent to register a case: the resident decides
            turn.say(texts.NOT_ANSWERED + texts.NOT_ANSWERED_RETRY,
                     [[Button(texts.BTN_HUMAN, "human", None, str(qid))]])
        return
    refs = _source_names(result.citations)
    more = result.more.strip()
    if more:
        last.more = _with_sources(more, refs)
    rows = [[Button(texts.BTN_MORE, "more", None, str(qid))]] if more else []
    turn.say(_with_sources(result.text, refs), rows + _feedback_rows(qid))


def _feedback_rows(qid: int) -> list[list[Button]]:
    return [[Button(texts.BTN_USEFUL, "useful", None, f"{qid}.1"),
             Button(texts.BTN_NOT_USEFUL, "useful", None, f"{qid}.0"),
             Button(texts.BTN_HUMAN, "human", None, str(qid))]]


def _source_names(citations: Iterable[Citation]) -> list[str]:
    refs: list[str] = []
    for c in citations:
        ref = f"《{c.title}》{c.section if c.section and c.section != c.title else ''}"
        if ref not in refs:
            refs.append(ref)
    return refs


def _with_sources(text: str, refs: list[str]) -> str:
    """`text` ending with our numbered sources line instead of the service's own "来源：[1] 标题 › 小节"."""
    body = text.strip()
    if refs:
        body = body.rsplit("\n来源：", 1)[0].rstrip()
        body += "\n" + texts.SOURCES + "；".join(f"[{n}]{r}" for n, r in enumerate(refs[:3], start=1))
    return body


def _refs(citations: Iterable[Citation]) -> list[SourceRef]:
    return [SourceRef(doc_id=c.doc_id, title=c.title, section=c.section, score=c.score) for c in citations]


def _worth_a_person(u: Understanding) -> bool:
    """An unanswered question goes to a person unless it is noise ("啊啊啊…", one word, a guess)."""
    content = "".join(ch for ch in u.text if ch.isalnum())
    return not u.low_confidence and len(set(content)) >= MIN_ACTIONABLE


# ====================================================================== clarification: which document?
def _offer_candidates(turn: Turn, last: LastQuestion, candidates: list[Citation]) -> None:
    last.candidates = _refs(candidates)
    rows = [[Button((c.label() or c.title)[:MAX_LABEL], "pick", None, f"{last.id}.{n}")]
            for n, c in enumerate(candidates)]
    rows.append([Button(texts.BTN_NONE_OF_THESE, "pick", None, f"{last.id}.none")])
    turn.say(texts.ASK_WHICH_DOC, rows)


def on_pick(turn: Turn, arg: str) -> None:
    """A candidate document (its number among those offered) or 都不是; anything else is stale or forged."""
    last = turn.data.last_q
    qid, _, choice = arg.partition(".")
    if last is None or str(last.id) != qid or not last.candidates or last.picked:
        turn.expired()
        return
    if choice == "none":
        last.picked = True
        _miss(turn, "clarify_unpicked", last.text, last.candidates, last.mode)
        hand_off(turn, automatic=False, about_question=True)
        return
    if not choice.isdigit() or int(choice) >= len(last.candidates):
        turn.expired()
        return
    picked = last.candidates[int(choice)]
    last.picked = True
    result = turn.ask_in(last.text, picked.doc_id)  # same deadline and replay as Turn.ask
    if not result.answered and not result.citations:
        result.citations = [Citation(title=picked.title, section=picked.section, source="", doc_id=picked.doc_id,
                                     score=picked.score or 0.0)]
    # the resident chose this document: no second clarification, and a miss is worth a person
    show(turn, question=last.text, category=last.category, result=result, worth_a_person=True, may_clarify=False)


def typed_pick(turn: Turn, text: str) -> bool:
    """A candidate's label (or 都不是) typed instead of pressed, while the clarification is open."""
    last = turn.data.last_q
    if last is None or not last.candidates or last.picked:
        return False
    labels = [(c.label() or c.title)[:MAX_LABEL] for c in last.candidates]
    if text == texts.BTN_NONE_OF_THESE or text in ("都不是", "都不对"):
        on_pick(turn, f"{last.id}.none")
        return True
    if text in labels:
        on_pick(turn, f"{last.id}.{labels.index(text)}")
        return True
    return False


# ====================================================================== 详细, 有用/没用
def on_more(turn: Turn, arg: str) -> None:
    last = turn.data.last_q
    if last is None or str(last.id) != arg or not last.more:
        turn.expired()
        return
    if last.more_shown:
        turn.say(texts.MORE_EXPIRED)
        return
    last.more_shown = True
    turn.say(last.more, None if last.rated else _feedback_rows(last.id))


def on_useful(turn: Turn, arg: str) -> None:
    last = turn.data.last_q
    qid, _, value = arg.partition(".")
    if last is None or str(last.id) != qid or last.rated or not last.answered:
        turn.expired()
        return
    useful = value == "1"
    create_answer_feedback(session=turn.session, resident_id=_consented_id(turn), question=last.text, useful=useful,
                           now=turn.now)
    if not useful:
        _miss(turn, "not_useful", last.text, last.sources, last.mode)
    last.rated = True
    turn.say(texts.USEFUL_THANKS if useful else texts.NOT_USEFUL_THANKS,
             None if useful else [[Button(texts.BTN_HUMAN, "human", None, qid)]])


# ====================================================================== the review queue
def _consented_id(turn: Turn) -> int | None:
    resident = turn.resident()
    return resident.id if resident is not None and turn.consented() else None


def _miss(turn: Turn, kind: str, question: str, retrieved: list[SourceRef], mode: str) -> None:
    """A miss for the review queue, in this turn's transaction; without consent it is kept without the resident."""
    resident_id = _consented_id(turn)
    record_miss(session=turn.session, kind=kind, question=question,
                retrieved=[r.model_dump() for r in retrieved], answer_mode=mode, resident_id=resident_id,
                now=turn.now)
    turn.data.review_open = resident_id is not None


def note_next_message(turn: Turn, text: str) -> None:
    """The resident's message after a miss is the best hint of what they meant: kept (masked) with it."""
    if not turn.data.review_open:
        return
    turn.data.review_open = False
    resident_id = _consented_id(turn)
    if resident_id is not None:
        attach_next_message(session=turn.session, resident_id=resident_id, text=mask_text(text), now=turn.now)


# ====================================================================== 转人工
def on_human_button(turn: Turn, arg: str) -> None:
    """转人工 pressed: about that answer's question if it is the last one; an older button still reaches a person."""
    last = turn.data.last_q
    if last is not None and str(last.id) != arg and turn.data.draft is None:
        turn.data.last_q = None  # an older answer's button: the request is not about the last question
        hand_off(turn, automatic=False)
        turn.data.last_q = last
        return
    hand_off(turn, automatic=False)


def hand_off(turn: Turn, *, automatic: bool, about_question: bool = False) -> None:
    """A person takes over: one 转人工 case with the last question, or with the report in progress, and the
    resident's last few messages; the resident hears who (the assignee's name from grids.yaml) and by when.

    `automatic`: an unanswered question, opened without being asked for, said in one message with the reason.
    `about_question`: the resident asked for a person about the last question (都不是), whatever else is open.
    Asked for (not automatic), an open 转人工 case of the resident is joined instead of opening another."""
    resident = turn.resident()
    if resident is None or not turn.consented():
        _hand_off_later(turn)
        return
    last = turn.data.last_q
    if last is not None and last.case and (automatic or about_question or turn.data.draft is None):
        turn.say(texts.HUMAN_ALREADY.format(code=last.case))
        return
    recent = [m for m in turn.data.recent if not wants_person(m)][-MAX_RECENT:]
    if not automatic and resident.id is not None:
        joined = _open_handoff(turn, resident.id)
        if joined is not None:
            if recent:
                add_resident_note(session=turn.session, resident_id=resident.id, code=joined.code,
                                  note=texts.HANDOFF_RECENT + "；".join(recent), now=turn.now, data={"handoff": True})
            turn.data.draft, turn.data.pending = None, None
            turn.go(State.idle)
            turn.say(texts.HANDOFF_JOINED.format(code=joined.code, handler=handler_text(turn, joined),
                                                 person=_person(turn, joined), due=due_text(turn, joined)))
            return
    draft = turn.data.draft
    if last is not None and (automatic or about_question or draft is None):
        if last.candidates and not last.picked:  # 转人工 typed instead of picking a candidate: none fitted
            last.picked = True
            _miss(turn, "clarify_unpicked", last.text, last.candidates, last.mode)
        elif last.answered and not automatic:
            _miss(turn, "handoff_after_answer", last.text, last.sources, last.mode)
        item = ReportItem(intent="inquiry", category=last.category, urgency="normal", text=last.text)
        draft = None
    elif draft is not None and draft.items:
        first = draft.items[0]
        item = ReportItem(intent="inquiry", category=first.category, urgency=first.urgency, text=first.text)
    else:
        item = ReportItem(intent="inquiry", category="other", urgency="normal", text=turn.data.pending or HANDOFF_TEXT)
    said = [m for m in recent if m != item.text]
    if said and not automatic:  # the conversation so far goes with it; the first sentence stays the title
        item.text = f"{item.text.rstrip('。')}。{texts.HANDOFF_RECENT}{'；'.join(said)}"
    handoff = ReportDraft(items=[item])
    place = (draft.place() if draft is not None and draft.where else None) or home_of(resident)
    if place is not None:
        handoff.set_place(place)
    turn.data.draft, turn.data.pending = None, None
    turn.go(State.idle)
    cases = open_cases(turn, resident, handoff, announce=False)
    if not cases:
        return
    case = cases[0]
    if last is not None and (automatic or about_question or last.case is None):
        last.case = case.code
    if automatic:
        turn.say(texts.NOT_ANSWERED_HANDED_OFF.format(handler=handler_text(turn, case), code=case.code,
                                                      due=due_text(turn, case)))
        return
    turn.say(texts.HANDOFF_OPENED.format(handler=handler_text(turn, case), person=_person(turn, case), code=case.code,
                                         due=due_text(turn, case), hours=_hours(turn, case)))


MAX_RECENT = 4  # resident messages a 转人工 case carries


def _open_handoff(turn: Turn, resident_id: int) -> Case | None:
    """The resident's open 转人工 case (only hand-offs are filed as inquiries), or None."""
    cases = list_cases_for_resident(session=turn.session, resident_id=resident_id)
    return next((c for c in cases if c.intent == "inquiry" and c.status in OPEN), None)


def _person(turn: Turn, case: Case) -> str:
    """The assignee's display name from grids.yaml ("王芳（示例）"), or nothing when it has none."""
    worker = turn.session.get(Worker, case.assignee_id) if case.assignee_id else None
    if worker is None:
        return ""
    entry = next((e for e in turn.services.policies.grids.all_staff() if e.name == worker.name), None)
    return entry.display_name if entry is not None and entry.display_name else ""


def _in_service_hours(turn: Turn) -> bool:
    clock = turn.services.sla.clock_for("normal")
    return clock.running_minutes(turn.now, turn.now + timedelta(minutes=1)) > 0


def _hours(turn: Turn, case: Case) -> str:
    """The worker's hours in service hours; out of them, the community's duty desk, its phone and hours."""
    community = turn.services.policies.grids.community(case.community_id)
    if community is None:
        return ""
    if _in_service_hours(turn):
        return texts.HANDOFF_WORKER_HOURS.format(hours=community.office_hours) if community.office_hours else ""
    desk = community.staff.duty_desk
    return texts.HANDOFF_OFF_HOURS.format(desk=desk.name + (texts.FACT_PHONE.format(phone=desk.phone)
                                                              if desk.phone else "")
                                          + (texts.FACT_DUTY_HOURS.format(hours=desk.hours) if desk.hours else ""))


def _hand_off_later(turn: Turn) -> None:
    """No consent yet: the community lines at once, the notice, and the hand-off kept until they agree."""
    grids = turn.services.policies.grids
    phones = "；".join(f"{c.name} {c.phone}" for c in grids.communities if c.phone)
    turn.say(texts.HANDOFF_NO_CONSENT.format(phones=phones) if phones else texts.HUMAN_NO_CONSENT)
    if turn.data.consent_declined:
        return
    turn.say(texts.PRIVACY)
    turn.say(texts.CONSENT_ASK, [[Button(texts.BTN_AGREE, "consent", None, "yes"),
                                  Button(texts.BTN_DISAGREE, "consent", None, "no")]])
    turn.go(State.consent)
    turn.data.pending = HANDOFF_REQUEST  # replayed after consent and address: the hand-off itself
