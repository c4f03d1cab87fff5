"""Voice messages, for every channel: transcribed, read back, confirmed; or handed to a person as they are.

Owns: `transcribe` (run by the engine before the turn, outside any transaction: a channel's voice -> its text, or
why there is none), the read-back ("您说的是：…，对吗？" with 对/不对), and the 语音留言 case when there is no text
(no transcription endpoint, the endpoint failed, was slow or busy, or the voice is longer than MAX_VOICE_S) with
the audio attached for the grid worker to listen to, so nothing a resident says is lost. A voice kept because
consent was not given yet is filed right after it (`file_kept`). Bad audio (not an audio file, a codec no server
decodes, silence) gets a clear answer.
The words confirmed with 对 are handled by resident.py exactly as if they had been typed, in the state the voice
came in; this module hands them back (`on_answer` returns them) and never imports the router.
Must not: download files (the channel adapter does), talk to the endpoint itself (a `Transcriber` does) or log the
resident's words.
"""

from __future__ import annotations

import logging
from dataclasses import replace

from bot.dialogue import texts
from bot.dialogue.consent import ask_consent
from bot.dialogue.drafts import HeardVoice
from bot.dialogue.filing import handler_text
from bot.dialogue.places import home_of
from bot.dialogue.state import State
from bot.dialogue.turn import Turn
from bot.dialogue.types import Incoming, Voice
from casestore.errors import DomainError
from casestore.intake import Report, open_case
from casestore.models import Case
from casestore.notify import Button
from knowledge.transcribe import MIME_OF, SUPPORTED_FORMATS, Transcriber, TranscriptionError, audio_format
from policies.hygiene import clean_text
from policies.masking import mask_text

log = logging.getLogger(__name__)

MAX_VOICE_S = 60  # longer voice is not transcribed: it goes to the grid worker to listen to
LONG_VOICE_S = 20  # a confirmed voice this long goes on its case as audio too (the resident's own words)
MAX_VOICE_BYTES = 2 << 20  # 60 s of Opus is ~0.5 MB; a bigger "voice" is not downloaded
MAX_HEARD_CHARS = 500  # a transcript longer than this is cut before it is read back
PROBLEMS = ("offline", "too_long", "broken", "unsupported", "failed", "empty")
_ANSWER = {"broken": texts.VOICE_BROKEN, "unsupported": texts.VOICE_UNSUPPORTED, "empty": texts.VOICE_EMPTY}


class _Unheard:
    """Duplicate detection for a 语音留言: nobody has heard it yet, so its placeholder words repeat no other case."""

    def similarity(self, a: str, b: str) -> float:
        return 0.0


# ====================================================================== before the turn (no transaction open)
def transcribe(incoming: Incoming, transcriber: Transcriber | None) -> Incoming:
    """`incoming` with its voice's transcript, or the reason there is none; any other message as it is."""
    voice = incoming.voice
    if incoming.kind != "voice" or voice is None or voice.transcript is not None or voice.problem:
        return incoming
    return replace(incoming, voice=_heard(voice, transcriber))


def _heard(voice: Voice, transcriber: Transcriber | None) -> Voice:
    if voice.duration > MAX_VOICE_S:
        return replace(voice, problem="too_long")
    if transcriber is None:
        return replace(voice, problem="offline")
    if voice.audio is None:  # the channel could not fetch it: the file id still reaches the worker
        return replace(voice, problem="failed")
    fmt = audio_format(voice.audio)
    if fmt is None or len(voice.audio) < 16:
        return replace(voice, problem="broken")
    if fmt not in SUPPORTED_FORMATS or len(voice.audio) > MAX_VOICE_BYTES:
        return replace(voice, problem="unsupported")
    try:
        text = transcriber.transcribe(voice.audio, filename=f"voice.{fmt}", mime_type=MIME_OF[fmt])
    except TranscriptionError as exc:
        log.info("voice not transcribed (%s, %ss): %s", transcriber.name, voice.duration, str(exc)[:120])
        return replace(voice, problem="unsupported" if exc.rejected else "failed")
    text = clean_text(text).strip()
    if not text:
        return replace(voice, problem="empty")
    return replace(voice, transcript=text)


# ====================================================================== in the turn
def _attachment(turn: Turn, file_id: str, duration: int) -> dict[str, object]:
    return {"type": "voice", "file_id": file_id, "duration": duration, "channel": turn.channel}


