"""Duplicate reports: a new report that matches an open case in the same grid joins it instead of paging again.

Match = same grid, same category, the original still open, created within DUPLICATE_WINDOW, and text
similarity (title + description) at or above DUPLICATE_THRESHOLD. The default similarity is an offline
character-bigram Dice coefficient, which suits short Chinese texts without a tokenizer; the dialogue may
pass an embedding-based `Similarity` instead (then pick its threshold on the eval data).
Must not: page anyone (intake decides; a merged duplicate sends no task push).
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Protocol

from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, col, select

from casestore.cases import apply_action
from casestore.models import Case, CloseReason, Subscription
from casestore.states import OPEN

DUPLICATE_WINDOW = timedelta(hours=24)
# Bigram Dice >= 0.45. Measured on title+description pairs: one problem told twice ("楼道灯不亮 5号楼楼道灯坏了" /
# "楼道灯坏了 5号楼2单元楼道灯不亮" 0.70; "3号楼2单元漏水…" / "3号楼2单元楼道漏水了…" 0.50) is above it; two problems
# of one category ("停水 3号楼停水" / "水压低 12号楼水压很低" 0.14) are far below. Loosely worded repeats
# ("停水 我们楼从早上开始停水" 0.12) are missed: a miss costs one extra page, a false merge hides a problem.
DUPLICATE_THRESHOLD = 0.45
MAX_CANDIDATES = 200  # open cases compared per report: bounded work even in a busy grid

_NOISE = re.compile(r"[\s\W_]+", re.UNICODE)


class Similarity(Protocol):
    def similarity(self, a: str, b: str) -> float:
        """1.0 for the same meaning, 0.0 for unrelated texts."""
        ...


def _bigrams(text: str) -> set[str]:
    s = _NOISE.sub("", text.lower())
    if len(s) < 2:
        return {s} if s else set()
    return {s[i:i + 2] for i in range(len(s) - 1)}


class BigramSimilarity:
    """Dice coefficient of character bigrams; works offline, no model."""

    def similarity(self, a: str, b: str) -> float:
        x, y = _bigrams(a), _bigrams(b)
        if not x or not y:
            return 0.0
        return 2 * len(x & y) / (len(x) + len(y))


def case_text(title: str, description: str) -> str:
    return f"{title} {description}"


def find_duplicate(*, session: Session, grid_id: str | None, category: str, text: str, now: datetime,
                   similarity: Similarity | None = None, window: timedelta = DUPLICATE_WINDOW,
                   threshold: float = DUPLICATE_THRESHOLD) -> tuple[Case, float] | None:
    """The most similar open case this report repeats, with its score, or None."""
    if grid_id is None:
        return None  # without a grid "the same place" is unknown: never merge
    sim = similarity or BigramSimilarity()
    stmt = (select(Case)
            .where(Case.grid_id == grid_id, Case.category == category, col(Case.created_at) >= now - window,
                   col(Case.status).in_([s.value for s in OPEN]), col(Case.duplicate_of_id).is_(None))
            .order_by(col(Case.created_at).desc()).limit(MAX_CANDIDATES))
    best: tuple[Case, float] | None = None
    for candidate in session.exec(stmt):
        score = sim.similarity(text, case_text(candidate.title, candidate.description))
        if score >= threshold and (best is None or score > best[1]):
            best = (candidate, score)
    return best


def subscribe(*, session: Session, case_id: int, resident_id: int) -> None:
    """Follow a case's updates (idempotent)."""
    dialect = session.get_bind().dialect.name
    ins = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(Subscription)
    session.execute(ins.values(case_id=case_id, resident_id=resident_id)
                    .on_conflict_do_nothing(index_elements=["case_id", "resident_id"]))


def list_subscribers(*, session: Session, case_id: int) -> list[int]:
    stmt = select(Subscription.resident_id).where(Subscription.case_id == case_id).order_by(col(Subscription.id))
    return list(session.exec(stmt))


def merge_into(*, session: Session, new_case: Case, original: Case, score: float, actor: str, now: datetime) -> None:
    """Close `new_case` as a duplicate of `original`, subscribe its reporter, note it on the original."""
    apply_action(session=session, case=new_case, action="merge_duplicate", actor=actor, now=now,
                 changes={"duplicate_of_id": original.id, "close_reason": CloseReason.duplicate.value,
                          "closed_at": now, "next_reminder_at": None},
                 data={"duplicate_of": original.code, "similarity": round(score, 3)})
    if new_case.resident_id is not None and new_case.resident_id != original.resident_id:
        subscribe(session=session, case_id=original.id, resident_id=new_case.resident_id)  # type: ignore[arg-type]
    apply_action(session=session, case=original, action="note", actor="system", now=now,
                 note=f"重复诉求 {new_case.code} 已并入", data={"duplicate": new_case.code})
