"""`quanbot chat`: talk to the dialogue engine in the terminal, as a resident or as a grid worker.

Prepares what a fresh install lacks (migrations + org sync, knowledge ingestion (incremental: unchanged documents
are skipped)) with progress bars on stderr, all inside the one `Services` the chat then runs on, so nothing is
loaded twice; then shows the prompt and reads one input per line from stdin until EOF. The classifier (over a
second of scikit-learn import, or a short training on first use) loads in a background thread while the person
reads the prompt and types; the first input waits for it, saying so if it is not done yet.
Scriptable: `printf '/start\\n1\\n' | quanbot chat`.

`--as` says who plays: a resident, a grid worker (an id a worker holds on some channel) or an admin (an id in
ADMIN_TELEGRAM_IDS); an id that is not that person is refused in one line (exit 2) before the slow part. While
the person reads, the window polls for pushes addressed to them, so a resident's window and a worker's window
on one database see each other's task pushes and progress notices.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, NoReturn

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn

from bot.cli.common import config_errors, err_console, fail, settings_or_exit
from bot.settings import Settings

if TYPE_CHECKING:
    from bot.services import Services

app = typer.Typer()

DEFAULT_RESIDENT_ID = 1000001
PROMPT = "您："


def prepare(settings: Settings, console: Console, *, check: Callable[[Services], None] | None = None) -> Services:
    """Services with the database migrated and the organisation synced and the knowledge base ingested and
    loaded (the parts that need a progress bar); `check` runs once the database is ready, before the knowledge
    base (it may refuse to go on)."""
    from bot.runtime import prepare_database
    from bot.services import Services

    services = Services(settings)
    with Progress(TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(), console=console,
                  transient=False) as bar:
        db = bar.add_task("数据库与网格人员", total=1)
        prepare_database(settings)
        _ = services.engine, services.policies  # built here, never by two threads at once
        bar.update(db, completed=1)
        if check is not None:
            check(services)

        kb = bar.add_task("知识库", total=None)

        def on_file(done: int, total: int, _name: str) -> None:
            bar.update(kb, completed=done, total=total)

        services.knowledge_runtime.ingest(progress=on_file)
        _ = services.knowledge
        total = bar.tasks[kb].total or 1
        bar.update(kb, completed=total, total=total)
    return services


class ClassifierWarmup:
    """Loads `services.classifier` in a background thread; `wait()` joins it before the first input is handled,
    so Services is never used by two threads at once."""

    def __init__(self, services: Services, console: Console, *, say_when_waiting: bool) -> None:
        self.console = console
        self.say_when_waiting = say_when_waiting
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._load, args=(services,), name="quanbot-classifier", daemon=True)
        self._thread.start()

    def _load(self, services: Services) -> None:
        try:
            _ = services.classifier
        except Exception as exc:  # noqa: BLE001 - reported by wait() on the main thread, as one line
            self.error = exc

    def wait(self) -> None:
        if self._thread.is_alive():
            if self.say_when_waiting:
                self.console.print("（正在载入分类模型，请稍候…）", highlight=False)
            self._thread.join()
        if self.error is not None:
            fail(f"准备失败：{type(self.error).__name__}: {self.error}")

    def before_each(self, lines: Iterable[str]) -> Iterator[str]:
        """`lines`, each released once the classifier is ready."""
        for line in lines:
            self.wait()
            yield line


def _default_worker_id(settings: Settings) -> int:
    from policies.loader import load_policies

    grids = load_policies(settings.policies_dir).grids
    first = grids.communities[0].grids[0].workers.full_time
    return int(first.telegram_id or 0)


ROLES = {"resident": "居民", "worker": "网格员", "admin": "管理员"}


def _default_user(settings: Settings, role: str) -> int:
    if role == "worker":
        return _default_worker_id(settings)
    if role == "admin":
        if not settings.admin_telegram_ids:
            fail("没有配置管理员：请在 .env 的 ADMIN_TELEGRAM_IDS 中填管理员 ID，再用 --as admin --user 其中一个 ID。",
                 code=2)
        return settings.admin_telegram_ids[0]
    return DEFAULT_RESIDENT_ID


def _checker(role: str, user_id: int, found: dict[str, bool]) -> Callable[[Services], None]:
    """Refuses an id that is not a `role`; records in `found["worker"]` whether the id is a worker's."""
    from bot.channels.terminal import terminal_worker, worker_holding

    def refuse(services: Services, message: str) -> NoReturn:
        services.close()
        fail(message, code=2)  # typer.Exit passes through config_errors

    def check(services: Services) -> None:
        if role == "admin" and user_id not in services.settings.admin_telegram_ids:
            refuse(services, f"ID {user_id} 不是管理员：--user 请填 ADMIN_TELEGRAM_IDS 中的 ID。")
        if role == "worker" and worker_holding(services, user_id) is None:
            refuse(services, f"没有在岗的网格员使用 ID {user_id}：--user 请填 grids.yaml 中网格员的 telegram_id。")
        if role == "resident" and terminal_worker(services, user_id) is not None:
            refuse(services, f"ID {user_id} 是网格员的账号：请用 --as worker --user {user_id}，或换一个居民 ID。")
        # an admin who is also a worker is that worker here too, as on Telegram
        found["worker"] = role == "worker" or (role == "admin" and worker_holding(services, user_id) is not None)

    return check


@app.command("chat")
def chat(
    as_: str = typer.Option("resident", "--as",
                            help="以谁的身份对话：resident（居民）、worker（网格员）或 admin（管理员）"),
    user: int | None = typer.Option(
        None, "--user", help="用户 ID（网格员为 grids.yaml 中的 telegram_id，管理员为 ADMIN_TELEGRAM_IDS 中的 ID）"),
) -> None:
    """在终端里与泉小智对话（与 Telegram 相同的对话引擎）；每行一条输入，Ctrl-D 结束。"""
    from bot.channels.terminal import TerminalChat

    if as_ not in ROLES:
        raise typer.BadParameter("--as 只能是 resident、worker 或 admin")
    settings = settings_or_exit()
    user_id = user if user is not None else _default_user(settings, as_)
    found = {"worker": False}
    err = err_console
    with config_errors("准备失败"):
        services = prepare(settings, err, check=_checker(as_, user_id, found))
    interactive = sys.stdin.isatty()
    warmup = ClassifierWarmup(services, err, say_when_waiting=interactive)
    try:
        session = TerminalChat(services, user_id=user_id, out=sys.stdout, as_worker=found["worker"],
                               display_name=ROLES[as_])
    except LookupError:  # the worker left between the check and now
        services.close()
        fail(f"没有在岗的网格员使用 ID {user_id}：--user 请填 grids.yaml 中网格员的 telegram_id。", code=2)
    prompt = (lambda: print(PROMPT, end="", flush=True)) if interactive else None
    if interactive:
        err.print(f"以{ROLES[as_]}身份对话（用户 {user_id}）。输入数字或按钮文字选择；"
                  "/photo、/location 纬度,经度 模拟照片和定位；/myid 查看自己的 ID；Ctrl-D 退出。")
    session.start_polling(after_push=prompt)  # pushes to this person show up while they read
    try:
        session.run(warmup.before_each(sys.stdin), prompt=prompt)
    except KeyboardInterrupt:
        pass
    finally:
        session.stop_polling()
        services.close()
