"""The all-time case sums kept in case_totals by triggers (migration 0013) equal the pass over the cases that they
replace, after random histories written every way the code writes cases (create_case, apply_action,
apply_actions_bulk, an ORM flush, core bulk inserts as the benchmarks and demo seed, deletes), for nows before,
inside and after those histories, the street, one grid and two; and the migration backfills them from existing
cases on both databases."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from alembic import command
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, func, literal, select, update
from sqlalchemy.engine import Engine
from sqlmodel import Session, col

from benchmarks.console_pages import seed_cases
from casestore.cases import PlannedAction, apply_action, apply_actions_bulk, create_case
from casestore.db import alembic_config, make_engine, session_scope, upgrade
from casestore.models import Case, CaseCreate, CaseEvent, CaseTotal, Grid
from casestore.org import sync_org
from casestore.states import TRANSITIONS
from casestore.stats import _all_time_sums, _case_filters, _case_rules, _case_sums, overview
from policies.models import Policies

T0 = datetime(2026, 11, 1, 8, 0, tzinfo=UTC)
GRIDS = ("FU01", "FU02", None)  # None: a case not placed in any grid
_FIELDS = ("response_due_at", "resolve_due_at", "first_response_at", "resolved_at")


def _at(hours: int | None) -> datetime | None:
    return None if hours is None else T0 + timedelta(hours=hours)


hours = st.sampled_from([None, -2, 0, 1, 6, 30])  # few values: a response exactly at its due time is frequent
changes = st.fixed_dictionaries({}, optional={
    **dict.fromkeys(_FIELDS, hours),
    "close_reason": st.sampled_from([None, "rated", "auto_closed_without_rating", "duplicate", "closed_by_staff"]),
    "reopen_count": st.integers(min_value=0, max_value=2),
    "grid_id": st.sampled_from(GRIDS),
    "duplicate_of": st.booleans(),  # True: merged into another case, False: not merged
})
step = st.one_of(
    st.tuples(st.just("create"), st.sampled_from(GRIDS), st.integers(0, 20), hours, hours),
    st.tuples(st.just("act"), st.integers(0, 1000), st.integers(0, 1000), changes),
    st.tuples(st.just("bulk"), st.lists(st.integers(0, 1000), min_size=1, max_size=3, unique=True),
              st.integers(0, 1000), changes),
    st.tuples(st.just("orm"), st.integers(0, 1000), changes),
    st.tuples(st.just("seed"), st.integers(1, 4)),
    st.tuples(st.just("delete"), st.integers(0, 1000)),
)


def _values(case_ids: list[int], pick: int, change: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {k: _at(v) if k in _FIELDS else v for k, v in change.items() if k != "duplicate_of"}
    if "duplicate_of" in change:
        out["duplicate_of_id"] = case_ids[pick % len(case_ids)] if change["duplicate_of"] else None
    return out


def _apply(session: Session, op: tuple[Any, ...], seq: list[int]) -> None:
    ids: list[int] = list(session.execute(select(col(Case.id)).order_by(col(Case.id))).scalars())
    kind = op[0]
    if kind == "create":
        _, grid, offset, due_resp, due_res = op
        seq[0] += 1
        create_case(session=session, case_in=CaseCreate(intent="help", category="environment", urgency="normal",
                                                        title="楼道灯不亮", description="楼道灯不亮", grid_id=grid),
                    code=f"T{seq[0]:06d}", now=T0 + timedelta(hours=offset), actor="resident:1",
                    extra={"response_due_at": _at(due_resp), "resolve_due_at": _at(due_res)})
        session.flush()
        return
    if kind == "seed":
        session.commit()
        seed_cases(session.get_bind(), n=op[1], now=T0 + timedelta(days=3), seed=len(ids))  # type: ignore[arg-type]
        return
    if not ids:
        return
    if kind == "delete":
        victim = ids[op[1] % len(ids)]
        session.execute(update(Case).where(col(Case.duplicate_of_id) == victim).values(duplicate_of_id=None))
        session.execute(delete(CaseEvent).where(col(CaseEvent.case_id) == victim))
        session.execute(delete(Case).where(col(Case.id) == victim))
        return
    if kind == "orm":  # e.g. a case placed in another grid, saved by a flush rather than apply_action
        case = session.get(Case, ids[op[1] % len(ids)])
        assert case is not None
        for key, value in _values(ids, op[1] + 1, op[2]).items():
            setattr(case, key, value)
        session.add(case)
        session.flush()
        return
    targets = [ids[i % len(ids)] for i in (op[1] if kind == "bulk" else [op[1]])]
    planned: list[PlannedAction] = []
    for case_id in dict.fromkeys(targets):
        case = session.get(Case, case_id)
        assert case is not None
        session.refresh(case)
        legal = sorted(a for a, move in TRANSITIONS.items() if case.status in move.sources)
        action = legal[op[2] % len(legal)]
        values = _values(ids, op[2], op[3])
        if kind == "act":
            apply_action(session=session, case=case, action=action, actor="worker:1", now=T0, changes=values)
        else:
            planned.append(PlannedAction(case_id=case_id, code=case.code, version=case.version, status=case.status,
                                         action=action, changes=values))
    apply_actions_bulk(session=session, actions=planned, actor="system", now=T0)


def _check(session: Session) -> None:
    grids = ["FU01", "FU02"]
    for now in (T0 - timedelta(hours=1), T0 + timedelta(hours=3), T0 + timedelta(days=9)):
        for scope in (None, {grids[0]}, set(grids)):
            kept = _all_time_sums(session, now=now, scope=scope)
            passed = _case_sums(session, literal(None), [], _case_rules(now),
                                _case_filters(since=None, until=now, scope=scope))[None]
            assert asdict(kept) == asdict(passed), (now, scope)


@pytest.fixture(params=["engine", "pg_engine"])
def store(request: pytest.FixtureRequest) -> Iterator[Engine]:
    yield request.getfixturevalue(request.param)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(history=st.lists(step, min_size=1, max_size=14))
def test_kept_totals_equal_the_pass_over_the_cases(store: Engine, history: list[tuple[Any, ...]]) -> None:
    with session_scope(store) as session:  # each example starts from no cases (the delete trigger empties them)
        session.execute(update(Case).values(duplicate_of_id=None))
        session.execute(delete(CaseEvent))
        session.execute(delete(Case))
    seq = [0]
    for op in history:
        with session_scope(store) as session:
            _apply(session, op, seq)
    with session_scope(store) as session:
        _check(session)


def test_a_rolled_back_change_leaves_the_totals_alone(engine: Engine) -> None:
    seed_cases(engine, n=40, now=T0)
    before = _snapshot(engine)
    with pytest.raises(RuntimeError), session_scope(engine) as session:
        case = session.execute(select(Case).where(col(Case.status).in_(["resolved", "closed"]),
                                                  col(Case.duplicate_of_id).is_(None))).scalars().first()
        assert case is not None
        apply_action(session=session, case=case, action="reopen", actor="worker:1", now=T0,
                     changes={"reopen_count": case.reopen_count + 1})
        assert _snapshot(engine, session) != before  # the trigger wrote in this transaction...
        raise RuntimeError("the rest of the transaction failed")
    assert _snapshot(engine) == before  # ...and is undone with it


def _snapshot(engine: Engine, session: Session | None = None) -> list[tuple[Any, ...]]:
    stmt = select(CaseTotal.__table__).order_by("grid_key", "shard")  # type: ignore[attr-defined]
    if session is not None:
        return [tuple(row) for row in session.execute(stmt).all()]
    with session_scope(engine) as s:
        return [tuple(row) for row in s.execute(stmt).all()]


@pytest.mark.parametrize("url_fixture", ["settings", "pg_url"])
def test_the_migration_backfills_the_totals_from_existing_cases(url_fixture: str, policies: Policies,
                                                                request: pytest.FixtureRequest) -> None:
    value = request.getfixturevalue(url_fixture)
    url: str = value.database_url if url_fixture == "settings" else value
    upgrade(url, "0012")
    engine = make_engine(url)
    try:
        with session_scope(engine) as session:
            sync_org(session=session, grids=policies.grids)
        seed_cases(engine, n=400, now=T0, seed=13)
        upgrade(url)
        with session_scope(engine) as session:
            assert session.execute(select(func.count()).select_from(CaseTotal)).scalar_one() > 0
            grid = str(session.execute(select(col(Grid.id)).order_by(col(Grid.id))).scalars().first())
            for now in (T0 - timedelta(days=20), T0):
                for scope in (None, {grid}):
                    kept = _all_time_sums(session, now=now, scope=scope)
                    passed = _case_sums(session, literal(None), [], _case_rules(now),
                                        _case_filters(since=None, until=now, scope=scope))[None]
                    assert asdict(kept) == asdict(passed) and kept.cases > 0
            street = _all_time_sums(session, now=T0, scope=None)
            assert street.cases + street.duplicates == 400
            assert overview(session=session, now=T0).all.cases == street.cases
        command.downgrade(alembic_config(url), "0012")  # and back: the table, index and triggers go
        seed_cases(engine, n=3, now=T0, seed=14)
    finally:
        engine.dispose()
