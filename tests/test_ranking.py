"""Choosing the document (knowledge.ranking), the lexicon's query expansion, and the clarifying question."""

from __future__ import annotations

from pathlib import Path

import pytest

from knowledge.ranking import (
    DOC_FEATURES,
    TEXT_FEATURES,
    DocCandidate,
    DocRanker,
    VotedRanker,
    doc_features,
    title_coverage,
)
from policies.loader import PolicyError, load_policies
from policies.models import Lexicon
from tests.factories import shared_ai

POLICIES = Path(__file__).resolve().parents[1] / "policies"


def _cand(doc: str, **features: float) -> DocCandidate:
    return DocCandidate(doc, doc, {name: features.get(name, 0.0) for name in DOC_FEATURES})


RANKER = DocRanker(weights=tuple(1.0 if name == "dense_rr" else 0.0 for name in DOC_FEATURES),
                   answer_share=0.6, clarify_share=0.1)


def test_a_clear_winner_is_answered() -> None:
    ranked = RANKER.rank([_cand("a", dense_rr=5.0), _cand("b", dense_rr=1.0), _cand("c", dense_rr=0.5)])
    choice = RANKER.choice(ranked)
    assert choice.answer is not None and choice.answer.doc_id == "a" and not choice.clarify
    assert ranked[0].share > 0.9 and abs(sum(c.share for c in ranked) - 1.0) < 1e-9


def test_a_near_tie_asks_among_the_close_ones_only() -> None:
    ranked = RANKER.rank([_cand("a", dense_rr=1.0), _cand("b", dense_rr=0.95), _cand("c", dense_rr=-4.0)])
    choice = RANKER.choice(ranked)
    assert choice.answer is None
    assert [c.doc_id for c in choice.clarify] == ["a", "b"]  # c's share is below clarify_share


def test_one_candidate_or_one_close_runner_up_is_answered() -> None:
    assert RANKER.choice(RANKER.rank([_cand("a")])).answer is not None
    ranked = RANKER.rank([_cand("a", dense_rr=1.0), _cand("b", dense_rr=0.9), _cand("c", dense_rr=0.85),
                          _cand("d", dense_rr=0.8), _cand("e", dense_rr=0.75)])
    choice = RANKER.choice(ranked)  # five-way tie: at most three are offered
    assert choice.answer is None and len(choice.clarify) == 3
    assert RANKER.choice([]).answer is None and RANKER.choice([]).clarify == []


def test_doc_features_rank_and_floor() -> None:
    feats = doc_features(dense=[("a", 0.90), ("a", 0.89), ("b", 0.88)], bm25=[("b", 6.0), ("c", 3.0)],
                         card=[("c", 0.85), ("a", 0.80)], tag_hits={"b"},
                         titles={"a": "老年人优待证", "b": "残疾人证办理", "c": "社会保障卡"},
                         question="老年卡咋办 老年人优待证")
    assert set(feats) == {"a", "b", "c"}
    assert feats["a"]["dense_gap"] == 0.0 and feats["b"]["dense_gap"] < 0
    assert feats["a"]["dense_conc"] == pytest.approx(0.2)
    assert feats["c"]["dense_gap"] == pytest.approx((0.88 - 0.90) * 10)  # not a dense hit: the list's floor
    assert feats["b"]["bm25_rel"] == 1.0 and feats["a"]["bm25_rel"] == 0.0
    assert feats["b"]["tag_hit"] == 1.0 and feats["a"]["tag_hit"] == 0.0
    assert feats["a"]["title_cov"] == 1.0 and feats["b"]["title_cov"] == 0.0


def test_title_coverage_ignores_generic_words() -> None:
    assert title_coverage("居民身份证办理指南", "身份证丢了") == 0.5  # 身份 份证 of 居民 民身 身份 份证
    assert title_coverage("城乡最低生活保障申请指南", "身份证丢了") == 0.0
    assert title_coverage("", "anything") == 0.0


def test_lexicon_expands_everyday_words_once() -> None:
    lex = Lexicon(terms={"老年卡": ["老年人优待证"], "卡": ["银行卡"], "房产证": ["不动产权证书"]})
    assert lex.expand("老年卡咋办") == ["老年人优待证", "银行卡"]
    assert lex.expand("老年卡就是老年人优待证吧") == ["银行卡"]  # already said: not added again
    assert lex.expand("") == [] and lex.expand("低保") == []


