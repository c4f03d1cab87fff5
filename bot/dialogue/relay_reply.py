"""The resident's half of a relay (casestore.relay): 「回复网格员」 and a text that plainly answers the grid worker
go to the worker who handles the case, from the bot, masked; a call-back phone asked for by the worker is kept.

Owns: `take(turn)`, the one hook resident.py calls first, and `hint`, the line that tells the resident a text
was not relayed while a relay was open. A text is taken only while a relay waits for the resident's answer, only
an ordinary one (an emergency, a command or a message in the middle of a report form goes its usual way), and
only when it plainly is an answer (`is_answer`): after 回复网格员 was pressed; a phone the worker asked for; within
`relay.REPLY_WINDOW` of the worker's words anything that is not plainly new (a confident new report about another
problem, or a confident question on a topic of its own: "路灯不亮了" after "明天上午来修" is a new report); after
that window only a plain reply (thanks, "明天不在家", more about the same problem). Everything else is handled as
usual and `hint` says so, with the button to answer the worker instead.
Must not: decide who may read what (casestore.relay does) or put a number into the worker's message.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from bot.dialogue import texts
from bot.dialogue.mycases import latest_open_code
from bot.dialogue.safety import is_emergency
from bot.dialogue.state import State
from bot.dialogue.turn import Turn
from bot.dialogue.words import THANKS
from bot.understanding.types import Understanding
from casestore import relay
from casestore.errors import DomainError
from casestore.notify import Button
from casestore.residents import update_contact_phone
from policies.masking import find_personal_data, mask_text

_PLAIN_REPLY_INTENTS = frozenset({"chitchat", "feedback"})  # "好的", "明天不在家", "谢谢": words for the worker


@dataclass(frozen=True)
class RelayCheck:
    """What `take` did: `taken` (the message was the resident's answer, or the 回复网格员 press), or `passed`,
    the case whose relay stays open although this text was handled as something new (for `hint`)."""

    taken: bool
    passed: str | None = None


def take(turn: Turn) -> RelayCheck:
    """Handle the message as a reply to the grid worker, if it plainly is one."""
    inc = turn.incoming
    if inc.kind == "button" and inc.button is not None and inc.button.action == "relay_reply":
        _open(turn, inc.button.case_code or "")
        return RelayCheck(taken=True)
    if inc.kind != "text" or not inc.text or turn.state not in (State.idle, State.start):
        return RelayCheck(taken=False)
    resident = turn.resident()
    if resident is None or resident.id is None:
        return RelayCheck(taken=False)
    waiting = relay.open_relay(session=turn.session, resident_id=resident.id, now=turn.now)
    if waiting is None:
        return RelayCheck(taken=False)
    u = turn.understand(inc.text)
    if is_emergency(u, inc.text):
        return RelayCheck(taken=False)  # the safety steps and the page, not a note to one worker
    phones = [p for p in find_personal_data(inc.text) if p.kind in ("mobile", "landline")] \
        if waiting.wants_phone else []
    if not phones and not is_answer(turn, waiting, inc.text, u):
        return RelayCheck(taken=False, passed=waiting.code)
    phone = (phones[0].number, mask_text(phones[0].raw)) if phones else None
    try:
        with turn.session.begin_nested():
            relay.send_to_worker(session=turn.session, resident=resident, code=waiting.code, text=inc.text,
                                 now=turn.now, phone=phone)
    except DomainError as exc:
        turn.say(exc.user_message)
        return RelayCheck(taken=True)
    turn.go(State.idle)
    turn.say((texts.RELAY_PHONE_KEPT if phone else texts.RELAY_TO_WORKER_SENT).format(code=waiting.code))
    return RelayCheck(taken=True)


def is_answer(turn: Turn, waiting: relay.OpenRelay, text: str, u: Understanding) -> bool:
    """Whether `text` plainly answers the worker of the open relay (see the module's docstring)."""
    if waiting.explicit:
        return True
    taxonomy = turn.services.policies.taxonomy
    intent, category = u.intent.label, u.category.label
    unsure = set(u.uncertain_axes or []) if u.low_confidence else set()
    same_problem = category == waiting.category and category != "other"
    if THANKS.match(text.strip()) or (intent in _PLAIN_REPLY_INTENTS and "intent" not in unsure):
        return True
    if not waiting.fresh(turn.now):  # hours later: only a plain reply, or more about the same problem
        return same_problem and intent != "inquiry"
    if "intent" in unsure:
        return True  # not plainly anything: the worker's words just came, so it is most likely the answer
    if taxonomy.opens_case(intent):  # a new report, unless it is about the same problem
        return same_problem or category == "other" or "category" in unsure
    if intent == "inquiry":  # "几点来？", "要不要在家等": no topic of their own; "办居住证要带什么": a new question
        return category == "other" or "category" in unsure or same_problem
    return True  # status and the rest: about their case, the worker answers best


def hint(turn: Turn, code: str) -> None:
    """Tell the resident this text was not relayed, and how to answer the worker instead."""
    turn.say(texts.RELAY_NOT_TAKEN.format(code=code),
             [[Button(texts.BTN_RELAY_REPLY, "relay_reply", code)]])


def _open(turn: Turn, code: str) -> None:
    resident = turn.resident()
    if resident is None or resident.id is None or not code:
        turn.expired()
        return
    try:
        with turn.session.begin_nested():
            relay.open_reply(session=turn.session, resident_id=resident.id, code=code, now=turn.now)
    except DomainError:
        turn.expired()
        return
    turn.go(State.idle)
    turn.say(texts.RELAY_REPLY_ASK.format(code=code.strip().upper()))


# a phone typed on its own, with at most a few words around it ("138… 这是俺的电话", "有事打这个")
_PHONE_FILLER = re.compile(r"^(?:这是|这个是|这个|是|我|俺|咱|的|我的|俺的|电话|手机|手机号|手机号码|电话号码|号码|"
                           r"联系电话|联系方式|回电|回电号码|有事|打|打这个|打我|给我打|请|麻烦|谢谢|号|吧|啊)*$")


def phone_given(turn: Turn, text: str) -> bool:
    """A call-back phone typed on its own (after 转人工, or unasked): kept on the resident's row through
    `casestore.relay.send_to_worker` when a case of theirs is open (its assignee is told it is there, masked), and
    the resident told, instead of the chit-chat greeting. Only with consent: without it nothing is kept."""
    phones = [p for p in find_personal_data(text) if p.kind in ("mobile", "landline")]
    resident = turn.resident()
    if len(phones) != 1 or resident is None or resident.id is None or not turn.consented():
        return False
    rest = [c for c in re.split(r"[\s，,。.！!？?、；;：:~～]+", text.replace(phones[0].raw, " ")) if c]
    if not all(_PHONE_FILLER.match(c) for c in rest):
        return False
    number, masked = phones[0].number, mask_text(phones[0].raw)
    code = latest_open_code(turn, resident.id)
    if code is not None:
        try:
            with turn.session.begin_nested():
                relay.send_to_worker(session=turn.session, resident=resident, code=code, text=text, now=turn.now,
                                     phone=(number, masked))
        except DomainError:
            code = None
    if code is None:
        update_contact_phone(session=turn.session, resident=resident, phone=number, masked=masked, now=turn.now)
        turn.say(texts.PHONE_KEPT_NO_CASE.format(phone=masked))
    else:
        turn.say(texts.PHONE_KEPT.format(phone=masked, code=code))
    return True
