"""The `quanbot` command line. Each subcommand parses options and calls services; no business rules here."""

from __future__ import annotations

import sys

import typer
from rich.console import Console
from rich.table import Table

from bot.settings import Settings, SettingsError, load_settings

app = typer.Typer(help="quanbot：网格化社会治理 AI 社工（泉小智式）命令行。", no_args_is_help=True,
                  rich_markup_mode="rich", pretty_exceptions_enable=False)
db_app = typer.Typer(help="案件库（数据库）管理。", no_args_is_help=True)
policies_app = typer.Typer(help="政策配置文件（分类、时限、分派、网格）。", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(policies_app, name="policies")
console = Console()
err_console = Console(stderr=True)


def settings_or_exit() -> Settings:
    try:
        return load_settings()
    except SettingsError as exc:
        err_console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None


@db_app.command("upgrade")
def db_upgrade() -> None:
    """把数据库迁移到最新结构，并从 grids.yaml 同步网格与人员。"""
    from bot.runtime import prepare_database

    settings = settings_or_exit()
    try:
        grids, workers = prepare_database(settings)
    except Exception as exc:  # a person reads this: one line, no traceback
        err_console.print(f"[red]数据库升级失败：{type(exc).__name__}: {exc}[/red]")
        raise typer.Exit(1) from None
    console.print(f"[green]✓[/green] 数据库已是最新结构：{_safe_url(settings.database_url)}")
    console.print(f"[green]✓[/green] 已同步 {grids} 个网格、{workers} 名人员")


@policies_app.command("check")
def policies_check() -> None:
    """校验 policies/ 下的 YAML 文件并打印摘要。"""
    from policies.loader import PolicyError, load_policies

    settings = settings_or_exit()
    try:
        p = load_policies(settings.policies_dir)
    except PolicyError as exc:
        err_console.print(f"[red]✗ 政策文件有 {len(exc.problems)} 处错误：[/red]")
        for line in exc.problems:
            err_console.print(f"  • {line}")
        raise typer.Exit(1) from None
    table = Table(title=f"政策文件 {settings.policies_dir}", show_lines=False)
    table.add_column("文件")
    table.add_column("摘要")
    table.add_row("taxonomy.yaml", f"意图 {len(p.taxonomy.intents)} 类，类别 {len(p.taxonomy.categories)} 类，"
                                   f"紧急程度 {len(p.taxonomy.urgencies)} 级")
    sla_bits = [f"{p.taxonomy.name_of(u.value)}：{r.response} 响应 / {r.resolve} 办结（{r.clock}）"
                for u, r in p.sla.urgencies.items()]
    table.add_row("sla.yaml", "\n".join(sla_bits) + f"\n升级层级 {len(p.sla.escalation.ladder)} 级")
    table.add_row("routing.yaml", f"{len(p.routing.rules)} 条规则，默认 {p.routing.default.role}，"
                                  f"兜底 {' → '.join(p.routing.fallback)}")
    grids = sum(len(c.grids) for c in p.grids.communities)
    table.add_row("grids.yaml", f"{p.grids.street.name}：{len(p.grids.communities)} 个社区，{grids} 个网格，"
                                f"{len(p.grids.all_staff())} 个岗位")
    console.print(table)
    console.print("[green]✓ 政策文件校验通过[/green]")


def _safe_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def main() -> None:  # pragma: no cover - console entry
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())


# Subcommands live beside their area; importing registers them on `app`.
from bot import cli_chat, cli_demo, cli_eval, cli_knowledge, cli_loop, cli_run, cli_understanding  # noqa: E402,F401
