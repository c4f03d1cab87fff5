"""Grid workers and admins through DialogueEngine.handle: task buttons, notes, refusals, stale buttons, /tasks,
admin commands, and the terminal chat driven from a text stream."""

from __future__ import annotations

import io

import pytest
from sqlalchemy import select

from bot.channels.terminal import TerminalChat
from bot.dialogue import texts
from bot.dialogue.engine import DialogueEngine
from bot.services import Services
from casestore.cases import list_events
from casestore.db import session_scope
from casestore.models import Case, CaseEvent, CaseStatus, Notification, Worker
from tests.factories import (
    FU01_FULL_TIME,
    FU02_FULL_TIME,
    RESIDENT_ID,
    all_text,
    button,
    buttons_of,
    command,
    find_button,
    make_resident,
    photo,
    press,
    pushes,
    text,
)

ADMIN_ID = 4242


@pytest.fixture
def services(settings, engine, policies, clock, ai) -> Services:  # type: ignore[no-untyped-def]
    settings = settings.model_copy(update={"admin_telegram_ids": [ADMIN_ID]})
    return Services(settings, clock=clock, engine=engine, policies=policies, classifier=ai.classifier,
                    knowledge=ai.knowledge)


@pytest.fixture
def dlg(services: Services) -> DialogueEngine:
    return services.dialogue


@pytest.fixture
def case_code(dlg, engine, clock, policies) -> str:  # type: ignore[no-untyped-def]
    """A resident of FU01 reports a broken stairwell light; the task push is delivered to the worker."""
    make_resident(engine, policies, clock=clock)
    dlg.handle(text("3号楼2单元楼道灯坏了"))
    dlg.handle(text("跳过"))
    said = all_text(dlg.handle(text("对")))
    with session_scope(engine) as s:
        code = s.execute(select(Case.code)).scalar_one()
    assert code in said
    pushes(engine, clock)
    return code


def case(engine, code: str) -> Case:  # type: ignore[no-untyped-def]
    with session_scope(engine) as s:
        return s.execute(select(Case).where(Case.code == code)).scalars().one()


def events(engine, code: str) -> list[str]:  # type: ignore[no-untyped-def]
    with session_scope(engine) as s:
        c = s.execute(select(Case).where(Case.code == code)).scalars().one()
        rows = s.execute(select(CaseEvent).where(CaseEvent.case_id == c.id).order_by(CaseEvent.id)).scalars()
        return [e.action for e in rows]


def test_worker_accepts_responds_and_resolves_with_notes_through_buttons(dlg, engine, clock, case_code):
    w = FU01_FULL_TIME
    r = dlg.handle(button("accept", case_code, label="接单", user=w))
    assert case_code in all_text(r) and case(engine, case_code).status == CaseStatus.accepted
    r = dlg.handle(press(find_button(r, texts.BTN_RESPOND), user=w))
    assert "联系情况" in all_text(r)
    r = dlg.handle(text("已电话联系，我13812345678，明早上门", user=w))
    assert case(engine, case_code).status == CaseStatus.in_progress
    r = dlg.handle(press(find_button(r, texts.BTN_RESOLVE), user=w))
    r = dlg.handle(text("已更换灯泡", user=w))
    assert "照片" in all_text(r) and case(engine, case_code).status == CaseStatus.in_progress
    r = dlg.handle(photo(user=w))
    assert texts.RESOLVED.format(code=case_code) in all_text(r)
    c = case(engine, case_code)
    assert c.status == CaseStatus.resolved and any(a.get("type") == "photo" for a in c.attachments)
    assert events(engine, case_code)[-3:] == ["accept", "respond", "resolve"]
    with session_scope(engine) as s:
        notes = [e.note or "" for e in s.execute(select(CaseEvent)).scalars()]
    assert "13812345678" not in "".join(notes) and any("138****5678" in n for n in notes)
    assert any("已处理完毕" in t for t in pushes(engine, clock).texts_to(RESIDENT_ID))  # the rating request


def test_two_taps_resolve_from_the_task_push(dlg, engine, clock, case_code):
    w = FU01_FULL_TIME
    push = next(m for c, m in _task_pushes(engine, clock) if c == w)
    r = dlg.handle(press(next(b for row in push.buttons for b in row if b.label == "办结"), user=w))
    r = dlg.handle(press(find_button(r, texts.BTN_RESOLVE_NOW), user=w))
    assert texts.RESOLVED.format(code=case_code) in all_text(r)
    assert case(engine, case_code).status == CaseStatus.resolved


