"""Voice messages through the real dialogue engine and a real OpenAI-compatible transcription endpoint (the test
server speaks /v1/audio/transcriptions over HTTP to the real `openai` client): read back with 对/不对, 对 handled
exactly as typed, 不对 asked again; offline, a failing, hanging or rate-limited endpoint, and voice over 60 s go to
the grid worker as a 语音留言 case with the audio in the task push; bad audio gets a clear answer."""

from __future__ import annotations

import time
from collections.abc import Iterator
from itertools import count

import pytest
from sqlalchemy import select
from sqlalchemy.engine import Engine

from bot.dialogue import texts
from bot.dialogue.engine import DialogueEngine
from bot.dialogue.types import Incoming, Voice
from bot.dialogue.voice import MAX_VOICE_S
from bot.services import Services
from bot.settings import Settings
from casestore.clock import FakeClock
from casestore.db import session_scope
from casestore.models import Case, Conversation
from policies.models import Policies
from tests.factories import (
    FU01_FULL_TIME,
    OTHER_RESIDENT_ID,
    RESIDENT_ID,
    SharedAI,
    all_text,
    button,
    find_button,
    make_resident,
    press,
    pushes,
    text,
)
from tests.servers.openai_compat import OpenAICompatServer

_files = count(1)


def ogg(words: str = "") -> bytes:
    """A test voice file: an Ogg page header, then the words the test server's transcription "hears"."""
    return b"OggS\x00\x02" + b"\x00" * 22 + (f"SAY:{words}\n".encode() if words else b"\x01" * 40)


def voice(audio: bytes | None = None, *, duration: int = 5, user: int = RESIDENT_ID,
          file_id: str | None = None) -> Incoming:
    return Incoming(channel="telegram", user_id=user, chat_id=user, kind="voice", display_name="张阿姨",
                    voice=Voice(file_id=file_id or f"voice-{next(_files)}", duration=duration, mime_type="audio/ogg",
                                audio=audio))


@pytest.fixture
def stt() -> Iterator[OpenAICompatServer]:
    with OpenAICompatServer() as server:
        yield server


def engine_for(settings: Settings, engine: Engine, policies: Policies, clock: FakeClock, ai: SharedAI,
               **update: object) -> DialogueEngine:
    return Services(settings.model_copy(update=update), clock=clock, engine=engine, policies=policies,
                    classifier=ai.classifier, knowledge=ai.knowledge).dialogue


@pytest.fixture
def heard(settings: Settings, engine: Engine, policies: Policies, clock: FakeClock, ai: SharedAI,
          stt: OpenAICompatServer) -> DialogueEngine:
    """The engine with the transcription endpoint configured (1 s timeout: the hang test stays short)."""
    return engine_for(settings, engine, policies, clock, ai, transcription_base_url=stt.base_url,
                      transcription_timeout_s=1.0)


def cases(engine: Engine) -> list[Case]:
    with session_scope(engine) as session:
        rows = list(session.execute(select(Case).order_by(Case.id)).scalars())
        session.expunge_all()
        return rows


def state_of(engine: Engine, user: int = RESIDENT_ID) -> str:
    with session_scope(engine) as session:
        return session.execute(select(Conversation.state).where(Conversation.user_id == user)).scalar_one()


def without_codes(said: str) -> str:
    return "".join(ch if not ch.isdigit() else "#" for ch in said)


# ---------------------------------------------------------------- transcribed, read back, confirmed
def test_voice_is_read_back_and_yes_is_handled_exactly_as_typed(heard, engine, clock, policies, stt):
    make_resident(engine, policies, clock=clock)
    make_resident(engine, policies, clock=clock, user=OTHER_RESIDENT_ID)
    words = "3号楼2单元楼道灯坏了，晚上看不见"
    r = heard.handle(voice(ogg(words)))
    assert all_text(r) == texts.VOICE_READ_BACK.format(text=words)
    assert state_of(engine) == "voice_confirm" and cases(engine) == []
    sent = stt.audio_requests()[0]["body"]
    assert sent["file"]["data"] == ogg(words) and sent["file"]["filename"] == "voice.ogg"
    assert sent["model"] == "whisper-1" and sent["language"] == "zh"

    after_yes = all_text(heard.handle(press(find_button(r, texts.BTN_VOICE_YES))))
    typed = all_text(heard.handle(text(words, user=OTHER_RESIDENT_ID)))
    assert after_yes and without_codes(after_yes) == without_codes(typed)  # the same path as the typed words
    assert state_of(engine) == state_of(engine, OTHER_RESIDENT_ID)


