"""`quanbot db upgrade`: migrate the case store and load the organisation from grids.yaml (workers an admin
registered at run time are kept as they are; a clash is one line, see casestore.org)."""

from __future__ import annotations

import typer
from rich.markup import escape

from bot.cli.common import config_errors, console, safe_url, settings_or_exit

app = typer.Typer(help="案件库（数据库）管理。", no_args_is_help=True)


@app.command("upgrade")
def db_upgrade() -> None:
    """把数据库迁移到最新结构，并从 grids.yaml 同步网格与人员。"""
    from bot.runtime import prepare_database
    from casestore.db import current_revision, make_engine, session_scope
    from casestore.org import registered_worker_ids

    settings = settings_or_exit()
    url = escape(safe_url(settings.database_url))
    with config_errors("数据库升级失败"):
        engine = make_engine(settings.database_url)
        try:
            before = current_revision(engine)
            grids, workers = prepare_database(settings)
            after = current_revision(engine)
            with session_scope(engine) as session:
                kept = len(registered_worker_ids(session=session))
        finally:
            engine.dispose()
    if before is None:
        done = f"已在新数据库上建表，结构为第 {after} 版"
    elif before != after:
        done = f"数据库结构已从第 {before} 版迁移到第 {after} 版"
    else:
        done = f"数据库已是最新结构（第 {after} 版）"
    console.print(f"[green]✓[/green] {done}：{url}", highlight=False, soft_wrap=True)
    registered = f"；管理员登记的 {kept} 名人员保留不变" if kept else ""
    console.print(f"[green]✓[/green] 已同步 {grids} 个网格、{workers} 名人员{registered}")
