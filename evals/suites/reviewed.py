"""Reviewed eval: the questions the bot once missed and an admin then fixed must now find their document.

Data: the configured database's review queue (casestore.review), every resolved item that names its right document
(`resolved_doc`), one per distinct (question, document). Each question is asked of the real knowledge service (the
deployment's FAQ, scope examples and lexicon included, so the fix is what is measured) on an index of
settings.knowledge_dir under var_dir/eval/ (the product's own index is not touched). A hit: the answer's first
citation is the resolved document, or the document is among the clarification's candidates (`Answer.clarify`).
No database, no review table or no resolved item: n = 0 and the suite passes, with a note saying which. The gate
(`gated_hit`) is the hit rate from five questions on; below that it is 1.0, too few to judge.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import inspect
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session

from casestore.db import DatabaseConfigError, make_engine
from casestore.review import list_resolved_with_doc
from evals.core import EvalContext, SuiteResult
from evals.fixtures import settings_for
from knowledge.service import KnowledgeRuntime
from knowledge.types import Answer, Knowledge

MIN_GATED = 5  # below this many reviewed questions the hit rate is not gated


@dataclass(frozen=True)
class Reviewed:
    item_id: int
    question: str
    doc: str
    resolution: str


def load_reviewed(database_url: str) -> tuple[list[Reviewed], str]:
    """The reviewed questions of the database at `database_url`, and a note when there are none (and why)."""
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite" and url.database and not Path(url.database).exists():
        return [], f"no database at {url.database}"  # make_engine would create an empty file
    try:
        engine = make_engine(database_url)
    except DatabaseConfigError as exc:
        return [], f"no usable database: {exc}"
    try:
        if not inspect(engine).has_table("reviewitem"):
            return [], "the database has no review queue (run quanbot db upgrade)"
        with Session(engine) as session:
            items = list_resolved_with_doc(session=session)
    except (DatabaseConfigError, SQLAlchemyError) as exc:
        return [], f"database not readable: {type(exc).__name__}: {' '.join(str(exc).split())[:200]}"
    finally:
        engine.dispose()
    seen: set[tuple[str, str]] = set()
    out: list[Reviewed] = []
    for item in items:
        assert item.id is not None and item.resolved_doc is not None
        key = (item.question, item.resolved_doc)
        if key not in seen:
            seen.add(key)
            out.append(Reviewed(item.id, item.question, item.resolved_doc, item.resolution or ""))
    return out, "" if out else "no resolved review item names its document yet"


def is_hit(answer: Answer, doc: str) -> bool:
    """The first citation is `doc`, or `doc` is one of the clarification's candidates."""
    return bool(answer.citations and answer.citations[0].doc_id == doc) or any(c.doc_id == doc
                                                                              for c in answer.clarify)


def run(ctx: EvalContext, *, knowledge: Knowledge | None = None) -> SuiteResult:
    """Ask each reviewed question; `knowledge` replaces the service built from settings (tests)."""
    items, note = load_reviewed(ctx.settings.database_url)
    figures: dict[str, Any] = {"n": len(items), "hits": 0, "hit": None, "gated": len(items) >= MIN_GATED,
                               "by_resolution": {}}
    if note:
        figures["note"] = note
    if not items:
        return SuiteResult(name="reviewed", figures=figures, headline={"gated_hit": 1.0})
    if knowledge is None:
        settings = settings_for(ctx.settings, ctx.mode,
                                chroma_dir=Path(ctx.settings.var_dir) / "eval" / "reviewed-chroma")
        runtime = KnowledgeRuntime(settings, faq_path=Path(settings.faq_path))
        runtime.ingest()  # incremental: unchanged documents are skipped
        knowledge = runtime.service()
    failures: list[dict[str, Any]] = []
    by_resolution: dict[str, dict[str, int]] = {}
    hits = 0
    for done, item in enumerate(items, start=1):
        if ctx.progress:
            ctx.progress(f"reviewed [{ctx.mode}]", done, len(items))
        answer = knowledge.ask(item.question)
        hit = is_hit(answer, item.doc)
        hits += hit
        tally = by_resolution.setdefault(item.resolution or "?", {"n": 0, "hits": 0})
        tally["n"] += 1
        tally["hits"] += hit
        if not hit:
            failures.append({"id": item.item_id, "question": item.question, "expected": item.doc,
                             "resolution": item.resolution, "mode": answer.mode,
                             "cited": [c.doc_id for c in answer.citations],
                             "clarify": [c.doc_id for c in answer.clarify], "answer": answer.text[:300]})
    rate = round(hits / len(items), 4)
    figures.update(hits=hits, hit=rate, by_resolution=by_resolution)
    if not figures["gated"]:
        figures["note"] = f"only {len(items)} reviewed question(s): the hit rate is gated from {MIN_GATED} on"
    return SuiteResult(name="reviewed", figures=figures, headline={"gated_hit": rate if figures["gated"] else 1.0},
                       failures=failures)
