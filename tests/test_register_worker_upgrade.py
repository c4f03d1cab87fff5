"""Issue #16: a worker registered at run time (/register_worker) survives every `quanbot db upgrade` and grids.yaml
sync: kept, not duplicated, not clobbered; `quanbot chat` still starts afterwards; a clash the database refuses is
one Chinese line from `db upgrade`, `chat` and `run`, never a traceback. On SQLite and on PostgreSQL."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import text as sql
from sqlmodel import col, select
from typer.testing import CliRunner

from bot.cli import app
from bot.dialogue.engine import DialogueEngine
from bot.services import Services
from bot.settings import Settings
from casestore.accounts import get_worker_by_account, list_accounts
from casestore.clock import FakeClock
from casestore.db import make_engine, session_scope, upgrade
from casestore.models import Worker
from casestore.org import registered_worker_ids
from tests.factories import AI_CACHE, FU01_FULL_TIME, all_text, command, shared_ai

ADMIN = 4242
NEW_ID = 777001  # nobody's: becomes a registered part-timer of FU02, whose name is a grids.yaml position's name
FU02_PART_TIME = 900106  # grids.yaml: 芙蓉社区第二网格兼职网格员
WHEN = datetime(2026, 11, 20, 6, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def ai(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    return shared_ai(tmp_path_factory.mktemp("ai"))


@dataclass(frozen=True)
class Snapshot:
    """What the admin and grids.yaml made, as the database holds it."""

    workers: dict[int, tuple[str, str, str | None, bool, bool, bool, bool]]  # id -> name, role, grid, flags
    accounts: dict[tuple[str, str], int | None]  # (channel, external id) -> worker id


def _snapshot(url: str) -> Snapshot:
    eng = make_engine(url)
    try:
        with session_scope(eng) as s:
            workers = {w.id: (w.name, w.role, w.grid_id, w.active, w.on_leave, w.is_deputy, w.is_lead)
                       for w in s.exec(select(Worker).order_by(col(Worker.id))) if w.id is not None}
            accounts = {(a.channel, a.external_id): a.worker_id
                        for w_id in workers for a in list_accounts(session=s, worker_id=w_id)}
        return Snapshot(workers, accounts)
    finally:
        eng.dispose()


def _cli(url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *args: str, stdin: str | None = None):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("DATABASE_URL", url)
    monkeypatch.setenv("CHROMA_DIR", str(tmp_path / "chroma"))
    monkeypatch.setenv("VAR_DIR", str(AI_CACHE))
    monkeypatch.setenv("ADMIN_TELEGRAM_IDS", str(ADMIN))
    return CliRunner().invoke(app, list(args), input=stdin)


def _register(url: str, tmp_path: Path, ai, *lines: str) -> list[str]:  # type: ignore[no-untyped-def]
    """The admin types /register_worker on Telegram, through the real dialogue engine."""
    settings = Settings(_env_file=None, database_url=url, var_dir=tmp_path / "var",  # type: ignore[call-arg]
                        chroma_dir=tmp_path / "chroma", admin_telegram_ids=[ADMIN])
    eng = make_engine(url)
    try:
        services = Services(settings, clock=FakeClock(WHEN), engine=eng, classifier=ai.classifier,
                            knowledge=ai.knowledge)
        dlg = DialogueEngine(services)
        return [all_text(dlg.handle(command("register_worker", line, user=ADMIN))) for line in lines]
    finally:
        eng.dispose()


def _registrations_survive(url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ai, *,  # type: ignore[no-untyped-def]
                           start_chat: bool) -> None:
    first = _cli(url, tmp_path, monkeypatch, "db", "upgrade")
    assert first.exit_code == 0, first.output
    synced = _snapshot(url)
    said = _register(url, tmp_path, ai, f"{NEW_ID} FU02 part_time", f"{FU01_FULL_TIME} FU02 part_time")
    assert all(str(tid) in line for tid, line in zip((NEW_ID, FU01_FULL_TIME), said, strict=True)), said
    registered = _snapshot(url)
    eng = make_engine(url)
    try:
        with session_scope(eng) as s:
            new = get_worker_by_account(session=s, channel="telegram", external_id=NEW_ID)
            moved = get_worker_by_account(session=s, channel="telegram", external_id=FU01_FULL_TIME)
            assert new is not None and moved is not None and new.id != moved.id
            assert {new.id, moved.id} == registered_worker_ids(session=s)
            new_id, moved_id = new.id, moved.id
    finally:
        eng.dispose()
    # the file position that held 900100 stays FU01's full-time worker; two registered workers are new
    assert set(registered.workers) - set(synced.workers) == {new_id, moved_id}
    assert {k: v for k, v in registered.workers.items() if k in synced.workers} == synced.workers

    for _ in range(2):  # every upgrade after it, not only the first
        again = _cli(url, tmp_path, monkeypatch, "db", "upgrade")
        assert again.exit_code == 0, again.output
        assert "管理员登记的 2 名人员保留不变" in again.output
        after = _snapshot(url)
        assert after == registered  # kept, not duplicated, not clobbered (flags, names, grids, accounts)
    assert after.accounts[("telegram", str(FU02_PART_TIME))] != new_id  # the same-named position keeps its id
    assert after.accounts[("telegram", str(FU01_FULL_TIME))] == moved_id
    assert after.workers[new_id][1:3] == ("part_time", "FU02") and after.workers[moved_id][1:3] == ("part_time",
                                                                                                    "FU02")
    if start_chat:
        chat = _cli(url, tmp_path, monkeypatch, "chat", "--as", "admin", "--user", str(ADMIN), stdin="/myid\n")
        assert chat.exit_code == 0, chat.output
        assert "准备失败" not in chat.output and "Traceback" not in chat.output


@pytest.mark.timeout(600)
def test_registrations_survive_upgrades_and_chat_starts_on_sqlite(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                  ai) -> None:  # type: ignore[no-untyped-def]
    _registrations_survive(f"sqlite:///{tmp_path / 'q.db'}", tmp_path, monkeypatch, ai, start_chat=True)


@pytest.mark.timeout(600)
def test_registrations_survive_upgrades_on_postgresql(pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                      ai) -> None:  # type: ignore[no-untyped-def]
    _registrations_survive(pg_url, tmp_path, monkeypatch, ai, start_chat=False)


def test_a_file_position_registered_where_it_already_is_stays_a_file_position(tmp_path: Path, ai,  # type: ignore[no-untyped-def]
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"sqlite:///{tmp_path / 'q.db'}"
    assert _cli(url, tmp_path, monkeypatch, "db", "upgrade").exit_code == 0
    before = _snapshot(url)
    _register(url, tmp_path, ai, f"{FU01_FULL_TIME} FU01 full_time")
    assert _cli(url, tmp_path, monkeypatch, "db", "upgrade").exit_code == 0
    assert _snapshot(url) == before


def test_editing_grids_yaml_moves_an_id_between_file_positions(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                               policies) -> None:  # type: ignore[no-untyped-def]
    """A file-only change (the id handed to another position) is the file's to make: the account follows it."""
    from casestore.org import sync_org

    url = f"sqlite:///{tmp_path / 'q.db'}"
    upgrade(url)
    eng = make_engine(url)
    try:
        with session_scope(eng) as s:
            sync_org(session=s, grids=policies.grids, now=WHEN)
        data = policies.grids.model_dump()
        fu01 = data["communities"][0]["grids"][0]["workers"]
        fu01["full_time"]["telegram_id"], fu01["part_time"][1]["telegram_id"] = None, FU01_FULL_TIME
        edited = type(policies.grids).model_validate(data)
        with session_scope(eng) as s:
            sync_org(session=s, grids=edited, now=WHEN)
        with session_scope(eng) as s:
            holder = get_worker_by_account(session=s, channel="telegram", external_id=FU01_FULL_TIME)
            assert holder is not None and holder.name == fu01["part_time"][1]["name"]
    finally:
        eng.dispose()


