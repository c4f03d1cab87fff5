"""The knowledge directory as an admin edits it: list, save (upload), replace and delete document files.

Owns: the checks on an uploaded file before anything is written (a safe file name inside the directory, a type
the ingester reads, the size limit, not empty, readable by the same loader ingestion uses, so binary garbage
named .md is refused) and writing it in one step (a temporary hidden file beside it, then `os.replace`). Every
refusal is a `LibraryError` with one Chinese line and a `code` the caller maps to its own status.
Must not: ingest (the caller queues incremental ingestion afterwards), touch the database or know about HTTP.
"""

from __future__ import annotations

import os
import re
import tempfile
import unicodedata
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from knowledge.documents import SUPPORTED_SUFFIXES, LoadError, list_documents, load_document

ErrorCode = Literal["bad_name", "bad_type", "too_large", "empty", "unreadable", "exists", "missing"]
MAX_NAME = 120
# letters and digits of any script (CJK included), and - _ . ( ) and the full-width brackets; nothing else
_NAME_CHAR = re.compile(r"[^\w\-.()（）]+")
_MAGIC = {".pdf": (b"%PDF-",), ".docx": (b"PK\x03\x04",)}
SUFFIX_LABELS = "Markdown（.md）、文本（.txt）、网页（.html）、PDF（.pdf）、Word（.docx）"


