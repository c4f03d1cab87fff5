"""Staff notices to buildings (casestore.broadcasts): exactly the target's consenting residents who have not opted
out of the topic get one Notification each; a repeated or resumed send queues nothing twice (also on PostgreSQL,
with two concurrent senders); the 0008 migration; the resident's opt-out in the dialogue; `quanbot notify`."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sqlalchemy import inspect
from sqlalchemy import text as sql
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import select
from typer.testing import CliRunner

from bot.cli import app
from bot.dialogue.engine import DialogueEngine
from bot.services import Services
from casestore.audit import list_audit
from casestore.broadcasts import (
    KIND,
    OPT_OUT_ACTION,
    NoticeError,
    broadcast_to_grid,
    building_target,
    community_target,
    delivery_states,
    estate_target,
    grid_target,
    send_notice,
    set_opt_out,
)
from casestore.db import head_revision, make_engine, session_scope, upgrade
from casestore.dispatch import list_notifications
from casestore.errors import NotFound
from casestore.models import Notification, Resident
from casestore.notify import OutboundMessage
from casestore.org import sync_org
from tests.factories import all_text, button, find_button, make_resident, pushes, text

# (telegram user, estate, building, consent): five residents in four buildings of two estates and one stranger
PEOPLE = [
    (610001, "芙蓉小区", 3, True),
    (610002, "芙蓉小区", 3, True),  # opts out of 停水 below
    (610003, "芙蓉小区", 3, False),  # never consented
    (610004, "芙蓉小区", 4, True),  # the next building, same grid
    (610005, "芙蓉东苑", 3, True),  # the same number in another estate
    (610006, "芙蓉小区", 7, True),  # another grid (FU02)
]


def _people(engine: Engine, policies, clock) -> dict[int, int]:  # type: ignore[no-untyped-def]
    ids: dict[int, int] = {}
    for user, estate, building, consent in PEOPLE:
        r = make_resident(engine, policies, user=user, clock=clock, estate=estate, building=building, consent=consent)
        assert r.id is not None
        ids[user] = r.id
    with session_scope(engine) as s:
        resident = s.get(Resident, ids[610002])
        assert resident is not None
        set_opt_out(session=s, resident=resident, topic="停水", opt_out=True, now=clock.now())
    return ids


def _recipients(engine: Engine, notice_id: int) -> list[str]:
    with session_scope(engine) as s:
        return sorted(n.recipient for n in list_notifications(session=s, kind=KIND) if n.level == notice_id)


def _send(engine: Engine, policies, clock, *, key: str = "k1", topic: str = "停水",  # type: ignore[no-untyped-def]
          buildings=(("芙蓉小区", 3),), text: str = "明天9:00-12:00 3号楼停水检修，请提前储水。"):
    with session_scope(engine) as s:
        result = send_notice(session=s, key=key, topic=topic, text=text,
                             target=building_target(policies.grids, buildings), actor="admin:web:test",
                             now=clock.now())
        assert result.notice.id is not None
        return result.notice.id, result.created, result.queued, result.opted_out


def test_a_notice_to_one_building_reaches_exactly_its_consenting_not_opted_out_residents(engine, policies,
                                                                                          clock) -> None:
    ids = _people(engine, policies, clock)
    notice_id, created, queued, skipped = _send(engine, policies, clock)
    assert created and queued == 1 and skipped == 1
    assert _recipients(engine, notice_id) == [f"resident:{ids[610001]}"]
    sent = pushes(engine, clock)
    assert [c for c, _ in sent.sent] == [610001]
    message = sent.sent[0][1]
    assert message.text.startswith("【停水通知】明天9:00-12:00") and message.buttons[0][0].action == OPT_OUT_ACTION
    # the opted-out resident still gets another topic
    power_id, *_ = _send(engine, policies, clock, key="k2", topic="停电", text="后天3号楼停电。")
    assert _recipients(engine, power_id) == sorted([f"resident:{ids[610001]}", f"resident:{ids[610002]}"])
    with session_scope(engine) as s:
        events = list_audit(session=s, action="notice")
        assert [e.subject for e in events] == [f"notice:{notice_id}", f"notice:{power_id}"]
        assert events[0].actor == "admin:web:test" and events[0].data["queued"] == 1
        assert delivery_states(session=s, notice_ids=[notice_id]) == {notice_id: {"sent": 1}}


def test_targets_estate_grid_community(engine, policies, clock) -> None:
    ids = _people(engine, policies, clock)
    with session_scope(engine) as s:
        for n, (target, users) in enumerate([
            (estate_target(policies.grids, "芙蓉小区"), [610001, 610004, 610006]),
            (grid_target(policies.grids, "fu01"), [610001, 610004]),
            (community_target(policies.grids, "furong"), [610001, 610004, 610005, 610006]),
        ]):
            result = send_notice(session=s, key=f"t{n}", topic="电梯维保", text="电梯年检", target=target,
                                 actor="admin:cli", now=clock.now())
            got = sorted(x.recipient for x in s.exec(select(Notification).where(
                Notification.kind == KIND, Notification.level == result.notice.id)))
            # 610002 opted out of 停水 only: an elevator notice reaches them too
            want = sorted(f"resident:{ids[u]}" for u in [*users, *([610002] if 610001 in users else [])])
            assert got == want, target.label


def test_the_same_notice_twice_or_after_a_crash_goes_out_once_per_resident(engine, policies, clock) -> None:
    ids = _people(engine, policies, clock)
    # a run cut off before its commit leaves nothing behind...
    with pytest.raises(RuntimeError), session_scope(engine) as s:
        send_notice(session=s, key="same", topic="water", text="停水", actor="admin:cli", now=clock.now(),
                    target=building_target(policies.grids, [("芙蓉小区", 3), ("芙蓉小区", 4)]))
        raise RuntimeError("the process stopped here")
    with session_scope(engine) as s:
        assert list_notifications(session=s, kind=KIND) == []
    # ...and run again (twice: a repeated click) queues each resident once
    first = _send(engine, policies, clock, key="same", topic="water", text="停水",
                  buildings=[("芙蓉小区", 3), ("芙蓉小区", 4)])
    again = _send(engine, policies, clock, key="same", topic="water", text="停水",
                  buildings=[("芙蓉小区", 3), ("芙蓉小区", 4)])
    assert first[0] == again[0] and first[1] and not again[1] and first[2] == again[2] == 2
    assert _recipients(engine, first[0]) == sorted([f"resident:{ids[610001]}", f"resident:{ids[610004]}"])
    assert sorted(c for c, _ in pushes(engine, clock).sent) == [610001, 610004]
    assert pushes(engine, clock).sent == []
    with session_scope(engine) as s:
        assert len(list_audit(session=s, action="notice")) == 1
        assert list_audit(session=s, action="notice_resume") == []


def test_the_unique_key_refuses_a_second_delivery_row(engine, policies, clock) -> None:
    _people(engine, policies, clock)
    notice_id, *_ = _send(engine, policies, clock)
    with pytest.raises(IntegrityError), session_scope(engine) as s:
        s.add(Notification(case_id=None, kind=KIND, level=notice_id + 1, recipient="resident:1"))
        s.flush()
        s.add(Notification(case_id=None, kind=KIND, level=notice_id + 1, recipient="resident:1"))
        s.flush()


def test_bad_input_is_one_chinese_message(engine, policies, clock) -> None:
    with pytest.raises(NotFound) as missing:
        building_target(policies.grids, [("芙蓉小区", 99)])
    assert "没有这栋楼" in missing.value.user_message
    with session_scope(engine) as s:
        for kwargs, words in [({"topic": "停气"}, "通知类型不对"), ({"text": "  "}, "请填写通知内容"),
                              ({"text": "很" * 501}, "最多 500 字")]:
            args = {"key": "x", "topic": "停水", "text": "停水", **kwargs}
            with pytest.raises(NoticeError) as bad:
                send_notice(session=s, target=grid_target(policies.grids, "FU01"), actor="a", now=clock.now(),
                            **args)
            assert words in bad.value.user_message


def test_a_phone_number_in_a_notice_is_masked(engine, policies, clock) -> None:
    _people(engine, policies, clock)
    _send(engine, policies, clock, text="有事请打13912345678")
    assert "13912345678" not in pushes(engine, clock).sent[0][1].text


def test_the_admin_broadcast_still_goes_once_and_leaves_out_who_stopped_every_notice(engine, policies,
                                                                                     clock) -> None:
    ids = _people(engine, policies, clock)
    with session_scope(engine) as s:
        resident = s.get(Resident, ids[610004])
        assert resident is not None
        set_opt_out(session=s, resident=resident, topic="all", opt_out=True, now=clock.now())
        n = broadcast_to_grid(session=s, grid_id="FU01", message=OutboundMessage(text="通知"), actor="admin:x",
                              now=clock.now())
    assert n == 2  # 610001 and 610002 (610003 never consented, 610004 stopped every notice)


# ---------------------------------------------------------------- the migration
def test_0008_migrates_an_existing_resident_and_adds_the_unique_index(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    upgrade(url, "0007")
    eng = make_engine(url)
    with eng.begin() as conn:
        conn.execute(sql("INSERT INTO resident (display_name, created_at) VALUES ('张', '2026-11-20 06:00:00')"))
    upgrade(url)
    assert head_revision() >= "0008"  # later migrations keep what 0008 added
    with session_scope(eng) as s:
        assert s.exec(select(Resident)).one().notice_opt_out == []
    assert "uq_notification_nocase_once" in {i["name"] for i in inspect(eng).get_indexes("notification")}
    assert "notice" in inspect(eng).get_table_names()
    eng.dispose()


# ---------------------------------------------------------------- PostgreSQL
def test_postgres_migration_unique_key_and_two_concurrent_senders(pg_url, policies, clock) -> None:
    upgrade(pg_url, "0007")
    eng = make_engine(pg_url)
    with eng.begin() as conn:
        conn.execute(sql("INSERT INTO resident (display_name, created_at) VALUES ('张', now())"))
    upgrade(pg_url)
    with session_scope(eng) as s:
        sync_org(session=s, grids=policies.grids)
        assert s.exec(select(Resident)).one().notice_opt_out == []
    ids = _people(eng, policies, clock)
    barrier = threading.Barrier(2)
    results: list[tuple[bool, int]] = []

    def sender() -> None:
        with session_scope(eng) as s:
            barrier.wait()
            r = send_notice(session=s, key="pg-same", topic="停水", text="3号楼停水", actor="admin:web:pg",
                            target=building_target(policies.grids, [("芙蓉小区", 3)]), now=clock.now())
            results.append((r.created, r.queued))

    threads = [threading.Thread(target=sender) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert sorted(results) == [(False, 1), (True, 1)]
    with session_scope(eng) as s:
        rows = list_notifications(session=s, kind=KIND)
        assert [r.recipient for r in rows] == [f"resident:{ids[610001]}"]
        assert len(list_audit(session=s, action="notice")) == 1
    notice_id = rows[0].level
    again = _send(eng, policies, clock, key="pg-same", text="3号楼停水")
    assert again[0] == notice_id and not again[1] and _recipients(eng, notice_id) == [f"resident:{ids[610001]}"]
    with pytest.raises(IntegrityError), session_scope(eng) as s:
        s.add(Notification(case_id=None, kind=KIND, level=notice_id, recipient=f"resident:{ids[610001]}"))
        s.flush()
    eng.dispose()


# ---------------------------------------------------------------- the resident's side
def test_the_button_under_a_notice_stops_that_topic_and_resume_brings_it_back(settings, engine, policies,
                                                                            clock) -> None:
    ids = _people(engine, policies, clock)
    dlg = DialogueEngine(Services(settings, clock=clock, engine=engine, policies=policies))
    _send(engine, policies, clock, key="w1", topic="停电", text="3号楼明天停电")
    message = pushes(engine, clock).sent[0][1]
    stop = message.buttons[0][0]
    assert stop.label == "不再接收此类通知" and stop.arg == "power"
    reply = dlg.handle(button(stop.action, None, stop.arg, label=stop.label, user=610001))
    assert "不再给您发「停电」类通知" in all_text(reply)
    assert "已经退订" in all_text(dlg.handle(button(stop.action, None, stop.arg, user=610001)))
    clock.advance(timedelta(minutes=1))
    _send(engine, policies, clock, key="w2", topic="停电", text="3号楼后天也停电")
    assert sorted(c for c, _ in pushes(engine, clock).sent) == [610002]  # 610001 opted out now
    with session_scope(engine) as s:
        assert [e.data for e in list_audit(session=s, action="notice_opt_out")][-1] == {"topic": "power"}
    # the words: 退订通知 offers the topics, 全部 stops every one, 恢复通知 brings them back
    offer = dlg.handle(text("退订通知", user=610004))
    everything = find_button(offer, "全部")
    assert "全部不再" not in all_text(offer) and "想退订哪类通知" in all_text(offer)
    dlg.handle(button(everything.action, None, everything.arg, user=610004))
    _send(engine, policies, clock, key="w3", topic="疫苗接种", text="周六社区接种", buildings=[("芙蓉小区", 4)])
    assert pushes(engine, clock).sent == []
    assert "已恢复" in all_text(dlg.handle(text("恢复通知", user=610004)))
    _send(engine, policies, clock, key="w4", topic="疫苗接种", text="周日社区接种", buildings=[("芙蓉小区", 4)])
    assert [c for c, _ in pushes(engine, clock).sent] == [610004]
    assert "已失效" in all_text(dlg.handle(button(OPT_OUT_ACTION, None, "gas", user=610004)))
    with session_scope(engine) as s:
        assert s.get(Resident, ids[610004]).notice_opt_out == []  # type: ignore[union-attr]


# ---------------------------------------------------------------- the command line
def test_quanbot_notify_queues_once_and_says_so(settings, engine, policies, clock, monkeypatch) -> None:
    ids = _people(engine, policies, clock)
    monkeypatch.setenv("DATABASE_URL", settings.database_url)
    monkeypatch.setenv("VAR_DIR", str(settings.var_dir))
    argv = ["notify", "--building", "芙蓉小区:3", "--building", "芙蓉小区：4", "--topic", "停水", "--text", "今晚停水"]
    first = CliRunner().invoke(app, argv)
    assert first.exit_code == 0, first.output
    assert "2 位居民" in first.output and "1 位已退订" in first.output
    again = CliRunner().invoke(app, argv)
    assert again.exit_code == 0 and "没有重复发送" in again.output
    with session_scope(engine) as s:
        rows = list_notifications(session=s, kind=KIND)
    assert sorted(r.recipient for r in rows) == sorted(f"resident:{ids[u]}" for u in (610001, 610004))
    for bad, words in [(["--building", "芙蓉小区:99"], "没有这栋楼"), (["--estate", "无名小区"], "没有这个小区"),
                       (["--grid", "FU01", "--estate", "芙蓉小区"], "只指定一种对象"),
                       (["--building", "三号楼"], "楼栋写法不对")]:
        result = CliRunner().invoke(app, ["notify", *bad, "--topic", "停水", "--text", "x"])
        assert result.exit_code == 2 and words in result.output and "Traceback" not in result.output
    result = CliRunner().invoke(app, ["notify", "--grid", "FU01", "--topic", "停气", "--text", "x"])
    assert result.exit_code == 2 and "通知类型不对" in result.output