def test_typed_dui_confirms_and_a_second_press_is_expired(heard, engine, clock, policies):
    make_resident(engine, policies, clock=clock)
    r = heard.handle(voice(ogg("暖气不热打什么电话")))
    yes = find_button(r, texts.BTN_VOICE_YES)
    assert texts.VOICE_READ_BACK.format(text="暖气不热打什么电话") in all_text(r)
    answered = all_text(heard.handle(text("对")))
    assert answered and texts.VOICE_SAY_AGAIN not in answered and state_of(engine) != "voice_confirm"
    assert all_text(heard.handle(press(yes))) == texts.BUTTON_EXPIRED  # pressed after it was answered


def test_no_asks_to_say_it_again_or_type_and_opens_nothing(heard, engine, clock, policies):
    make_resident(engine, policies, clock=clock)
    r = heard.handle(voice(ogg("楼道灯坏了")))
    assert all_text(heard.handle(press(find_button(r, texts.BTN_VOICE_NO)))) == texts.VOICE_SAY_AGAIN
    assert state_of(engine) == "start" and cases(engine) == []  # back where the voice came in


def test_voice_answers_the_slot_it_came_in(heard, engine, clock, policies):
    """A voice sent while the form asks 在哪里 fills that slot on 对, as the typed address would."""
    make_resident(engine, policies, clock=clock, estate=None, building=None)
    said = all_text(heard.handle(text("路灯坏了")))
    assert state_of(engine) == "report_where", said
    r = heard.handle(voice(ogg("芙蓉小区5号楼门口")))
    heard.handle(press(find_button(r, texts.BTN_VOICE_YES)))
    assert state_of(engine) != "report_where"  # the place was taken from the confirmed words


def test_long_voice_goes_on_the_case_as_audio(heard, engine, clock, policies):
    make_resident(engine, policies, clock=clock)
    r = heard.handle(voice(ogg("3号楼2单元楼道灯坏了，晚上看不见"), duration=35, file_id="long-voice"))
    said = all_text(heard.handle(press(find_button(r, texts.BTN_VOICE_YES))))
    for _ in range(3):  # the form: skip the photo, confirm
        if "跳过" in said:
            said = all_text(heard.handle(text("跳过")))
        elif "我帮您登记" in said or "对吗" in said:
            said = all_text(heard.handle(text("对")))
    [case] = cases(engine)
    assert {"type": "voice", "file_id": "long-voice", "duration": 35, "channel": "telegram"} in case.attachments
    assert "楼道灯" in case.description


# ---------------------------------------------------------------- no text: 语音留言 for the grid worker
def _assert_voice_case(engine: Engine, clock: FakeClock, said: str, file_id: str, *, template: str) -> None:
    [case] = cases(engine)
    assert case.title.startswith("语音留言") and case.assignee_id is not None
    assert next(a for a in case.attachments if a["type"] == "voice")["file_id"] == file_id
    assert said.startswith(template.split("{")[0]) and case.code in said
    push = [m for _, m in pushes(engine, clock).sent if case.code in m.text]
    assert push and push[0].voice == file_id  # the worker's task push carries the audio to listen to


def test_offline_voice_becomes_a_voice_message_case(dlg, engine, clock, policies):
    make_resident(engine, policies, clock=clock)
    said = all_text(dlg.handle(voice(ogg("楼道灯坏了"), file_id="offline-voice")))
    _assert_voice_case(engine, clock, said, "offline-voice", template=texts.VOICE_OFFLINE)


@pytest.mark.parametrize("fault", ["down", "500", "429", "hang", "malformed"])
def test_endpoint_failures_fall_back_to_a_voice_message_case(fault, settings, engine, policies, clock, ai, stt):
    make_resident(engine, policies, clock=clock)
    url = "http://127.0.0.1:9/v1" if fault == "down" else stt.base_url
    dlg = engine_for(settings, engine, policies, clock, ai, transcription_base_url=url, transcription_timeout_s=1.0)
    if fault in ("500", "429"):
        stt.queue_error(int(fault), endpoint="audio")
    elif fault == "hang":
        stt.hang(endpoint="audio")
    elif fault == "malformed":
        stt.queue_malformed(endpoint="audio")
    started = time.monotonic()
    said = all_text(dlg.handle(voice(ogg("楼道灯坏了"), file_id=f"voice-{fault}")))
    assert time.monotonic() - started < 5  # a hanging endpoint costs its timeout once, not more
    _assert_voice_case(engine, clock, said, f"voice-{fault}", template=texts.VOICE_OFFLINE)


def test_voice_over_60_seconds_is_not_transcribed_and_goes_to_the_worker(heard, engine, clock, policies, stt):
    make_resident(engine, policies, clock=clock)
    said = all_text(heard.handle(voice(ogg("很长的一段话"), duration=MAX_VOICE_S + 15, file_id="too-long")))
    assert stt.audio_requests() == []
    _assert_voice_case(engine, clock, said, "too-long", template=texts.VOICE_TOO_LONG)
    assert f"超过了{MAX_VOICE_S}秒" in said


