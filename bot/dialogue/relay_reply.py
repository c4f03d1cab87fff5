"""The resident's half of a relay (casestore.relay): 「回复网格员」 and the next text while a relay is open go to
the worker who handles the case, from the bot, masked; a call-back phone asked for by the worker is kept.

Owns: `take(turn)`, the one hook resident.py calls first. It takes a message only while a relay waits for the
resident's answer, and only an ordinary one: an emergency, a command or a message in the middle of a report form
goes its usual way.
Must not: decide who may read what (casestore.relay does) or put a number into the worker's message.
"""

from __future__ import annotations

from bot.dialogue import texts
from bot.dialogue.safety import is_emergency
from bot.dialogue.state import State
from bot.dialogue.turn import Turn
from casestore import relay
from casestore.errors import DomainError
from policies.masking import find_personal_data, mask_text


def take(turn: Turn) -> bool:
    """Handle the message as a reply to the grid worker, if it is one; False: the resident side carries on."""
    inc = turn.incoming
    if inc.kind == "button" and inc.button is not None and inc.button.action == "relay_reply":
        _open(turn, inc.button.case_code or "")
        return True
    if inc.kind != "text" or not inc.text or turn.state not in (State.idle, State.start):
        return False
    resident = turn.resident()
    if resident is None or resident.id is None:
        return False
    waiting = relay.open_relay(session=turn.session, resident_id=resident.id, now=turn.now)
    if waiting is None or is_emergency(turn.understand(inc.text), inc.text):
        return False
    phones = [p for p in find_personal_data(inc.text) if p.kind in ("mobile", "landline")] \
        if waiting.wants_phone else []
    phone = (phones[0].number, mask_text(phones[0].raw)) if phones else None
    try:
        with turn.session.begin_nested():
            relay.send_to_worker(session=turn.session, resident=resident, code=waiting.code, text=inc.text,
                                 now=turn.now, phone=phone)
    except DomainError as exc:
        turn.say(exc.user_message)
        return True
    turn.go(State.idle)
    turn.say((texts.RELAY_PHONE_KEPT if phone else texts.RELAY_TO_WORKER_SENT).format(code=waiting.code))
    return True


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