def test_a_photo_at_the_note_step_resolves_with_it(dlg, engine, case_code):
    w = FU01_FULL_TIME
    dlg.handle(button("resolve", case_code, user=w))
    dlg.handle(photo("灯已修好", user=w))
    c = case(engine, case_code)
    assert c.status == CaseStatus.resolved and any(a.get("type") == "photo" for a in c.attachments)


def _task_pushes(engine, clock):  # type: ignore[no-untyped-def]
    from casestore.models import NotificationState
    from casestore.notify import OutboundMessage

    with session_scope(engine) as s:
        rows = s.execute(select(Notification).where(Notification.kind == "task")).scalars().all()
        assert all(r.state == NotificationState.sent for r in rows)
        return [(r.chat_id, OutboundMessage.from_payload(r.payload)) for r in rows]


def test_worker_of_another_grid_is_refused_and_nothing_changes(dlg, engine, case_code):
    before = case(engine, case_code)
    for action in ("accept", "respond", "resolve", "transfer", "extend"):
        said = all_text(dlg.handle(button(action, case_code, user=FU02_FULL_TIME)))
        assert said == "抱歉，您没有权限处理这个工单。"
    after = case(engine, case_code)
    assert (after.status, after.version) == (before.status, before.version)


def test_stale_and_forged_worker_buttons_change_nothing(dlg, engine, case_code):
    w = FU01_FULL_TIME
    dlg.handle(button("accept", case_code, user=w))
    version = case(engine, case_code).version
    assert all_text(dlg.handle(button("accept", case_code, user=w))) == texts.BUTTON_EXPIRED  # accepted already
    assert all_text(dlg.handle(button("accept", "JN20991231-9999", user=w))) == texts.BUTTON_EXPIRED
    assert all_text(dlg.handle(button("wnote", user=w))) == texts.BUTTON_EXPIRED  # no note was asked for
    assert all_text(dlg.handle(button("wxfer", arg="full_time", user=w))) == texts.BUTTON_EXPIRED
    assert all_text(dlg.handle(button("rm -rf", case_code, user=w))) == texts.BUTTON_EXPIRED
    assert case(engine, case_code).version == version


def test_transfer_by_role_with_a_reason_and_extension_request(dlg, engine, clock, case_code):
    w = FU01_FULL_TIME
    r = dlg.handle(button("extend", case_code, user=w))
    r = dlg.handle(press(find_button(r, "48小时"), user=w))
    assert "延期原因" in all_text(r) and events(engine, case_code)[-1] != "request_extension"
    r = dlg.handle(text("需要等配件，厂家周三到货", user=w))
    assert "48" in all_text(r) and events(engine, case_code)[-1] == "request_extension"
    with session_scope(engine) as s:
        c = s.execute(select(Case).where(Case.code == case_code)).scalars().one()
        (request,) = [e for e in list_events(session=s, case_id=c.id) if e.action == "request_extension"]
        assert request.note == "需要等配件，厂家周三到货"  # the typed reason reaches the supervisor's push
    r = dlg.handle(button("transfer", case_code, user=w))
    r = dlg.handle(press(find_button(r, "物业项目经理"), user=w))
    r = dlg.handle(text("属于物业维修范围", user=w))
    assert "物业项目经理" in all_text(r)
    with session_scope(engine) as s:
        c = s.execute(select(Case).where(Case.code == case_code)).scalars().one()
        assignee = s.get(Worker, c.assignee_id)
        assert assignee is not None and assignee.role == "property_manager" and c.status == CaseStatus.assigned


def test_tasks_lists_open_cases_by_due_time_with_buttons(dlg, engine, clock, case_code):
    dlg.handle(text("厨房有煤气味"))  # the same resident: an emergency, due in 10 minutes
    r = dlg.handle(command("tasks", user=FU01_FULL_TIME))
    items = r.messages[1:]
    assert len(items) == 2 and "紧急" in items[0].text and case_code in items[1].text
    assert "11月20日 14:10 前响应" in items[0].text and "11月20日 15:00 前响应" in items[1].text
    assert {b.action for b in buttons_of(r)} >= {"accept", "respond", "transfer"}
    assert all_text(dlg.handle(command("tasks", user=FU02_FULL_TIME))) == texts.TASKS_EMPTY