def on_voice(turn: Turn) -> None:
    """A resident's voice message: read back, or answered (bad audio), or filed as 语音留言 (no text)."""
    voice = turn.incoming.voice
    if voice is None or (voice.transcript is None and voice.problem not in PROBLEMS):
        turn.say(texts.VOICE_BROKEN)
        return
    if voice.problem in _ANSWER:
        turn.say(_ANSWER[voice.problem])
        return
    if voice.transcript:
        heard = mask_text(voice.transcript)[:MAX_HEARD_CHARS]
        previous = turn.data.voice
        back_to = previous.back_to if turn.state == State.voice_confirm and previous else turn.state
        turn.data.voice = HeardVoice(text=heard, file_id=voice.file_id, duration=voice.duration, back_to=back_to)
        turn.go(State.voice_confirm)
        turn.say(texts.VOICE_READ_BACK.format(text=heard),
                 [[Button(texts.BTN_VOICE_YES, "voice", None, "yes"), Button(texts.BTN_VOICE_NO, "voice", None, "no")]])
        return
    leave_message(turn, file_id=voice.file_id, duration=voice.duration, too_long=voice.problem == "too_long")


def on_answer(turn: Turn, yes: bool) -> str | None:
    """对 / 不对 to a read-back. 对: the masked words, to be handled as typed (the state is back where the voice
    came in; a long voice waits on the draft as audio). 不对: asked to say it again or type; None."""
    heard = turn.data.voice
    if turn.state != State.voice_confirm or heard is None or not heard.text:
        turn.expired()
        return None
    turn.data.voice = None
    turn.go(heard.back_to)
    if not yes:
        turn.say(texts.VOICE_SAY_AGAIN)
        return None
    if heard.duration >= LONG_VOICE_S and heard.file_id:
        attachment = _attachment(turn, heard.file_id, heard.duration)
        if turn.data.draft is not None:
            turn.data.draft.attachments.append(attachment)
        else:  # a report started from these words takes it (report.start_report); anything else drops it
            turn.data.pending_attachments.append(attachment)
    return heard.text


def drop_unused_audio(turn: Turn) -> None:
    """After the confirmed words were handled: a voice attachment no report took is not kept for a later one
    (unless the words wait for the 咨询/报修 choice: a report may still start from them)."""
    if turn.state == State.clarify:
        return
    turn.data.pending_attachments = [a for a in turn.data.pending_attachments if a.get("type") != "voice"]


def leave_message(turn: Turn, *, file_id: str, duration: int, too_long: bool = False) -> None:
    """No text for this voice: a 语音留言 case with the audio for the grid worker, the resident told its code. Before
    consent the voice is kept and filed right after it (`file_kept`)."""
    if not turn.consented():
        turn.data.voice = HeardVoice(file_id=file_id, duration=duration, back_to=State.idle.value)
        ask_consent(turn, why=texts.VOICE_KEPT_FOR_CONSENT)
        return
    case = _open_voice_case(turn, file_id=file_id, duration=duration)
    if case is None:
        turn.say(texts.VOICE_NOT_FILED)
        return
    template = texts.VOICE_TOO_LONG if too_long else texts.VOICE_OFFLINE
    turn.say(template.format(code=case.code, handler=handler_text(turn, case), limit=MAX_VOICE_S))


def file_kept(turn: Turn) -> None:
    """A voice kept until consent: filed once the resident has agreed and the address step is over; dropped if
    they declined."""
    kept = turn.data.voice
    if kept is None or kept.text or turn.state == State.voice_confirm:
        return
    if turn.data.consent_declined:
        turn.data.voice = None
        return
    if not turn.consented() or turn.state in (State.consent, State.address):
        return
    turn.data.voice = None
    leave_message(turn, file_id=kept.file_id, duration=kept.duration, too_long=kept.duration > MAX_VOICE_S)


def _open_voice_case(turn: Turn, *, file_id: str, duration: int) -> Case | None:
    resident = turn.resident()
    home = home_of(resident)
    seconds = max(1, duration)
    report = Report(intent="help", category="other", urgency="normal",
                    title=texts.VOICE_CASE_TITLE.format(seconds=seconds),
                    description=texts.VOICE_CASE_TEXT.format(seconds=seconds),
                    location_text=home.where if home else None, estate=home.estate if home else None,
                    building=home.building if home else None, unit=home.unit if home else None,
                    attachments=[_attachment(turn, file_id, duration)])
    try:
        with turn.session.begin_nested():
            result = open_case(session=turn.session, policies=turn.services.policies, sla=turn.services.sla,
                               clock=turn.services.clock, resident=resident, report=report, similarity=_Unheard())
    except DomainError as exc:
        log.info("voice message not filed cid=%s: %s", turn.cid, type(exc).__name__)
        return None
    return result.case
