"""`quanbot review`: the queue of missed questions, for an admin in a terminal, and the fix for each.

`list` and `show` read the queue; `faq`, `scope` and `lexicon` append the fix to its file (bot.curation) and mark
the item resolved in the same unit of work (the file is replaced only once the item's update is flushed, and the
update is rolled back if the file cannot be written); `dismiss` closes an item with nothing to fix.
Parses options and calls casestore.review and bot.curation; no rules here. Every mistake a person can make (a bad
id, an item already handled, a missing option, a document that does not exist) is one Chinese line and exit code 2.
"""

from __future__ import annotations

import json
import os
import pwd
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import typer
from rich.markup import escape
from rich.table import Table

from bot.cli.common import config_errors, console, fail, settings_or_exit

if TYPE_CHECKING:
    from sqlmodel import Session

    from bot.settings import Settings
    from casestore.models import ReviewItem

app = typer.Typer(help="待审问题：知识库没答上、被评“没用”、答后转人工、澄清没选的问题，以及给每条补上的修正。",
                  no_args_is_help=True)

KIND_LABELS = {"not_found": "没找到", "not_useful": "没用", "handoff_after_answer": "答后转人工",
               "clarify_unpicked": "澄清未选"}
STATUS_LABELS = {"open": "待审", "resolved": "已处理", "dismissed": "已忽略"}
RESOLUTION_LABELS = {"faq": "FAQ", "scope": "范围示例", "lexicon": "词表"}


def _actor() -> str:
    """The admin as the audit trail names them: the terminal's login account (the process's own user)."""
    try:
        return f"admin:cli:{pwd.getpwuid(os.getuid()).pw_name}"[:64]
    except (KeyError, OSError):
        return "admin:cli"


def _item_id(raw: str) -> int:
    text = raw.strip().lstrip("#")
    if not text.isdigit() or int(text) <= 0:
        fail(f"编号不对：{raw!r}。请用 quanbot review list 里的数字编号，例如 quanbot review show 12。", code=2)
    return int(text)


@contextmanager
def _session(settings: Settings) -> Iterator[Session]:
    """One unit of work on the configured, migrated database; a configuration problem is one line, exit 2."""
    from casestore.db import make_engine, require_current_schema, session_scope

    with config_errors("待审队列操作失败"):
        engine = make_engine(settings.database_url)
        try:
            require_current_schema(engine)
            with session_scope(engine) as session:
                yield session
        finally:
            engine.dispose()


@contextmanager
def _people_errors() -> Iterator[None]:
    """A review or curation error raised inside the block is its one Chinese line and exit code 2."""
    from bot.curation import CurationError
    from casestore.errors import DomainError

    try:
        yield
    except DomainError as exc:
        fail(exc.user_message, code=2)
    except CurationError as exc:
        fail(str(exc), code=2)


