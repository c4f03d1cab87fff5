"""The resident's side of the conversation as tables: state → text handler, button action → handler, commands.

Owns: the routing tables (in the manner of python-telegram-bot's ConversationHandler) and the idle handler
that decides the path of a free message (emergency, question, report, status, feedback, chit-chat). The steps
themselves live in consent.py, address.py, report.py, answers.py, mycases.py and safety.py, none of which
imports this module: a step that hands a message back (`turn.requeue`) is run here, from the idle state.
Must not: decide routing, deadlines or duplicates (casestore does) or phrase replies inline (texts.py does).
"""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Callable

from bot.dialogue import (
    address,
    answers,
    consent,
    grid_facts,
    mycases,
    relay_reply,
    report,
    safety,
    texts,
    voice,
)
from bot.dialogue.myid import show_id
from bot.dialogue.pins import on_button as on_pin
from bot.dialogue.pins import on_location as on_pin_location
from bot.dialogue.places import dispute_parties, home_of
from bot.dialogue.state import State
from bot.dialogue.turn import Turn
from bot.dialogue.wishes import on_fulfilled as on_wish_fulfilled
from bot.dialogue.wishes import on_not_yet as on_wish_not_yet
from bot.dialogue.words import (
    AGREE,
    DISAGREE,
    MIN_ACTIONABLE,
    NO,
    SKIP,
    THANKS,
    YES,
    content_chars,
    is_skip,
    wants_person,
)
from bot.understanding.types import Understanding
from casestore.notify import Button
from casestore.residents import update_contact_phone
from policies.masking import find_personal_data, mask_text

log = logging.getLogger(__name__)

_STATUS_WORDS = re.compile(r"(工单|事项|反映的|报修的).{0,6}(怎么样|进度|到哪|办好|处理得|结果)|我的工单")
RECENT = 6  # the resident's last messages kept (masked) for a 转人工 case
# mediation asked for in words ("恁给调解调解吧", "想请社区帮忙调解一下"), not a mention ("调解员没来，我要投诉")
_ASKS_MEDIATION = re.compile(r"(?:给|帮|请|要求|申请|想|需要|找人|来)[^，,。！!？?]{0,6}调解(?!员)|调解调解|调解一下")
_NOTE_NEW = frozenset({texts.BTN_NOTE_NEW, "是新问题", "新的问题", "新的"})
MAX_REQUEUE = 3  # a handler may hand a message back; bounded so that no turn loops
_SHORT_REPLIES = YES | NO | AGREE | DISAGREE | SKIP

TextHandler = Callable[[Turn, str], None]
ButtonHandler = Callable[[Turn, str], None]


# ====================================================================== entry point
def handle(turn: Turn) -> None:
    relayed = relay_reply.take(turn)  # an answer to the grid worker while a relay is open (casestore.relay)
    if relayed.taken:
        return
    inc = turn.incoming
    privacy_due = turn.data.privacy_due  # an emergency served last turn: the notice comes now at the latest
    if inc.kind == "unsupported":
        turn.say(texts.UNSUPPORTED)
    elif inc.kind == "button":
        on_button(turn)
    elif inc.kind == "command":
        on_command(turn)
    elif inc.kind == "photo":
        report.on_photo(turn)
    elif inc.kind == "voice":
        voice.on_voice(turn)  # read back with 对/不对, or filed as 语音留言 for the grid worker
    elif inc.kind == "location":
        # an emergency waiting for its place takes it first; a report asking where confirms a pin it can place
        if not safety.on_location(turn) and not on_pin_location(turn):
            report.on_location(turn)
    else:
        on_text(turn, inc.text)
    for _ in range(MAX_REQUEUE):
        if not turn.queued:
            break
        process_text(turn, turn.queued.pop(0))
    voice.file_kept(turn)  # a voice kept until consent goes to the grid worker now
    if privacy_due:
        safety.ask_privacy_if_due(turn)
    if relayed.passed:  # a relay is still open: the resident is told this text did not go to the worker
        relay_reply.hint(turn, relayed.passed)


# ====================================================================== commands
def on_command(turn: Turn) -> None:
    cmd = turn.incoming.command or ""
    handler = COMMANDS.get(cmd)
    if handler is None:
        turn.say(texts.UNKNOWN_COMMAND)
        return
    handler(turn)


def _start(turn: Turn) -> None:
    turn.say(texts.WELCOME)
    resident = turn.resident()
    if resident is not None and turn.consented():
        if resident.grid_id is None:
            address.ask_community(turn)
        else:
            turn.go(State.idle)
            turn.say(texts.HELP_RESIDENT)
        return
    consent.ask_consent(turn)


