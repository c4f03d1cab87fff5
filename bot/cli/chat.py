"""`quanbot chat`: talk to the dialogue engine in the terminal, as a resident or as a grid worker.

Prepares what a fresh install lacks (migrations + org sync, knowledge ingestion (incremental: unchanged documents
are skipped)) with progress bars on stderr, all inside the one `Services` the chat then runs on, so nothing is
loaded twice; then shows the prompt and reads one input per line from stdin until EOF. The classifier (over a
second of scikit-learn import, or a short training on first use) loads in a background thread while the person
reads the prompt and types; the first input waits for it, saying so if it is not done yet.
Scriptable: `printf '/start\\n1\\n' | quanbot chat`.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

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


def prepare(settings: Settings, console: Console) -> Services:
    """Services with the database migrated and the organisation synced and the knowledge base ingested and
    loaded (the parts that need a progress bar)."""
    from bot.runtime import prepare_database
    from bot.services import Services

    services = Services(settings)
    with Progress(TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(), console=console,
                  transient=False) as bar:
        db = bar.add_task("数据库与网格人员", total=1)
        prepare_database(settings)
        _ = services.engine, services.policies  # built here, never by two threads at once
        bar.update(db, completed=1)

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


@app.command("chat")
def chat(
    as_: str = typer.Option("resident", "--as", help="以谁的身份对话：resident（居民）或 worker（网格员）"),
    user: int | None = typer.Option(None, "--user", help="用户 ID（网格员为 grids.yaml 中的 telegram_id）"),
) -> None:
    """在终端里与泉小智对话（与 Telegram 相同的对话引擎）；每行一条输入，Ctrl-D 结束。"""
    from bot.channels.terminal import TerminalChat

    if as_ not in ("resident", "worker"):
        raise typer.BadParameter("--as 只能是 resident 或 worker")
    settings = settings_or_exit()
    err = err_console
    with config_errors("准备失败"):
        services = prepare(settings, err)
    interactive = sys.stdin.isatty()
    warmup = ClassifierWarmup(services, err, say_when_waiting=interactive)
    user_id = user if user is not None else (_default_worker_id(settings) if as_ == "worker" else DEFAULT_RESIDENT_ID)
    try:
        session = TerminalChat(services, user_id=user_id, out=sys.stdout, as_worker=as_ == "worker",
                               display_name="网格员" if as_ == "worker" else "居民")
    except LookupError:
        services.close()
        fail(f"没有在岗的网格员使用 ID {user_id}：--user 请填 grids.yaml 中网格员的 telegram_id。", code=2)
    if interactive:
        who = "网格员" if as_ == "worker" else "居民"
        err.print(f"以{who}身份对话（用户 {user_id}）。输入数字或按钮文字选择；"
                  "/photo、/location 纬度,经度 模拟照片和定位；Ctrl-D 退出。")
    try:
        session.run(warmup.before_each(sys.stdin),
                    prompt=(lambda: print(PROMPT, end="", flush=True)) if interactive else None)
    except KeyboardInterrupt:
        pass
    finally:
        services.close()
