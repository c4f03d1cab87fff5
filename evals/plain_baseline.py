"""The plain baseline every retrieval figure is compared with: what a newcomer builds in an afternoon.

langchain's `RecursiveCharacterTextSplitter(chunk_size=500, chunk_overlap=50)` over each document's text, the
same embedder as quanbot, one Chroma collection (in memory), `similarity_search(question, k=3)`. It never
refuses. Run in the same process on the same questions as quanbot (evals/suites/retrieval.py), so the two are
compared on one machine at one moment.
Must not: be imported by the product; it needs the eval extra (langchain-text-splitters, langchain-chroma).
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from knowledge.documents import LoadError, list_documents, load_document
from knowledge.embeddings import Embedder

CHUNK_SIZE, CHUNK_OVERLAP, TOP_K = 500, 50, 3
# passages go to the embedder a few at a time: each call looks in the shared disk cache first, so a second process
# filling the same cache from the other end (evals.runner's lanes, `evals.suites.retrieval.prefetch_passages`)
# saves this one the work. The vectors do not depend on how texts are grouped (tests/test_embedding_cache.py).
EMBED_SLICE = 16


def embed_in_slices(embedder: Embedder, texts: list[str], size: int = EMBED_SLICE) -> list[list[float]]:
    """`embedder.embed_documents(texts)`, asked `size` texts at a time."""
    out: list[list[float]] = []
    for i in range(0, len(texts), size):
        out.extend(embedder.embed_documents(texts[i:i + size]))
    return out


def split_documents(docs_dir: Path) -> list[Any]:
    """The baseline's chunks (langchain Documents with their doc_id), in the order they are embedded."""
    from langchain_text_splitters import RecursiveCharacterTextSplitter

    splitter = RecursiveCharacterTextSplitter(chunk_size=CHUNK_SIZE, chunk_overlap=CHUNK_OVERLAP)
    chunks: list[Any] = []
    for path in list_documents(Path(docs_dir)):
        try:
            doc = load_document(path)
        except LoadError:
            continue
        chunks.extend(splitter.create_documents([doc.text], metadatas=[{"doc_id": doc.doc_id}]))
    return chunks


def available() -> bool:
    try:
        import langchain_chroma  # noqa: F401
        import langchain_text_splitters  # noqa: F401
    except ImportError:
        return False
    return True


class PlainBaseline:
    """`search(question)` -> the top-3 chunks' document ids, best first (duplicates kept, as a newcomer would)."""

    def __init__(self, docs_dir: Path, embedder: Embedder) -> None:
        import chromadb
        from langchain_chroma import Chroma
        from langchain_core.embeddings import Embeddings

        class _Same(Embeddings):  # quanbot's embedder behind langchain's interface: the same vectors
            def embed_documents(self, texts: list[str]) -> list[list[float]]:
                return [list(map(float, v)) for v in embed_in_slices(embedder, list(texts))]

            def embed_query(self, text: str) -> list[float]:
                return list(map(float, embedder.embed_query(text)))

        chunks = split_documents(Path(docs_dir))
        self.chunks = len(chunks)
        client: Any = chromadb.EphemeralClient()
        self._store = Chroma(collection_name=f"plain-{uuid.uuid4().hex[:8]}", embedding_function=_Same(),
                             client=client)
        if chunks:
            self._store.add_documents(chunks)

    def search(self, question: str, k: int = TOP_K) -> list[str]:
        if not self.chunks:
            return []
        return [str(d.metadata.get("doc_id", "")) for d in self._store.similarity_search(question, k=k)]
