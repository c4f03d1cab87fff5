"""Cross-validation of the message classifier on its own training lines (the figures used for tuning it).

Every figure goes through the whole reading (model, taxonomy consistency, danger rules: MessageClassifier), with
the same scoring as the classification suite. Three views:
- `kfold`: 5 folds over the deduplicated training lines (fixed seed); figures on the independent writers' lines of
  each held-out fold (the kind of message the fresh held-out set has), and on all of them;
- `writer3`: trained on everything but independent_train_3.jsonl, scored on it (a writer the model never saw);
- `test`: trained on all lines, scored on evals/data/classification_test.jsonl.
Must not: read evals/data/independent/ (held-out lines are scored once, by the eval, not here).

    python -m benchmarks.cv_understanding [--approach tfidf] [--folds 5] [--views kfold,writer3,test]
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bot.understanding.model import fit_models
from bot.understanding.service import MessageClassifier
from bot.understanding.training import Example, dedupe, read_examples, training_files
from bot.understanding.types import AXES
from evals.suites.classification import TEST_FILE, headline, load_rows, score
from policies.loader import load_policies

SEED = 1203


def _labelled(paths: Sequence[Path]) -> list[tuple[Example, str]]:
    """Deduplicated examples with the name of the file each came from."""
    out: list[tuple[Example, str]] = []
    seen: set[str] = set()
    for path in paths:
        for ex in dedupe(read_examples([path])):
            if ex.text not in seen:
                seen.add(ex.text)
                out.append((ex, path.name))
    return out


def _fit(examples: Sequence[Example], approach: str) -> Any:
    examples = dedupe(examples)
    return fit_models([e.text for e in examples], {a: [e.label(a) for e in examples] for a in AXES},
                      approach=approach)


def _score(models: Any, rows: Sequence[dict[str, Any]], policies: Any) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        clf = MessageClassifier(model_dir=Path(tmp), models=models, policies=policies)
        preds = [{**dict(u.labels())} for u in (clf.understand(r["text"]) for r in rows)]
    return headline(score(rows, preds))


def _rows(examples: Sequence[Example]) -> list[dict[str, Any]]:
    return [{"text": e.text, "intent": e.intent, "category": e.category, "urgency": e.urgency} for e in examples]


def _pooled(preds_rows: list[tuple[dict[str, Any], dict[str, str]]]) -> dict[str, float]:
    return headline(score([r for r, _ in preds_rows], [p for _, p in preds_rows]))


def kfold(labelled: list[tuple[Example, str]], *, folds: int, approach: str, policies: Any) -> dict[str, Any]:
    order = list(range(len(labelled)))
    random.Random(SEED).shuffle(order)
    indep: list[tuple[dict[str, Any], dict[str, str]]] = []
    every: list[tuple[dict[str, Any], dict[str, str]]] = []
    for k in range(folds):
        test_idx = set(order[k::folds])
        train = [ex for i, (ex, _) in enumerate(labelled) if i not in test_idx]
        models = _fit(train, approach)
        with tempfile.TemporaryDirectory() as tmp:
            clf = MessageClassifier(model_dir=Path(tmp), models=models, policies=policies)
            for i in sorted(test_idx):
                ex, name = labelled[i]
                row = _rows([ex])[0]
                pred = dict(clf.understand(ex.text).labels())
                every.append((row, pred))
                if name.startswith("independent_"):
                    indep.append((row, pred))
    return {"independent_lines": {"n": len(indep), **_pooled(indep)}, "all_lines": {"n": len(every), **_pooled(every)}}


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--approach", default="tfidf")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--views", default="kfold,writer3,test")
    args = parser.parse_args(argv)
    views = set(args.views.split(","))
    policies = load_policies()
    files = training_files()
    labelled = _labelled(files)
    out: dict[str, Any] = {"approach": args.approach, "n_train": len(labelled)}
    start = time.perf_counter()
    if "kfold" in views:
        out["kfold"] = kfold(labelled, folds=args.folds, approach=args.approach, policies=policies)
    if "writer3" in views:
        train = [ex for ex, name in labelled if name != "independent_train_3.jsonl"]
        test = [ex for ex, name in labelled if name == "independent_train_3.jsonl"]
        out["writer3"] = {"n": len(test), **_score(_fit(train, args.approach), _rows(test), policies)}
    if "test" in views:
        problems: list[Any] = []
        rows = load_rows(TEST_FILE, problems)
        out["test"] = {"n": len(rows), **_score(_fit([ex for ex, _ in labelled], args.approach), rows, policies)}
    out["seconds"] = round(time.perf_counter() - start, 1)
    print(json.dumps(out, ensure_ascii=False, indent=1))


if __name__ == "__main__":
    main()
