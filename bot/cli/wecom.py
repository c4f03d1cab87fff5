"""`quanbot wecom link <worker> <userid>`: give a grid worker their WeCom (企业微信) account, beside the Telegram one
grids.yaml gives them (audited by casestore.accounts.link_worker_account; pushes then go to the account the
worker used last). Parses options and calls services; no business rules here."""

from __future__ import annotations

import typer

from bot.cli.common import config_errors, console, fail, settings_or_exit

app = typer.Typer(help="企业微信（网格员）账号管理。", no_args_is_help=True)


@app.command("link")
def link(
    worker: str = typer.Argument(..., help="网格员：已登记的 Telegram ID（grids.yaml 的 telegram_id）或人员编号 #7。"),
    userid: str = typer.Argument(..., help="该网格员在企业微信通讯录里的账号（UserID）。"),
) -> None:
    """把网格员绑定到其企业微信账号（可同时保留 Telegram 账号）。"""
    from bot.channels.wechat_store import alias_of, remember_user
    from casestore.accounts import find_worker_by_external_id, link_worker_account
    from casestore.clock import SystemClock
    from casestore.db import make_engine, session_scope
    from casestore.models import Worker

    userid = userid.strip()
    if not userid or len(userid) > 64 or not userid.isascii() or any(c.isspace() for c in userid):
        fail("企业微信 UserID 应为 1-64 位字母、数字或符号，不含空格。", code=2)
    settings = settings_or_exit()
    with config_errors("绑定失败"):
        engine = make_engine(settings.database_url)
        try:
            with session_scope(engine) as session:
                ident = worker.strip().lstrip("#")
                found = (session.get(Worker, int(ident)) if worker.strip().startswith("#") and ident.isdigit()
                         else find_worker_by_external_id(session=session, external_id=ident))
                if found is None:
                    fail(f"没有找到网格员 {worker}：请给出其 Telegram ID，或用 #编号。", code=2)
                assert found is not None
                clock_now = SystemClock().now()
                link_worker_account(session=session, worker=found, channel="wecom",
                                    external_id=alias_of("wecom", userid), actor="cli", now=clock_now)
                name = found.name
            remember_user(engine, channel="wecom", user_ref=userid, now=clock_now, inbound=False)
        finally:
            engine.dispose()
    console.print(f"[green]✓[/green] 已把 {name} 绑定到企业微信账号 {userid}", highlight=False)

