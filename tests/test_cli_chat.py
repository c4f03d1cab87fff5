"""`quanbot chat` as a person sees it on a terminal: the loading bars, then the prompt, no library notes; and a
worker id nobody holds is one line."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from benchmarks.bench_startup import run_chat
from bot.cli import app
from tests.factories import AI_CACHE

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.timeout(600)
def test_on_a_terminal_the_prompt_follows_the_bars_and_jieba_stays_quiet(tmp_path: Path) -> None:
    env = dict(os.environ, DATABASE_URL=f"sqlite:///{tmp_path / 'q.db'}", VAR_DIR=str(AI_CACHE),
               CHROMA_DIR=str(tmp_path / "chroma"), OPENAI_BASE_URL="", OPENAI_API_KEY="", TELEGRAM_TOKEN="",
               PYTHONPATH=str(ROOT))
    cmd = [sys.executable, "-c", "import sys; sys.argv[0] = 'quanbot'; from bot.cli import app; app()"]
    run = run_chat(cmd, env, tmp_path, question="办居住证要带什么", timeout=300)
    assert not run.problems, run.problems  # no jieba notes, no bar drawn after the prompt
    assert run.reply is not None and run.answer is not None  # "/start" and a question were answered after it


def test_chat_as_a_worker_nobody_is_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'chat.db'}")
    monkeypatch.setenv("CHROMA_DIR", str(tmp_path / "chroma"))
    monkeypatch.setenv("VAR_DIR", str(AI_CACHE))
    result = CliRunner().invoke(app, ["chat", "--as", "worker", "--user", "12345"], input="/help\n")
    assert result.exit_code == 2, result.output
    assert "没有在岗的网格员使用 ID 12345" in result.output and "Traceback" not in result.output
