"""Incremental ingestion: files -> documents -> chunks -> vectors -> the vector store.

A document is keyed by its id (path relative to the ingested root, without suffix), its content hash and the
fingerprint of the screen it was checked with, all kept in the stored metadata (see knowledge.store: the manifest
*is* the store): unchanged documents are skipped, a changed one (or every one, after the quarantine rules or
policies/links.yaml changed) has its old chunks and held-back passages deleted before the new ones are written,
and a document that disappeared from the root has both removed. A file that cannot be read is reported by name
and skipped; its previously indexed chunks (if any) are kept. A root that does not exist, or holds no supported
document, leaves an empty report (the bot still starts and answers "没有找到"); the CLI tells the admin
(`missing_root_text`, `no_documents_text`).
Documents are data: before chunking, knowledge.sanitize holds back every passage that asks residents to contact a
personal account, pay a person, follow a link outside the allowlist, hand over codes or ID data, or that
addresses the assistant. Those passages are stored as quarantined, for an admin's review (`IngestReport.quarantined`,
listed by `quanbot ingest`), and the rest of the document is indexed.
Must not: rank or answer; it never prints (progress goes through a callback).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from knowledge.chunking import MAX_CHARS, Chunk, chunk_document
from knowledge.documents import SUPPORTED_SUFFIXES, Document, LoadError, list_documents, load_document
from knowledge.embeddings import Embedder
from knowledge.sanitize import Quarantined, Reason, Screen, default_screen, screen_document
from knowledge.store import StoredChunk, VectorStore
from policies.masking import mask_text

log = logging.getLogger(__name__)

Progress = Callable[[int, int, str], None]  # (done, total, current file name)
# Chunks are written to the store in batches across documents: one Chroma upsert costs ~35 ms whatever its size
# up to a few hundred chunks, so writing per document capped ingestion at ~140 chunks/s even with free vectors.
WRITE_BATCH = 500


@dataclass
class IngestReport:
    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (file name, reason)
    quarantined: list[Quarantined] = field(default_factory=list)  # every held-back passage under root, after the run
    chunks_written: int = 0
    seconds: float = 0.0

    @property
    def changed(self) -> bool:
        return bool(self.added or self.updated or self.removed)

    @property
    def documents(self) -> int:
        """Supported files found under the root (whether read or not)."""
        return len(self.added) + len(self.updated) + len(self.unchanged) + len(self.failed)

    @property
    def chunks_per_s(self) -> float:
        return self.chunks_written / self.seconds if self.seconds > 0 else 0.0


def ingest_path(root: Path, *, store: VectorStore, embedder: Embedder, progress: Progress | None = None,
                max_chars: int = MAX_CHARS, prune: bool = True, screen: Screen | None = None) -> IngestReport:
    """Bring the store in line with the files under root (or the one file root); `screen` defaults to the rules
    with policies/links.yaml of the package's policies directory."""
    started = time.perf_counter()
    screen = screen or default_screen()
    report = IngestReport()
    root = root.resolve()
    files = list_documents(root)
    manifest = store.list_manifest()
    seen: set[str] = set()
    pending = _Pending(store)
    for n, path in enumerate(files):
        if progress:
            progress(n, len(files), path.name)
        doc_id = _doc_id(root, path)
        seen.add(doc_id)
        try:
            doc = load_document(path)
        except LoadError as exc:
            report.failed.append((path.name, str(exc)))
            continue
        doc.doc_id = doc_id
        old = manifest.get(doc_id)
        if old is not None and old.get("doc_hash") == doc.content_hash and old.get("screen") == screen.fingerprint:
            report.unchanged.append(doc_id)
            continue
        served, held = screen_document(doc, screen)
        for q in held:
            log.warning("knowledge document %s: line %d quarantined for review (%s): %s", path.name, q.line,
                        ", ".join(r.value for r in q.reasons), mask_text(q.text)[:80])
        chunks = chunk_document(served, max_chars=max_chars)
        try:
            vectors = embedder.embed_documents([c.indexed_text for c in chunks]) if chunks else []
        except Exception as exc:  # noqa: BLE001 - one document's embedding failure must not stop the rest
            report.failed.append((path.name, f"embedding failed: {type(exc).__name__}: {exc}"))
            continue
        if old is not None:  # a crash before the batch is written leaves the document out: the next run adds it
            store.delete_doc(doc_id)
        pending.add(chunks, vectors, served, held, screen.fingerprint)
        report.chunks_written += len(chunks)
        (report.updated if old is not None else report.added).append(doc_id)
    pending.flush()
    if prune and root.is_dir():
        for doc_id, entry in manifest.items():
            if doc_id not in seen and _under(Path(entry.get("path", "")), root):
                store.delete_doc(doc_id)
                report.removed.append(doc_id)
    if progress:
        progress(len(files), len(files), "")
    report.quarantined = list_quarantined(store, root)
    report.seconds = time.perf_counter() - started
    return report


