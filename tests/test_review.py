"""The review queue (casestore.review): misses recorded masked and deduped, the next message attached, items
resolved or dismissed with their audit events in the same transaction, the migration on SQLite and PostgreSQL, and
the `reviewed` regression eval built from resolved items."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import inspect
from sqlalchemy import text as sql
from sqlalchemy.engine import Engine

from casestore.audit import list_audit
from casestore.db import alembic_config, make_engine, session_scope, upgrade
from casestore.models import Resident, ReviewItem
from casestore.review import (
    ReviewClosed,
    ReviewNotFound,
    attach_next_message,
    dismiss_item,
    get_item,
    list_items,
    list_resolved_with_doc,
    record_miss,
    resolve_item,
)
from evals import runner
from evals.core import EvalContext
from evals.suites import reviewed
from knowledge.types import Answer, Citation
from policies.masking import contains_unmasked

NOW = datetime(2026, 11, 20, 6, 0, tzinfo=UTC)
PHONE, PHONE_DIGITS, ID_NUMBER = "138 1234 5678", "13812345678", "370102199001011237"
RETRIEVED = [{"doc_id": "elderly-card", "title": "老年人优待证", "section": "办理流程", "score": 0.41234567,
              "text": "passage text is not kept"}]


def _resident(engine: Engine) -> int:
    with session_scope(engine) as s:
        resident = Resident(display_name="张")
        s.add(resident)
        s.flush()
        assert resident.id is not None
        return resident.id


def _miss(engine: Engine, *, question: str = "老年卡咋办", kind: str = "not_found", resident_id: int | None = None,
          now: datetime = NOW) -> int:
    with session_scope(engine) as s:
        item = record_miss(session=s, kind=kind, question=question, retrieved=RETRIEVED, answer_mode="offline",
                           resident_id=resident_id, now=now)
        assert item.id is not None
        return item.id


def test_a_miss_is_stored_masked_with_its_passages_and_an_audit_event(engine: Engine) -> None:
    rid = _resident(engine)
    item_id = _miss(engine, question=f"我电话{PHONE}，身份证{ID_NUMBER}，老年卡咋办", resident_id=rid)
    with session_scope(engine) as s:
        attach_next_message(session=s, resident_id=rid, text=f"就是优待证，回我 {PHONE_DIGITS}", now=NOW)
    with engine.connect() as conn:  # the row at rest, as the database holds it
        row = conn.execute(sql("SELECT * FROM reviewitem WHERE id = :id"), {"id": item_id}).mappings().one()
    stored = " ".join(str(v) for v in row.values())
    for raw in (PHONE, PHONE_DIGITS, ID_NUMBER):
        assert raw not in stored
    assert not contains_unmasked(stored)
    assert "138****5678" in row["question"] and "老年卡咋办" in row["question"]
    assert "138****5678" in row["next_message"]
    with session_scope(engine) as s:
        item = get_item(session=s, item_id=item_id)
        assert item.retrieved == [{"doc_id": "elderly-card", "title": "老年人优待证", "section": "办理流程",
                                   "score": 0.4123}]
        assert (item.status, item.kind, item.answer_mode, item.resident_id) == ("open", "not_found", "offline", rid)
        events = list_audit(session=s, subject=f"review:{item_id}")
        assert [(e.action, e.actor) for e in events] == [("review_record", f"resident:{rid}"),
                                                         ("review_next_message", f"resident:{rid}")]
        assert not contains_unmasked(str([e.data for e in events]))


def test_the_same_miss_within_ten_minutes_is_one_item(engine: Engine) -> None:
    rid, other = _resident(engine), _resident(engine)
    first = _miss(engine, question=f"老年卡咋办 {PHONE}", resident_id=rid)
    assert _miss(engine, question=f"老年卡咋办 {PHONE}", resident_id=rid, now=NOW + timedelta(minutes=9)) == first
    # the masked question is what is compared: the same number typed another way is the same question
    retyped = _miss(engine, question=f"老年卡咋办 {PHONE_DIGITS}", resident_id=rid, now=NOW + timedelta(minutes=1))
    assert retyped == first
    assert _miss(engine, question=f"老年卡咋办 {PHONE}", resident_id=rid, kind="not_useful") != first
    assert _miss(engine, question=f"老年卡咋办 {PHONE}", resident_id=other) != first
    assert _miss(engine, question=f"老年卡咋办 {PHONE}", resident_id=None) != first
    assert _miss(engine, question=f"老年卡咋办 {PHONE}", resident_id=rid, now=NOW + timedelta(minutes=11)) != first
    with session_scope(engine) as s:
        assert len(list_items(session=s)) == 5
        assert len(list_audit(session=s, action="review_record")) == 5


def test_the_next_message_goes_to_the_newest_recent_open_item_once(engine: Engine) -> None:
    rid, other = _resident(engine), _resident(engine)
    old = _miss(engine, question="旧问题", resident_id=rid, now=NOW - timedelta(minutes=15))
    older = _miss(engine, question="问题一", resident_id=rid, now=NOW - timedelta(minutes=3))
    newest = _miss(engine, question="问题二", resident_id=rid, now=NOW - timedelta(minutes=1))
    with session_scope(engine) as s:
        attach_next_message(session=s, resident_id=other, text="别人的话", now=NOW)
        attach_next_message(session=s, resident_id=rid, text="  ", now=NOW)  # nothing said: nothing kept
        attach_next_message(session=s, resident_id=rid, text="我说的是优待证", now=NOW)
        attach_next_message(session=s, resident_id=rid, text="第二句", now=NOW)
        attach_next_message(session=s, resident_id=rid, text="第三句", now=NOW)
    with session_scope(engine) as s:
        assert get_item(session=s, item_id=newest).next_message == "我说的是优待证"
        assert get_item(session=s, item_id=older).next_message == "第二句"
        assert get_item(session=s, item_id=old).next_message is None  # older than ten minutes
        resolve_item(session=s, item_id=older, resolution="lexicon", doc=None, by="admin:cli:t", now=NOW)
    later = _miss(engine, question="问题三", resident_id=rid, now=NOW + timedelta(minutes=1))
    with session_scope(engine) as s:
        dismiss_item(session=s, item_id=later, by="admin:cli:t", now=NOW)
        attach_next_message(session=s, resident_id=rid, text="第四句", now=NOW + timedelta(minutes=2))
        assert get_item(session=s, item_id=later).next_message is None  # dismissed: not open any more


def test_resolving_and_dismissing_are_audited_and_happen_once(engine: Engine) -> None:
    a, b = _miss(engine, question="老年卡咋办"), _miss(engine, question="驾照咋换")
    with session_scope(engine) as s:
        item = resolve_item(session=s, item_id=a, resolution="faq", doc="elderly-card", by="admin:cli:t",
                            now=NOW + timedelta(hours=1))
        assert (item.status, item.resolution, item.resolved_doc, item.resolved_by) == (
            "resolved", "faq", "elderly-card", "admin:cli:t")
        assert item.resolved_at == NOW + timedelta(hours=1)
        dismiss_item(session=s, item_id=b, by="admin:cli:t", now=NOW)
    with session_scope(engine) as s:
        with pytest.raises(ReviewClosed):
            resolve_item(session=s, item_id=a, resolution="scope", doc=None, by="admin:cli:u", now=NOW)
        with pytest.raises(ReviewClosed):
            dismiss_item(session=s, item_id=b, by="admin:cli:u", now=NOW)
        with pytest.raises(ReviewNotFound):
            resolve_item(session=s, item_id=999, resolution="faq", doc="x", by="admin:cli:u", now=NOW)
        with pytest.raises(ValueError):
            resolve_item(session=s, item_id=b, resolution="guess", doc=None, by="admin:cli:u", now=NOW)
        assert [(e.action, e.actor, e.data) for e in list_audit(session=s, subject=f"review:{a}")][1:] == [
            ("review_resolve", "admin:cli:t", {"resolution": "faq", "doc": "elderly-card"})]
        assert [e.action for e in list_audit(session=s, subject=f"review:{b}")] == ["review_record", "review_dismiss"]
        assert list_items(session=s) == []
        assert {i.id for i in list_items(session=s, status="resolved")} == {a}
        assert {i.id for i in list_items(session=s, status=None)} == {a, b}
        assert [i.id for i in list_resolved_with_doc(session=s)] == [a]


def test_a_resolution_rolled_back_leaves_neither_the_change_nor_its_audit_event(engine: Engine) -> None:
    item_id = _miss(engine)
    with pytest.raises(RuntimeError), session_scope(engine) as s:
        resolve_item(session=s, item_id=item_id, resolution="faq", doc="elderly-card", by="admin:cli:t", now=NOW)
        raise RuntimeError("the FAQ file could not be written")
    with session_scope(engine) as s:
        assert get_item(session=s, item_id=item_id).status == "open"
        assert [e.action for e in list_audit(session=s, subject=f"review:{item_id}")] == ["review_record"]


def test_an_unknown_kind_is_refused(engine: Engine) -> None:
    with pytest.raises(ValueError), session_scope(engine) as s:
        record_miss(session=s, kind="bored", question="?", retrieved=[], answer_mode="offline", resident_id=None,
                    now=NOW)


# ---------------- the migration ----------------
def _check_migration(url: str) -> None:
    upgrade(url, "0004")
    eng = make_engine(url)
    try:
        assert not inspect(eng).has_table("reviewitem")
        upgrade(url)
        assert inspect(eng).has_table("reviewitem")
        indexes = {i["name"] for i in inspect(eng).get_indexes("reviewitem")}
        assert {"ix_reviewitem_status_created", "ix_reviewitem_resident_created"} <= indexes
        with session_scope(eng) as s:
            item = record_miss(session=s, kind="clarify_unpicked", question=f"电话{PHONE}", retrieved=RETRIEVED,
                               answer_mode="clarify", resident_id=None, now=NOW)
            resolve_item(session=s, item_id=item.id or 0, resolution="scope", doc="elderly-card", by="admin:x",
                         now=NOW)
        with session_scope(eng) as s:
            got = s.get(ReviewItem, item.id)
            assert got is not None and got.created_at == NOW and got.retrieved[0]["doc_id"] == "elderly-card"
        command.downgrade(alembic_config(url), "0004")
        assert not inspect(eng).has_table("reviewitem")
        upgrade(url)
        assert inspect(eng).has_table("reviewitem")
    finally:
        eng.dispose()


def test_migration_0005_on_sqlite(tmp_path: Path) -> None:
    _check_migration(f"sqlite:///{tmp_path / 'm.db'}")


def test_migration_0005_on_postgresql(pg_url: str) -> None:
    _check_migration(pg_url)


def test_the_queue_on_postgresql(pg_engine: Engine) -> None:
    rid = _resident(pg_engine)
    first = _miss(pg_engine, question=f"老年卡 {PHONE}", resident_id=rid)
    assert _miss(pg_engine, question=f"老年卡 {PHONE_DIGITS}", resident_id=rid, now=NOW + timedelta(minutes=2)) == first
    with session_scope(pg_engine) as s:
        attach_next_message(session=s, resident_id=rid, text=f"身份证 {ID_NUMBER}", now=NOW + timedelta(minutes=3))
        resolve_item(session=s, item_id=first, resolution="lexicon", doc="elderly-card", by="admin:x", now=NOW)
    with pg_engine.connect() as conn:
        row = conn.execute(sql("SELECT question, next_message, status FROM reviewitem")).one()
    assert row.status == "resolved" and ID_NUMBER not in row.next_message and PHONE_DIGITS not in row.question



def test_two_admins_cannot_both_resolve_an_item_on_postgresql(pg_engine: Engine) -> None:
    item_id = _miss(pg_engine)
    outcome: list[str] = []

    def second_admin() -> None:
        try:
            with session_scope(pg_engine) as s:
                resolve_item(session=s, item_id=item_id, resolution="scope", doc=None, by="admin:b", now=NOW)
            outcome.append("resolved")
        except ReviewClosed:
            outcome.append("closed")

    with session_scope(pg_engine) as s:
        resolve_item(session=s, item_id=item_id, resolution="faq", doc="elderly-card", by="admin:a", now=NOW)
        other = threading.Thread(target=second_admin)
        other.start()
        other.join(timeout=1.0)
        assert other.is_alive()  # waiting on the row lock while the first admin's file is written
    other.join(timeout=10)
    assert outcome == ["closed"]
    with session_scope(pg_engine) as s:
        assert get_item(session=s, item_id=item_id).resolved_by == "admin:a"

# ---------------- the regression eval ----------------
class _Knowledge:
    """Answers from a table: question -> (first cited doc or None, clarification candidates)."""

    def __init__(self, table: dict[str, tuple[str | None, list[str]]]) -> None:
        self.table = table
        self.asked: list[str] = []

    def ask(self, question: str) -> Answer:
        self.asked.append(question)
        cited, clarify = self.table.get(question, (None, []))
        cite = [Citation(title=cited, section="", source="", doc_id=cited, score=1.0)] if cited else []
        return Answer(text="…", answered=bool(cited), mode="clarify" if clarify else "offline", citations=cite,
                      clarify=[Citation(title=d, section="", source="", doc_id=d, score=0.5) for d in clarify])

    def ask_in(self, question: str, doc_id: str) -> Answer:
        return self.ask(question)


def _resolved(engine: Engine, question: str, doc: str | None, resolution: str = "faq") -> None:
    item_id = _miss(engine, question=question)
    with session_scope(engine) as s:
        resolve_item(session=s, item_id=item_id, resolution=resolution, doc=doc, by="admin:x", now=NOW)


def test_the_eval_without_a_database_or_items_is_empty_and_passes(settings, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    missing = settings.model_copy(update={"database_url": f"sqlite:///{tmp_path / 'none.db'}"})
    result = reviewed.run(EvalContext(settings=missing), knowledge=_Knowledge({}))
    assert result.figures["n"] == 0 and "no database" in result.figures["note"]
    assert not (tmp_path / "none.db").exists()  # looking did not create one
    upgrade(settings.database_url, "0004")
    result = reviewed.run(EvalContext(settings=settings), knowledge=_Knowledge({}))
    assert result.figures["n"] == 0 and "no review queue" in result.figures["note"]
    upgrade(settings.database_url)
    run = runner.run_suite("reviewed", EvalContext(settings=settings), runner.load_thresholds())
    assert run.status == "ok" and run.figures["n"] == 0 and run.checks and not run.gate_failed


def test_the_eval_counts_first_citations_and_clarifications(engine: Engine, settings) -> None:  # type: ignore[no-untyped-def]
    _resolved(engine, "老年卡咋办", "elderly-card")
    _resolved(engine, "狗证去哪办", "dog-management", "lexicon")
    _resolved(engine, "居住证要啥", "residence-permit", "scope")
    _resolved(engine, "驾照咋换", None, "scope")  # out of scope: no document, not a regression question
    _miss(engine, question="还没审的")
    knowledge = _Knowledge({"老年卡咋办": ("elderly-card", []), "狗证去哪办": (None, ["noise", "dog-management"]),
                            "居住证要啥": ("hukou", ["residence-permit"])})
    result = reviewed.run(EvalContext(settings=settings), knowledge=knowledge)
    assert sorted(knowledge.asked) == ["居住证要啥", "狗证去哪办", "老年卡咋办"]
    assert (result.figures["n"], result.figures["hits"], result.figures["hit"]) == (3, 3, 1.0)
    assert result.headline == {"gated_hit": 1.0} and not result.figures["gated"]

    _resolved(engine, "暖气不热", "heating")
    _resolved(engine, "低保咋申请", "dibao")
    knowledge.table["暖气不热"] = ("gas-safety", ["heating-x"])  # wrong first citation, not among the candidates
    result = reviewed.run(EvalContext(settings=settings), knowledge=knowledge)  # 低保 finds nothing
    assert (result.figures["n"], result.figures["hits"], result.figures["hit"]) == (5, 3, 0.6)
    assert result.headline == {"gated_hit": 0.6} and result.figures["gated"]
    assert {f["question"] for f in result.failures} == {"暖气不热", "低保咋申请"}
    checks = runner.check_thresholds({"headline": result.headline, "figures": result.figures},
                                     runner.load_thresholds()["reviewed"])
    assert checks and not all(c["passed"] for c in checks)


def test_the_suite_is_registered_for_eval_all() -> None:
    assert "reviewed" in runner.suite_names()
    assert [t.figure for t in runner.load_thresholds()["reviewed"]] == ["gated_hit"]
