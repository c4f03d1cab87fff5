"""Engines, sessions and migrations. SQLite (WAL, busy timeout) by default; PostgreSQL at scale.

A DATABASE_URL that cannot work (an in-memory SQLite, a PostgreSQL database that does not exist, a schema that
was never migrated) raises `DatabaseConfigError`, whose text is one line for a person saying what to do.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import event
from sqlalchemy.engine import URL, Connection, Engine, ExceptionContext, make_url
from sqlmodel import Session, create_engine

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


class DatabaseConfigError(RuntimeError):
    """DATABASE_URL cannot work as configured; the message is one line for a person that says what to do."""


def check_url(url: str) -> None:
    """Refuse a URL no deployment can use: an in-memory SQLite is a separate, empty database in every process
    (and every connection), so the bot, the scheduler and the console would never see each other's cases."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and (parsed.database in (None, "", ":memory:")
                                                  or parsed.query.get("mode") == "memory"):
        raise DatabaseConfigError(
            f"DATABASE_URL={url} 是内存数据库：每个进程（机器人、定时巡检、控制台）都会各得一个空库，彼此看不到工单，"
            "退出即丢失。请改用文件，例如 sqlite:///var/quanbot.db，或 PostgreSQL。")


def _connect_error(url: URL, exc: BaseException) -> DatabaseConfigError | None:
    """One line for a failed connection to PostgreSQL: a database that does not exist gets the createdb hint."""
    if url.get_backend_name() != "postgresql":
        return None
    detail = str(exc).strip()
    name = url.database or ""
    if name and f'"{name}"' in detail and ("does not exist" in detail or "不存在" in detail):
        flags = "".join(f" {flag} {value}" for flag, value in (("-h", url.host), ("-p", url.port),
                                                               ("-U", url.username)) if value)
        return DatabaseConfigError(f"PostgreSQL 上没有数据库 {name}：请先建库（createdb{flags} {name}），"
                                   "再运行 quanbot db upgrade。")
    reason = detail.splitlines()[0] if detail else type(exc).__name__
    where = f"{url.host or 'localhost'}:{url.port or 5432}"
    return DatabaseConfigError(f"连不上 PostgreSQL {where}（{reason}）：请检查服务器是否在运行，以及 DATABASE_URL "
                               "的主机、端口、用户名和密码。")


def make_engine(url: str, **kwargs: Any) -> Engine:
    """Create an engine; SQLite gets WAL, a busy timeout and foreign keys on every connection.

    Raises DatabaseConfigError for an in-memory SQLite; a failed first connection to PostgreSQL raises it too.
    """
    check_url(url)
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30}, **kwargs)

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

        @event.listens_for(engine, "savepoint")
        def _savepoint_writes(conn: Connection, _name: str) -> None:
            # A SAVEPOINT outside a transaction begins a DEFERRED one: its first read pins a WAL snapshot, and its
            # first write then fails at once with SQLITE_BUSY_SNAPSHOT ("database is locked", the busy timeout
            # cannot help) if another connection committed meanwhile. Our savepoints guard writes (opening a case):
            # take the write lock first, waiting for it within the busy timeout.
            dbapi_conn = conn.connection.dbapi_connection
            if dbapi_conn is not None and not dbapi_conn.in_transaction:
                dbapi_conn.execute("BEGIN IMMEDIATE")

        return engine
    kwargs.setdefault("pool_pre_ping", True)
    kwargs.setdefault("pool_size", 10)
    kwargs.setdefault("max_overflow", 20)
    engine = create_engine(url, **kwargs)
    parsed = make_url(url)

    @event.listens_for(engine, "handle_error")
    def _explain(ctx: ExceptionContext) -> BaseException | None:
        # only a connection that could not be opened (not a failed statement, not the pool's liveness probe)
        if ctx.connection is not None or ctx.is_pre_ping or ctx.original_exception is None:
            return None
        return _connect_error(parsed, ctx.original_exception)

    return engine


@contextmanager
def session_scope(engine: Engine) -> Iterator[Session]:
    """One unit of work: commit on success, roll back on error."""
    with Session(engine, expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade(url: str, revision: str = "head") -> None:
    """Bring the database at `url` to `revision` with Alembic."""
    check_url(url)
    command.upgrade(alembic_config(url), revision)


def current_revision(engine: Engine) -> str | None:
    """The schema revision the database is at; None when it was never migrated."""
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def head_revision() -> str | None:
    """The newest schema revision this code knows."""
    return ScriptDirectory(str(MIGRATIONS_DIR)).get_current_head()


def require_current_schema(engine: Engine) -> str:
    """The database's revision if it is the newest; otherwise DatabaseConfigError saying to migrate."""
    current, head = current_revision(engine), head_revision()
    if current is None:
        raise DatabaseConfigError("数据库还没有建表（从未迁移）：请先运行 quanbot db upgrade。")
    if current != head:
        raise DatabaseConfigError(f"数据库结构是第 {current} 版，本程序需要第 {head} 版：请先运行 quanbot db upgrade。")
    return current