def _help(turn: Turn) -> None:
    turn.say(texts.HELP_RESIDENT + ("\n\n" + texts.HELP_ADMIN if turn.is_admin else ""))


def _address(turn: Turn) -> None:
    if not turn.consented():
        turn.say(texts.ADDRESS_NEEDS_CONSENT)
        return
    if turn.incoming.args and address.try_typed(turn, turn.incoming.args):
        return
    address.ask_community(turn)


def _cancel(turn: Turn) -> None:
    turn.go(State.idle)
    turn.data.draft = turn.data.addr = turn.data.clarify = None
    turn.say(texts.CANCELLED)


COMMANDS: dict[str, Callable[[Turn], None]] = {
    "start": _start,
    "help": _help,
    "address": _address,
    "mycases": mycases.my_cases,
    "status": mycases.my_cases,
    "cancel": _cancel,
    "myid": show_id,
}


# ====================================================================== buttons
def _on_consent_button(turn: Turn, arg: str) -> None:
    if consent.on_consent(turn, arg == "yes"):
        address.after_consent(turn)


def _on_photo_skip(turn: Turn, arg: str) -> None:
    report.skip_slot(turn, "photo")


def _on_clarify(turn: Turn, choice: str) -> None:
    pending = turn.data.clarify
    if turn.state != State.clarify or not pending:
        turn.expired()
        return
    turn.go(State.idle)
    turn.data.clarify = None
    u = turn.understand(pending)
    if choice == "inquiry":
        answers.answer(turn, u)
    elif choice == "report":
        taxonomy = turn.services.policies.taxonomy
        report.start_report(turn, u, intent=u.intent.label if taxonomy.opens_case(u.intent.label) else "help")
    elif choice == "dispute":
        _start_mediation(turn, u)
    elif choice == "emergency":
        safety.emergency(turn, u, pending)
    else:
        turn.say(texts.CLARIFY_OTHER)


def _on_note_button(turn: Turn, arg: str) -> None:
    btn = turn.incoming.button
    new = mycases.on_note_choice(turn, btn.case_code if btn else None, arg)
    if new:
        process_text(turn, new, about_cases=False)


def _on_voice_button(turn: Turn, arg: str) -> None:
    heard = voice.on_answer(turn, arg == "yes")
    if heard:  # 对: the words as if typed, in the state the voice came in
        on_text(turn, heard)
        voice.drop_unused_audio(turn)


BUTTONS: dict[str, ButtonHandler] = {
    "consent": _on_consent_button,
    "pin": on_pin,  # 是这里 / 不是 under a placed location pin
    "addr": address.on_button,
    "useful": answers.on_useful,
    "human": answers.on_human_button,
    "more": answers.on_more,
    "pick": answers.on_pick,
    "clarify": _on_clarify,
    "note": _on_note_button,
    "photo_skip": _on_photo_skip,
    "voice": _on_voice_button,
    "slot_skip": lambda turn, arg: report.skip_slot(turn, arg),
    "confirm": lambda turn, arg: report.on_confirm(turn, arg == "yes"),
    "wish_ok": on_wish_fulfilled,  # 心愿达成 / 还没有 under a claimer's 已完成
    "wish_no": on_wish_not_yet,
    "rate": lambda turn, arg: mycases.on_rate(turn, turn.incoming.button.case_code if turn.incoming.button else None,
                                              arg),
}


def on_button(turn: Turn) -> None:
    btn = turn.incoming.button
    handler = BUTTONS.get(btn.action) if btn is not None else None
    if btn is None or handler is None:
        turn.expired()
        return
    handler(turn, btn.arg or "")


# ====================================================================== text, by state
def _in_consent(turn: Turn, text: str) -> None:
    if text in AGREE or text in DISAGREE:
        _on_consent_button(turn, "yes" if text in AGREE else "no")
        return
    process_text(turn, text)  # the notice stays open: 同意 typed later still counts


def _in_address(turn: Turn, text: str) -> None:
    if is_skip(text):
        address.skip(turn)
    elif not address.on_text(turn, text):
        process_text(turn, text)


def _in_report_photo(turn: Turn, text: str) -> None:
    # "对" / "好的" / "嗯" answer the photo prompt too: they mean "go on", and too short to be a new matter, so
    # they must not drop the draft and become a case titled "对"
    if is_skip(text) or text.strip() in YES or content_chars(text) < MIN_ACTIONABLE:
        report.skip_slot(turn, "photo")
        return
    turn.go(State.idle)  # they moved on; treat as a new message
    turn.data.draft = None
    process_text(turn, text)


