"""Chinese-aware chunking: by headings, then paragraphs, then sentence ends (。！？；), keeping the heading path.

Owns: `Chunk` and `chunk_document`. A chunk never crosses a heading, so its heading path
("居住证办理指南 > 所需材料") says where it came from; paragraphs are packed up to `max_chars`.
Must not: embed, store or rank.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from knowledge.documents import Document

MAX_CHARS = 350
MIN_CHARS = 40  # a shorter tail is merged into its neighbour so no chunk is a lone fragment
_HEADING = re.compile(r"^(#{1,6})\s+(.*\S)\s*$")
# a sentence ends after 。！？； (full or half width) or a newline, keeping closing quotes/brackets with it
_SENTENCE = re.compile(r"[^。！？!?；;\n]*(?:[。！？!?；;]+[”’」』）)]*|\n|$)")
PATH_SEP = " > "


@dataclass(frozen=True)
class Chunk:
    chunk_id: str  # "<doc_id>#<n>", stable for the same document content
    doc_id: str
    ordinal: int
    heading_path: str  # "居住证办理指南 > 所需材料"
    section: str  # the innermost heading ("所需材料"), or the title for text before any sub-heading
    text: str
    content_hash: str  # of heading path + text: the embedding cache key

    @property
    def indexed_text(self) -> str:
        """What is embedded and BM25-indexed: the heading path gives a short chunk its topic."""
        return f"{self.heading_path}\n{self.text}"


def chunk_document(doc: Document, *, max_chars: int = MAX_CHARS) -> list[Chunk]:
    """Split a document into chunks that respect headings, paragraphs and sentence ends."""
    pieces: list[tuple[list[str], str]] = []
    for path, paragraphs in _sections(doc):
        for text in _pack(paragraphs, max_chars):
            pieces.append((path, text))
    chunks: list[Chunk] = []
    for n, (path, text) in enumerate(pieces):
        heading_path = PATH_SEP.join(path) if path else doc.title
        section = path[-1] if path else doc.title
        digest = hashlib.sha256(f"{heading_path}\n{text}".encode()).hexdigest()[:24]
        chunks.append(Chunk(f"{doc.doc_id}#{n}", doc.doc_id, n, heading_path, section, text, digest))
    return chunks


def fixed_windows(doc: Document, *, size: int = 300) -> list[str]:
    """Plain fixed-size character windows (the retrieval baseline), ignoring structure."""
    flat = re.sub(r"\s+", " ", doc.text)
    return [flat[i:i + size] for i in range(0, len(flat), size)]


def split_sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCE.findall(text) if s.strip()]


def _sections(doc: Document) -> list[tuple[list[str], list[str]]]:
    """(heading path, paragraphs) for each run of text between headings."""
    out: list[tuple[list[str], list[str]]] = []
    stack: list[tuple[int, str]] = []
    paragraphs: list[str] = []
    current: list[str] = []

    def flush_paragraph() -> None:
        if current:
            paragraphs.append("\n".join(current))
            current.clear()

    def flush_section() -> None:
        flush_paragraph()
        if paragraphs:
            path = [t for _, t in stack] or [doc.title]
            if path[0] != doc.title and len(stack) and stack[0][0] > 1:
                path = [doc.title, *path]  # documents without an H1 still start their path with the title
            out.append((path, list(paragraphs)))
            paragraphs.clear()

    for line in doc.text.splitlines():
        m = _HEADING.match(line)
        if m:
            flush_section()
            level, title = len(m.group(1)), m.group(2).strip()
            while stack and stack[-1][0] >= level:
                stack.pop()
            stack.append((level, title))
        elif not line.strip():
            flush_paragraph()
        else:
            current.append(line.strip())
    flush_section()
    return out


def _pack(paragraphs: list[str], max_chars: int) -> list[str]:
    """Greedy packing: whole paragraphs while they fit, long paragraphs split at sentence ends."""
    units: list[tuple[str, bool]] = []  # (text, starts a new paragraph)
    for para in paragraphs:
        if len(para) <= max_chars:
            units.append((para, True))
            continue
        first = True
        for sentence in split_sentences(para):
            for i in range(0, len(sentence), max_chars):  # a run-on "sentence" is cut hard
                units.append((sentence[i:i + max_chars], first))
                first = False
    chunks: list[str] = []
    buf = ""
    for text, new_para in units:
        joiner = "\n" if new_para else ""
        if buf and len(buf) + len(joiner) + len(text) > max_chars:
            chunks.append(buf)
            buf = text
        else:
            buf = f"{buf}{joiner}{text}" if buf else text
    if buf:
        if chunks and len(buf) < MIN_CHARS and len(chunks[-1]) + len(buf) + 1 <= max_chars + MIN_CHARS:
            chunks[-1] = f"{chunks[-1]}\n{buf}"
        else:
            chunks.append(buf)
    return chunks
