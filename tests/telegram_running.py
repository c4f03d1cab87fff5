"""The running Telegram channel over the real engine, shared by the end-to-end tests that drive it with Chats:
`running` starts it on the Bot API test server (and checks afterwards that no update errored and no button was
refused), `pushed` waits for a push to one chat."""

from __future__ import annotations

from typing import Any

import pytest

from bot.services import Services
from bot.settings import Settings
from casestore.clock import FakeClock
from policies.models import Policies
from tests.factories import SharedAI
from tests.servers.botapi import BotApiServer
from tests.test_telegram_e2e import Running, start, tg, tg_settings  # noqa: F401 - fixtures
from tests.test_telegram_loop_e2e import _labels, _text_of, fast_settings  # noqa: F401 - fixtures


@pytest.fixture
async def running(tg: BotApiServer, fast_settings: Settings, engine: Any, policies: Policies,  # noqa: F811
                  clock: FakeClock, ai: SharedAI) -> Any:
    services = Services(fast_settings, clock=clock, engine=engine, policies=policies, classifier=ai.classifier,
                        knowledge=ai.knowledge)
    bot: Running = await start(fast_settings, services.dialogue.handle, engine, clock)
    try:
        yield bot
    finally:
        await bot.stop()
        services.close()
    assert bot.channel.stats.errors == 0 and bot.channel.stats.refused_buttons == 0
    assert not tg.rejected


async def pushed(tg: BotApiServer, chat_id: int, needle: str, label: str | None = None) -> dict[str, Any]:  # noqa: F811
    """A push the channel delivers right after the update that queued it."""
    return await tg.async_wait_for(
        lambda c: c["method"] in ("sendMessage", "sendPhoto") and c["params"].get("chat_id") == chat_id
        and needle in _text_of(c["params"]) and (label is None or label in _labels(c["params"])), timeout=15)
