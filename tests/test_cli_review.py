"""`quanbot review` end to end through the CLI entry point, on a temporary database and temporary copies of the
FAQ, scope examples and lexicon files: each fix lands in its file in the format its reader loads, the item is
resolved in the same unit of work, and every mistake is one Chinese line with exit code 2."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml
from sqlalchemy.engine import Engine
from typer.testing import CliRunner

from bot.cli import app
from bot.settings import PROJECT_ROOT, load_settings
from casestore.audit import list_audit
from casestore.db import session_scope, upgrade
from casestore.review import get_item, record_miss
from knowledge.faq import FaqIndex, load_faq
from knowledge.scope import load_scope_examples
from policies.masking import contains_unmasked

PHONE = "138 1234 5678"
RETRIEVED = [{"doc_id": "heating", "title": "供暖", "section": "报修", "score": 0.3},
             {"doc_id": "residence-permit", "title": "居住证办理", "section": "所需材料", "score": 0.2}]


@pytest.fixture
def files(tmp_path: Path, docs: Path, settings, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:  # type: ignore[no-untyped-def]
    """The CLI's environment: the test database and copies of the repo's FAQ and scope files."""
    faq, scope, policies = tmp_path / "faq.yaml", tmp_path / "scope_examples.jsonl", tmp_path / "policies"
    shutil.copyfile(PROJECT_ROOT / "knowledge" / "faq.yaml", faq)
    shutil.copyfile(PROJECT_ROOT / "knowledge" / "scope_examples.jsonl", scope)
    policies.mkdir()
    env = {"DATABASE_URL": settings.database_url, "FAQ_PATH": str(faq), "SCOPE_EXAMPLES": str(scope),
           "POLICIES_DIR": str(policies), "KNOWLEDGE_DIR": str(docs), "VAR_DIR": str(tmp_path / "var"),
           "CHROMA_DIR": str(tmp_path / "chroma")}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    loaded = load_settings()  # the CLI writes only here, never to the repo's own files
    assert (loaded.faq_path, loaded.scope_examples, loaded.policies_dir) == (faq, scope, policies)
    return {"faq": faq, "scope": scope, "lexicon": policies / "lexicon.yaml", "docs": docs}


def _run(*argv: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(argv))
    assert "Traceback" not in result.output
    return result.exit_code, result.output


def _error(*argv: str) -> str:
    """The one line a refused command prints (and its exit code is 2)."""
    code, output = _run(*argv)
    lines = [line for line in output.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1, (code, output)
    return lines[0]


def _miss(engine: Engine, question: str, kind: str = "not_found") -> int:
    with session_scope(engine) as s:
        item = record_miss(session=s, kind=kind, question=question, retrieved=RETRIEVED, answer_mode="offline",
                           resident_id=None, now=datetime.now(UTC))
        assert item.id is not None
        return item.id


def _status(engine: Engine, item_id: int) -> tuple[str, str | None, str | None]:
    with session_scope(engine) as s:
        item = get_item(session=s, item_id=item_id)
        return item.status, item.resolution, item.resolved_doc


def test_list_and_show_the_queue_masked(engine: Engine, files: dict[str, Path]) -> None:
    code, output = _run("review", "list")
    assert code == 0 and "没有待审的问题" in output
    first = _miss(engine, f"居住证咋办 电话{PHONE}")
    second = _miss(engine, "暖气不热找谁", kind="not_useful")
    code, output = _run("review", "list")
    assert code == 0 and "居住证咋办" in output and "138****5678" in output and "供暖" in output
    assert "没用" in output and not contains_unmasked(output)
    code, output = _run("review", "list", "--json")
    rows = json.loads(output)
    assert [r["id"] for r in rows] == [second, first] and rows[1]["question"] == "居住证咋办 电话138****5678"
    assert rows[0]["kind"] == "not_useful" and rows[0]["retrieved"][0]["title"] == "供暖"
    code, output = _run("review", "show", str(first))
    assert code == 0 and "居住证咋办 电话138****5678" in output and "居住证办理 › 所需材料" in output
    assert not contains_unmasked(output)
    assert _run("review", "dismiss", str(second)) == (0, f"✓ 第 {second} 条已忽略\n")
    assert [r["id"] for r in json.loads(_run("review", "list", "--json")[1])] == [first]
    assert {r["id"]: r["status"] for r in json.loads(_run("review", "list", "--all", "--json")[1])} == {
        first: "open", second: "dismissed"}


def test_faq_appends_an_entry_that_loads_and_matches_and_resolves_the_item(engine: Engine,
                                                                           files: dict[str, Path]) -> None:
    before = files["faq"].read_text(encoding="utf-8")
    item_id = _miss(engine, "外地人办居住证得准备啥")
    answer = "请带身份证原件和住所证明。\n满半年后到派出所申领。"
    code, output = _run("review", "faq", str(item_id), "--doc", "residence-permit", "--section", "所需材料",
                        "--answer", answer)
    assert code == 0 and f"第 {item_id} 条已加入 FAQ" in output
    after = files["faq"].read_text(encoding="utf-8")
    assert after.startswith(before)  # appended: the curators' comments and layout stay as they were
    entry = next(e for e in load_faq(files["faq"]) if e.id == f"review-{item_id}")
    assert (entry.questions, entry.answer, entry.doc, entry.section) == (
        ("外地人办居住证得准备啥",), answer, "residence-permit", "所需材料")
    assert len(load_faq(files["faq"])) == len(yaml.safe_load(before)["entries"]) + 1
    match = FaqIndex(load_faq(files["faq"])).match("外地人办居住证得准备啥")  # the bot now answers it from the FAQ
    assert match is not None and match.entry.id == f"review-{item_id}"
    assert _status(engine, item_id) == ("resolved", "faq", "residence-permit")
    with session_scope(engine) as s:
        (event,) = list_audit(session=s, subject=f"review:{item_id}", action="review_resolve")
        assert event.actor.startswith("admin:cli") and event.data == {"resolution": "faq", "doc": "residence-permit"}
    line = _error("review", "faq", str(item_id), "--doc", "residence-permit", "--section", "x", "--answer", "y")
    assert "已经处理过" in line
    assert files["faq"].read_text(encoding="utf-8") == after


def test_faq_refuses_an_unknown_document_and_missing_options(engine: Engine, files: dict[str, Path]) -> None:
    item_id = _miss(engine, "居住证咋办")
    before = files["faq"].read_text(encoding="utf-8")
    line = _error("review", "faq", str(item_id), "--doc", "no-such-doc", "--section", "a", "--answer", "b")
    assert "知识库里没有文档 'no-such-doc'" in line
    assert "缺少 --section、--answer" in _error("review", "faq", str(item_id), "--doc", "residence-permit")
    assert "缺少 --doc" in _error("review", "faq", str(item_id), "--section", "a", "--answer", "b")
    assert files["faq"].read_text(encoding="utf-8") == before
    assert _status(engine, item_id) == ("open", None, None)


def test_faq_on_an_empty_file_and_an_answer_that_needs_quoting(engine: Engine, files: dict[str, Path]) -> None:
    files["faq"].write_text("# curated answers\n", encoding="utf-8")
    item_id = _miss(engine, "问: 暖气#不热")
    answer = '  "带上" 户号: 12345 # 不是注释'
    code, _ = _run("review", "faq", str(item_id), "--doc", "heating", "--section", "报修: 电话", "--answer", answer)
    assert code == 0
    (entry,) = load_faq(files["faq"])
    assert (entry.questions, entry.answer, entry.section) == (("问: 暖气#不热",), answer.strip(), "报修: 电话")
    assert files["faq"].read_text(encoding="utf-8").startswith("# curated answers\n")


def test_scope_in_and_out_append_a_line_in_the_files_format(engine: Engine, files: dict[str, Path]) -> None:
    before = files["scope"].read_text(encoding="utf-8")
    count = len(load_scope_examples(files["scope"]))
    inside, outside = _miss(engine, "外地人居住证咋弄"), _miss(engine, "驾照咋换", kind="clarify_unpicked")
    assert "--in-scope 需要 --doc" in _error("review", "scope", str(inside), "--in-scope")
    assert "能不能回答" in _error("review", "scope", str(inside))
    assert "不能再给 --doc" in _error("review", "scope", str(outside), "--out-of-scope", "--doc", "heating")
    assert "知识库里没有文档" in _error("review", "scope", str(inside), "--in-scope", "--doc", "nope")
    code, output = _run("review", "scope", str(inside), "--in-scope", "--doc", "residence-permit")
    assert code == 0 and "知识库能回答（residence-permit）" in output
    code, output = _run("review", "scope", str(outside), "--out-of-scope")
    assert code == 0 and "知识库不能回答" in output
    text = files["scope"].read_text(encoding="utf-8")
    assert text.startswith(before)
    assert text[len(before):].splitlines() == ['{"question": "外地人居住证咋弄", "expected": ["residence-permit"]}',
                                               '{"question": "驾照咋换", "expected": []}']
    examples = load_scope_examples(files["scope"])
    assert len(examples) == count + 2 and examples[-1].question == "驾照咋换" and not examples[-1].in_scope
    assert _status(engine, inside) == ("resolved", "scope", "residence-permit")
    assert _status(engine, outside) == ("resolved", "scope", None)


def test_lexicon_creates_appends_and_merges(engine: Engine, files: dict[str, Path]) -> None:
    a, b, c = _miss(engine, "老年卡咋办"), _miss(engine, "狗证去哪办"), _miss(engine, "老人卡在哪领")
    code, output = _run("review", "lexicon", str(a), "--term", "老年卡", "--means", "老年人优待证")
    assert code == 0 and "老年卡 → 老年人优待证" in output
    text = files["lexicon"].read_text(encoding="utf-8")
    assert text.startswith("# Everyday words residents use → the official terms the documents use.")
    assert yaml.safe_load(text) == {"terms": {"老年卡": ["老年人优待证"]}}
    assert _run("review", "lexicon", str(b), "--term", "狗证", "--means", "犬类登记证", "--doc", "heating")[0] == 0
    assert _run("review", "lexicon", str(c), "--term", "老年卡", "--means", "老年证", "--means", "老年人优待证")[0] == 0
    assert yaml.safe_load(files["lexicon"].read_text(encoding="utf-8")) == {
        "terms": {"老年卡": ["老年人优待证", "老年证"], "狗证": ["犬类登记证"]}}
    assert _status(engine, a) == ("resolved", "lexicon", None)
    assert _status(engine, b) == ("resolved", "lexicon", "heating")


def test_lexicon_appends_under_terms_of_a_file_another_agent_wrote(engine: Engine, files: dict[str, Path]) -> None:
    written = ("# the query expansion's words\n"
               "terms:\n"
               "    医保: [\"城乡居民基本医疗保险\"]   # indented by four\n"
               "    # a comment inside the block\n"
               "\n"
               "version: 2\n")
    files["lexicon"].write_text(written, encoding="utf-8")
    a, b = _miss(engine, "老年卡咋办"), _miss(engine, "医保咋交")
    assert _run("review", "lexicon", str(a), "--term", "老年卡", "--means", "老年人优待证")[0] == 0
    assert _run("review", "lexicon", str(b), "--term", "医保", "--means", "居民医保")[0] == 0
    text = files["lexicon"].read_text(encoding="utf-8")
    assert yaml.safe_load(text) == {"terms": {"医保": ["城乡居民基本医疗保险", "居民医保"], "老年卡": ["老年人优待证"]},
                                    "version": 2}
    assert "# the query expansion's words" in text and "# a comment inside the block" in text
    c = _miss(engine, "老年卡在哪")
    assert "已经对应" in _error("review", "lexicon", str(c), "--term", "老年卡", "--means", "老年人优待证")
    assert "需要 --term 和 --means" in _error("review", "lexicon", str(c), "--term", "老年卡")
    assert _status(engine, c) == ("open", None, None)


def test_a_broken_lexicon_is_not_made_worse(engine: Engine, files: dict[str, Path]) -> None:
    files["lexicon"].write_text("terms: [oops\n", encoding="utf-8")
    item_id = _miss(engine, "老年卡咋办")
    assert "不是合法的 YAML" in _error("review", "lexicon", str(item_id), "--term", "老年卡", "--means", "优待证")
    assert files["lexicon"].read_text(encoding="utf-8") == "terms: [oops\n"
    assert _status(engine, item_id) == ("open", None, None)


@pytest.mark.parametrize("raw", ["abc", "0", "1.5", "#"])
def test_a_bad_id_is_one_line(engine: Engine, files: dict[str, Path], raw: str) -> None:
    assert "编号不对" in _error("review", "show", raw)


@pytest.mark.parametrize("argv", [("show", "999"), ("dismiss", "999"), ("scope", "999", "--out-of-scope"),
                                  ("lexicon", "999", "--term", "a", "--means", "b"),
                                  ("faq", "999", "--doc", "heating", "--section", "s", "--answer", "a")])
def test_an_unknown_id_is_one_line_and_writes_nothing(engine: Engine, files: dict[str, Path],
                                                      argv: tuple[str, ...]) -> None:
    before = {name: path.read_bytes() if path.exists() else None for name, path in files.items() if name != "docs"}
    assert "没有这条待审记录" in _error("review", *argv)
    assert before == {name: path.read_bytes() if path.exists() else None for name, path in files.items()
                      if name != "docs"}


def test_dismissing_twice_is_refused(engine: Engine, files: dict[str, Path]) -> None:
    item_id = _miss(engine, "测试消息")
    assert _run("review", "dismiss", str(item_id))[0] == 0
    assert "已经忽略过了" in _error("review", "dismiss", str(item_id))
    assert "已经忽略过了" in _error("review", "scope", str(item_id), "--out-of-scope")


def test_a_database_that_was_never_migrated_is_one_line(files: dict[str, Path], settings) -> None:  # type: ignore[no-untyped-def]
    upgrade(settings.database_url, "0004")
    assert "quanbot db upgrade" in _error("review", "list")


def test_eval_reviewed_runs_from_the_cli_on_an_empty_queue(engine: Engine, files: dict[str, Path],
                                                           tmp_path: Path) -> None:
    code, output = _run("eval", "reviewed", "--json", "--out", str(tmp_path / "report"))
    figures = json.loads(output[output.index("{"):output.rindex("}") + 1])
    assert code == 0 and figures["n"] == 0 and "no resolved review item" in figures["note"]


def test_a_miss_fixed_with_quanbot_review_is_a_hit_of_the_reviewed_eval(engine: Engine, files: dict[str, Path],
                                                                         tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """The loop end to end: a missed question, its FAQ fix through the CLI, and `quanbot eval reviewed` asking the
    real knowledge service (the test's hash embedder in place of the model) with the fixed FAQ file."""
    from evals.suites import reviewed
    from knowledge.service import KnowledgeRuntime
    from tests.embedders import HASH_THRESHOLDS, HashEmbedder

    def runtime(settings: object, *, faq_path: Path) -> KnowledgeRuntime:
        assert faq_path == files["faq"]  # the deployment's FAQ, the one the fix went into
        return KnowledgeRuntime(settings, embedder=HashEmbedder(), thresholds=HASH_THRESHOLDS, faq_path=faq_path)

    monkeypatch.setattr(reviewed, "KnowledgeRuntime", runtime)
    for policy in (PROJECT_ROOT / "policies").glob("*.yaml"):  # the runtime screens passages with links.yaml
        if policy.name != "lexicon.yaml":
            shutil.copyfile(policy, files["lexicon"].parent / policy.name)
    files["faq"].write_text("entries:\n", encoding="utf-8")  # the repo's entries cite documents not in `docs`
    fixed, wrong = _miss(engine, "老乡来济南打工想长住要弄啥手续"), _miss(engine, "居住证要带哪些材料")
    assert _run("review", "faq", str(fixed), "--doc", "residence-permit", "--section", "所需材料",
                "--answer", "带身份证和住所证明，到派出所办居住证。")[0] == 0
    assert _run("review", "scope", str(wrong), "--in-scope", "--doc", "heating")[0] == 0  # a wrong document
    code, output = _run("eval", "reviewed", "--json", "--out", str(tmp_path / "report"))
    figures = json.loads(output[output.index("{"):output.rindex("}") + 1])
    assert code == 0 and (figures["n"], figures["hits"]) == (2, 1)
    assert figures["by_resolution"] == {"faq": {"n": 1, "hits": 1}, "scope": {"n": 1, "hits": 0}}
