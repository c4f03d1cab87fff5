"""`quanbot scheduler` pushes through `make_notifier` (no Telegram channel built to borrow its notifier), and the
CLI keeps libraries' per-run chatter (APScheduler, jieba) off the terminal."""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from pydantic import SecretStr
from sqlalchemy.engine import Engine
from typer.testing import CliRunner

from bot.channels.callback import CallbackSigner, signing_key
from bot.channels.notifiers import BotNotifier, LogNotifier, make_notifier
from bot.cli import app
from bot.cli.common import quiet_libraries
from bot.settings import Settings
from casestore.notify import Button, OutboundMessage
from tests.servers.botapi import DEFAULT_TOKEN, BotApiServer

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def tg() -> Iterator[BotApiServer]:
    with BotApiServer(DEFAULT_TOKEN) as server:
        yield server


def test_without_a_token_pushes_go_to_the_log(settings: Settings, caplog: pytest.LogCaptureFixture) -> None:
    notifier = make_notifier(settings)
    assert isinstance(notifier, LogNotifier)
    caplog.set_level(logging.INFO, logger="bot.channels.notifiers")
    asyncio.run(notifier.send(chat_id=7, message=OutboundMessage("新工单 A1", [[Button("接单", "accept", "A1")]])))
    assert "→ chat 7: 新工单 A1 [接单]" in caplog.text


async def test_with_a_token_a_push_goes_to_telegram_with_buttons_the_bot_accepts(settings: Settings,
                                                                                 tg: BotApiServer) -> None:
    tg_settings = settings.model_copy(update={"telegram_token": SecretStr(DEFAULT_TOKEN),
                                              "telegram_base_url": tg.base_url})
    notifier = make_notifier(tg_settings)
    assert isinstance(notifier, BotNotifier)
    await notifier.initialize()
    try:
        await notifier.send(chat_id=4242, message=OutboundMessage("请接单", [[Button("接单", "accept", "A1")]]))
    finally:
        await notifier.shutdown()
    assert tg.calls("getMe")
    [sent] = tg.messages_to(4242)
    assert sent["text"] == "请接单"
    markup = sent["reply_markup"] if isinstance(sent["reply_markup"], dict) else json.loads(sent["reply_markup"])
    data = markup["inline_keyboard"][0][0]["callback_data"]
    # the bot process signs and checks buttons with the key derived from the same settings
    bot_side = CallbackSigner(signing_key(configured="", bot_token=DEFAULT_TOKEN))
    assert bot_side.decode(data, label="接单") == Button("接单", "accept", "A1")


def test_scheduler_once_without_a_token_runs_a_sweep(engine: Engine, settings: Settings,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", settings.database_url)
    result = CliRunner().invoke(app, ["scheduler", "--once"])
    assert result.exit_code == 0, result.output
    assert "未配置 TELEGRAM_TOKEN" in result.output and "到期 0 件" in result.output


def test_scheduler_once_with_a_token_talks_to_telegram(engine: Engine, settings: Settings, tg: BotApiServer,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", settings.database_url)
    monkeypatch.setenv("TELEGRAM_TOKEN", DEFAULT_TOKEN)
    monkeypatch.setenv("TELEGRAM_BASE_URL", tg.base_url)
    result = CliRunner().invoke(app, ["scheduler", "--once"])
    assert result.exit_code == 0, result.output
    assert "到期 0 件" in result.output and tg.calls("getMe")


def test_scheduler_on_a_database_that_was_never_migrated_is_one_line(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'new.db'}")
    result = CliRunner().invoke(app, ["scheduler", "--once"])
    assert result.exit_code == 2 and "quanbot db upgrade" in result.output and "Traceback" not in result.output


async def test_apscheduler_and_alembic_log_nothing_per_run_after_the_cli_set_up_logging(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    for name in ("apscheduler", "alembic"):
        monkeypatch.setattr(logging.getLogger(name), "level", logging.NOTSET)  # restored afterwards
    quiet_libraries()
    assert not logging.getLogger("alembic.runtime.migration").isEnabledFor(logging.INFO)  # "Context impl …"
    caplog.set_level(logging.DEBUG)
    runs: list[int] = []
    scheduler = AsyncIOScheduler(timezone="UTC")
    scheduler.add_job(lambda: runs.append(1), "interval", seconds=0.05)
    scheduler.start()
    await asyncio.sleep(0.4)
    scheduler.shutdown(wait=False)
    assert runs, "the job never ran"
    assert not [r for r in caplog.records if r.name.startswith("apscheduler") and r.levelno < logging.WARNING]


def test_jieba_notes_do_not_reach_the_terminal() -> None:
    code = ("from bot.cli.common import quiet_libraries; quiet_libraries(); import jieba; "
            "jieba.Tokenizer().initialize(); print(jieba.lcut('垃圾分类'))")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          check=True)
    assert "垃圾" in done.stdout
    assert "prefix dict" not in done.stderr and "Loading model" not in done.stderr, done.stderr