def test_worker_restart_in_the_middle_of_a_note(services, settings, engine, clock, policies, ai, case_code):
    w = FU01_FULL_TIME
    services.dialogue.handle(button("respond", case_code, user=w))
    fresh = Services(settings, clock=clock, policies=policies, classifier=ai.classifier, knowledge=ai.knowledge)
    try:
        fresh.dialogue.handle(text("已上门查看", user=w))
    finally:
        fresh.close()
    assert case(engine, case_code).status == CaseStatus.in_progress


def test_worker_gets_help_and_polite_answers_for_anything_else(dlg):
    assert texts.HELP_WORKER in all_text(dlg.handle(command("help", user=FU01_FULL_TIME)))
    assert all_text(dlg.handle(text("你好", user=FU01_FULL_TIME))) == texts.WORKER_UNKNOWN
    assert all_text(dlg.handle(text("", user=FU01_FULL_TIME))) == texts.EMPTY_INPUT


# ---------------------------------------------------------------- admins
def test_admin_commands(dlg, engine, clock, policies, case_code):
    said = all_text(dlg.handle(command("stats", user=ADMIN_ID)))
    assert said.startswith(texts.STATS_HEADER) and "工单 1 件" in said
    assert all_text(dlg.handle(command("stats", user=RESIDENT_ID))) == texts.NOT_ADMIN

    said = all_text(dlg.handle(command("broadcast", "FU01 明天上午9点停水，联系13812345678", user=ADMIN_ID)))
    assert "1 位居民" in said
    with session_scope(engine) as s:
        (row,) = s.execute(select(Notification).where(Notification.kind == "broadcast")).scalars().all()
        assert row.chat_id == RESIDENT_ID and "138****5678" in row.payload["text"]
    assert texts.BROADCAST_USAGE in all_text(dlg.handle(command("broadcast", "", user=ADMIN_ID)))

    said = all_text(dlg.handle(command("register_worker", "777001 FU02 part_time", user=ADMIN_ID)))
    assert "777001" in said
    assert all_text(dlg.handle(text("在吗", user=777001))) == texts.WORKER_UNKNOWN  # now a worker
    assert "岗位只能是" in all_text(dlg.handle(command("register_worker", "777002 FU02 boss", user=ADMIN_ID)))
    assert all_text(dlg.handle(command("register_worker", "1 FU01 full_time", user=RESIDENT_ID))) == texts.NOT_ADMIN


# ---------------------------------------------------------------- terminal chat
def test_terminal_chat_from_a_script(services, engine):
    out = io.StringIO()
    chat = TerminalChat(services, user_id=RESIDENT_ID, out=out)
    script = io.StringIO("/start\n1\n芙蓉小区3号楼2单元\n厨房有煤气味\n/mycases\n/sticker\n")
    assert chat.run(script) == 6
    shown = out.getvalue()
    assert "[1] 同意  [2] 不同意" in shown
    assert "芙蓉社区第一网格" in shown and "119" in shown
    assert "→ 推送给 芙蓉社区第一网格专职网格员：📋 新工单" in shown
    assert texts.UNSUPPORTED in shown


def test_terminal_choice_by_label_and_as_worker(services, engine, clock, policies, case_code):
    worker_out = io.StringIO()
    worker = TerminalChat(services, user_id=FU01_FULL_TIME, out=worker_out, as_worker=True)
    worker.run(io.StringIO("/tasks\n接单\n"))
    assert case(engine, case_code).status == CaseStatus.accepted
    assert texts.ACCEPTED.format(code=case_code) in worker_out.getvalue()


def test_quanbot_chat_command_prepares_and_reads_stdin(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from bot.cli import app
    from tests.factories import AI_CACHE

    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'chat.db'}")
    monkeypatch.setenv("CHROMA_DIR", str(tmp_path / "chroma"))
    monkeypatch.setenv("VAR_DIR", str(AI_CACHE))  # the trained model and vector cache: no retraining here
    result = CliRunner().invoke(app, ["chat", "--as", "worker", "--user", str(FU01_FULL_TIME)],
                                input="/help\n/tasks\n")
    assert result.exit_code == 0, result.output
    assert texts.HELP_WORKER.splitlines()[0] in result.output and texts.TASKS_EMPTY in result.output
