"""A wrong DATABASE_URL is one Chinese line that says what to do, never a traceback; `quanbot db upgrade` says
what it did to the schema."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url
from typer.testing import CliRunner

from bot.cli import app
from casestore.db import DatabaseConfigError, head_revision, make_engine, upgrade


def _run(monkeypatch: pytest.MonkeyPatch, url: str, *argv: str) -> tuple[int, str]:
    monkeypatch.setenv("DATABASE_URL", url)
    result = CliRunner().invoke(app, list(argv))
    return result.exit_code, result.output


def _one_line(output: str) -> str:
    assert "Traceback" not in output
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1, output
    return lines[0]


@pytest.mark.parametrize("url", ["sqlite:///:memory:", "sqlite://"])
@pytest.mark.parametrize("command", [("db", "upgrade"), ("stats",)])
def test_an_in_memory_sqlite_is_refused_with_the_reason(url: str, command: tuple[str, ...],
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    code, output = _run(monkeypatch, url, *command)
    line = _one_line(output)
    assert code == 2
    assert "内存数据库" in line and "每个进程" in line and "sqlite:///var/quanbot.db" in line


def test_make_engine_refuses_an_in_memory_sqlite() -> None:
    with pytest.raises(DatabaseConfigError, match="内存数据库"):
        make_engine("sqlite:///:memory:")


def test_a_postgresql_database_that_does_not_exist_gets_the_createdb_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    base = os.environ.get("TEST_DATABASE_URL")
    if not base:
        pytest.skip("TEST_DATABASE_URL is not set: PostgreSQL tests run in CI (.ci/run sets it)")
    name = f"quanbot_missing_{uuid.uuid4().hex[:8]}"  # never created: the real server answers "does not exist"
    url = make_url(base).set(database=name).render_as_string(hide_password=False)
    for command in (("db", "upgrade"), ("stats",)):
        code, output = _run(monkeypatch, url, *command)
        line = _one_line(output)
        assert code == 2, output
        assert f"没有数据库 {name}" in line and "createdb" in line and line.rstrip("。").count(name) == 2


def test_an_unreachable_postgresql_server_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    code, output = _run(monkeypatch, "postgresql+psycopg://postgres@127.0.0.1:1/quanbot", "db", "upgrade")
    line = _one_line(output)
    assert code == 2 and "连不上 PostgreSQL 127.0.0.1:1" in line


def test_stats_on_a_database_that_was_never_migrated_says_to_upgrade(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    code, output = _run(monkeypatch, f"sqlite:///{tmp_path / 'new.db'}", "stats")
    line = _one_line(output)
    assert code == 2 and "从未迁移" in line and "quanbot db upgrade" in line


def test_stats_on_an_old_schema_says_to_upgrade(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    upgrade(url, "0001")
    code, output = _run(monkeypatch, url, "stats")
    line = _one_line(output)
    assert code == 2 and "第 0001 版" in line and f"第 {head_revision()} 版" in line and "quanbot db upgrade" in line


def test_db_upgrade_says_what_it_did_to_the_schema(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    head = head_revision()
    new = f"sqlite:///{tmp_path / 'new.db'}"
    code, first = _run(monkeypatch, new, "db", "upgrade")
    assert code == 0, first
    assert f"已在新数据库上建表，结构为第 {head} 版" in first and "已是最新结构" not in first
    code, again = _run(monkeypatch, new, "db", "upgrade")
    assert code == 0 and f"已是最新结构（第 {head} 版）" in again

    old = f"sqlite:///{tmp_path / 'old.db'}"
    upgrade(old, "0001")
    code, migrated = _run(monkeypatch, old, "db", "upgrade")
    assert code == 0 and f"已从第 0001 版迁移到第 {head} 版" in migrated
