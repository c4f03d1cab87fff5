"""Every command the README shows exists, and the cheap ones run for real, so the README cannot rot.

The heavy commands (demo, run, chat, eval, ingest, train) are run for real by their own tests
(test_demo, test_telegram_*, test_dialogue_*, test_evals_*, test_knowledge_*, test_understanding_*);
here they must at least parse.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bot.cli import app

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")


def _commands() -> list[list[str]]:
    out = []
    for block in re.findall(r"```(?:bash|text)?\n(.*?)```", README, re.DOTALL):
        for line in block.splitlines():
            line = line.split("  #")[0].strip()
            m = re.match(r"(?:\.venv/bin/)?quanbot (.+)$", line)
            if m:
                out.append(shlex.split(m.group(1)))
    return out


COMMANDS = _commands()


def test_readme_opens_with_the_two_commands() -> None:
    head = README.split("## ")[0]
    assert "make demo" in head and "make test" in head
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert re.search(r"^demo:", makefile, re.M) and re.search(r"^test:", makefile, re.M)
    assert "make test" in (ROOT / ".ci" / "run").read_text(encoding="utf-8")


def test_readme_lists_commands() -> None:
    assert len(COMMANDS) >= 10


@pytest.mark.parametrize("argv", COMMANDS, ids=[" ".join(c) for c in COMMANDS])
def test_every_readme_command_parses(argv: list[str]) -> None:
    words = [w for w in argv if not w.startswith("-")]
    path = []
    for w in words:  # the subcommand path (e.g. ["policies", "check"]), not its arguments
        probe = CliRunner().invoke(app, [*path, w, "--help"])
        if probe.exit_code != 0:
            break
        path.append(w)
    assert path or not words, f"README shows an unknown command: quanbot {' '.join(argv)}"
    result = CliRunner().invoke(app, [*path, "--help"])
    assert result.exit_code == 0, result.output


CHEAP = {("policies", "check"), ("db", "upgrade"), ("stats",), ("classify",)}


@pytest.mark.parametrize("argv", [c for c in COMMANDS if tuple(w for w in c if not w.startswith("-"))[:2] in CHEAP
                                  or tuple(c[:1]) in CHEAP],
                         ids=lambda c: " ".join(c))
def test_cheap_readme_commands_run(argv: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'q.db'}")
    monkeypatch.setenv("VAR_DIR", str(ROOT / "var"))  # reuse the cached classifier
    runner = CliRunner()
    assert runner.invoke(app, ["db", "upgrade"]).exit_code == 0
    result = runner.invoke(app, argv)
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
