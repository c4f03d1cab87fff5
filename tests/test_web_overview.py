"""The console's 总览 figures (casestore.stats.overview) computed in the database equal the definitions applied by
hand: the median and nearest-rank P90 of every answered case's first-response minutes (the database returns only
the rows at those ranks, this test reads them all), and the mean of the valid star ratings (an integer 1..5;
booleans, floats, strings and out-of-range numbers are not ratings). SQLite and PostgreSQL; the whole street and a
community's grids; each window (today, this week, all time)."""

from __future__ import annotations

import statistics
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Table, select
from sqlalchemy.engine import Engine
from sqlmodel import col

from benchmarks.console_pages import seed_cases
from casestore.db import session_scope
from casestore.models import Case, CaseEvent, Grid
from casestore.stats import SHANGHAI, first_response_minutes, overview, percentile, window_starts

NOW = datetime(2026, 11, 20, 6, 0, tzinfo=UTC)
EVENT: Table = CaseEvent.__table__  # type: ignore[attr-defined]
# (data, is it a star rating)
RATINGS: list[tuple[dict[str, object], bool]] = [
    ({"rating": 5}, True), ({"rating": 1}, True), ({"rating": 4}, True), ({"rating": True}, False),
    ({"rating": 4.0}, False), ({"rating": "3"}, False), ({"rating": 9}, False), ({"rating": 0}, False),
    ({}, False), ({"rating": None}, False)]


def _rate_cases(engine: Engine) -> list[int]:
    """Rating events on the newest cases, some today, some earlier this month; returns the valid stars."""
    with session_scope(engine) as session:
        ids: list[int] = list(session.execute(select(col(Case.id)).order_by(col(Case.id).desc()).limit(40)).scalars())
    rows: list[dict[str, object]] = []
    stars: list[int] = []
    for i, case_id in enumerate(ids):
        data, valid = RATINGS[i % len(RATINGS)]
        rows.append({"case_id": case_id, "at": NOW - timedelta(hours=1 + 20 * (i % 3)), "actor": "resident:1",
                     "action": "confirm" if i % 2 else "reopen", "data": data})
        if valid:
            stars.append(int(data["rating"]))  # type: ignore[call-overload]
    with engine.begin() as conn:
        conn.execute(EVENT.insert(), rows)
    return stars


@pytest.mark.parametrize("backend", ["engine", "pg_engine"])
def test_overview_figures_equal_the_definitions_by_hand(backend: str, request: pytest.FixtureRequest) -> None:
    engine: Engine = request.getfixturevalue(backend)
    seed_cases(engine, n=1501, now=NOW, seed=5)
    stars = _rate_cases(engine)
    with session_scope(engine) as session:
        grids = list(session.execute(select(col(Grid.id), col(Grid.community_id))).all())
        community = grids[0][1]
        scopes: list[list[str] | None] = [None, sorted(str(g) for g, c in grids if c == community)]
        starts = window_starts(NOW, SHANGHAI)
        for scope in scopes:
            o = overview(session=session, now=NOW, scope=scope)
            checked = 0
            for name, start in starts.items():
                minutes = first_response_minutes(session=session, now=NOW, since=start, scope=scope)
                figures = getattr(o, name)
                if not minutes:
                    assert figures.median_response_min is None and figures.p90_response_min is None
                    continue
                checked += 1
                assert figures.median_response_min == round(statistics.median(minutes), 1), (scope, name)
                assert figures.p90_response_min == round(percentile(minutes, 0.9) or 0, 1), (scope, name)
                assert figures.median_response_min != figures.p90_response_min
            assert checked >= 2, "the seeded cases should fill this week and all time"
        whole = overview(session=session, now=NOW)
    # all ratings are in the last two days, so this week's and all time's satisfaction are every valid star
    assert whole.all.ratings == whole.week.ratings == len(stars) == 12
    assert whole.all.satisfaction == round(sum(stars) / len(stars), 2) == 3.33
    assert whole.today.ratings < whole.week.ratings


def test_an_even_and_an_odd_count_of_answers_take_the_right_ranks(engine: Engine) -> None:
    """Median of an even count is the mean of the two middle minutes; P90 is the nearest rank, not interpolated."""
    for n in (10, 11):
        with engine.begin() as conn:
            conn.execute(Case.__table__.delete())  # type: ignore[attr-defined]
        seed_cases(engine, n=n, now=NOW, seed=n)
        with session_scope(engine) as session:
            minutes = first_response_minutes(session=session, now=NOW)
            o = overview(session=session, now=NOW)
        assert o.all.median_response_min == round(statistics.median(minutes), 1)
        assert o.all.p90_response_min == round(minutes[max(0, -(-9 * len(minutes) // 10) - 1)], 1)