def _age(created: datetime, now: datetime) -> str:
    minutes = max(0, int((now - created).total_seconds() // 60))
    if minutes < 60:
        return f"{minutes} 分钟"
    if minutes < 60 * 48:
        return f"{minutes // 60} 小时"
    return f"{minutes // (60 * 24)} 天"


def _public(item: ReviewItem, now: datetime, settings: Settings) -> dict[str, Any]:
    return {"id": item.id, "kind": item.kind, "status": item.status, "question": item.question,
            "retrieved": item.retrieved, "answer_mode": item.answer_mode, "next_message": item.next_message,
            "created_at": item.created_at.astimezone(settings.tz).isoformat(timespec="seconds"),
            "age_minutes": max(0, int((now - item.created_at).total_seconds() // 60)),
            "resolution": item.resolution, "resolved_doc": item.resolved_doc, "resolved_by": item.resolved_by,
            "resolved_at": item.resolved_at.astimezone(settings.tz).isoformat(timespec="seconds")
            if item.resolved_at else None}


def _titles(item: ReviewItem, n: int = 3) -> str:
    titles = list(dict.fromkeys(str(r.get("title") or r.get("doc_id") or "") for r in item.retrieved))
    return "、".join(t for t in titles[:n] if t) or "—"


@app.command("list")
def review_list(show_all: bool = typer.Option(False, "--all", help="包括已处理和已忽略的"),
                as_json: bool = typer.Option(False, "--json", help="输出 JSON 数组"),
                limit: int = typer.Option(50, "--limit", min=1, max=1000, help="最多显示几条")) -> None:
    """待审队列：编号、原因、问题（已脱敏）、检索到的文档、居民的下一句、多久以前。"""
    from casestore.review import list_items

    settings = settings_or_exit()
    now = datetime.now(UTC)
    with _session(settings) as session:
        items = list_items(session=session, status=None if show_all else "open", limit=limit)
    if as_json:
        print(json.dumps([_public(i, now, settings) for i in items], ensure_ascii=False))
        return
    if not items:
        console.print("没有待审的问题。" if not show_all else "待审队列是空的。")
        return
    table = Table(title="待审问题" + ("（全部）" if show_all else ""))
    for header in ("编号", "原因", "问题", "检索到", "下一句", "多久前") + (("状态",) if show_all else ()):
        table.add_column(header, no_wrap=header in ("编号", "原因", "多久前", "状态"))
    for item in items:
        row = [str(item.id), KIND_LABELS.get(item.kind, item.kind), escape(item.question), escape(_titles(item)),
               escape(item.next_message or "—"), _age(item.created_at, now)]
        if show_all:
            row.append(STATUS_LABELS.get(item.status, item.status))
        table.add_row(*row)
    console.print(table)


@app.command("show")
def review_show(item_id: str = typer.Argument(..., metavar="ID", help="待审编号")) -> None:
    """一条待审问题的全部内容。"""
    from casestore.review import get_item

    number = _item_id(item_id)
    settings = settings_or_exit()
    now = datetime.now(UTC)
    with _session(settings) as session, _people_errors():
        item = get_item(session=session, item_id=number)
    d = _public(item, now, settings)
    lines = [f"编号：{item.id}　原因：{KIND_LABELS.get(item.kind, item.kind)}　状态：{STATUS_LABELS.get(item.status)}",
             f"时间：{d['created_at']}（{_age(item.created_at, now)}前）　回答方式：{item.answer_mode or '—'}",
             f"问题：{item.question}",
             f"下一句：{item.next_message or '—'}",
             "检索到："]
    lines += [f"  {n}. {r.get('title') or r.get('doc_id')} › {r.get('section') or '—'}（{r.get('doc_id')}，"
              f"score={r.get('score')}）" for n, r in enumerate(item.retrieved, start=1)] or ["  —"]
    if item.status != "open":
        lines.append(f"处理：{RESOLUTION_LABELS.get(item.resolution or '', '忽略')}　文档：{item.resolved_doc or '—'}"
                     f"　由 {item.resolved_by or '—'} 于 {d['resolved_at'] or '—'}")
    for line in lines:
        console.print(line, markup=False, highlight=False, soft_wrap=True)


def _apply(settings: Settings, fix: Callable[..., ReviewItem], number: int, **options: Any) -> ReviewItem:
    """Apply one of bot.curation's fixes to the item as one unit of work (the file is written before the commit)."""
    from bot.curation import CurationPaths

    with _session(settings) as session, _people_errors():
        return fix(session=session, item_id=number, paths=CurationPaths.of(settings), by=_actor(),
                   now=datetime.now(UTC), **options)


@app.command("faq")
def review_faq(item_id: str = typer.Argument(..., metavar="ID", help="待审编号"),
               doc: str | None = typer.Option(None, "--doc", help="答案出处的文档（文件名，不含扩展名）"),
               section: str | None = typer.Option(None, "--section", help="文档里的小节"),
               answer: str | None = typer.Option(None, "--answer", help="给居民的答案")) -> None:
    """把这个问题和答案加进 FAQ（FAQ_PATH），并标为已处理。"""
    from bot.curation import require_document, resolve_with_faq

    number = _item_id(item_id)
    missing = [flag for flag, value in (("--doc", doc), ("--section", section), ("--answer", answer))
               if not (value or "").strip()]
    if missing:
        fail(f"缺少 {'、'.join(missing)}：例如 quanbot review faq {number} --doc residence-permit "
             "--section 所需材料 --answer \"……\"", code=2)
    assert doc is not None and section is not None and answer is not None
    settings = settings_or_exit()
    with _people_errors():
        slug = require_document(doc, settings.knowledge_dir)
    faq_path = settings.faq_path
    _apply(settings, resolve_with_faq, number, doc=slug, section=section, answer=answer)
    console.print(f"[green]✓[/green] 第 {number} 条已加入 FAQ（review-{number}，{escape(slug)} › {escape(section)}）："
                  f"{escape(str(faq_path))}；重启机器人后生效", highlight=False, soft_wrap=True)


@app.command("scope")
def review_scope(item_id: str = typer.Argument(..., metavar="ID", help="待审编号"),
                 in_scope: bool | None = typer.Option(None, "--in-scope/--out-of-scope",
                                                      help="知识库能回答（需 --doc）/ 不能回答"),
                 doc: str | None = typer.Option(None, "--doc", help="能回答时：回答它的文档")) -> None:
    """把这个问题加为范围示例（SCOPE_EXAMPLES）：知识库能回答或不能回答，并标为已处理。"""
    from bot.curation import require_document, resolve_with_scope

    number = _item_id(item_id)
    if in_scope is None:
        fail(f"请说明知识库能不能回答：quanbot review scope {number} --in-scope --doc <文档> 或 --out-of-scope", code=2)
    if in_scope and not (doc or "").strip():
        fail(f"--in-scope 需要 --doc：回答这个问题的文档，例如 quanbot review scope {number} --in-scope "
             "--doc residence-permit", code=2)
    if not in_scope and doc:
        fail("--out-of-scope 表示知识库没有答案，不能再给 --doc。", code=2)
    settings = settings_or_exit()
    slug: str | None = None
    if in_scope:
        assert doc is not None
        with _people_errors():
            slug = require_document(doc, settings.knowledge_dir)
    path = settings.scope_examples
    _apply(settings, resolve_with_scope, number, in_scope=bool(in_scope), doc=slug)
    what = f"知识库能回答（{escape(slug)}）" if slug else "知识库不能回答"
    console.print(f"[green]✓[/green] 第 {number} 条已加为范围示例：{what}：{escape(str(path))}；重启机器人后生效",
                  highlight=False, soft_wrap=True)


@app.command("lexicon")
def review_lexicon(item_id: str = typer.Argument(..., metavar="ID", help="待审编号"),
                   term: str | None = typer.Option(None, "--term", help="居民的说法，例如 老年卡"),
                   means: list[str] | None = typer.Option(None, "--means", help="文档里的正式名称（可重复）"),
                   doc: str | None = typer.Option(None, "--doc", help="讲这个词的文档（可选）")) -> None:
    """把居民的说法和文档里的正式名称加进词表（POLICIES_DIR/lexicon.yaml），并标为已处理。"""
    from bot.curation import require_document, resolve_with_lexicon

    number = _item_id(item_id)
    if not (term or "").strip() or not [m for m in means or [] if m.strip()]:
        fail(f"需要 --term 和 --means：例如 quanbot review lexicon {number} --term 老年卡 --means 老年人优待证", code=2)
    assert term is not None and means is not None
    settings = settings_or_exit()
    slug: str | None = None
    if doc:
        with _people_errors():
            slug = require_document(doc, settings.knowledge_dir)
    path = settings.policies_dir / "lexicon.yaml"
    _apply(settings, resolve_with_lexicon, number, term=term, means=means, doc=slug)
    console.print(f"[green]✓[/green] 第 {number} 条已加入词表：{escape(term.strip())} → "
                  f"{escape('、'.join(m.strip() for m in means if m.strip()))}：{escape(str(path))}",
                  highlight=False, soft_wrap=True)


@app.command("dismiss")
def review_dismiss(item_id: str = typer.Argument(..., metavar="ID", help="待审编号")) -> None:
    """忽略这一条（无需修正：测试消息、一次性的问题）。"""
    from bot.curation import dismiss

    number = _item_id(item_id)
    settings = settings_or_exit()
    with _session(settings) as session, _people_errors():
        dismiss(session=session, item_id=number, by=_actor(), now=datetime.now(UTC))
    console.print(f"[green]✓[/green] 第 {number} 条已忽略", highlight=False)
