"""Through Telegram with the REAL dialogue engine (bot.services.Services): PTB client <-> Bot API test server.

Covers the first-contact path (consent with a signed button), a forged button (no state change) and
unsupported media. The full resident/worker loop (address, report, task push, accept, resolve, rating,
emergency) through Telegram is not scripted here yet.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.engine import Engine

from bot.dialogue import texts
from bot.services import Services
from bot.settings import Settings
from casestore.db import session_scope
from tests.factories import resident_of
from tests.servers.botapi import BotApiServer
from tests.servers.tg_factories import make_callback_update, make_command_update, make_sticker_update
from tests.test_telegram_e2e import start, tg, tg_settings  # noqa: F401 - fixtures

USER = 30001


def _consent(engine: Engine) -> Any:
    with session_scope(engine) as session:
        row = resident_of(session, USER)
        return None if row is None else row.consent_at


async def test_first_contact_consent_forged_button_and_sticker(tg: BotApiServer, tg_settings: Settings,  # noqa: F811
                                                               engine: Engine):
    services = Services(tg_settings, engine=engine)
    running = await start(tg_settings, services.dialogue.handle, engine)
    try:
        tg.push_update(make_command_update("/start", user_id=USER))
        ask = await tg.async_wait_for(lambda c: c["method"] == "sendMessage" and c["params"].get("chat_id") == USER
                                      and "reply_markup" in c["params"])
        assert texts.WELCOME in tg.texts_to(USER)
        markup = ask["params"]["reply_markup"]
        labels = {b["text"]: b["callback_data"] for row in markup["inline_keyboard"] for b in row}
        agree = labels[texts.BTN_AGREE]

        forged = agree[:-2] + ("AA" if not agree.endswith("AA") else "BB")
        tg.push_update(make_callback_update(forged, user_id=USER, message_id=ask["result"]["message_id"],
                                            callback_id="forged"))
        await tg.async_wait_for(lambda c: c["method"] == "answerCallbackQuery"
                                and c["params"]["callback_query_id"] == "forged")
        assert _consent(engine) is None  # refused: no state change

        tg.push_update(make_callback_update(agree, user_id=USER, message_id=ask["result"]["message_id"],
                                            reply_markup=markup))
        await tg.async_wait_for(lambda c: c["params"].get("text") == texts.CONSENT_THANKS)
        assert _consent(engine) is not None

        tg.push_update(make_sticker_update(USER))
        await tg.async_wait_for(lambda c: c["params"].get("text") == texts.UNSUPPORTED)
    finally:
        await running.stop()
        services.close()
    refused = [c["params"] for c in tg.calls("answerCallbackQuery") if c["params"]["callback_query_id"] == "forged"]
    assert refused and refused[0]["show_alert"] is True and "按钮已失效" in refused[0]["text"]