def test_voice_before_consent_is_kept_and_filed_after_it(dlg, engine, clock, policies):
    r = dlg.handle(voice(ogg(), file_id="first-voice"))
    assert texts.VOICE_KEPT_FOR_CONSENT in all_text(r) and cases(engine) == []
    r = dlg.handle(press(find_button(r, texts.BTN_AGREE)))
    said = all_text(r)
    if state_of(engine) == "address":  # no address yet: the resident may skip it
        said = all_text(dlg.handle(text("跳过")))
    _assert_voice_case(engine, clock, said.split(texts.ADDRESS_SKIPPED)[-1].strip(), "first-voice",
                       template=texts.VOICE_OFFLINE)


def test_voice_before_a_declined_consent_is_not_filed(dlg, engine, clock, policies):
    r = dlg.handle(voice(ogg()))
    dlg.handle(press(find_button(r, texts.BTN_DISAGREE)))
    dlg.handle(text("你好"))
    assert cases(engine) == []


# ---------------------------------------------------------------- bad audio: a clear answer, never a traceback
@pytest.mark.parametrize(("audio", "answer"), [
    (b"this is not audio at all, just text bytes", texts.VOICE_BROKEN),
    (b"", texts.VOICE_BROKEN),
    (b"\x00" * 4000, texts.VOICE_BROKEN),
    (b"\x02#!SILK_V3" + b"\x00" * 64, texts.VOICE_UNSUPPORTED),  # WeChat's own codec: no server decodes it
    (b"\xff\xfb\x90\x00" + b"\x00" * 64, texts.VOICE_UNSUPPORTED),  # the endpoint refuses it (HTTP 400)
])
def test_bad_audio_gets_a_clear_answer(audio, answer, heard, engine, clock, policies):
    make_resident(engine, policies, clock=clock)
    assert all_text(heard.handle(voice(audio))) == answer
    assert cases(engine) == [] and state_of(engine) == "start"  # nothing pending, nothing changed


def test_silence_asks_to_say_it_again(heard, engine, clock, policies, stt):
    make_resident(engine, policies, clock=clock)
    stt.queue_transcription("   ")
    assert all_text(heard.handle(voice(ogg("听不见")))) == texts.VOICE_EMPTY
    assert cases(engine) == []


def test_stale_or_forged_voice_buttons_and_a_voice_without_its_file(heard, engine, clock, policies):
    make_resident(engine, policies, clock=clock)
    assert all_text(heard.handle(button("voice", arg="yes"))) == texts.BUTTON_EXPIRED
    assert all_text(heard.handle(button("voice", arg="no"))) == texts.BUTTON_EXPIRED
    bare = Incoming(channel="telegram", user_id=RESIDENT_ID, chat_id=RESIDENT_ID, kind="voice")
    assert all_text(heard.handle(bare)) == texts.VOICE_BROKEN
    assert cases(engine) == []


def test_long_voice_waits_through_the_clarify_question(heard, engine, clock, policies):
    """A reading the classifier is unsure of asks 咨询还是报修 first: the audio still reaches the case."""
    make_resident(engine, policies, clock=clock)
    r = heard.handle(voice(ogg("8号楼前停了辆僵尸车，落满了灰，一年没动了"), duration=26, file_id="unsure-voice"))
    said = heard.handle(press(find_button(r, texts.BTN_VOICE_YES)))
    assert state_of(engine) == "clarify", all_text(said)  # the path this test is about
    said = heard.handle(press(find_button(said, texts.BTN_CLARIFY_REPORT)))
    for _ in range(3):
        if "跳过" in all_text(said):
            said = heard.handle(text("跳过"))
        elif "对吗" in all_text(said):
            said = heard.handle(text("对"))
    [case] = cases(engine)
    assert any(a.get("file_id") == "unsure-voice" for a in case.attachments)


def test_voice_message_case_and_its_push_on_postgresql(settings, pg_url, pg_engine, policies, clock, ai):
    dlg = Services(settings.model_copy(update={"database_url": pg_url}), clock=clock, engine=pg_engine,
                   policies=policies, classifier=ai.classifier, knowledge=ai.knowledge).dialogue
    make_resident(pg_engine, policies, clock=clock)
    said = all_text(dlg.handle(voice(ogg("楼道灯坏了"), file_id="pg-voice")))
    _assert_voice_case(pg_engine, clock, said, "pg-voice", template=texts.VOICE_OFFLINE)


def test_a_worker_voice_is_answered_not_filed(heard, engine, stt):
    assert all_text(heard.handle(voice(ogg("我已经到现场了"), user=FU01_FULL_TIME))) == texts.VOICE_WORKER
    assert cases(engine) == []
