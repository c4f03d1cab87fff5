"""Fit knowledge.ranking's document ranker: `python -m evals.fit_ranker [--files a.jsonl b.jsonl ...]`.

Data: the scope examples that name their document (knowledge/scope_examples.jsonl), retrieval_a/b and the
independent sets that are tuning data (dev; the old held-out split, looked at three times; retrieval_fresh to
fresh5, each held out until its declared look; fresh7-9, tuning data from the start); never the held-out file
(evals.suites.retrieval.HELDOUT_FILE). For every question each candidate document's features
(knowledge.ranking.doc_features) are one row, labelled 1 when it is an expected document; an L2-regularised
logistic regression gives the weights, once for the text ranker (TEXT_FEATURES) and once for the voted one (all of
DOC_FEATURES, the answered examples' votes included; see knowledge.ranking.VotedRanker). The answer and clarify
shares are then chosen on the same questions: the smallest answer share whose confident-wrong rate is at most
TARGET_WRONG, with clarifications kept at most MAX_CLARIFY of the questions. Prints a `VotedRanker(...)` to paste
into knowledge/ranking.py.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.linear_model import LogisticRegression

from bot.settings import load_settings
from evals.core import DATA_DIR
from evals.suites.retrieval import build_index
from knowledge.embeddings import embedder_from_settings
from knowledge.ranking import DOC_FEATURES, TEXT_FEATURES, DocRanker
from knowledge.scope import PARAPHRASE, load_scope_examples

FILES = ("retrieval_a.jsonl", "retrieval_b.jsonl", "independent/retrieval_dev.jsonl",
         "independent/retrieval_heldout.jsonl", "independent/retrieval_fresh.jsonl",
         *(f"independent/retrieval_fresh{n}.jsonl" for n in (2, 3, 4, 5, 6, 7, 8, 9)))
TARGET_WRONG, MAX_CLARIFY = 0.03, 0.10


def questions(files: list[Path], scope_path: Path) -> list[tuple[str, set[str]]]:
    out: list[tuple[str, set[str]]] = []
    for ex in load_scope_examples(scope_path):
        if ex.in_scope and not ex.fact_only:
            out.append((ex.question, set(ex.expected)))
    for path in files:
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                row = json.loads(line)
                if row.get("expected"):
                    out.append((row["question"], set(row["expected"])))
    return out


def outcome_rates(ranker: DocRanker, ranked_sets: list[tuple[list[Any], set[str]]]) -> dict[str, float]:
    right = wrong = clar = clar_right = 0
    for docs, expected in ranked_sets:
        choice = ranker.choice(ranker.rank(docs))
        if choice.answer is not None:
            right += choice.answer.doc_id in expected
            wrong += choice.answer.doc_id not in expected
        elif choice.clarify:
            clar += 1
            clar_right += bool(expected.intersection(c.doc_id for c in choice.clarify))
    n = max(len(ranked_sets), 1)
    return {"right": right / n, "wrong": wrong / n, "clarify": clar / n, "clarify_right": clar_right / n}


def fit(features: tuple[str, ...], rows: list[dict[str, float]], labels: list[int],
        sets: list[tuple[list[Any], set[str]]], *, c: float) -> DocRanker | None:
    """Weights for `features` by logistic regression, then the shares (see the module docstring)."""
    matrix = np.asarray([[float(r[f]) for f in features] for r in rows])
    model = LogisticRegression(C=c, max_iter=2000, fit_intercept=True).fit(matrix, labels)
    ranker = DocRanker(weights=tuple(round(float(w), 4) for w in model.coef_[0]), features=features)
    best = None
    for answer_share in [round(0.3 + 0.025 * i, 3) for i in range(27)]:
        for clarify_share in (0.08, 0.1, 0.12, 0.15, 0.2):
            cand = replace(ranker, answer_share=answer_share, clarify_share=clarify_share)
            rates = outcome_rates(cand, sets)
            if rates["clarify"] > MAX_CLARIFY:
                continue
            key = (rates["wrong"] <= TARGET_WRONG, rates["right"] + rates["clarify_right"], -rates["wrong"])
            if best is None or key > best[0]:
                best = (key, cand, rates)
    print(f"{len(features)} features, first-document accuracy:",
          outcome_rates(replace(ranker, answer_share=0.0), sets))
    if best is None:
        return None
    print("  chosen:", {k: round(v, 4) for k, v in best[2].items()})
    return best[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", nargs="*", default=[str(DATA_DIR / f) for f in FILES])
    parser.add_argument("--c", type=float, default=1.0)
    args = parser.parse_args(argv)
    settings = load_settings()
    embedder = embedder_from_settings(settings)
    retriever = build_index(settings, embedder, examples=Path(settings.scope_examples))
    data = questions([Path(f) for f in args.files if Path(f).exists()], Path(settings.scope_examples))
    rows: list[dict[str, float]] = []
    labels: list[int] = []
    sets: list[tuple[list[Any], set[str]]] = []
    missing = 0
    for question, expected in data:
        # the scope examples vote (ranking's ex_* features) as in the eval: rewordings of the question left out
        docs = retriever.search(question, k=30, scope_exclude_at_or_above=PARAPHRASE).docs
        if not expected.intersection(d.doc_id for d in docs):
            missing += 1
        for d in docs:
            rows.append(d.features)
            labels.append(int(d.doc_id in expected))
        sets.append((docs, expected))
    print(f"questions={len(data)} candidate rows={len(rows)} right doc not among candidates={missing}")
    fitted = {name: fit(features, rows, labels, sets, c=args.c)
              for name, features in (("text", TEXT_FEATURES), ("voted", DOC_FEATURES))}
    print(f"VotedRanker(text={fitted['text']!r},\n            voted={fitted['voted']!r})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
