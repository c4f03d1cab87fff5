"""`quanbot web` (the command-centre console) and `quanbot admin create|token` (console accounts).

Parses options, wires services and starts uvicorn; the console itself is bot/web.
"""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from bot.cli.common import config_errors, console, fail, install_logging, settings_or_exit

app = typer.Typer()
admin_app = typer.Typer(help="指挥中心控制台账号：开通账号、申请 API 令牌。", no_args_is_help=True)


@app.command("web")
def web_cmd(
    host: str = typer.Option("", "--host", help="监听地址，默认 WEB_HOST（127.0.0.1）。"),
    port: int = typer.Option(0, "--port", help="端口，默认 WEB_PORT（8000）。"),
    demo: bool = typer.Option(False, "--demo", help="打开 `make demo` 的数据，并打印一次性管理员登录。"),
    no_jobs: bool = typer.Option(False, "--no-jobs", help="本进程不运行后台任务（由其他副本运行）。"),
    demo_dir: Path = typer.Option(None, "--demo-dir", help="演示目录（`quanbot demo --out` 的目录），默认 var/demo。"),
) -> None:
    """指挥中心控制台（网页）：总览、工单、SLA 风险、网格与热点、知识库、评测、人员。"""
    import uvicorn

    from bot.runtime import prepare_database
    from bot.services import Services
    from bot.web.app import create_app

    settings = settings_or_exit()
    if demo:
        from bot.web.demo import DemoMissing, demo_settings

        try:
            settings = demo_settings(settings, demo_dir)
        except DemoMissing as exc:
            fail(str(exc), code=2)
    install_logging(settings)
    with config_errors("控制台启动失败"):
        prepare_database(settings)
        if demo:
            from bot.web.demo import demo_clock, one_time_login

            services = Services(settings, clock=demo_clock(settings))
            username, password = one_time_login(engine=services.engine, now=services.clock.now())
            console.print(f"演示登录：用户名 [bold]{username}[/bold]  密码 [bold]{password}[/bold]（仅本次有效）")
        else:
            services = Services(settings)
        application = create_app(services, run_jobs=not no_jobs, demo=demo)
    bind_host, bind_port = host or settings.web_host, port or settings.web_port
    console.print(f"控制台：http://{bind_host}:{bind_port}/   API 文档：http://{bind_host}:{bind_port}/api/docs")
    uvicorn.run(application, host=bind_host, port=bind_port, log_level="warning", proxy_headers=True)


@admin_app.command("create")
def admin_create(
    username: str = typer.Option(..., "--username", help="登录用户名。"),
    scope: str = typer.Option("street", "--scope", help="数据范围：street、community:<社区编号> 或 grid:<网格号>。"),
    name: str = typer.Option("", "--name", help="显示的姓名或岗位，例如 “街道指挥中心 王主任”。"),
    password_stdin: bool = typer.Option(False, "--password-stdin", help="从标准输入读取密码（一行）。"),
) -> None:
    """开通一个控制台账号。"""
    from sqlmodel import Session

    from bot.web.scope import known_scope
    from casestore.admins import create_admin, parse_scope
    from casestore.clock import SystemClock
    from casestore.db import make_engine, require_current_schema
    from casestore.errors import DomainError
    from policies.loader import load_policies

    settings = settings_or_exit()
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = typer.prompt("密码", hide_input=True, confirmation_prompt=True)
    try:
        kind, ident = parse_scope(scope)
    except DomainError as exc:
        fail(exc.user_message, code=2)
    if not known_scope(kind, ident, load_policies(settings.policies_dir).grids):
        fail(f"grids.yaml 里没有 {scope}：请核对社区或网格编号（`quanbot policies check` 可列出）。", code=2)
    with config_errors("开通账号失败"):
        engine = make_engine(settings.database_url)
        try:
            require_current_schema(engine)
            with Session(engine) as session:
                try:
                    admin = create_admin(session=session, username=username, password=password, scope_kind=kind,
                                         scope_id=ident, actor="cli", now=SystemClock().now(), display_name=name)
                except DomainError as exc:
                    fail(exc.user_message, code=2)
                session.commit()
                console.print(f"已开通控制台账号 {admin.username}（范围：{scope}）。")
        finally:
            engine.dispose()


@admin_app.command("token")
def admin_token(
    username: str = typer.Option(..., "--username", help="为哪个账号申请。"),
    label: str = typer.Option("", "--label", help="用途，例如 12345 平台。"),
) -> None:
    """为账号申请一个 API 令牌（只显示这一次）。"""
    from sqlmodel import Session

    from casestore.admins import issue_token
    from casestore.clock import SystemClock
    from casestore.db import make_engine, require_current_schema
    from casestore.errors import DomainError

    settings = settings_or_exit()
    with config_errors("申请令牌失败"):
        engine = make_engine(settings.database_url)
        try:
            require_current_schema(engine)
            with Session(engine) as session:
                try:
                    token = issue_token(session=session, username=username, actor="cli", now=SystemClock().now(),
                                        label=label)
                except DomainError as exc:
                    fail(exc.user_message, code=2)
                session.commit()
        finally:
            engine.dispose()
    print(token)