def test_the_shipped_lexicon_loads_and_an_absent_one_is_empty(tmp_path: Path) -> None:
    assert load_policies(POLICIES).lexicon.expand("老年卡") == ["老年人优待证"]
    for f in POLICIES.glob("*.yaml"):
        if f.name != "lexicon.yaml":
            (tmp_path / f.name).write_text(f.read_text(encoding="utf-8"), encoding="utf-8")
    assert load_policies(tmp_path).lexicon.terms == {}
    (tmp_path / "lexicon.yaml").write_text("terms:\n  老年卡: []\n", encoding="utf-8")
    with pytest.raises(PolicyError) as err:
        load_policies(tmp_path)
    assert "lexicon.yaml" in str(err.value)


@pytest.fixture(scope="module")
def knowledge(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    return shared_ai(tmp_path_factory.mktemp("ai")).knowledge


@pytest.mark.parametrize(("question", "right", "never"), [
    ("济南的房产证怎么办理", "property-certificate", "hukou"),
    ("老年卡咋办 坐公交免费那个", "elderly-card", "disability"),
])
def test_the_issue_examples_are_not_answered_from_the_wrong_document(knowledge, question, right, never) -> None:  # type: ignore[no-untyped-def]
    answer = knowledge.ask(question, mode="offline")
    cited = [c.doc_id for c in answer.citations]
    offered = [c.doc_id for c in answer.clarify]
    assert never not in cited[:1]
    assert (answer.answered and cited[0] == right) or (not answer.answered and right in offered), answer


def test_a_clarification_names_its_candidates_and_a_pick_answers_from_that_document(knowledge) -> None:  # type: ignore[no-untyped-def]
    from knowledge.retrieval import Filters

    question = "电梯的事"
    result = knowledge.retriever.search(question, k=30)
    assert len(result.docs) >= 2
    picked = result.docs[1].doc_id  # not the first: the pick must win over the ranking
    answer = knowledge.ask_in(question, picked, mode="offline")
    if answer.answered:
        assert answer.citations[0].doc_id == picked and not answer.clarify
    assert knowledge.retriever.search(question, filters=Filters(doc_ids=frozenset({picked}))).top_docs() == [picked]
    public = knowledge.ask(question, mode="offline").to_public()
    if "clarify" in public:
        assert public["answered"] is False and all({"title", "section", "doc_id"} <= set(c) for c in public["clarify"])


def test_example_votes_become_features_and_are_zero_without_examples() -> None:
    dense = [("a", 0.90), ("b", 0.89)]
    plain = doc_features(dense=dense, bm25=[], card=[], tag_hits=set())
    assert all(plain[d][f] == 0.0 for d in ("a", "b") for f in ("ex_gap", "ex_rr", "ex_knn"))
    voted = doc_features(dense=dense, bm25=[], card=[], tag_hits=set(), example_best={"b": 0.93, "c": 0.95},
                         example_knn={"b": 0.6})
    # b is second among the voted documents and 0.02 below the best vote; a has no vote at all
    assert voted["b"]["ex_rr"] == 0.5 and abs(voted["b"]["ex_gap"] + 0.2) < 1e-6 and voted["b"]["ex_knn"] == 0.6
    assert voted["a"]["ex_rr"] < 0.05 and voted["a"]["ex_gap"] < voted["b"]["ex_gap"] and voted["a"]["ex_knn"] == 0
    # c is the nearest example's document: it joins the candidates though no search found it, with the searches'
    # missing-evidence values; with no example pool the votes only rank what the searches found
    assert voted["c"]["ex_rr"] == 1.0 and voted["c"]["dense_rr"] < voted["b"]["dense_rr"]
    assert "c" not in doc_features(dense=dense, bm25=[], card=[], tag_hits=set(), example_best={"b": 0.93, "c": 0.95},
                                   example_pool=0)


def test_votes_rank_only_when_every_leading_document_has_answered_examples() -> None:
    """VotedRanker.pick: an example's silence about a document is evidence only if examples could speak for it."""
    text = DocRanker(weights=tuple(1.0 if name == "dense_rr" else 0.0 for name in TEXT_FEATURES),
                     features=TEXT_FEATURES)
    voted = DocRanker(weights=tuple(5.0 if name == "ex_knn" else 0.0 for name in DOC_FEATURES))
    pair = VotedRanker(text=text, voted=voted, check=2)
    cands = [_cand("new", dense_rr=1.0), _cand("old", dense_rr=0.5, ex_knn=1.0), _cand("far", dense_rr=0.1)]
    assert pair.pick(cands, {"old", "new"}) is voted and voted.rank(cands)[0].doc_id == "old"
    assert pair.pick(cands, {"old"}) is text and text.rank(cands)[0].doc_id == "new"  # "new" has no examples yet
    assert pair.pick(cands, {"old", "new"} - {"far"}) is voted  # only the first `check` documents are asked
    assert pair.pick(cands, None) is text  # no scope library: the text ranker alone
