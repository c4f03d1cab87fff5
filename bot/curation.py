"""An admin's fixes for a missed question, appended to the files the knowledge base learns from: an FAQ entry
(FAQ_PATH), a scope example (SCOPE_EXAMPLES) and an everyday word for the documents' term (POLICIES_DIR/lexicon.yaml).

Each function returns the file's new text, already checked to load with the same reader the product uses, and
`write_atomically` puts it in place; nothing is written when a check fails. The files are appended to as text, so
their comments and layout stay as the admins wrote them (no round-trip YAML library is installed).
`resolve_with_faq` / `resolve_with_scope` / `resolve_with_lexicon` / `dismiss` are the whole fix for one review
item, as `quanbot review` and the console's 知识库 page both apply it: the item is resolved (casestore.review, with its
audit event, in the caller's session) and the file replaced after that flush and before the commit, so a failed
write rolls the item back and a failed check writes nothing.
Must not: open a session or commit (the caller owns the unit of work) or read settings (`CurationPaths` come in).
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml
from sqlmodel import Session

from casestore.models import ReviewItem
from casestore.review import dismiss_item, resolve_item
from knowledge.documents import list_documents
from knowledge.faq import FaqError, load_faq
from knowledge.scope import ScopeError, load_scope_examples

LEXICON_HEADER = ("# Everyday words residents use → the official terms the documents use. "
                  "Query expansion adds the official terms.\n")
_PLAIN = re.compile(r"[\w\u3400-\u9fff\uff08\uff09()·・-]+")


class CurationError(ValueError):
    """A fix that cannot be applied; the message is one Chinese line for the admin."""


def document_slugs(knowledge_dir: Path) -> set[str]:
    """The doc ids (file stems) of the knowledge directory."""
    return {p.stem for p in list_documents(knowledge_dir)} if knowledge_dir.exists() else set()


def require_document(slug: str, knowledge_dir: Path) -> str:
    """`slug` if it names a document of the knowledge directory, else CurationError."""
    slug = slug.strip()
    if slug not in document_slugs(knowledge_dir):
        raise CurationError(f"知识库里没有文档 {slug!r}（{knowledge_dir}）：请用文档的文件名（不含扩展名），"
                            "例如 residence-permit。")
    return slug


def _scalar(text: str) -> str:
    """`text` as a YAML scalar: plain when it reads back as itself, else double-quoted (JSON is valid YAML)."""
    if _PLAIN.fullmatch(text) and not text.startswith("-"):
        try:
            if yaml.safe_load(text) == text:
                return text
        except yaml.YAMLError:
            pass
    return json.dumps(text, ensure_ascii=False)


def _with_newline(text: str) -> str:
    return text if not text or text.endswith("\n") else text + "\n"


# ---------------- FAQ ----------------
def faq_with_entry(path: Path, *, entry_id: str, question: str, answer: str, doc: str, section: str) -> str:
    """The FAQ file's text with one entry appended under `entries:`."""
    answer, section, question = answer.strip(), section.strip(), question.strip()
    if not answer or not question:
        raise CurationError("FAQ 的问题和答案都不能为空。")
    old = path.read_text(encoding="utf-8") if path.exists() else ""
    try:
        before = load_faq(path)
    except (FaqError, yaml.YAMLError) as exc:
        raise CurationError(f"{path.name} 现在就读不出来（{_one_line(exc)}）：请先修好它。") from exc
    if any(e.id == entry_id for e in before):
        raise CurationError(f"{path.name} 里已经有 {entry_id} 这一条。")
    data = yaml.safe_load(old) if old.strip() else None
    if data is None or "entries" not in data:
        old = _with_newline(old) + "entries:\n"
    elif not data.get("entries"):  # "entries: []" cannot take a block item after it
        old = re.sub(r"(?m)^entries:.*$", "entries:", old, count=1)
    lines = [f"  - id: {_scalar(entry_id)}", f"    questions: [{json.dumps(question, ensure_ascii=False)}]"]
    if "\n" in answer and not answer[0].isspace() and "\r" not in answer:
        lines.append("    answer: |")
        lines.extend(f"      {line}" if line.strip() else "" for line in answer.splitlines())
    else:
        lines.append(f"    answer: {json.dumps(answer, ensure_ascii=False)}")
    lines.append(f"    doc: {_scalar(doc)}")
    if section:
        lines.append(f"    section: {_scalar(section)}")
    new = _with_newline(old) + "\n".join(lines) + "\n"
    after = _check(new, path, lambda p: load_faq(p), (FaqError, yaml.YAMLError))
    added = [e for e in after if e.id == entry_id]
    if len(after) != len(before) + 1 or not added or added[0].answer != answer or added[0].doc != doc:
        raise CurationError(f"追加后的 {path.name} 结构不对（entries 不是文件的最后一项？）：请手工添加这一条。")
    return new


