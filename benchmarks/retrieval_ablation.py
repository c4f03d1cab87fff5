"""Retrieval ablation: which signal picks the right document first, on labelled questions (tuning splits only).

`python -m benchmarks.retrieval_ablation evals/data/independent/retrieval_dev.jsonl [more.jsonl ...]` prints, for
the answerable questions, the share whose first document is right for: the plain langchain baseline (first hit,
top 3), dense only, BM25 only, the document card only, chunk-level RRF, the document ranker, the last two also
without the lexicon, and the shares of clarifications (with and without the right document among the candidates).
Never run it on the held-out split while tuning.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from bot.settings import load_settings
from evals.plain_baseline import PlainBaseline
from evals.suites.retrieval import build_index
from knowledge.embeddings import embedder_from_settings

ARMS = ("plain_first", "plain_top3", "dense_only", "bm25_only", "card_only", "rrf_chunk", "rrf_chunk_no_lexicon",
        "ranker", "ranker_no_lexicon", "clarified_right_offered", "answered_wrong", "clarified")


def _questions(files: list[str]) -> list[tuple[str, set[str]]]:
    rows = []
    for name in files:
        for line in Path(name).read_text(encoding="utf-8").splitlines():
            if line.strip():
                obj = json.loads(line)
                if obj["expected"]:
                    rows.append((obj["question"], set(obj["expected"])))
    return rows


def _first_by(res: Any, feature: str) -> str | None:
    return next((d.doc_id for d in res.docs if d.features[feature] == 1.0), None)


def main(argv: list[str]) -> int:
    settings = load_settings()
    embedder = embedder_from_settings(settings)
    retriever = build_index(settings, embedder, examples=Path(settings.scope_examples))
    plain = PlainBaseline(Path(settings.knowledge_dir), embedder)
    lexicon = retriever.lexicon
    rows = _questions(argv)
    hits = dict.fromkeys(ARMS, 0)
    for question, expected in rows:
        top3 = plain.search(question)
        hits["plain_first"] += bool(top3) and top3[0] in expected
        hits["plain_top3"] += bool(expected.intersection(top3))
        res = retriever.search(question, k=30)
        hits["dense_only"] += _first_by(res, "dense_rr") in expected
        hits["bm25_only"] += _first_by(res, "bm25_rr") in expected
        hits["card_only"] += _first_by(res, "card_rr") in expected
        hits["rrf_chunk"] += bool(res.hits) and res.hits[0].doc_id in expected
        hits["ranker"] += bool(res.docs) and res.docs[0].doc_id in expected
        choice = res.choice
        if choice is not None and choice.answer is None and choice.clarify:
            hits["clarified"] += 1
            hits["clarified_right_offered"] += bool(expected.intersection(c.doc_id for c in choice.clarify))
        elif choice is not None and choice.answer is not None:
            hits["answered_wrong"] += choice.answer.doc_id not in expected
        retriever.lexicon = None
        bare = retriever.search(question, k=30)
        hits["rrf_chunk_no_lexicon"] += bool(bare.hits) and bare.hits[0].doc_id in expected
        hits["ranker_no_lexicon"] += bool(bare.docs) and bare.docs[0].doc_id in expected
        retriever.lexicon = lexicon
    print(f"answerable questions: {len(rows)}")
    for arm in ARMS:
        print(f"{arm:26s} {hits[arm] / max(len(rows), 1):.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