def _in_report_where(turn: Turn, text: str) -> None:
    if is_skip(text):
        report.skip_slot(turn, "where")
    else:
        report.validate_where(turn, text)


def _in_report_confirm(turn: Turn, text: str) -> None:
    if text in YES:
        report.on_confirm(turn, True)
    elif text in NO:
        report.on_confirm(turn, False)
    else:
        report.on_edit(turn, text)


def _in_clarify(turn: Turn, text: str) -> None:
    choice = {texts.BTN_CLARIFY_INQUIRY: "inquiry", texts.BTN_CLARIFY_REPORT: "report",
              texts.BTN_CLARIFY_DISPUTE: "dispute", texts.BTN_CLARIFY_EMERGENCY: "emergency",
              texts.BTN_CLARIFY_OTHER: "other"}.get(text)
    if choice:
        _on_clarify(turn, choice)
        return
    turn.go(State.idle)
    turn.data.clarify = None
    process_text(turn, text)


def _in_voice_confirm(turn: Turn, text: str) -> None:
    if text in YES or text in NO:
        _on_voice_button(turn, "yes" if text in YES else "no")
        return
    heard = turn.data.voice  # they typed something else instead: the read-back is dropped, the text handled
    turn.data.voice = None
    turn.go(heard.back_to if heard is not None else State.idle)
    STATES.get(turn.state, STATES[State.idle])(turn, text)


def _in_start(turn: Turn, text: str) -> None:
    if turn.consented():  # known from another session: no second welcome
        turn.go(State.idle)
        process_text(turn, text)
    else:
        _first_contact(turn, text)


STATES: dict[str, TextHandler] = {
    State.start: _in_start,
    State.consent: _in_consent,
    State.address: _in_address,
    State.idle: lambda turn, text: process_text(turn, text),
    State.clarify: _in_clarify,
    State.report_what: report.validate_what,
    State.report_where: _in_report_where,
    State.report_photo: _in_report_photo,
    State.report_confirm: _in_report_confirm,
    State.report_edit: report.on_edit,
    State.voice_confirm: _in_voice_confirm,
}


def on_text(turn: Turn, text: str) -> None:
    if not text:
        turn.say(texts.EMPTY_INPUT)
        return
    answers.note_next_message(turn, text)  # after a miss: what they said next goes with it to the review queue
    if wants_person(text):  # from any state, slot or notice: a person, now
        _remember_phone(turn, text)  # a number typed with it is their call-back phone, never a case title
        answers.hand_off(turn, automatic=False)
        if turn.consented():
            turn.data.recent = []  # they went with the 转人工 case; asked again, they are not added twice
        return
    if safety.try_place(turn, text):  # an emergency waiting for its place: this address joins that case
        return
    if turn.state == State.idle and relay_reply.phone_given(turn, text):  # "138… 这是俺的电话": kept, and said
        return
    _remember_words(turn, text)
    if turn.data.note_pending and _typed_note_choice(turn, text):
        return
    turn.data.note_pending = None
    STATES.get(turn.state, STATES[State.idle])(turn, text)


# states whose reply is a slot's value (同意, the address, the place, 对): not the resident's words about the matter
_SLOT_STATES = frozenset({State.consent, State.address, State.report_where, State.report_confirm})
# states in which the matter in hand goes on (a report being filled, a reading being clarified)
_TOPIC_STATES = frozenset({State.clarify, State.report_what, State.report_photo, State.report_edit})


def _remember_words(turn: Turn, text: str) -> None:
    """The resident's own words about the matter in hand, masked, for a 转人工 case ("居民最近说"): no slot
    answers and no short replies (好的, 跳过, 谢谢); a message from the idle state starts a new matter, so the
    words of an earlier question or report are dropped."""
    bare = text.strip()
    if turn.state in _SLOT_STATES or bare in _SHORT_REPLIES or THANKS.match(bare) or \
            content_chars(bare) < MIN_ACTIONABLE:
        return
    words = mask_text(text)[:200]
    kept = turn.data.recent if turn.state in _TOPIC_STATES or turn.data.draft is not None else []
    turn.data.recent = [*kept, words][-RECENT:]


def _typed_note_choice(turn: Turn, text: str) -> bool:
    """新问题 or 补充… typed instead of pressed, while the 补充到工单 / 新问题 question is open."""
    if text in _NOTE_NEW:
        _on_note_button(turn, "new")
        return True
    if text.startswith("补充"):
        resident = turn.resident()
        code = mycases.latest_open_code(turn, resident.id) if resident is not None and resident.id else None
        mycases.on_note_choice(turn, code, "attach")
        return True
    return False


