"""The vector store seam and its Chroma adapter (local persistent directory, or a Chroma server by URL).

Owns: `VectorStore` (the Protocol ingestion and retrieval take), `ChromaStore`, `StoredChunk`.
The ingestion manifest lives *in* the store: every chunk carries its document's `path`, `doc_hash` and the
`screen` fingerprint it was checked with in metadata, so `list_manifest()` is read back from Chroma itself and
the index can never disagree with a side file (and a Chroma server shared by several hosts carries its own
manifest). Quarantined passages (knowledge.sanitize) are kept in a second collection beside the chunks: retrieval
reads only the first, so a held-back passage can never be retrieved, cited or sent to a model, while an admin can
still list it and the manifest still knows its document.
Must not: embed text. We always pass vectors; Chroma's default embedding function (which downloads a
model) is never used: collections are opened with `embedding_function=None` and queried by vector only.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlparse


@dataclass
class StoredChunk:
    chunk_id: str
    text: str
    metadata: dict[str, Any]


class VectorStore(Protocol):
    def upsert(self, *, ids: list[str], vectors: list[list[float]], texts: list[str],
               metadatas: list[dict[str, Any]]) -> None: ...

    def delete_doc(self, doc_id: str) -> None: ...

    def all_chunks(self) -> list[StoredChunk]: ...

    def list_manifest(self) -> dict[str, dict[str, str]]:
        """{doc_id: {"path": ..., "doc_hash": ..., "screen": ...}} for every stored document."""
        ...

    def quarantine(self, *, ids: list[str], texts: list[str], metadatas: list[dict[str, Any]]) -> None:
        """Keep passages held back for review, out of retrieval's reach (`delete_doc` removes them too)."""
        ...

    def list_quarantined(self) -> list[StoredChunk]: ...

    def query(self, vector: Sequence[float], k: int) -> list[tuple[str, float]]:
        """(chunk_id, cosine similarity), best first."""
        ...

    def count(self) -> int: ...


def collection_name(embedder_name: str) -> str:
    """One collection per vector space, so switching embedders never mixes dimensions."""
    slug = re.sub(r"[^a-zA-Z0-9._-]+", "-", embedder_name).strip("-._") or "default"
    return f"quanbot-kb-{slug}"[:60]


class ChromaStore:
    """Chroma collection used with our own vectors (cosine space)."""

    def __init__(self, *, collection: str, chroma_dir: Path | None = None, chroma_url: str = "") -> None:
        import chromadb
        from chromadb.config import Settings as ChromaSettings

        chroma_settings = ChromaSettings(anonymized_telemetry=False)
        if chroma_url:
            u = urlparse(chroma_url if "://" in chroma_url else f"http://{chroma_url}")
            self._client: Any = chromadb.HttpClient(host=u.hostname or "127.0.0.1",
                                                    port=u.port or (443 if u.scheme == "https" else 8000),
                                                    ssl=u.scheme == "https", settings=chroma_settings)
            self.location = chroma_url
        else:
            if chroma_dir is None:
                raise ValueError("chroma_dir or chroma_url is required")
            chroma_dir.mkdir(parents=True, exist_ok=True)
            self._client = chromadb.PersistentClient(path=str(chroma_dir), settings=chroma_settings)
            self.location = str(chroma_dir)
        self._col = self._client.get_or_create_collection(collection, embedding_function=None,
                                                          metadata={"hnsw:space": "cosine"})
        # never queried by vector; Chroma insists on one, so each held-back passage gets the same 1-d vector
        self._held = self._client.get_or_create_collection(quarantine_name(collection), embedding_function=None)

    def upsert(self, *, ids: list[str], vectors: list[list[float]], texts: list[str],
               metadatas: list[dict[str, Any]]) -> None:
        for i in range(0, len(ids), 500):
            self._col.upsert(ids=ids[i:i + 500], embeddings=vectors[i:i + 500], documents=texts[i:i + 500],
                             metadatas=[_clean_meta(m) for m in metadatas[i:i + 500]])

    def delete_doc(self, doc_id: str) -> None:
        self._col.delete(where={"doc_id": doc_id})
        self._held.delete(where={"doc_id": doc_id})

    def quarantine(self, *, ids: list[str], texts: list[str], metadatas: list[dict[str, Any]]) -> None:
        for i in range(0, len(ids), 500):
            self._held.upsert(ids=ids[i:i + 500], embeddings=[[1.0]] * len(ids[i:i + 500]),
                              documents=texts[i:i + 500], metadatas=[_clean_meta(m) for m in metadatas[i:i + 500]])

    def list_quarantined(self) -> list[StoredChunk]:
        got = self._held.get(include=["documents", "metadatas"])
        return [StoredChunk(cid, doc or "", dict(meta or {}))
                for cid, doc, meta in zip(got["ids"], got["documents"], got["metadatas"], strict=True)]

    def all_chunks(self) -> list[StoredChunk]:
        got = self._col.get(include=["documents", "metadatas"])
        return [StoredChunk(cid, doc or "", dict(meta or {}))
                for cid, doc, meta in zip(got["ids"], got["documents"], got["metadatas"], strict=True)]

    def list_manifest(self) -> dict[str, dict[str, str]]:
        out: dict[str, dict[str, str]] = {}
        for col in (self._col, self._held):  # a document quarantined whole has only held-back passages
            for meta in col.get(include=["metadatas"])["metadatas"]:
                if meta and "doc_id" in meta:
                    out.setdefault(str(meta["doc_id"]), {"path": str(meta.get("path", "")),
                                                         "doc_hash": str(meta.get("doc_hash", "")),
                                                         "screen": str(meta.get("screen", ""))})
        return out

    def query(self, vector: Sequence[float], k: int) -> list[tuple[str, float]]:
        n = min(k, self.count())
        if n <= 0:
            return []
        res = self._col.query(query_embeddings=[list(vector)], n_results=n, include=["distances"])
        return [(cid, 1.0 - float(dist)) for cid, dist in zip(res["ids"][0], res["distances"][0], strict=True)]

    def count(self) -> int:
        return int(self._col.count())


def quarantine_name(collection: str) -> str:
    """The collection of a collection's held-back passages (Chroma names are at most 63 characters)."""
    return f"{collection[:58]}-held"


def store_from_settings(settings: Any, embedder_name: str) -> ChromaStore:
    """Chroma server when settings.chroma_url is set, else the local persistent directory."""
    return ChromaStore(collection=collection_name(embedder_name), chroma_dir=Path(settings.chroma_dir),
                       chroma_url=settings.chroma_url)


def _clean_meta(meta: dict[str, Any]) -> dict[str, Any]:
    # Chroma rejects None and empty lists in metadata
    out: dict[str, Any] = {}
    for key, value in meta.items():
        if value is None or (isinstance(value, list) and not value):
            continue
        out[key] = value
    return out