def document_ids(root: Path) -> set[str]:
    """The ids the documents under `root` get when ingested, without reading them."""
    root = root.resolve()
    return {_doc_id(root, path) for path in list_documents(root)}


def missing_root_text(root: Path) -> str:
    """What an admin reads when the knowledge directory is not there."""
    return f"知识库目录 {root} 不存在：请检查 KNOWLEDGE_DIR，或建好这个目录并放入文档后重新运行 quanbot ingest"


def no_documents_text(root: Path) -> str:
    """What an admin reads when the knowledge directory holds no document."""
    kinds = "/".join(SUPPORTED_SUFFIXES)
    return (f"知识库目录 {root} 没有文档（{kinds}）：机器人会回答“没有找到”；"
            "放入文档后重新运行 quanbot ingest")


def list_quarantined(store: VectorStore, root: Path | None = None) -> list[Quarantined]:
    """The passages held back for review (of documents under `root`), by document and line."""
    held = [_as_quarantined(c) for c in store.list_quarantined()
            if root is None or _under(Path(str(c.metadata.get("path", ""))), root.resolve())]
    return sorted(held, key=lambda q: (q.doc_id, q.line))


def _as_quarantined(chunk: StoredChunk) -> Quarantined:
    meta = chunk.metadata
    reasons = tuple(Reason(r) for r in str(meta.get("reasons", "")).split(",") if r in Reason.__members__)
    return Quarantined(doc_id=str(meta.get("doc_id", "")), title=str(meta.get("title", "")),
                       section=str(meta.get("section", "")), line=int(meta.get("line", 0)), text=chunk.text,
                       reasons=reasons)


class _Pending:
    """Chunks waiting to be written; flushed every WRITE_BATCH chunks and at the end."""

    def __init__(self, store: VectorStore) -> None:
        self._store = store
        self._ids: list[str] = []
        self._vectors: list[list[float]] = []
        self._texts: list[str] = []
        self._metas: list[dict[str, object]] = []
        self._held: list[tuple[str, str, dict[str, object]]] = []

    def add(self, chunks: list[Chunk], vectors: list[list[float]], doc: Document, held: list[Quarantined],
            screen: str) -> None:
        self._ids += [c.chunk_id for c in chunks]
        self._vectors += vectors
        self._texts += [c.text for c in chunks]
        self._metas += [_chunk_meta(doc, c, screen) for c in chunks]
        self._held += [(q.passage_id, q.text, _held_meta(doc, q, screen)) for q in held]
        if len(self._ids) + len(self._held) >= WRITE_BATCH:
            self.flush()

    def flush(self) -> None:
        if self._ids:
            self._store.upsert(ids=self._ids, vectors=self._vectors, texts=self._texts, metadatas=self._metas)
        if self._held:
            self._store.quarantine(ids=[h[0] for h in self._held], texts=[h[1] for h in self._held],
                                   metadatas=[h[2] for h in self._held])
        self._ids, self._vectors, self._texts, self._metas, self._held = [], [], [], [], []


def _doc_id(root: Path, path: Path) -> str:
    if root.is_file():
        return path.stem
    return path.relative_to(root).with_suffix("").as_posix()


def _under(path: Path, root: Path) -> bool:
    try:
        path.resolve().relative_to(root)
    except ValueError:
        return False
    return True


def _held_meta(doc: Document, passage: Quarantined, screen: str) -> dict[str, object]:
    return {"doc_id": doc.doc_id, "path": str(Path(doc.path).resolve()), "doc_hash": doc.content_hash,
            "screen": screen, "title": doc.title, "section": passage.section, "line": passage.line,
            "reasons": ",".join(r.value for r in passage.reasons)}


def _chunk_meta(doc: Document, chunk: Chunk, screen: str) -> dict[str, object]:
    meta = doc.metadata()
    meta.update({
        "doc_id": doc.doc_id, "path": str(Path(doc.path).resolve()), "doc_hash": doc.content_hash, "screen": screen,
        "ordinal": chunk.ordinal, "heading_path": chunk.heading_path, "section": chunk.section,
        "chunk_hash": chunk.content_hash,
        # dates as yyyymmdd ints so Chroma `where` range filters work too
        "effective": int(doc.effective_date.strftime("%Y%m%d")) if doc.effective_date else 0,
    })
    return meta
