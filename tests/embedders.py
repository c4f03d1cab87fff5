"""The tests' embedder: deterministic feature hashing, no model to load, no semantics.

The product does not offer it (knowledge.embeddings has no "hash" backend). Tests hand it to what they build
(`ingest_path`, `HybridRetriever`, `FaqIndex`, `KnowledgeRuntime(settings, embedder=...)`), with
`HASH_THRESHOLDS` for the retriever: its cosines live on their own scale.
"""

from __future__ import annotations

import hashlib
import itertools
import math
from typing import Any

from knowledge.retrieval import HybridRetriever, Thresholds
from knowledge.store import VectorStore

# answerable when the dense cosine is high, or BM25 found the words and the cosine is not unrelated
HASH_THRESHOLDS = Thresholds(kind="cutoff", dense=0.6, bm25=0.3, dense_floor=0.15)


class HashEmbedder:
    """Deterministic signed feature hashing of character uni/bi-grams."""

    def __init__(self, dim: int = 256) -> None:
        self.dim = dim
        self.name = f"hash-{dim}"

    def _vec(self, text: str) -> list[float]:
        vec = [0.0] * self.dim
        chars = [c for c in text.lower() if not c.isspace()]
        for gram in chars + [a + b for a, b in itertools.pairwise(chars)]:
            h = hashlib.blake2b(gram.encode(), digest_size=8).digest()
            vec[int.from_bytes(h[:4], "little") % self.dim] += (1.0 if h[4] & 1 else -1.0) * len(gram)
        norm = math.sqrt(sum(v * v for v in vec))
        return [v / norm for v in vec] if norm else vec

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return [self._vec(t) for t in texts]

    def embed_query(self, text: str) -> list[float]:
        return self._vec(text)


class CountingHashEmbedder:
    """The hash embedder, counting the questions it embeds (for cache tests); `calls` is per instance unless a
    test shares one counter through `shared`."""

    def __init__(self, shared: list[int] | None = None) -> None:
        self._inner = HashEmbedder()
        self.name, self.dim = self._inner.name, self._inner.dim
        self.counter = shared if shared is not None else [0]

    @property
    def calls(self) -> int:
        return self.counter[0]

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return self._inner.embed_documents(texts)

    def embed_query(self, text: str) -> list[float]:
        self.counter[0] += 1
        return self._inner.embed_query(text)


def hash_retriever(*, store: VectorStore, embedder: Any, **kwargs: Any) -> HybridRetriever:
    """A retriever over `store` with the hash embedder's thresholds."""
    return HybridRetriever(store=store, embedder=embedder, thresholds=HASH_THRESHOLDS, **kwargs)
