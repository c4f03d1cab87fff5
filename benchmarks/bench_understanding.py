"""Understanding benchmark: training time, offline latency (p50/p95 after warm-up) and test-split quality,
each printed beside its target. Run: .venv/bin/python -m benchmarks.bench_understanding [--approach tfidf]"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from bot.understanding.service import MessageClassifier
from bot.understanding.training import ensure_model
from evals.suites.classification import TEST_FILE, headline, load_rows, score


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--approach", default="tfidf")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        models, report = ensure_model(Path(tmp), approach=args.approach)
        train_s = time.perf_counter() - t0
        clf = MessageClassifier(model_dir=Path(tmp), models=models)
        rows = load_rows(TEST_FILE, [])
        for r in rows[:20]:
            clf.understand(r["text"])  # warm-up
        times, preds = [], []
        for r in rows:
            s = time.perf_counter()
            preds.append(clf.understand(r["text"]).labels())
            times.append((time.perf_counter() - s) * 1000)
        times.sort()
        p95 = times[int(len(times) * 0.95) - 1]
        h = headline(score(rows, preds))
    print(f"approach {args.approach}, {report.n_train} training lines, {len(rows)} test lines")
    print(f"training time           {train_s:8.2f} s    (target <= 30 s)")
    print(f"classify p50            {statistics.median(times):8.2f} ms   ")
    print(f"classify p95            {p95:8.2f} ms   (target <= 10 ms)")
    targets = {"intent_macro_f1": 0.90, "category_macro_f1": 0.85, "urgency_macro_f1": 0.85,
               "emergency_recall": 1.00, "emergency_precision": 0.80}
    for k, target in targets.items():
        print(f"{k:22s}  {h[k]:8.3f}      (target >= {target:.2f}){'' if h[k] >= target else '  MISSED'}")


if __name__ == "__main__":
    main()
