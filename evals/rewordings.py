"""Scope examples without rewordings of a held-out set's questions: `python -m evals.rewordings HELD OUT`.

The independent writers are one model family and their questions converge: a held-out question often has a
near-copy among the scope examples written by another writer, and a question that close takes the example's label
outright (knowledge.scope.PARAPHRASE). This writes the shipped examples minus every example at cosine >= PARAPHRASE
to any question of HELD (a file of the eval format) to OUT, so the held-out figure can be given a second time
without them: `SCOPE_EXAMPLES=OUT quanbot eval retrieval --data HELD`.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

from bot.settings import load_settings
from knowledge.embeddings import Embedder, embed_query_batch, embedder_from_settings
from knowledge.scope import PARAPHRASE


def _unit(vectors: list[list[float]]) -> np.ndarray:
    matrix = np.asarray(vectors, dtype=np.float32)
    return matrix / np.maximum(np.linalg.norm(matrix, axis=1, keepdims=True), 1e-12)


def without_rewordings(examples: list[dict[str, Any]], held: list[str], embedder: Embedder, *,
                       threshold: float = PARAPHRASE) -> list[dict[str, Any]]:
    """The example rows whose question is below `threshold` cosine to every held-out question."""
    if not examples or not held:
        return list(examples)
    nearest = (_unit(embed_query_batch(embedder, [r["question"] for r in examples]))
               @ _unit(embed_query_batch(embedder, held)).T).max(axis=1)
    return [row for row, sim in zip(examples, nearest, strict=True) if sim < threshold]


def _rows(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("held", type=Path)
    parser.add_argument("out", type=Path)
    args = parser.parse_args(argv)
    settings = load_settings()
    examples = _rows(Path(settings.scope_examples))
    kept = without_rewordings(examples, [r["question"] for r in _rows(args.held)], embedder_from_settings(settings))
    args.out.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in kept), encoding="utf-8")
    print(f"examples {len(examples)}, rewordings of {args.held.name} removed {len(examples) - len(kept)}, "
          f"answered among them {sum(1 for r in examples if r['expected']) - sum(1 for r in kept if r['expected'])}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