def _first_contact(turn: Turn, text: str) -> None:
    """Any first message: an emergency or a question is served at once; the rest waits for consent. An
    emergency asks for consent itself, after its safety steps, its case and its place."""
    u = turn.understand(text)
    if safety.is_emergency(u, text):
        process_text(turn, text, u)
        return
    serve_now = safety.is_injection(text) or (u.intent.label == "inquiry" and not u.low_confidence)
    if serve_now:
        process_text(turn, text, u)
    turn.say(texts.WELCOME)
    consent.ask_consent(turn)
    if not serve_now and (turn.services.policies.taxonomy.opens_case(u.intent.label) or u.low_confidence):
        turn.data.pending = u.text  # masked; replayed after consent and address


def process_text(turn: Turn, text: str, u: Understanding | None = None, *, about_cases: bool = True) -> None:
    """A message in the idle state: decide the path from the understanding. `about_cases`: whether it may be
    about a case already filed (False once the resident said 新问题)."""
    if safety.is_injection(text):
        u = u if u is not None else turn.understand(text)
        if not safety.is_emergency(u, text):  # an emergency gets its safety steps whatever else it says
            log.info("prompt-injection-like input refused cid=%s", turn.cid)
            turn.say(texts.INJECTION)
            return
    if wants_person(text):
        answers.hand_off(turn, automatic=False)
        return
    if answers.typed_pick(turn, text):  # a clarification's candidate typed instead of pressed
        return
    code = re.search(rf"{turn.services.policies.grids.street.case_code_prefix}\d{{8}}-\d{{4}}", text, re.IGNORECASE)
    if code:
        mycases.one_case(turn, code.group(0).upper())
        return
    if u is None:
        u = turn.understand(text)
    _remember_phone(turn, text)
    if safety.is_emergency(u, text):
        safety.emergency(turn, u, text)
        return
    intent = u.intent.label
    if _STATUS_WORDS.search(text) or (intent == "status" and not u.low_confidence):
        mycases.my_cases(turn)
        return
    if about_cases and intent != "inquiry" and mycases.about_filed_case(turn, text, u.category.label):
        return  # 没修好 after 办结, or more about an open case
    fact = grid_facts.detect(text)
    if fact is not None and not grid_facts.gives_way(u, opens_case=turn.services.policies.taxonomy.opens_case(intent)):
        grid_facts.reply(turn, fact, u.text)  # from grids.yaml and the case store, not from documents
        return
    if intent == "dispute" or _ASKS_MEDIATION.search(text):  # to the mediator at once, however sure the reading
        _start_mediation(turn, u)
        return
    if u.low_confidence and "intent" in (u.uncertain_axes or ["intent"]):
        turn.go(State.clarify)
        turn.data.clarify = u.text
        turn.say(texts.CLARIFY, _clarify_buttons())
        return
    if intent == "inquiry":
        answers.answer(turn, u)
    elif turn.services.policies.taxonomy.opens_case(intent):
        report.start_report(turn, u)
    elif intent == "feedback":
        mycases.text_feedback(turn, text)
    else:
        turn.say(texts.THANKS_REPLY if THANKS.match(text) else texts.CHITCHAT)


def _start_mediation(turn: Turn, u: Understanding) -> None:
    """A mediation request: the mediator's task also says who the two sides are (places.dispute_parties)."""
    if turn.consented() and len(u.parts) < 2:  # before consent the words wait as typed, replayed later
        parties = dispute_parties(u.text, home_of(turn.resident()))
        u = dataclasses.replace(u, text=f"{u.text}\n{texts.DISPUTE_PARTIES.format(parties=parties)}")
    report.start_report(turn, u, intent="dispute")


def _clarify_buttons() -> list[list[Button]]:
    return [[Button(texts.BTN_CLARIFY_INQUIRY, "clarify", None, "inquiry"),
             Button(texts.BTN_CLARIFY_REPORT, "clarify", None, "report")],
            [Button(texts.BTN_CLARIFY_DISPUTE, "clarify", None, "dispute")],
            [Button(texts.BTN_CLARIFY_EMERGENCY, "clarify", None, "emergency"),
             Button(texts.BTN_CLARIFY_OTHER, "clarify", None, "other")]]


def _remember_phone(turn: Turn, text: str) -> None:
    """A resident's own phone number may be kept on their row (raw for the owner, masked for workers)."""
    phones = [p for p in find_personal_data(text) if p.kind in ("mobile", "landline")]
    resident = turn.resident()
    if phones and resident is not None and turn.consented():
        update_contact_phone(session=turn.session, resident=resident, phone=phones[0].number,
                             masked=mask_text(phones[0].raw), now=turn.now)