# ---------------- scope examples ----------------
def scope_with_example(path: Path, *, question: str, expected: list[str]) -> str:
    """The scope examples file's text with one line appended (`expected` empty: the KB does not answer it)."""
    question = question.strip()
    if not question:
        raise CurationError("范围示例的问题不能为空。")
    old = path.read_text(encoding="utf-8") if path.exists() else ""
    try:
        before = load_scope_examples(path)
    except ScopeError as exc:
        raise CurationError(f"{path.name} 现在就读不出来（{exc}）：请先修好它。") from exc
    if any(e.question == question for e in before):
        raise CurationError(f"{path.name} 里已经有这个问题：{question}")
    line = json.dumps({"question": question, "expected": expected}, ensure_ascii=False)
    new = _with_newline(old) + line + "\n"
    after = _check(new, path, lambda p: load_scope_examples(p), (ScopeError,))
    if len(after) != len(before) + 1:
        raise CurationError(f"追加后的 {path.name} 不对：请手工添加这一行。")
    return new


# ---------------- lexicon ----------------
def load_lexicon_terms(path: Path) -> dict[str, list[str]]:
    """The `terms:` mapping of a lexicon file ({} when it is missing); CurationError when it is malformed."""
    if not path.exists():
        return {}
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise CurationError(f"{path.name} 不是合法的 YAML（{_one_line(exc)}）：请先修好它。") from exc
    if data is None:
        return {}
    if not isinstance(data, dict) or not isinstance(data.get("terms") or {}, dict):
        raise CurationError(f"{path.name} 的格式不对：需要 terms: 下面每行“日常说法: [正式名称]”。")
    terms: dict[str, list[str]] = {}
    for term, means in (data.get("terms") or {}).items():
        terms[str(term)] = [str(m) for m in means] if isinstance(means, list) else [str(means)]
    return terms


def lexicon_with_term(path: Path, *, term: str, means: list[str]) -> str:
    """The lexicon file's text with `term: [means]` under `terms:` (merged into the term's list if it is there)."""
    term, means = term.strip(), [m.strip() for m in means if m.strip()]
    if not term or not means:
        raise CurationError("需要 --term（居民的说法）和 --means（文档里的正式名称）。")
    before = load_lexicon_terms(path)
    old = path.read_text(encoding="utf-8") if path.exists() else LEXICON_HEADER
    merged = list(dict.fromkeys(before.get(term, []) + means))
    if term in before and merged == before[term]:
        raise CurationError(f"{path.name} 里 {term} 已经对应 {'、'.join(before[term])}。")
    lines = old.splitlines(keepends=True)
    flow = f"[{', '.join(_scalar(m) for m in merged)}]"
    if term in before:
        pattern = re.compile(rf"^(\s+)(['\"]?){re.escape(term)}\2\s*:\s*\[[^\]]*\]\s*(#.*)?$")
        at = [i for i, line in enumerate(lines) if pattern.match(line.rstrip("\n"))]
        if len(at) != 1:
            raise CurationError(f"{path.name} 里 {term} 不是一行“{term}: [..]”的写法：请手工合并。")
        indent = pattern.match(lines[at[0]].rstrip("\n")).group(1)  # type: ignore[union-attr]
        lines[at[0]] = f"{indent}{_scalar(term)}: {flow}\n"
    else:
        lines = _insert_under_terms(lines, f"{_scalar(term)}: {flow}")
    new = "".join(lines)
    try:
        after = _check(new, path, load_lexicon_terms, (CurationError,))
    except CurationError as exc:
        raise CurationError(f"追加后的 {path.name} 读不出来（{exc}）：请手工添加。") from exc
    if after != {**before, term: merged}:
        raise CurationError(f"追加后的 {path.name} 内容不对：请手工添加 {term}。")
    return new


def _insert_under_terms(lines: list[str], entry: str) -> list[str]:
    """`lines` with `entry` as the last item of the top-level `terms:` block (the block is made if missing)."""
    start = next((i for i, line in enumerate(lines) if re.match(r"^terms\s*:", line)), None)
    if start is None:
        return [*lines[:-1], _with_newline(lines[-1]) if lines else "", "terms:\n", f"  {entry}\n"]
    head = lines[start].split("#", 1)[0].strip()
    if head not in ("terms:", "terms: {}"):
        raise CurationError("lexicon.yaml 的 terms 不是按行写的（例如写成了 {..}）：请手工添加。")
    if head == "terms: {}":
        lines[start] = "terms:\n"
    end, indent = start + 1, "  "
    for i in range(start + 1, len(lines)):
        text = lines[i].rstrip("\n")
        if not text.strip() or text.lstrip().startswith("#"):
            continue
        if not text[0].isspace():
            break
        end, indent = i + 1, re.match(r"^\s+", text).group(0)  # type: ignore[union-attr]
    if end > 0:
        lines[end - 1] = _with_newline(lines[end - 1])
    return [*lines[:end], f"{indent}{entry}\n", *lines[end:]]


