"""`quanbot policies check`: validate the YAML rules under POLICIES_DIR and print a summary, and warn about FAQ
entries (FAQ_PATH) that cite a document not under KNOWLEDGE_DIR (the bot does not serve those)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.markup import escape
from rich.table import Table

from bot.cli.common import console, err_console, settings_or_exit

app = typer.Typer(help="政策配置文件（分类、时限、分派、网格）。", no_args_is_help=True)


@app.command("check")
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
    _faq_check(settings)


def _faq_check(settings: Any) -> None:
    """Warnings (not failures: the bot skips such an entry) for FAQ entries citing a document that is not there."""
    import yaml

    from knowledge.faq import FaqError, load_faq, unknown_doc_problems
    from knowledge.ingest import document_ids, missing_root_text

    def warn(line: str) -> None:
        err_console.print(f"[yellow]⚠ {escape(line)}[/yellow]", highlight=False, soft_wrap=True)

    try:
        entries = load_faq(Path(settings.faq_path))
    except (FaqError, yaml.YAMLError) as exc:
        warn(f"常见问题未使用：{exc}")
        return
    root = Path(settings.knowledge_dir)
    if not entries:
        return
    if not root.exists():
        warn(missing_root_text(root))
        return
    problems = unknown_doc_problems(entries, document_ids(root))
    for line in problems:
        warn(f"{line}（{settings.faq_path}）")
    if not problems:
        console.print(f"[green]✓ 常见问题 {len(entries)} 条，引用的文档都在知识库里[/green]")