class LibraryError(ValueError):
    """A file the knowledge directory refuses; `str()` is the Chinese line for the admin."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class LibraryFile:
    doc_id: str  # what ingestion calls it: the path under the directory without its suffix
    name: str  # the path under the directory, with its suffix
    suffix: str
    size: int
    modified_at: datetime


def list_files(root: Path) -> list[LibraryFile]:
    """The supported documents under `root` ([] when it does not exist), sorted by path."""
    if not root.is_dir():
        return []
    base = root.resolve()
    out = []
    for path in list_documents(base):
        rel = path.relative_to(base)
        stat = path.stat()
        out.append(LibraryFile(doc_id=rel.with_suffix("").as_posix(), name=rel.as_posix(), suffix=path.suffix.lower(),
                               size=stat.st_size, modified_at=datetime.fromtimestamp(stat.st_mtime, UTC)))
    return out


def safe_name(filename: str) -> str:
    """The uploaded name reduced to one safe file name (no directories, no hidden file), or LibraryError."""
    raw = unicodedata.normalize("NFKC", filename or "").strip()
    if "/" in raw or "\\" in raw or "\x00" in raw or raw in ("", ".", ".."):
        raise LibraryError("bad_name", f"文件名不能带路径（{_shown(filename)}）："
                                       "请上传单个文件，文件名不要含 / 或 \\。")
    stem, dot, suffix = raw.rpartition(".")
    if not dot or not stem:
        raise LibraryError("bad_type", f"文件 {_shown(filename)} 没有扩展名：只能上传 {SUFFIX_LABELS}。")
    suffix = "." + suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        raise LibraryError("bad_type", f"不支持 {suffix} 文件：只能上传 {SUFFIX_LABELS}。")
    stem = _NAME_CHAR.sub("-", stem).strip("-.")
    if not stem or stem.startswith("."):
        raise LibraryError("bad_name", f"文件名 {_shown(filename)} 不能用：请用字母、数字或汉字命名。")
    return stem[:MAX_NAME - len(suffix)] + suffix


def check_upload(name: str, data: bytes, *, max_bytes: int, size: int | None = None) -> None:
    """Refuse an empty, oversized or unreadable file (LibraryError); `name` is already a safe name. `size` is the
    upload's full size when `data` holds only its first max_bytes + 1 bytes."""
    size = max(size or 0, len(data))
    if not size:
        raise LibraryError("empty", f"{name} 是空文件，没有可入库的内容。")
    if size > max_bytes:
        raise LibraryError("too_large", f"{name} 有 {_mb(size)}，超过上传上限 {_mb(max_bytes)}。"
                                        "请压缩或拆分后再上传。")
    suffix = Path(name).suffix.lower()
    magic = _MAGIC.get(suffix)
    if magic is not None and not data.startswith(magic):
        raise LibraryError("unreadable", f"{name} 的内容不是 {suffix} 格式：请用原始文件上传。")
    if suffix in (".md", ".markdown", ".txt", ".html", ".htm"):
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise LibraryError("unreadable", f"{name} 不是 UTF-8 文本（可能是二进制文件或 GBK 编码）："
                                             "请另存为 UTF-8 后再上传。") from None
        controls = sum(1 for ch in text if ord(ch) < 32 and ch not in "\n\r\t\f")
        if "\x00" in text or controls > max(3, len(text) // 100):
            raise LibraryError("unreadable", f"{name} 含有大量控制字符，看起来是二进制文件而不是文本。")


def save_document(root: Path, filename: str, data: bytes, *, max_bytes: int, size: int | None = None) -> LibraryFile:
    """A new document in `root` (never over an existing one: that is `replace_document`)."""
    name = safe_name(filename)
    check_upload(name, data, max_bytes=max_bytes, size=size)
    stem = Path(name).stem
    clash = [f for f in list_files(root) if f.doc_id == stem]
    if clash:
        raise LibraryError("exists", f"已有文档 {clash[0].name}（编号 {stem}）：要更新它请用“替换”，"
                                     "或给新文件换个名字。")
    return _write(root, name, data)


def replace_document(root: Path, doc_id: str, filename: str, data: bytes, *, max_bytes: int,
                     size: int | None = None) -> LibraryFile:
    """The document `doc_id` replaced by the upload (its id stays; a new format replaces the old file)."""
    old = find_file(root, doc_id)
    suffix = Path(safe_name(filename)).suffix
    name = old.doc_id + suffix
    check_upload(Path(name).name, data, max_bytes=max_bytes, size=size)
    new = _write(root, name, data)
    if old.name != new.name:
        (root.resolve() / old.name).unlink(missing_ok=True)
    return new


def delete_document(root: Path, doc_id: str) -> LibraryFile:
    """Remove the document's file (ingestion then removes its chunks and held-back passages)."""
    old = find_file(root, doc_id)
    (root.resolve() / old.name).unlink(missing_ok=True)
    return old


def find_file(root: Path, doc_id: str) -> LibraryFile:
    for f in list_files(root):
        if f.doc_id == doc_id:
            return f
    raise LibraryError("missing", f"知识库里没有文档 {_shown(doc_id)}：请刷新列表后再试。")


def _write(root: Path, name: str, data: bytes) -> LibraryFile:
    base = root.resolve()
    target = (base / name).resolve()
    if target.parent != base and base not in target.parents:  # belt and braces: safe_name allows no separator
        raise LibraryError("bad_name", f"文件名 {_shown(name)} 不能用。")
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".upload-", suffix=target.suffix, dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        try:  # the loader ingestion uses must read it (a .docx that is a zip of something else, a scanned PDF)
            load_document(Path(tmp))
        except LoadError as exc:
            reason = str(exc).split(":", 1)[-1].strip()
            raise LibraryError("unreadable", f"{name} 读不出文字（{reason[:120]}）：请检查文件后再上传。") from None
        os.replace(tmp, target)
    finally:
        Path(tmp).unlink(missing_ok=True)
    stat = target.stat()
    rel = target.relative_to(base)
    return LibraryFile(doc_id=rel.with_suffix("").as_posix(), name=rel.as_posix(), suffix=target.suffix.lower(),
                       size=stat.st_size, modified_at=datetime.fromtimestamp(stat.st_mtime, UTC))


def _mb(n: int) -> str:
    return f"{n / 1024 / 1024:.1f} MB" if n >= 1024 * 1024 else f"{max(1, n // 1024)} KB"


def _shown(text: str) -> str:
    return repr(text[:80])
