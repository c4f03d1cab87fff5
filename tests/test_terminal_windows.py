"""The terminal as several people use it: who `quanbot chat --as …` may play, `/myid` on every channel and role,
and two terminal windows on one database that see each other's pushes (real `quanbot chat` subprocesses)."""

from __future__ import annotations

import contextlib
import io
import os
import queue
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bot.channels.terminal import CHANNEL, TerminalChat
from bot.cli import app
from bot.dialogue import texts
from bot.services import Services
from casestore.db import session_scope
from casestore.models import Notification, NotificationState, Worker
from casestore.notify import OutboundMessage
from casestore.routing import in_hours
from policies.loader import load_policies
from tests.factories import (
    AI_CACHE,
    FU01_FULL_TIME,
    FURONG_DUTY_DESK,
    RESIDENT_ID,
    SharedAI,
    all_text,
    command,
    shared_ai,
)

ROOT = Path(__file__).resolve().parent.parent
ADMIN_ID = 4242


@pytest.fixture(scope="module")
def ai(tmp_path_factory: pytest.TempPathFactory) -> SharedAI:
    return shared_ai(tmp_path_factory.mktemp("ai"))


@pytest.fixture
def services(settings, engine, policies, clock, ai) -> Services:  # type: ignore[no-untyped-def]
    settings = settings.model_copy(update={"admin_telegram_ids": [ADMIN_ID]})
    return Services(settings, clock=clock, engine=engine, policies=policies, classifier=ai.classifier,
                    knowledge=ai.knowledge)


def _cli_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, admins: str = "") -> None:
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'chat.db'}")
    monkeypatch.setenv("CHROMA_DIR", str(tmp_path / "chroma"))
    monkeypatch.setenv("VAR_DIR", str(AI_CACHE))
    monkeypatch.setenv("ADMIN_TELEGRAM_IDS", admins)


# ---------------------------------------------------------------- 1. who --as may play
def test_chat_as_admin_refuses_an_id_that_is_not_an_admin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _cli_env(monkeypatch, tmp_path, admins="4242")
    result = CliRunner().invoke(app, ["chat", "--as", "admin", "--user", "1234"], input="/stats\n")
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if "1234" in line]
    assert lines == ["ID 1234 不是管理员：--user 请填 ADMIN_TELEGRAM_IDS 中的 ID。"], result.output
    assert "Traceback" not in result.output and "知识库" not in result.output  # refused before the slow part


def test_chat_as_admin_with_no_admin_configured_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _cli_env(monkeypatch, tmp_path)
    result = CliRunner().invoke(app, ["chat", "--as", "admin"], input="/stats\n")
    assert result.exit_code == 2, result.output
    assert "没有配置管理员" in result.output and "ADMIN_TELEGRAM_IDS" in result.output


