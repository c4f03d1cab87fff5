"""Policy answers from the knowledge base, their 有用/没用/转人工 buttons, and the hand-off to a person.

Owns: asking the knowledge service, showing sources, recording answer feedback through casestore, and
`hand_off`: a 转人工 case with the question (or what the resident was doing), at most one per question.
Must not: retrieve or compose answers (knowledge/ does) or phrase replies inline (texts.py does).
"""

from __future__ import annotations

from bot.dialogue import texts
from bot.dialogue.drafts import LastQuestion, ReportDraft, ReportItem
from bot.dialogue.filing import due_text, handler_text, open_cases
from bot.dialogue.places import home_of
from bot.dialogue.state import State
from bot.dialogue.turn import Turn
from bot.dialogue.words import MIN_ACTIONABLE
from bot.understanding.types import Understanding
from casestore.feedback import create_answer_feedback
from casestore.notify import Button

HANDOFF_TEXT = "居民要求人工服务"


def answer(turn: Turn, u: Understanding) -> None:
    result = turn.ask(u.text)  # within the update's deadline, outside its transaction (Turn.ask)
    qid = turn.data.qseq + 1
    turn.data.qseq = qid
    turn.data.last_q = LastQuestion(id=qid, text=u.text[:500], category=u.category.label,
                                    answered=bool(result.answered))
    body = result.text.strip()
    refs: list[str] = []
    for c in result.citations or []:
        ref = f"《{c.title}》{c.section if c.section and c.section != c.title else ''}"
        if ref not in refs:
            refs.append(ref)
    if refs and result.answered:
        # the service ends with its own "来源：[1] 标题 › 小节" line; show the numbered sources in our form
        body = body.rsplit("\n来源：", 1)[0].rstrip()
        body += "\n" + texts.SOURCES + "；".join(f"[{n}]{r}" for n, r in enumerate(refs[:3], start=1))
    if not result.answered:
        turn.say(body or texts.NOT_ANSWERED)
        if _worth_a_person(u):
            hand_off(turn, automatic=True)
        else:
            turn.say(texts.NOT_ANSWERED_RETRY, [[Button(texts.BTN_HUMAN, "human", None, str(qid))]])
        return
    turn.say(body, [[Button(texts.BTN_USEFUL, "useful", None, f"{qid}.1"),
                     Button(texts.BTN_NOT_USEFUL, "useful", None, f"{qid}.0"),
                     Button(texts.BTN_HUMAN, "human", None, str(qid))]])


def _worth_a_person(u: Understanding) -> bool:
    """An unanswered question goes to a person unless it is noise ("啊啊啊…", one word, a guess)."""
    content = "".join(ch for ch in u.text if ch.isalnum())
    return not u.low_confidence and len(set(content)) >= MIN_ACTIONABLE


def on_useful(turn: Turn, arg: str) -> None:
    last = turn.data.last_q
    qid, _, value = arg.partition(".")
    if last is None or str(last.id) != qid or last.rated:
        turn.expired()
        return
    useful = value == "1"
    resident = turn.resident()
    create_answer_feedback(session=turn.session, resident_id=resident.id if resident and turn.consented() else None,
                           question=last.text, useful=useful, now=turn.now)
    last.rated = True
    turn.say(texts.USEFUL_THANKS if useful else texts.NOT_USEFUL_THANKS,
             None if useful else [[Button(texts.BTN_HUMAN, "human", None, qid)]])


def on_human_button(turn: Turn, arg: str) -> None:
    last = turn.data.last_q
    if last is None or str(last.id) != arg:
        turn.expired()
        return
    hand_off(turn, automatic=False)


def hand_off(turn: Turn, *, automatic: bool) -> None:
    """A person takes over: one 转人工 case with the last question, or with the report in progress."""
    resident = turn.resident()
    if resident is None or not turn.consented():
        turn.say(texts.HUMAN_NO_CONSENT)
        return
    last = turn.data.last_q
    if last is not None and last.case:
        turn.say(texts.HUMAN_ALREADY.format(code=last.case))
        return
    draft = turn.data.draft
    if last is not None and (automatic or draft is None):
        item = ReportItem(intent="inquiry", category=last.category, urgency="normal", text=last.text)
    elif draft is not None and draft.items:
        first = draft.items[0]
        item = ReportItem(intent="inquiry", category=first.category, urgency=first.urgency, text=first.text)
    else:
        item = ReportItem(intent="inquiry", category="other", urgency="normal", text=turn.data.pending or HANDOFF_TEXT)
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
    if last is not None:
        last.case = case.code
    turn.say(texts.HUMAN_OPENED.format(handler=handler_text(turn, case), code=case.code, due=due_text(turn, case)))
