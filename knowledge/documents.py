"""Documents and their loaders: Markdown (YAML front matter), plain text, HTML, PDF and DOCX into one shape.

Owns: turning a file on disk into a `Document` (text + metadata + content hash).
Must not: chunk, embed or store anything; it never guesses a loader for an unknown suffix.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import yaml

SUPPORTED_SUFFIXES = (".md", ".markdown", ".txt", ".html", ".htm", ".pdf", ".docx")
_FRONT_MATTER = re.compile(r"\A---\s*\n(.*?)\n---\s*(?:\n|\Z)", re.DOTALL)


class LoadError(RuntimeError):
    """A file could not be read or parsed; the message names the file."""


@dataclass
class Document:
    doc_id: str  # stable key: the file stem ("residence-permit"), unique within one knowledge directory
    path: str  # the path it was loaded from (the manifest key)
    text: str  # Markdown-ish body: headings as "#" lines, paragraphs split by blank lines
    title: str
    source: str = ""
    issuer: str = ""
    effective_date: date | None = None
    tags: list[str] = field(default_factory=list)
    category: str = ""
    content_hash: str = ""
    first_line: int = 1  # the file's line number of `text`'s first line (Markdown and text; 1 for extracted text)

    def metadata(self) -> dict[str, Any]:
        return {"title": self.title, "source": self.source, "issuer": self.issuer,
                "effective_date": self.effective_date.isoformat() if self.effective_date else "",
                "tags": list(self.tags), "category": self.category}


def file_hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:24]


def load_document(path: Path) -> Document:
    """Load one supported file, or raise LoadError naming it."""
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        raise LoadError(f"{path.name}: unsupported file type {suffix or '(none)'}")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise LoadError(f"{path.name}: cannot read ({exc.strerror or exc})") from exc
    decoded = ""
    try:
        if suffix in (".md", ".markdown"):
            decoded = raw.decode("utf-8-sig")
            meta, body = _split_front_matter(decoded)
        elif suffix == ".txt":
            decoded = raw.decode("utf-8-sig")
            meta, body = {}, decoded
        elif suffix in (".html", ".htm"):
            meta, body = _html_to_text(raw)
        elif suffix == ".pdf":
            meta, body = _pdf_to_text(path)
        else:
            meta, body = _docx_to_text(path)
    except LoadError:
        raise
    except Exception as exc:  # every parser has its own exception family; the file is what matters
        raise LoadError(f"{path.name}: cannot parse ({type(exc).__name__}: {exc})") from exc
    body = body.replace("\r\n", "\n").strip()
    if not body:
        raise LoadError(f"{path.name}: no text found")
    decoded = decoded.replace("\r\n", "\n")
    first_line = decoded[:decoded.find(body)].count("\n") + 1 if body in decoded else 1
    title = str(meta.get("title") or _first_heading(body) or path.stem)
    return Document(
        doc_id=path.stem, path=str(path), text=body, title=title,
        source=str(meta.get("source") or ""), issuer=str(meta.get("issuer") or ""),
        effective_date=_as_date(meta.get("effective_date")), tags=_as_tags(meta.get("tags")),
        category=str(meta.get("category") or ""), content_hash=file_hash(raw), first_line=first_line,
    )


def list_documents(root: Path) -> list[Path]:
    """Supported files under root (or root itself), sorted, hidden files ignored."""
    if root.is_file():
        return [root]
    return sorted(p for p in root.rglob("*")
                  if p.is_file() and p.suffix.lower() in SUPPORTED_SUFFIXES
                  and not any(part.startswith(".") for part in p.relative_to(root).parts))


def _split_front_matter(text: str) -> tuple[dict[str, Any], str]:
    m = _FRONT_MATTER.match(text)
    if not m:
        return {}, text
    try:
        meta = yaml.safe_load(m.group(1)) or {}
    except yaml.YAMLError as exc:
        raise LoadError(f"front matter is not valid YAML ({exc.__class__.__name__})") from exc
    if not isinstance(meta, dict):
        raise LoadError("front matter is not a mapping")
    return meta, text[m.end():]


def _html_to_text(raw: bytes) -> tuple[dict[str, Any], str]:
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(raw, "html.parser")
    for tag in soup(["script", "style", "nav", "footer", "noscript"]):
        tag.decompose()
    meta: dict[str, Any] = {}
    if soup.title and soup.title.string:
        meta["title"] = soup.title.string.strip()
    lines: list[str] = []
    body = soup.body or soup
    for el in body.find_all(["h1", "h2", "h3", "h4", "p", "li", "td", "pre"]):
        if el.find_parent(["p", "li", "td"]) is not None:
            continue  # nested block: its parent already carries the text
        text = " ".join(el.get_text(" ", strip=True).split())
        if not text:
            continue
        if el.name in ("h1", "h2", "h3", "h4"):
            lines.append("#" * int(el.name[1]) + " " + text)
        else:
            lines.append(text)
    if not lines:  # no block elements: fall back to the visible text
        lines = [" ".join(body.get_text(" ", strip=True).split())]
    return meta, "\n\n".join(lines)


def _pdf_to_text(path: Path) -> tuple[dict[str, Any], str]:
    from pypdf import PdfReader

    reader = PdfReader(str(path), strict=False)
    pages = [(page.extract_text() or "").strip() for page in reader.pages]
    meta: dict[str, Any] = {}
    info = reader.metadata
    if info is not None and info.title:
        meta["title"] = str(info.title)
    return meta, "\n\n".join(p for p in pages if p)


def _docx_to_text(path: Path) -> tuple[dict[str, Any], str]:
    import docx

    d = docx.Document(str(path))
    meta: dict[str, Any] = {}
    if d.core_properties.title:
        meta["title"] = d.core_properties.title
    lines: list[str] = []
    for para in d.paragraphs:
        text = para.text.strip()
        if not text:
            continue
        style = (para.style.name if para.style is not None else "") or ""
        level = _heading_level(style)
        if level:
            lines.append("#" * level + " " + text)
        else:
            lines.append(text)
    for table in d.tables:
        for row in table.rows:
            cells = [c.text.strip() for c in row.cells if c.text.strip()]
            if cells:
                lines.append(" | ".join(cells))
    return meta, "\n\n".join(lines)


def _heading_level(style: str) -> int:
    if style == "Title":
        return 1
    m = re.match(r"Heading (\d)", style)
    return min(int(m.group(1)), 4) if m else 0


def _first_heading(body: str) -> str:
    for line in body.splitlines():
        if line.startswith("#"):
            return line.lstrip("#").strip()
    return ""


def _as_date(value: Any) -> date | None:
    if isinstance(value, date):
        return value
    if isinstance(value, str) and value.strip():
        try:
            return date.fromisoformat(value.strip())
        except ValueError:
            return None
    return None


def _as_tags(value: Any) -> list[str]:
    if isinstance(value, str):
        return [t.strip() for t in re.split(r"[,，;；]", value) if t.strip()]
    if isinstance(value, list):
        return [str(t).strip() for t in value if str(t).strip()]
    return []
