"""What every command module of the CLI shares: the consoles, settings loading, one-line errors for people,
and the process's logging set-up.

Command modules import this; this imports no command module (and nothing heavy), so the package has no
import cycle and `quanbot --help` stays fast. Must not: hold business rules or a command.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from typing import NoReturn

import typer
from rich.console import Console
from rich.markup import escape

from bot.logs import LogHygieneFilter
from bot.logs import install as install_log_hygiene
from bot.settings import Settings, SettingsError, load_settings

console = Console()
err_console = Console(stderr=True)
log = logging.getLogger("quanbot.cli")

# Libraries whose INFO lines are noise in our log: APScheduler writes two per sweep ("Running job", "executed
# successfully"), Alembic two per start even with nothing to migrate ("Context impl", "Will assume"). jieba's
# "Building prefix dict…" notes are handled in quiet_libraries.
QUIET_LOGGERS = ("apscheduler", "alembic")


def fail(message: str, *, code: int = 1) -> NoReturn:
    """Print one red line for a person on stderr (no traceback) and exit with `code`."""
    err_console.print(f"[red]{escape(message)}[/red]", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def settings_or_exit() -> Settings:
    """The settings, or one line naming the wrong variable and exit code 2."""
    try:
        return load_settings()
    except SettingsError as exc:
        fail(str(exc), code=2)


@contextmanager
def one_line_errors(failure: str) -> Iterator[None]:
    """Any error inside the block becomes "<failure>：<type>: <message>" and exit code 1, without a traceback."""
    try:
        yield
    except (typer.Exit, typer.Abort):
        raise
    except Exception as exc:  # a person reads one line; the traceback goes to the log (at DEBUG)
        log.debug("%s", failure, exc_info=True)
        fail(f"{failure}：{type(exc).__name__}: {exc}")


@contextmanager
def config_errors(failure: str | None = None) -> Iterator[None]:
    """A configuration error raised inside the block (a database that does not exist or was never migrated, an
    in-memory SQLite) becomes its one line and exit code 2; with `failure` (say "准备失败"), any other error
    becomes one line too (see `one_line_errors`)."""
    from casestore.db import DatabaseConfigError  # the edge may import lazily: --help must not load SQLAlchemy

    with one_line_errors(failure) if failure else nullcontext():
        try:
            yield
        except DatabaseConfigError as exc:
            fail(str(exc), code=2)


class _WarningsAndAbove(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING


_warnings_and_above = _WarningsAndAbove()


def quiet_libraries() -> None:
    """Keep libraries' chatter off the terminal; warnings and errors still get through.

    jieba sets its own logger to DEBUG with a stderr handler when it is imported, so a level set now would be
    overwritten: a filter on its logger survives that, and jieba need not be imported here.
    """
    jieba_log = logging.getLogger("jieba")
    if _warnings_and_above not in jieba_log.filters:
        jieba_log.addFilter(_warnings_and_above)
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)


def install_logging(settings: Settings) -> LogHygieneFilter:
    """Root logging with the hygiene filter on every handler (personal data and secrets masked, control
    characters escaped: bot.logs); httpx's per-request lines (which carry the token in the URL) and APScheduler's
    per-run lines are kept out."""
    hygiene = install_log_hygiene(settings.log_level, secrets=(settings.telegram_token.get_secret_value(),
                                                                settings.webhook_secret.get_secret_value()))
    quiet_libraries()
    return hygiene


def safe_url(url: str) -> str:
    """The database URL with its password hidden, for messages."""
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)