def test_a_clash_the_database_refuses_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A constraint the sync cannot satisfy (here a trigger standing in for one) stops `db upgrade`, `chat` and
    `run` with one Chinese line and exit code 2, never a traceback."""
    url = f"sqlite:///{tmp_path / 'q.db'}"
    assert _cli(url, tmp_path, monkeypatch, "db", "upgrade").exit_code == 0
    eng = make_engine(url)
    try:
        with eng.begin() as conn:
            conn.execute(sql("DELETE FROM account WHERE external_id = :tid"), {"tid": str(FU01_FULL_TIME)})
            conn.execute(sql(f"CREATE TRIGGER refuse BEFORE INSERT ON account WHEN NEW.external_id = "
                             f"'{FU01_FULL_TIME}' BEGIN SELECT RAISE(ABORT, 'refused by the test'); END"))
    finally:
        eng.dispose()
    monkeypatch.setenv("TELEGRAM_TOKEN", "123:abc")
    monkeypatch.setenv("TELEGRAM_BASE_URL", "http://127.0.0.1:9")
    for args in (("db", "upgrade"), ("chat", "--as", "admin", "--user", str(ADMIN)), ("run", "--no-scheduler")):
        result = _cli(url, tmp_path, monkeypatch, *args, stdin="")
        assert result.exit_code == 2, (args, result.output)
        lines = [line for line in result.output.splitlines() if line.strip() and "━" not in line]
        assert any(line.startswith("无法把 grids.yaml 的人员同步进数据库") for line in lines), (args, result.output)
        assert "Traceback" not in result.output and "refused by the test" in result.output


def _legacy_0002(url: str) -> None:
    """A database that revision 0002's /register_worker left: a resident later registered as a worker kept both
    rows with one Telegram id (the old code took them for the worker)."""
    upgrade(url, "0002")
    eng = make_engine(url)
    try:
        with eng.begin() as conn:
            conn.execute(sql("INSERT INTO grid (id, name, community_id, community_name, street_id) "
                             "VALUES ('FU02', '芙蓉社区第二网格', 'furong', '芙蓉社区', 'quancheng')"))
            conn.execute(sql("INSERT INTO worker (id, name, role, grid_id, community_id, active, on_leave, "
                             "is_deputy, is_lead, telegram_id) VALUES (100, '芙蓉社区第二网格兼职网格员', 'part_time', "
                             "'FU02', 'furong', true, false, false, false, :tid)"), {"tid": NEW_ID})
            conn.execute(sql("INSERT INTO resident (id, display_name, telegram_id, channel, created_at) "
                             "VALUES (1, '', :tid, 'telegram', :now)"), {"tid": NEW_ID, "now": WHEN})
            if eng.dialect.name == "postgresql":
                for table in ("resident", "worker"):
                    conn.execute(sql(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), 200)"))
    finally:
        eng.dispose()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_legacy_database_with_a_registered_resident_upgrades(backend: str, tmp_path: Path,
                                                               request: pytest.FixtureRequest,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"sqlite:///{tmp_path / 'legacy.db'}" if backend == "sqlite" else request.getfixturevalue("pg_url")
    _legacy_0002(url)
    result = _cli(url, tmp_path, monkeypatch, "db", "upgrade")
    assert result.exit_code == 0, result.output
    eng = make_engine(url)
    try:
        with session_scope(eng) as s:
            worker = get_worker_by_account(session=s, channel="telegram", external_id=NEW_ID)
            assert worker is not None and worker.id == 100 and worker.grid_id == "FU02"
    finally:
        eng.dispose()
