"""Voice through Telegram end to end with the REAL dialogue engine: PTB client <-> Bot API test server (voice
updates, getFile, the file download URL, sendVoice) and the real `openai` client <-> the OpenAI-compatible test
server's /v1/audio/transcriptions. The update is in the inbox before it is handled; the read-back's 对 is a signed
button; offline, a file that cannot be fetched and a rate-limited endpoint end as a 语音留言 whose task push
carries the voice to the grid worker."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import SecretStr
from sqlalchemy import select
from sqlalchemy.engine import Engine

from bot.channels.inbox import Inbox
from bot.dialogue import texts
from bot.services import Services
from bot.settings import Settings
from casestore.db import session_scope
from casestore.models import Case, InboundState
from policies.models import Policies
from tests.factories import SharedAI, make_resident
from tests.servers.botapi import DEFAULT_TOKEN, BotApiServer
from tests.servers.openai_compat import OpenAICompatServer
from tests.servers.tg_factories import make_callback_update, make_voice_update
from tests.test_telegram_e2e import start, tg  # noqa: F401 - fixtures
from tests.test_voice import ogg

USER = 30071


@pytest.fixture
def stt() -> Iterator[OpenAICompatServer]:
    with OpenAICompatServer() as server:
        yield server


def tg_settings_for(settings: Settings, tg: BotApiServer, **update: Any) -> Settings:  # noqa: F811
    return settings.model_copy(update={"telegram_token": SecretStr(DEFAULT_TOKEN), "telegram_base_url": tg.base_url,
                                       **update})


def _cases(engine: Engine) -> list[Case]:
    with session_scope(engine) as session:
        rows = list(session.execute(select(Case).order_by(Case.id)).scalars())
        session.expunge_all()
        return rows


def _to_user(call: dict[str, Any]) -> bool:
    return call["method"] == "sendMessage" and call["params"].get("chat_id") == USER


async def test_voice_read_back_then_yes_is_handled_as_typed(tg: BotApiServer, settings: Settings,  # noqa: F811
                                                            engine: Engine, policies: Policies, clock: Any,
                                                            stt: OpenAICompatServer, ai: SharedAI):
    make_resident(engine, policies, clock=clock, user=USER)
    words = "3号楼2单元楼道灯坏了，晚上看不见"
    tg.add_file("VOICE-A", ogg(words), file_path="voice/file_1.oga")
    cfg = tg_settings_for(settings, tg, transcription_base_url=stt.base_url, transcription_timeout_s=2.0)
    services = Services(cfg, engine=engine, policies=policies, classifier=ai.classifier, knowledge=ai.knowledge)
    running = await start(cfg, services.dialogue.handle, engine)
    try:
        uid = tg.push_update(make_voice_update(USER, file_id="VOICE-A", duration=6))
        ask = await tg.async_wait_for(lambda c: _to_user(c) and "reply_markup" in c["params"])
        assert ask["params"]["text"] == texts.VOICE_READ_BACK.format(text=words)
        assert tg.calls("getFile")[0]["params"]["file_id"] == "VOICE-A"  # fetched through getFile + the file URL
        assert stt.audio_requests()[0]["body"]["file"]["data"] == ogg(words)
        entry = Inbox(engine).get(update_id=uid)
        assert entry is not None and entry.state == InboundState.done  # stored, then handled once

        markup = ask["params"]["reply_markup"]
        labels = {b["text"]: b["callback_data"] for row in markup["inline_keyboard"] for b in row}
        assert set(labels) == {texts.BTN_VOICE_YES, texts.BTN_VOICE_NO}
        before = len(tg.texts_to(USER))
        tg.push_update(make_callback_update(labels[texts.BTN_VOICE_YES], user_id=USER,
                                            message_id=ask["result"]["message_id"], reply_markup=markup))
        await tg.async_wait_for(lambda c: _to_user(c) and len(tg.texts_to(USER)) > before)
        after = "\n".join(tg.texts_to(USER)[before:])
        assert "楼道灯" in after or "照片" in after or "登记" in after, after  # the report form goes on
        assert texts.VOICE_SAY_AGAIN not in after
    finally:
        await running.stop()
        services.close()


@pytest.mark.parametrize("fault", ["offline", "file_missing", "rate_limited"])
async def test_voice_without_text_reaches_the_grid_worker_as_audio(fault: str, tg: BotApiServer,  # noqa: F811
                                                                  settings: Settings, engine: Engine,
                                                                  policies: Policies, clock: Any,
                                                                  stt: OpenAICompatServer, ai: SharedAI):
    make_resident(engine, policies, clock=clock, user=USER)
    if fault != "file_missing":  # unknown to getFile: the download fails, the file id still reaches the worker
        tg.add_file("VOICE-B", ogg("楼道灯坏了"))
    update: dict[str, Any] = {}
    if fault != "offline":
        update = {"transcription_base_url": stt.base_url, "transcription_timeout_s": 2.0}
    if fault == "rate_limited":
        stt.queue_error(429, endpoint="audio")
    cfg = tg_settings_for(settings, tg, **update)
    services = Services(cfg, engine=engine, policies=policies, classifier=ai.classifier, knowledge=ai.knowledge)
    running = await start(cfg, services.dialogue.handle, engine)
    try:
        tg.push_update(make_voice_update(USER, file_id="VOICE-B", duration=9))
        told = await tg.async_wait_for(lambda c: _to_user(c) and "语音留言" in c["params"]["text"])
        [case] = _cases(engine)
        assert case.code in told["params"]["text"] and case.title.startswith("语音留言")
        if fault != "file_missing":  # Telegram refuses to send a file id it does not know: the push goes as text
            pushed = await tg.async_wait_for(lambda c: c["method"] == "sendVoice")
            assert pushed["params"]["voice"] == "VOICE-B" and pushed["params"]["chat_id"] != USER
        task = await tg.async_wait_for(lambda c: c["method"] == "sendMessage" and case.code in c["params"]["text"]
                                       and c["params"].get("chat_id") != USER)
        assert "语音留言" in task["params"]["text"] and "reply_markup" in task["params"]  # with its action buttons
        assert (len(stt.audio_requests()) == 1) == (fault == "rate_limited")
    finally:
        await running.stop()
        services.close()
