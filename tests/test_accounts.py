"""Identity is (channel, external_id): accounts, the migration that carried the old Telegram-shaped ids over,
and where pushes go when a person holds several accounts."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import text as sql
from sqlalchemy.engine import Engine

from bot.dialogue.engine import DialogueEngine
from bot.services import Services
from casestore.accounts import (
    Address,
    address_of,
    get_or_create_resident,
    get_resident_by_account,
    get_worker_by_account,
    link_worker_account,
)
from casestore.audit import list_audit
from casestore.db import make_engine, session_scope, upgrade
from casestore.models import Grid
from casestore.org import register_worker, sync_org
from policies.loader import load_policies
from policies.taxonomy import Role
from tests.factories import FU01_FULL_TIME, RESIDENT_ID, all_text, command, shared_ai, text


@pytest.fixture(scope="module")
def ai(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    return shared_ai(tmp_path_factory.mktemp("ai"))


def test_the_same_number_on_two_channels_is_two_residents(settings, engine, policies, clock, ai) -> None:
    services = Services(settings, clock=clock, engine=engine, policies=policies, classifier=ai.classifier,
                        knowledge=ai.knowledge)
    dlg = DialogueEngine(services)
    for channel in ("terminal", "telegram"):
        dlg.handle(command("start", user=RESIDENT_ID, channel=channel))
        dlg.handle(text("同意", user=RESIDENT_ID, channel=channel))
    dlg.handle(text("芙蓉小区3号楼2单元", user=RESIDENT_ID, channel="terminal"))
    with session_scope(engine) as s:
        on_terminal = get_resident_by_account(session=s, channel="terminal", external_id=RESIDENT_ID)
        on_telegram = get_resident_by_account(session=s, channel="telegram", external_id=RESIDENT_ID)
        assert on_terminal is not None and on_telegram is not None and on_terminal.id != on_telegram.id
        assert (on_terminal.estate, on_telegram.estate) == ("芙蓉小区", None)
    # and the terminal user is not the grid worker who holds Telegram id 900100
    said = all_text(dlg.handle(command("tasks", user=FU01_FULL_TIME, channel="terminal")))
    assert "待办工单" not in said


def test_a_push_goes_to_the_account_the_worker_used_last(engine, clock) -> None:
    with session_scope(engine) as s:
        worker = get_worker_by_account(session=s, channel="telegram", external_id=FU01_FULL_TIME)
        assert worker is not None
        assert address_of(session=s, recipient=f"worker:{worker.id}") == Address("telegram", FU01_FULL_TIME)
        link_worker_account(session=s, worker=worker, channel="terminal", external_id=4242, actor="test",
                            now=clock.now())
        assert address_of(session=s, recipient=f"worker:{worker.id}") == Address("terminal", 4242)
        (event,) = list_audit(session=s, subject=f"worker:{worker.id}", action="link_account")
        assert event.data["channel"] == "terminal"


def test_a_registration_survives_the_next_sync_of_grids_yaml(engine, policies, clock) -> None:
    """The file gives 900100 to FU01's full-time worker; an admin registered it to FU02 meanwhile: kept."""
    with session_scope(engine) as s:
        grid = s.get(Grid, "FU02")
        assert grid is not None
        moved = register_worker(session=s, channel="telegram", external_id=FU01_FULL_TIME, grid=grid,
                                role=Role.part_time, actor="admin:telegram:1", now=clock.now())
    with session_scope(engine) as s:
        sync_org(session=s, grids=policies.grids)  # what `quanbot db upgrade` runs: must not fail
    with session_scope(engine) as s:
        holder = get_worker_by_account(session=s, channel="telegram", external_id=FU01_FULL_TIME)
        assert holder is not None and holder.id == moved.id and holder.grid_id == "FU02"
        assert "register_worker" in [e.action for e in list_audit(session=s, subject=f"worker:{moved.id}")]


def _legacy_rows(eng: Engine) -> None:
    """Rows as revision 0002 stored them: ids in telegram_id, a terminal resident among them."""
    now = datetime(2026, 11, 20, 6, 0, tzinfo=UTC)
    with eng.begin() as conn:
        conn.execute(sql("INSERT INTO grid (id, name, community_id, community_name, street_id) "
                         "VALUES ('FU01', '第一网格', 'furong', '芙蓉社区', 'quancheng')"))
        conn.execute(sql("INSERT INTO worker (id, name, role, grid_id, community_id, active, on_leave, is_deputy, "
                         "is_lead, telegram_id) VALUES (1, '专职网格员', 'full_time', 'FU01', 'furong', true, false, "
                         "false, false, 900100)"))
        for rid, tid, channel in ((1, 555001, "terminal"), (2, 555002, "telegram"), (3, None, "telegram")):
            conn.execute(sql("INSERT INTO resident (id, display_name, telegram_id, channel, created_at) "
                             "VALUES (:id, '', :tid, :channel, :now)"),
                         {"id": rid, "tid": tid, "channel": channel, "now": now})
        conn.execute(sql("INSERT INTO notification (kind, level, recipient, chat_id, payload, state, attempts, "
                         "created_at) VALUES ('task', 0, 'resident:1', 555001, '{}', 'pending', 0, :now)"),
                     {"now": now})
        if eng.dialect.name == "postgresql":  # rows with explicit ids: move the sequences past them
            for table in ("resident", "worker"):
                conn.execute(sql(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), 10)"))


def _check_migrated(eng: Engine) -> None:
    with session_scope(eng) as s:
        terminal = get_resident_by_account(session=s, channel="terminal", external_id=555001)
        telegram = get_resident_by_account(session=s, channel="telegram", external_id=555002)
        assert terminal is not None and terminal.id == 1 and telegram is not None and telegram.id == 2
        assert get_resident_by_account(session=s, channel="telegram", external_id=555001) is None
        worker = get_worker_by_account(session=s, channel="telegram", external_id=900100)
        assert worker is not None and worker.id == 1
        assert s.execute(sql("SELECT channel FROM notification")).scalar_one() == "terminal"
        # a new account after the migration works as any other
        fresh = get_or_create_resident(session=s, channel="terminal", external_id=555002, now=datetime.now(UTC))
        assert fresh.id not in (1, 2)


def test_migration_carries_old_ids_over_on_sqlite(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'legacy.db'}"
    upgrade(url, "0002")
    eng = make_engine(url)
    try:
        _legacy_rows(eng)
        upgrade(url)
        _check_migrated(eng)
    finally:
        eng.dispose()


def test_migration_carries_old_ids_over_on_postgresql(pg_url) -> None:  # type: ignore[no-untyped-def]
    upgrade(pg_url, "0002")
    eng = make_engine(pg_url)
    try:
        _legacy_rows(eng)
        upgrade(pg_url)
        _check_migrated(eng)
        with session_scope(eng) as s:  # and the organisation loads on top of the carried-over rows
            sync_org(session=s, grids=load_policies().grids)
    finally:
        eng.dispose()