# ---------------- writing ----------------
def _check(text: str, path: Path, reader: Any, errors: tuple[type[BaseException], ...]) -> Any:
    """What `reader` makes of `text` written where `path` is (a temporary file beside it), or CurationError."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".check", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        try:
            return reader(Path(tmp))
        except errors as exc:
            raise CurationError(f"追加后的 {path.name} 读不出来（{_one_line(exc)}），没有写入。") from exc
    finally:
        Path(tmp).unlink(missing_ok=True)


def write_atomically(path: Path, text: str) -> None:
    """Replace `path` with `text` in one step (a reader never sees half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        if path.exists():
            os.chmod(tmp, path.stat().st_mode & 0o777)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:200]


# ---------------- one review item's fix, applied (the CLI and the console) ----------------
@dataclass(frozen=True)
class CurationPaths:
    """Where the fixes go: settings.knowledge_dir, faq_path, scope_examples and POLICIES_DIR/lexicon.yaml."""

    knowledge_dir: Path
    faq_path: Path
    scope_examples: Path
    lexicon: Path

    @classmethod
    def of(cls, settings: Any) -> CurationPaths:
        return cls(Path(settings.knowledge_dir), Path(settings.faq_path), Path(settings.scope_examples),
                   Path(settings.policies_dir) / "lexicon.yaml")


def _resolve(session: Session, item_id: int, resolution: str, doc: str | None, by: str, now: datetime,
             new_text: Callable[[ReviewItem], tuple[Path, str]]) -> ReviewItem:
    """Resolve the item, then replace the file `new_text` gives back for it (after the flush, before the commit)."""
    item = resolve_item(session=session, item_id=item_id, resolution=resolution, doc=doc, by=by, now=now)
    path, text = new_text(item)
    write_atomically(path, text)
    return item


def resolve_with_faq(*, session: Session, item_id: int, paths: CurationPaths, doc: str, section: str, answer: str,
                     by: str, now: datetime) -> ReviewItem:
    """The item's question with `answer` (citing `doc` › `section`) appended to the FAQ as `review-<id>`."""
    missing = [label for label, value in (("文档", doc), ("小节", section), ("答案", answer)) if not value.strip()]
    if missing:
        raise CurationError(f"缺少{'、'.join(missing)}：FAQ 需要答案出处的文档、小节和给居民的答案。")
    slug = require_document(doc, paths.knowledge_dir)
    return _resolve(session, item_id, "faq", slug, by, now, lambda item: (paths.faq_path, faq_with_entry(
        paths.faq_path, entry_id=f"review-{item.id}", question=item.question, answer=answer, doc=slug,
        section=section)))


def resolve_with_scope(*, session: Session, item_id: int, paths: CurationPaths, in_scope: bool, doc: str | None,
                       by: str, now: datetime) -> ReviewItem:
    """The item's question as a scope example: answered by `doc` (in scope) or not answered (no doc)."""
    doc = (doc or "").strip() or None
    if in_scope and doc is None:
        raise CurationError("知识库能回答时需要写明回答它的文档（文件名，不含扩展名）。")
    if not in_scope and doc is not None:
        raise CurationError("“知识库不能回答”表示没有答案文档，不能再指定文档。")
    slug = require_document(doc, paths.knowledge_dir) if doc is not None else None
    return _resolve(session, item_id, "scope", slug, by, now, lambda item: (paths.scope_examples, scope_with_example(
        paths.scope_examples, question=item.question, expected=[slug] if slug else [])))


def resolve_with_lexicon(*, session: Session, item_id: int, paths: CurationPaths, term: str, means: list[str],
                         doc: str | None, by: str, now: datetime) -> ReviewItem:
    """`term` → `means` in the lexicon (query expansion), the item resolved (with `doc` when given)."""
    doc = (doc or "").strip() or None
    slug = require_document(doc, paths.knowledge_dir) if doc is not None else None
    return _resolve(session, item_id, "lexicon", slug, by, now, lambda item: (paths.lexicon, lexicon_with_term(
        paths.lexicon, term=term, means=means)))


def dismiss(*, session: Session, item_id: int, by: str, now: datetime) -> ReviewItem:
    """Close the item with nothing to fix (a test message, a one-off)."""
    return dismiss_item(session=session, item_id=item_id, by=by, now=now)
