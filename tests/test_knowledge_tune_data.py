"""The no-answer tuning file: well-formed, both classes, and disjoint from the held-out eval files."""

from __future__ import annotations

import json
from pathlib import Path

from evals.suites.retrieval import TUNE_FILE, choose_cutoff, fit_logistic
from knowledge.retrieval import Evidence

ROOT = Path(__file__).resolve().parents[1]


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def test_tuning_file_is_wellformed_and_covers_every_document() -> None:
    slugs = {p.stem for p in (ROOT / "knowledge" / "docs").glob("*.md")}
    rows = _rows(TUNE_FILE)
    assert all(isinstance(r["question"], str) and isinstance(r["expected"], list) for r in rows)
    assert all(set(r["expected"]) <= slugs for r in rows)
    assert {s for r in rows for s in r["expected"]} == slugs
    assert sum(1 for r in rows if not r["expected"]) >= 60
    assert len({r["question"] for r in rows}) == len(rows)


def test_tuning_file_shares_no_question_with_the_eval_files() -> None:
    tune = {r["question"].strip() for r in _rows(TUNE_FILE)}
    held_out = {r["question"].strip() for f in ("retrieval_a.jsonl", "retrieval_b.jsonl")
                for r in _rows(ROOT / "evals" / "data" / f)}
    assert not tune & held_out


def test_fit_and_cutoff_separate_clear_evidence() -> None:
    yes = [Evidence(top=0.92 + i * 0.001, conc=0.8, bm25=7.0 + i % 3, idf_cov=0.6) for i in range(20)]
    no = [Evidence(top=0.86 + i * 0.001, conc=0.2, bm25=1.0 + i % 2, idf_cov=0.1) for i in range(10)]
    model = fit_logistic(yes + no, [False] * 20 + [True] * 10)
    cutoff, figures = choose_cutoff(model, yes + no, [False] * 20 + [True] * 10)
    assert figures["f1"] == 1.0 and 0.1 <= cutoff <= 0.9
    assert model.probability(no[0]) > 0.5 > model.probability(yes[0])
