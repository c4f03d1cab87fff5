"""Incremental ingestion: files -> documents -> chunks -> vectors -> the vector store.

A document is keyed by its id (path relative to the ingested root, without suffix) and its content hash,
both kept in the stored chunks' metadata (see knowledge.store: the manifest *is* the store):
unchanged documents are skipped, a changed one has its old chunks deleted before the new ones are written,
and a document that disappeared from the root has its chunks removed. A file that cannot be read is
reported by name and skipped; its previously indexed chunks (if any) are kept.
Must not: rank or answer; it never prints (progress goes through a callback).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from knowledge.chunking import MAX_CHARS, Chunk, chunk_document
from knowledge.documents import Document, LoadError, list_documents, load_document
from knowledge.embeddings import Embedder
from knowledge.sanitize import injected_sentences
from knowledge.store import VectorStore
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
    chunks_written: int = 0
    seconds: float = 0.0

    @property
    def changed(self) -> bool:
        return bool(self.added or self.updated or self.removed)

    @property
    def chunks_per_s(self) -> float:
        return self.chunks_written / self.seconds if self.seconds > 0 else 0.0


def ingest_path(root: Path, *, store: VectorStore, embedder: Embedder, progress: Progress | None = None,
                max_chars: int = MAX_CHARS, prune: bool = True) -> IngestReport:
    """Bring the store in line with the files under root (or the one file root)."""
    started = time.perf_counter()
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
        flagged = injected_sentences(doc.text)
        if flagged:  # kept in the index; answers drop these sentences (knowledge.sanitize)
            log.warning("knowledge document %s: %d instruction-like sentence(s) ignored in answers, e.g. %s",
                        path.name, len(flagged), mask_text(flagged[0])[:80])
        old = manifest.get(doc_id)
        if old is not None and old.get("doc_hash") == doc.content_hash:
            report.unchanged.append(doc_id)
            continue
        chunks = chunk_document(doc, max_chars=max_chars)
        try:
            vectors = embedder.embed_documents([c.indexed_text for c in chunks])
        except Exception as exc:  # noqa: BLE001 - one document's embedding failure must not stop the rest
            report.failed.append((path.name, f"embedding failed: {type(exc).__name__}: {exc}"))
            continue
        if old is not None:  # a crash before the batch is written leaves the document out: the next run adds it
            store.delete_doc(doc_id)
        pending.add(chunks, vectors, doc)
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
    report.seconds = time.perf_counter() - started
    return report


class _Pending:
    """Chunks waiting to be written; flushed every WRITE_BATCH chunks and at the end."""

    def __init__(self, store: VectorStore) -> None:
        self._store = store
        self._ids: list[str] = []
        self._vectors: list[list[float]] = []
        self._texts: list[str] = []
        self._metas: list[dict[str, object]] = []

    def add(self, chunks: list[Chunk], vectors: list[list[float]], doc: Document) -> None:
        self._ids += [c.chunk_id for c in chunks]
        self._vectors += vectors
        self._texts += [c.text for c in chunks]
        self._metas += [_chunk_meta(doc, c) for c in chunks]
        if len(self._ids) >= WRITE_BATCH:
            self.flush()

    def flush(self) -> None:
        if self._ids:
            self._store.upsert(ids=self._ids, vectors=self._vectors, texts=self._texts, metadatas=self._metas)
        self._ids, self._vectors, self._texts, self._metas = [], [], [], []


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


def _chunk_meta(doc: Document, chunk: Chunk) -> dict[str, object]:
    meta = doc.metadata()
    meta.update({
        "doc_id": doc.doc_id, "path": str(Path(doc.path).resolve()), "doc_hash": doc.content_hash,
        "ordinal": chunk.ordinal, "heading_path": chunk.heading_path, "section": chunk.section,
        "chunk_hash": chunk.content_hash,
        # dates as yyyymmdd ints so Chroma `where` range filters work too
        "effective": int(doc.effective_date.strftime("%Y%m%d")) if doc.effective_date else 0,
    })
    return meta
