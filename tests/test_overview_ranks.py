"""The overview's median and P90 first response read at their ranks by each of its paths: the all-time window walked
up to the median and down from the top to the P90 (ix_case_response_minutes), this week's the same with its start as
an expression, and a day with few answered cases ordered on its own (SQLite). Each equals the definition applied by
hand, for small and large counts, nows that put few or many cases in a day, the street and one grid."""

from __future__ import annotations

import statistics
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlmodel import col

from benchmarks.console_pages import seed_cases
from casestore.db import session_scope
from casestore.models import Case, Grid
from casestore.stats import SHANGHAI, first_response_minutes, overview, percentile, window_starts

NOW = datetime(2026, 11, 20, 6, 0, tzinfo=UTC)


def _check(engine: Engine, now: datetime, scope: list[str] | None) -> int:
    """Asserts every window's median and P90 against the minutes read in full; returns how many windows had any."""
    checked = 0
    with session_scope(engine) as session:
        o = overview(session=session, now=now, scope=scope)
        for name, start in window_starts(now, SHANGHAI).items():
            minutes = first_response_minutes(session=session, now=now, since=start, scope=scope)
            figures = getattr(o, name)
            assert figures.median_response_min == (round(statistics.median(minutes), 1) if minutes else None), \
                (now, scope, name, len(minutes))
            assert figures.p90_response_min == (round(percentile(minutes, 0.9) or 0, 1) if minutes else None), \
                (now, scope, name, len(minutes))
            checked += bool(minutes)
    return checked


@pytest.mark.parametrize("backend", ["engine", "pg_engine"])
def test_every_path_to_the_ranks_gives_the_definition(backend: str, request: pytest.FixtureRequest) -> None:
    engine: Engine = request.getfixturevalue(backend)
    seed_cases(engine, n=3000, now=NOW, seed=16)
    with session_scope(engine) as session:
        grid = str(session.execute(select(col(Grid.id)).order_by(col(Grid.id))).scalars().first())
    # 120 days back a day holds a handful of the ~2,900 answered cases (the few path), today about 2%
    for now in (NOW, NOW - timedelta(days=1, hours=7), NOW - timedelta(days=30), NOW - timedelta(days=120)):
        for scope in (None, [grid]):
            assert _check(engine, now, scope) >= 2


@pytest.mark.parametrize("backend", ["engine", "pg_engine"])
def test_small_counts_take_the_right_ranks_up_and_down(backend: str, request: pytest.FixtureRequest) -> None:
    """n = 1..12 answered cases: the P90 read from the top and the median from the bottom meet the definition."""
    engine: Engine = request.getfixturevalue(backend)
    for n in range(1, 13):
        with engine.begin() as conn:
            conn.execute(Case.__table__.delete())  # type: ignore[attr-defined]
        seed_cases(engine, n=n, now=NOW, seed=100 + n)
        _check(engine, NOW, None)
