"""Consent (PIPL): the privacy notice, the 同意/不同意 answer, and what happens after it.

Owns: asking for consent and recording the answer through casestore. What follows a 同意 (the address, then
the message kept meanwhile) is address.py's. Must not: open cases or bind addresses.
"""

from __future__ import annotations

from bot.dialogue import texts
from bot.dialogue.state import State
from bot.dialogue.turn import Turn
from casestore.accounts import get_or_create_resident
from casestore.notify import Button
from casestore.residents import record_consent


def ask_consent(turn: Turn, *, why: str | None = None) -> None:
    """The privacy notice and the 同意/不同意 buttons; `why` leads it when something was done before asking."""
    turn.say(f"{why}\n{texts.PRIVACY}" if why else texts.PRIVACY)
    turn.say(texts.CONSENT_ASK, [[Button(texts.BTN_AGREE, "consent", None, "yes"),
                                  Button(texts.BTN_DISAGREE, "consent", None, "no")]])
    turn.go(State.consent)


def on_consent(turn: Turn, yes: bool) -> bool:
    """Record the answer; True if the resident has just agreed (the caller carries on)."""
    if turn.state not in (State.consent, State.start) or turn.consented():
        turn.expired()
        return False
    if not yes:
        turn.go(State.idle)
        turn.data.consent_declined, turn.data.pending, turn.data.recent = True, None, []
        turn.say(texts.CONSENT_DECLINED)
        return False
    resident = get_or_create_resident(session=turn.session, channel=turn.channel, external_id=turn.external_id,
                                      now=turn.now, display_name=turn.incoming.display_name[:40])
    turn.remember_resident(resident)
    record_consent(session=turn.session, resident=resident, now=turn.now)
    turn.data.consent_declined = False
    turn.say(texts.CONSENT_THANKS)
    return True