def test_chat_as_admin_runs_admin_commands(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _cli_env(monkeypatch, tmp_path, admins="4242")
    result = CliRunner().invoke(app, ["chat", "--as", "admin", "--user", "4242"], input="/stats\n/myid\n")
    assert result.exit_code == 0, result.output
    assert "工单统计" in result.output and "只有管理员" not in result.output
    assert "ID：4242" in result.output and "管理员" in result.output


def test_chat_as_a_worker_refuses_a_residents_id(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _cli_env(monkeypatch, tmp_path)
    runner = CliRunner()
    assert runner.invoke(app, ["chat", "--user", "1234"], input="/start\n1\n").exit_code == 0  # a resident now
    result = runner.invoke(app, ["chat", "--as", "worker", "--user", "1234"], input="/myid\n")
    assert result.exit_code == 2, result.output
    assert "没有在岗的网格员使用 ID 1234" in result.output and "居民" not in result.output


def test_chat_as_a_resident_refuses_a_workers_id(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _cli_env(monkeypatch, tmp_path)
    runner = CliRunner()
    assert runner.invoke(app, ["chat", "--as", "worker"], input="/tasks\n").exit_code == 0  # links terminal 900100
    result = runner.invoke(app, ["chat", "--user", str(FU01_FULL_TIME)], input="/myid\n")
    assert result.exit_code == 2, result.output
    assert f"ID {FU01_FULL_TIME} 是网格员的账号" in result.output and "--as worker" in result.output


# ---------------------------------------------------------------- 2. /myid
def test_myid_names_the_channel_the_id_and_the_role_and_nobody_else(services: Services) -> None:
    dlg = services.dialogue
    resident = all_text(dlg.handle(command("myid", user=RESIDENT_ID)))
    assert "telegram" in resident and f"ID：{RESIDENT_ID}" in resident and "居民" in resident
    assert "网格员" not in resident and "管理员" not in resident

    worker = all_text(dlg.handle(command("myid", user=FU01_FULL_TIME)))
    assert f"ID：{FU01_FULL_TIME}" in worker and "网格员" in worker and "芙蓉社区第一网格专职网格员" in worker
    assert str(RESIDENT_ID) not in worker

    admin = all_text(dlg.handle(command("myid", user=ADMIN_ID)))
    assert f"ID：{ADMIN_ID}" in admin and "管理员" in admin

    out = io.StringIO()
    TerminalChat(services, user_id=FU01_FULL_TIME, out=out, as_worker=True).run(io.StringIO("/myid\n"))
    assert "terminal" in out.getvalue() and f"ID：{FU01_FULL_TIME}" in out.getvalue()


# ---------------------------------------------------------------- 3. pushes between windows
def _task(services: Services, chat_id: int) -> None:
    with session_scope(services.engine) as session:
        # a push addressed to the worker's terminal account, as a resident's report in another window makes it
        payload = OutboundMessage(text="📋 新工单 测试").to_payload()
        session.add(Notification(case_id=None, kind="task", level=0, recipient=f"chat:{CHANNEL}:{chat_id}",
                                 channel=CHANNEL, chat_id=chat_id, payload=payload,
                                 state=NotificationState.pending.value, attempts=0, created_at=services.clock.now(),
                                 next_attempt_at=services.clock.now()))


def test_a_window_shows_its_own_pushes_once_and_leaves_other_windows_theirs(services: Services) -> None:
    first, second, resident = io.StringIO(), io.StringIO(), io.StringIO()
    one = TerminalChat(services, user_id=FU01_FULL_TIME, out=first, as_worker=True)
    two = TerminalChat(services, user_id=FU01_FULL_TIME, out=second, as_worker=True)  # the same worker, twice
    other = TerminalChat(services, user_id=RESIDENT_ID, out=resident)
    _task(services, FU01_FULL_TIME)
    assert other.deliver() == 0 and "新工单" not in resident.getvalue()  # not the resident window's to show
    assert one.deliver() + two.deliver() == 1
    assert (first.getvalue() + second.getvalue()).count("📋 新工单 测试") == 1
    with session_scope(services.engine) as session:
        assert session.query(Notification).one().state == NotificationState.sent.value


class Window:
    """One `quanbot chat` subprocess with piped stdin; its stdout lines are collected by a thread."""

    def __init__(self, args: list[str], env: dict[str, str], cwd: Path) -> None:
        cmd = [sys.executable, "-c", "import sys; sys.argv[0] = 'quanbot'; from bot.cli import app; app()", "chat",
               *args]
        self.proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, encoding="utf-8")
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line)

    def send(self, *lines: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write("".join(f"{line}\n" for line in lines))
        self.proc.stdin.flush()

    def wait_for(self, text: str, timeout: float) -> float:
        """Seconds until a line containing `text` is printed (AssertionError after `timeout`)."""
        started = time.monotonic()
        while text not in "".join(self.seen):
            left = timeout - (time.monotonic() - started)
            if left <= 0 or (self.proc.poll() is not None and self.lines.empty()):
                raise AssertionError(f"{text!r} not shown within {timeout}s:\n{''.join(self.seen)}")
            with contextlib.suppress(queue.Empty):
                self.seen.append(self.lines.get(timeout=min(left, 0.2)))
        return time.monotonic() - started

    def close(self) -> str:
        assert self.proc.stdin is not None and self.proc.stderr is not None
        self.proc.stdin.close()
        try:
            self.proc.wait(timeout=60)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
        while not self.lines.empty():
            self.seen.append(self.lines.get())
        return "".join(self.seen)


def _on_duty_now() -> int:
    """Who gets a new FU01 case at the wall clock the chat windows run on: the full-time worker in working hours,
    else the community's duty desk (routing.yaml team; the same in_hours the router applies)."""
    fu01 = Worker(name="芙蓉社区第一网格专职网格员", role="full_time", grid_id="FU01", community_id="furong")
    on = in_hours(policies=load_policies(), worker=fu01, now=datetime.now(UTC))
    return FU01_FULL_TIME if on else FURONG_DUTY_DESK


@pytest.mark.timeout(400)
def test_two_terminal_windows_on_one_database_see_each_others_pushes(tmp_path: Path) -> None:
    env = dict(os.environ, DATABASE_URL=f"sqlite:///{tmp_path / 'q.db'}", VAR_DIR=str(AI_CACHE),
               CHROMA_DIR=str(tmp_path / "chroma"), OPENAI_BASE_URL="", OPENAI_API_KEY="", TELEGRAM_TOKEN="",
               ADMIN_TELEGRAM_IDS="", PYTHONPATH=str(ROOT))
    worker = Window(["--as", "worker", "--user", str(_on_duty_now())], env, tmp_path)
    resident: Window | None = None
    try:
        worker.send("/tasks")
        worker.wait_for(texts.TASKS_EMPTY, timeout=300)  # ready: knowledge ingested, classifier loaded
        resident = Window([], env, tmp_path)
        resident.send("/start", "1", "芙蓉小区3号楼2单元", "楼道灯坏了", "跳过", "对")
        resident.wait_for("已登记，工单号", timeout=300)
        assert worker.wait_for("📋 新工单", timeout=6) < 6  # polled: no input needed in the worker's window
        worker.send("接单")
        worker.wait_for("已接单：", timeout=30)
        resident.wait_for("已接单，会尽快联系您", timeout=6)  # and back: the progress notice reaches the resident
    finally:
        worker_out = worker.close()
        resident_out = resident.close() if resident is not None else ""
    assert worker_out.count("📋 新工单") == 1
    assert "→ 推送给" not in resident_out  # the resident's window no longer shows (and takes) the worker's push
    assert "楼道灯坏了" in worker_out and str(RESIDENT_ID) not in worker_out


# ---------------------------------------------------------------- 4. README
def test_readme_shows_the_loop_in_two_terminal_windows() -> None:
    from bot.dialogue.myid import MYID, ROLE_WORKER

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    block = readme[readme.index("# window 1, the grid worker"):]
    block = block[: block.index("```")]
    assert "$ .venv/bin/quanbot chat --as worker --user 900100" in block and "$ .venv/bin/quanbot chat\n" in block
    said = MYID.format(channel=CHANNEL, id=FU01_FULL_TIME, role=ROLE_WORKER.format(name="芙蓉社区第一网格专职网格员"))
    assert f"泉小智：{said}" in block  # what /myid really prints
    assert texts.ACCEPTED.format(code="JN20261202-0001") in block
    assert "泉小智：📋 新工单" in block and "已接单，会尽快联系您" in block
