"""Loop metrics: are the city's promises kept? The one definition of each figure, for `quanbot stats`, the demo
summary, the admin's /stats and the console.

Every figure is defined here once; callers never recompute one. Two bases, each named where it is shown:
- case figures are over the cases opened in the window (merged duplicates counted only as "duplicates");
- event figures (escalations, ratings, questions) are over what happened in the window;
- `overdue_now` is a snapshot: every open case past a due time at `now`, whenever it was opened.

Definitions:
- first-response minutes: wall-clock minutes from the start of the case's current handling cycle (its report, or
  the reopen / transfer that restarted the clock) to its first response in that cycle; median and P90 (nearest
  rank: 90% of cases were answered within it);
- on-time response rate: first response by `response_due_at`; a case still unanswered past due counts as late,
  one not yet due is left out. On-time resolution rate: the same with `resolved_at` and `resolve_due_at`;
- overdue: open and past its response or resolution due time;
- reopen rate: cases reopened / cases ever resolved;
- satisfaction: the mean of every star rating residents gave (1–5, each rating counted, low ones that reopened
  a case included); rating response rate: cases closed rated / (rated + auto-closed without a rating): silence is
  not satisfaction;
- escalations: escalation events (and the cases they concern);
- answered questions / refusals: knowledge answers given / questions the knowledge base had no answer for
  (`casestore.questions` records both; refusals before it are the review queue's not_found items).
Rounding is part of the definition (minutes to 0.1, rates to 0.0001, satisfaction to 0.01), so every output agrees.
Must not: change anything.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Collection, Iterable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Float, Integer, and_, case, cast, func, literal, literal_column, or_, select, true, union_all
from sqlalchemy.dialects import postgresql
from sqlmodel import Session, col
from sqlmodel import select as select_model

from casestore.models import (
    AuditEvent,
    Case,
    CaseEvent,
    CaseStatus,
    CaseTotal,
    CloseReason,
    Grid,
    Hotspot,
    Resident,
    ReviewItem,
    Wish,
    WishStatus,
    Worker,
)
from casestore.questions import QUESTION_ACTION, Outcome
from casestore.states import OPEN

_OPEN = {s.value for s in OPEN}
RATING_ACTIONS = ("confirm", "reopen")
SHANGHAI = ZoneInfo("Asia/Shanghai")

# The Chinese label of each figure, as every output shows it.
LABELS: dict[str, str] = {
    "cases": "新建工单（不含合并的重复）",
    "median_response_min": "首次响应中位数（分钟，自然时间，按当前办理周期）",
    "p90_response_min": "首次响应 P90（分钟，自然时间，按当前办理周期）",
    "on_time_response": "按时响应率",
    "on_time_resolution": "按时办结率",
    "open": "在办",
    "overdue": "超时（本期新建工单中）",
    "overdue_now": "当前超时（全部在办工单）",
    "escalations": "超时升级（次，本期发生）",
    "escalated_cases": "超时升级（件）",
    "satisfaction": "满意度（本期每次评价的平均分，含引起退回的低分）",
    "ratings": "收到评价（次）",
    "rating_response_rate": "评价率（评价后办结 ÷（评价后办结 + 超时未评价自动办结））",
    "reopen_rate": "退回重办率（退回过的 ÷ 办结过的）",
    "answered_questions": "政策问答：已回答（本期）",
    "refusals": "政策问答：知识库未找到（本期）",
    "duplicates": "合并的重复工单",
    "hotspots": "热点",
}
WINDOW_LABELS = {"today": "今日", "week": "本周（自周一起）", "all": "全部时间"}


@dataclass
class Figures:
    key: str
    name: str
    cases: int = 0
    median_response_min: float | None = None
    p90_response_min: float | None = None
    on_time_response: float | None = None
    on_time_resolution: float | None = None
    open: int = 0
    overdue: int = 0
    reopen_rate: float | None = None
    satisfaction: float | None = None
    rating_response_rate: float | None = None
    duplicates: int = 0
    hotspots: int = 0
    responded: int = 0
    resolved: int = 0
    ratings: int = 0
    escalations: int = 0
    escalated_cases: int = 0

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


@dataclass
class _Acc:
    """One group's parts of every figure in one window, from SQL: sums over cases and events, the count of
    answered cases and the response minutes at the ranks the median and P90 need (rank -> minutes)."""

    cases: int = 0
    duplicates: int = 0
    resp_n: int = 0
    resp_ok: int = 0
    res_n: int = 0
    res_ok: int = 0
    open: int = 0
    overdue: int = 0
    resolved: int = 0
    resolved_ever: int = 0
    reopened: int = 0
    answered: int = 0
    auto_closed: int = 0
    responded: int = 0
    hotspots: int = 0
    escalations: int = 0
    escalated_cases: int = 0
    rating_n: int = 0
    rating_sum: int = 0
    ranked: dict[int, float] = field(default_factory=dict)


# ---------------------------------------------------------------- the definitions
def _rank(q: float, n: int) -> int:
    """The nearest rank (1..n) of the q percentile of n values: the smallest with at least q of them at or below."""
    return max(1, min(n, math.ceil(q * n)))


def percentile(values: Iterable[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..1): the smallest value with at least q of the values at or below it."""
    ordered = sorted(values)
    return ordered[_rank(q, len(ordered)) - 1] if ordered else None


def _median_ranks(n: int) -> tuple[int, int]:
    """The ranks (1..n) whose mean is the median (the same rank twice when n is odd)."""
    return (n + 1) // 2, n // 2 + 1


def _minutes(x: float | None) -> float | None:
    return None if x is None else round(x, 1)


def _rate(ok: int, n: int) -> float | None:
    return round(ok / n, 4) if n else None


def _flag(condition: Any) -> Any:
    """How many rows meet `condition` (a NULL condition counts as not met). As count(*) FILTER, which both
    databases evaluate without building and summing a CASE per row per figure."""
    return func.count(literal_column("*")).filter(condition)


def is_open() -> Any:
    return col(Case.status).in_(sorted(_OPEN))


def _not_merged() -> Any:
    """In a WHERE: not a merged duplicate. Written as an expression so that SQLite, which keeps no statistics
    on NULLs, scans the table (or ix_case_created) instead of walking ix_case_duplicate_of_id row by row for the
    ~97% of cases that are no duplicate."""
    return case((col(Case.duplicate_of_id).is_(None), 1), else_=0) == 1


def _past_due(now: datetime) -> tuple[Any, Any]:
    """Past the response due time while unanswered, and past the resolution due time (open or not)."""
    past_response = and_(col(Case.first_response_at).is_(None), col(Case.response_due_at).is_not(None),
                         col(Case.response_due_at) < now)
    past_resolution = and_(col(Case.resolve_due_at).is_not(None), col(Case.resolve_due_at) < now)
    return past_response, past_resolution


def overdue_condition(now: datetime, *, open_: Any = None) -> Any:
    """The rule for "overdue" as SQL (the board filters with it too): open and past its response due time
    (unanswered) or its resolution due time. `open_`: is_open() in another form (as the caller's WHERE needs)."""
    return and_(is_open() if open_ is None else open_, or_(*_past_due(now)))


def _case_rules(now: datetime) -> list[tuple[str, Any]]:
    """Each summed part of the case figures, as (the _Acc field, the SQL condition a case counts under). A new
    case figure adds its part here (and its field to _Acc)."""
    real = col(Case.duplicate_of_id).is_(None)  # in a sum: _not_merged() is for WHERE
    due_resp, due_res = col(Case.response_due_at), col(Case.resolve_due_at)
    first, resolved = col(Case.first_response_at), col(Case.resolved_at)
    return [
        ("cases", real),
        ("duplicates", ~real),
        ("resp_n", and_(real, due_resp.is_not(None), or_(first.is_not(None), and_(due_resp < now, is_open())))),
        ("resp_ok", and_(real, due_resp.is_not(None), first.is_not(None), first <= due_resp)),
        ("res_n", and_(real, due_res.is_not(None), or_(resolved.is_not(None), and_(due_res < now, is_open())))),
        ("res_ok", and_(real, due_res.is_not(None), resolved.is_not(None), resolved <= due_res)),
        ("open", and_(real, is_open())),
        ("overdue", and_(real, overdue_condition(now))),
        ("resolved", and_(real, resolved.is_not(None))),
        ("resolved_ever", and_(real, or_(resolved.is_not(None), col(Case.reopen_count) > 0,
                                         col(Case.status) == CaseStatus.closed.value))),
        ("reopened", and_(real, col(Case.reopen_count) > 0)),
        ("answered", and_(real, col(Case.close_reason) == CloseReason.rated.value)),
        ("auto_closed", and_(real, col(Case.close_reason) == CloseReason.auto_closed_without_rating.value)),
        ("responded", and_(real, first.is_not(None))),
    ]


def _response_minutes_sql(dialect: str) -> Any:
    """Minutes from the current cycle's start (clock_started_at, else the report) to the first response, never
    below zero."""
    start = func.coalesce(col(Case.clock_started_at), col(Case.created_at))
    # constants written out, not bound: this is the expression of ix_case_response_minutes (migration 0012), and a
    # database matches an index expression only parameter-free. Change one, recreate the other.
    if dialect == "postgresql":  # as float8: PostgreSQL orders doubles far faster than numeric
        seconds = func.extract("epoch", col(Case.first_response_at) - start)
        raw: Any = cast(seconds / literal_column("60.0", Float), Float)
    else:
        raw = (func.julianday(col(Case.first_response_at)) - func.julianday(start)) * literal_column("1440.0", Float)
    zero = literal_column("0.0", Float)
    return case((raw < zero, zero), else_=raw)


def _star_sql(dialect: str) -> tuple[Any, Any]:
    """(is this event's data a star rating: an integer 1..5, not a bool, a float or a string; its stars)."""
    if dialect == "postgresql":
        rating = col(CaseEvent.data).op("->")("rating")
        text_ = col(CaseEvent.data).op("->>")("rating")
        ok = and_(func.json_typeof(rating) == "number", text_.op("~")("^[1-5]$"))
        return ok, cast(text_, Integer)
    return (and_(func.json_type(col(CaseEvent.data), "$.rating") == "integer",
                 func.json_extract(col(CaseEvent.data), "$.rating").between(1, 5)),
            func.json_extract(col(CaseEvent.data), "$.rating"))


def _case_filters(*, since: datetime | None, until: datetime | None, scope: Collection[str] | None) -> list[Any]:
    where: list[Any] = []
    if since is not None:
        where.append(col(Case.created_at) >= since)
    if until is not None and since is None:
        # all history is read anyway; as a plain range SQLite (no range statistics) would walk ix_case_created
        # row by row instead of scanning the table
        where.append(case((col(Case.created_at) > until, 1), else_=0) == 0)
    elif until is not None:
        where.append(col(Case.created_at) <= until)
    if scope is not None:
        where.append(col(Case.grid_id).in_(sorted(scope)))
    return where


def _event_filters(*, since: datetime | None, until: datetime | None, scope: Collection[str] | None) -> list[Any]:
    where: list[Any] = []
    if since is not None:
        where.append(col(CaseEvent.at) >= since)
    if until is not None:
        where.append(col(CaseEvent.at) <= until)
    if scope is not None:
        where.append(col(Case.grid_id).in_(sorted(scope)))
    return where


def _rows(session: Session, stmt: Any) -> list[Any]:
    return list(session.execute(stmt).all())


Windows = dict[str, datetime | None]  # window name -> its start (None: from the beginning); each ends at `now`


def _earliest(windows: Windows) -> datetime | None:
    starts = list(windows.values())
    return None if any(s is None for s in starts) else min(s for s in starts if s is not None)


def _inside(column: Any, start: datetime | None) -> Any:
    return true() if start is None else column >= start


def _case_sums(session: Session, keycol: Any, group: list[Any], rules: list[tuple[str, Any]],
               where: list[Any]) -> dict[Any, _Acc]:
    """The case figures' parts (`rules`) summed over the cases `where` selects, per value of `keycol`."""
    out: dict[Any, _Acc] = {}
    for k, *sums in _rows(session, select(keycol, *(_flag(c) for _, c in rules)).where(*where).group_by(*group)):
        acc = out[k] = _Acc()
        for (name, _), value in zip(rules, sums, strict=True):
            setattr(acc, name, int(value or 0))
    return out


def _aggregate(session: Session, key: Any, *, now: datetime, windows: Windows, scope: Collection[str] | None,
               events: bool = True) -> dict[str, dict[Any, _Acc]]:
    """Every figure's parts per window and per value of `key` (a Case column, or None for one group keyed None):
    one pass over the cases per window (all time ungrouped: the kept totals instead, `_all_time_sums`), the
    hotspots through their index, the response minutes at the ranks the median and P90 need, one pass over the
    events."""
    group = [key] if key is not None else []
    keycol = key if key is not None else literal(None)
    dialect = session.get_bind().dialect.name
    rules = _case_rules(now)
    cases_where = _case_filters(since=_earliest(windows), until=now, scope=scope)
    out: dict[str, dict[Any, _Acc]] = {w: {} for w in windows}
    for w, start in windows.items():  # one pass per window: the bounded ones read only their days (ix_case_created)
        if start is None and key is None:  # all time, one group: from the kept totals, not a pass over every case
            out[w][None] = _all_time_sums(session, now=now, scope=scope)
            continue
        out[w] = _case_sums(session, keycol, group, rules, _case_filters(since=start, until=now, scope=scope))
    hotspots = [func.count(func.distinct(case((_inside(col(Case.created_at), start), col(Case.cluster_id)),
                                              else_=None))) for start in windows.values()]
    in_hotspot = col(Case.cluster_id).in_(select(col(Hotspot.id)))  # through ix_case_cluster_id: few cases
    for k, *counts in _rows(session, select(keycol, *hotspots).where(in_hotspot, *cases_where, _not_merged())
                            .group_by(*group)):
        for w, n in zip(windows, counts, strict=True):
            if n:
                out[w].setdefault(k, _Acc()).hotspots = int(n)
    _ranked_minutes(session, out, key, now=now, windows=windows, where=cases_where, scope=scope, dialect=dialect)
    if events:
        _event_parts(session, out, keycol, group, now=now, windows=windows, scope=scope, dialect=dialect)
    return out


# the clock-free parts kept in case_totals (migration 0013), each the _Acc field it is or is half of
_KEPT = tuple(c.name for c in CaseTotal.__table__.columns if not c.primary_key)  # type: ignore[attr-defined]


def _open_real() -> Any:
    """In a WHERE: open and not a merged duplicate, as the one expression that is ix_case_open_due's WHERE
    (migration 0013; constants written out, as a database matches a partial index's WHERE only parameter-free)."""
    open_ = col(Case.status).in_([literal_column(f"'{s}'") for s in sorted(_OPEN)])
    one = literal_column("1", Integer)
    return case((and_(open_, col(Case.duplicate_of_id).is_(None)), one), else_=literal_column("0", Integer)) == one


def _all_time_sums(session: Session, *, now: datetime, scope: Collection[str] | None) -> _Acc:
    """The all-time pass's sums (`_case_rules` over the cases opened up to `now`) without reading every case: the
    clock-free parts from case_totals (a few rows per grid), the parts that depend on `now` from the open cases
    (ix_case_open_due alone), less every part of the cases opened after `now` (ix_case_created; none unless a fake
    clock lags). resp_n and res_n split on whether the case was answered / resolved, so the halves add up to them;
    the totals hold no other condition on time, and "overdue" needs an open case."""
    totals = [func.coalesce(func.sum(getattr(CaseTotal, name)), 0) for name in _KEPT]
    kept = select(*totals).where(*([] if scope is None else [col(CaseTotal.grid_key).in_(sorted(scope))]))
    sums: list[Any] = list(session.execute(kept).one())
    parts = {name: int(v) for name, v in zip(_KEPT, sums, strict=True)}
    acc = _Acc()
    for name, value in parts.items():
        if name not in ("resp_done", "res_done"):
            setattr(acc, name, value)
    late_response, late_resolution = _past_due(now)
    clock = (select(_flag(late_response), _flag(and_(col(Case.resolved_at).is_(None), late_resolution)),
                    _flag(or_(late_response, late_resolution)))
             .where(_open_real(), *_case_filters(since=None, until=None, scope=scope)))
    resp_late, res_late, overdue = (int(v or 0) for v in session.execute(clock).one())
    acc.resp_n, acc.res_n, acc.overdue = parts["resp_done"] + resp_late, parts["res_done"] + res_late, overdue
    rules = _case_rules(now)
    later = _case_sums(session, literal(None), [], rules,
                       [col(Case.created_at) > now, *_case_filters(since=None, until=None, scope=scope)])[None]
    for name, _ in rules:
        setattr(acc, name, getattr(acc, name) - getattr(later, name))
    return acc


# a window with under 1/_FEW of the most answered cases orders its own (through ix_case_created) on SQLite; measured
# at 100k cases: the day's ~300 in ~1 ms instead of ~15, while the week's ~7k were slower that way (~50 vs ~32 ms)
_FEW = 50


def _ranks(n: int) -> set[int]:
    """The ranks (1..n) of the response minutes that the median and the P90 are made of."""
    return {*_median_ranks(n), _rank(0.9, n)}


def _ranked_minutes(session: Session, out: dict[str, dict[Any, _Acc]], key: Any, *, now: datetime,
                    windows: Windows, where: list[Any], scope: Collection[str] | None, dialect: str) -> None:
    """The response minutes at the median's and P90's ranks of each (window, group), into `_Acc.ranked`.
    Ungrouped (the overview), the database orders them and returns just those rows (percentile_disc on
    PostgreSQL, row_number elsewhere), so 100k cases send back a handful; grouped, each group's minutes are
    fetched and ordered here."""
    minutes = _response_minutes_sql(dialect)
    answered = [*where, _not_merged(), col(Case.first_response_at).is_not(None)]
    if key is None:
        most = max((a.responded for group in out.values() for a in group.values()), default=0)
        for w, start in windows.items():
            acc = out[w].get(None)
            if acc is None or not acc.responded:
                continue
            inside = _case_filters(since=start, until=now, scope=scope)
            n = acc.responded
            answered_in = [*inside, _not_merged(), col(Case.first_response_at).is_not(None)]
            if dialect != "postgresql" and n * _FEW < most:
                # a few cases (today): SQLite would scan all of ix_case_response_minutes (it has no statistics to
                # see that the range is small; ~15 ms at 100k); "answered" as an expression leaves it that partial
                # index out, so it reads the day from ix_case_created and orders those few (~1 ms)
                answered_in = [*inside, _not_merged(),
                               case((col(Case.first_response_at).is_(None), 0), else_=1) == 1]
            if start is None:
                if dialect == "postgresql":  # plain predicates: estimated right, so the index's order is taken
                    answered_in = [col(Case.first_response_at).is_not(None), col(Case.duplicate_of_id).is_(None),
                                   col(Case.created_at) <= now, *_case_filters(since=None, until=None, scope=scope)]
                acc.ranked.update(_minutes_at_ranks(session, minutes, n, where=answered_in))
                continue
            if dialect == "postgresql":
                # one ordering for every rank: percentile_disc(f) takes rank ceil(f * n), so f = (rank - 0.5) / n
                ranks = sorted(_ranks(n))
                stmt = select(func.percentile_disc(postgresql.array([(r - 0.5) / n for r in ranks]))
                              .within_group(minutes)).where(*answered_in)
                found: list[Any] = list(session.execute(stmt).scalar_one() or [])
                acc.ranked.update({r: float(m) for r, m in zip(ranks, found, strict=True)})
                continue
            if n * _FEW >= most:
                # not a few (this week): walked in order on ix_case_response_minutes, the window's start as an
                # expression so that SQLite does not take ix_case_created and sort (~30 ms, the whole index
                # numbered, -> ~15 ms)
                since = case((col(Case.created_at) >= start, 1), else_=0) == 1
                answered_in = [since, *_case_filters(since=None, until=now, scope=scope), _not_merged(),
                               col(Case.first_response_at).is_not(None)]
                acc.ranked.update(_minutes_at_ranks(session, minutes, n, where=answered_in))
                continue
            # a few, in one ordering, numbered; only the rows at the wanted ranks come back
            numbered = (select(minutes.label("m"), func.row_number().over(order_by=minutes).label("rn"))
                        .where(*answered_in).subquery())
            at_ranks: list[Any] = _rows(session, select(numbered.c.m, numbered.c.rn)
                                        .where(numbered.c.rn.in_(sorted(_ranks(n)))))
            acc.ranked.update({int(rn): float(m) for m, rn in at_ranks})
        return
    rows: list[Any] = _rows(session, select(key, col(Case.created_at), minutes).where(*answered))
    for w, start in windows.items():
        per: dict[Any, list[float]] = {}
        for k, created, m in rows:
            if start is None or created >= start:
                per.setdefault(k, []).append(float(m))
        for k, values in per.items():
            values.sort()
            acc = out[w].setdefault(k, _Acc())
            acc.ranked.update({r: values[r - 1] for r in _ranks(len(values))})


def _minutes_at_ranks(session: Session, minutes: Any, n: int, *, where: list[Any]) -> dict[int, float]:
    """All time (and this week on SQLite): the response minutes at the median's and P90's ranks of the n answered
    cases `where` selects, read in order from ix_case_response_minutes (migration 0012: the answered cases'
    minutes, with the columns the filters and the expression read, so neither database touches the table) at
    their offsets, instead of ordering every answered case per request: the median walking up, the P90 walking
    down from the top (n - rank + 1 rows instead of rank: at 100k cases SQLite's all time ~27 -> ~12 ms). The k-th
    value in order is the same whichever index, direction or sort gave the order, so the figures are unchanged; n
    is the pass's count of the same cases. On SQLite the filters are those of the other passes (no plain range
    on created_at, no IS NULL on duplicate_of_id), which leaves its planner this index for the ORDER BY; on
    PostgreSQL plain ones, whose selectivity it estimates (as CASE expressions it guesses one row, and then
    sorting that row looks cheaper than walking the index)."""
    lo, hi = _median_ranks(n)
    parts: list[Any] = []
    for first, count in ((lo, hi - lo + 1), (_rank(0.9, n), 1)):
        stmt = select(minutes.label("m"), literal(first).label("r")).select_from(Case).where(*where)
        if first > n // 2:  # the P90 from the top: the index walked down n - rank + 1 rows instead of up `rank`
            stmt = stmt.order_by(minutes.desc()).offset(n - (first + count - 1)).limit(count)
        else:
            stmt = stmt.order_by(minutes).offset(first - 1).limit(count)
        parts.append(stmt.subquery().select())
    found: dict[int, float] = {}
    for first, values in _group_by_rank(_rows(session, union_all(*parts))).items():
        found.update({first + i: m for i, m in enumerate(sorted(values))})
    return found


def _group_by_rank(rows: list[Any]) -> dict[int, list[float]]:
    """The minutes each part of _minutes_at_ranks found, by the rank it starts at."""
    out: dict[int, list[float]] = {}
    for m, r in rows:
        out.setdefault(int(r), []).append(float(m))
    return out


def _event_parts(session: Session, out: dict[str, dict[Any, _Acc]], keycol: Any, group: list[Any], *,
                 now: datetime, windows: Windows, scope: Collection[str] | None, dialect: str) -> None:
    """Star ratings (count and sum) and escalations (events and cases) per window, in one pass over the events."""
    is_star, stars = _star_sql(dialect)
    rating = and_(col(CaseEvent.action).in_(RATING_ACTIONS), is_star)
    escalation = col(CaseEvent.action) == "escalate"
    columns: list[Any] = []
    for start in windows.values():
        inside = _inside(col(CaseEvent.at), start)
        columns += [_flag(and_(inside, rating)),
                    func.coalesce(func.sum(case((and_(inside, rating), stars), else_=0)), 0),
                    _flag(and_(inside, escalation)),
                    func.count(func.distinct(case((and_(inside, escalation), col(CaseEvent.case_id)), else_=None)))]
    stmt = (select(keycol, *columns).join(Case, col(Case.id) == col(CaseEvent.case_id))
            .where(col(CaseEvent.action).in_((*RATING_ACTIONS, "escalate")),
                   *_event_filters(since=_earliest(windows), until=now, scope=scope))
            .group_by(*group))
    for k, *sums in _rows(session, stmt):
        for i, w in enumerate(windows):
            n, total, escalations, escalated = (int(v or 0) for v in sums[i * 4:(i + 1) * 4])
            if n or escalations:
                acc = out[w].setdefault(k, _Acc())
                acc.rating_n, acc.rating_sum = n, total
                acc.escalations, acc.escalated_cases = escalations, escalated


def first_response_minutes(*, session: Session, now: datetime, since: datetime | None = None,
                           scope: Collection[str] | None = None) -> list[float]:
    """Each answered case's first-response minutes (merged duplicates left out), for a histogram."""
    stmt = select(_response_minutes_sql(session.get_bind().dialect.name)).where(
        *_case_filters(since=since, until=now, scope=scope), _not_merged(),
        col(Case.first_response_at).is_not(None))
    values: list[Any] = list(session.execute(stmt).scalars())
    return sorted(float(m) for m in values)


def _median(a: _Acc) -> float | None:
    if not a.responded:
        return None
    lo, hi = _median_ranks(a.responded)
    return a.ranked[lo] if lo == hi else statistics.median([a.ranked[lo], a.ranked[hi]])


def _figures(key: str, name: str, a: _Acc) -> Figures:
    return Figures(
        key=key, name=name, cases=a.cases,
        median_response_min=_minutes(_median(a)),
        p90_response_min=_minutes(a.ranked[_rank(0.9, a.responded)]) if a.responded else None,
        on_time_response=_rate(a.resp_ok, a.resp_n),
        on_time_resolution=_rate(a.res_ok, a.res_n), open=a.open, overdue=a.overdue,
        reopen_rate=_rate(a.reopened, a.resolved_ever),
        satisfaction=round(a.rating_sum / a.rating_n, 2) if a.rating_n else None,
        rating_response_rate=_rate(a.answered, a.answered + a.auto_closed), duplicates=a.duplicates,
        hotspots=a.hotspots, responded=a.responded, resolved=a.resolved,
        ratings=a.rating_n, escalations=a.escalations, escalated_cases=a.escalated_cases)


def _has_anything(a: _Acc) -> bool:
    return bool(a.cases or a.duplicates or a.rating_n or a.escalations)


def compute(*, session: Session, now: datetime, since: datetime | None = None, grid_id: str | None = None,
            category_names: dict[str, str] | None = None, scope: Collection[str] | None = None,
            ) -> dict[str, list[Figures]]:
    """{"total": [...], "grid": [...], "community": [...], "category": [...]}: case figures over the cases opened
    from `since` to `now`, event figures over events from `since` to `now` (see the module docstring)."""
    if grid_id is not None:
        scope = {grid_id} if scope is None else set(scope) & {grid_id}
    grids = list(session.exec(select_model(Grid)))
    names = {"total": {"all": "全部"}, "grid": {g.id: g.name for g in grids},
             "community": {g.community_id: g.community_name for g in grids}, "category": category_names or {}}
    keys = {"total": None, "grid": col(Case.grid_id), "community": col(Case.community_id),
            "category": col(Case.category)}
    unknown = {"total": "all", "grid": "(未定位)", "community": "?", "category": "?"}
    out: dict[str, list[Figures]] = {}
    for kind, key in keys.items():
        parts = _aggregate(session, key, now=now, windows={"w": since}, scope=scope)["w"]
        rows = [(unknown[kind] if k is None else str(k), a) for k, a in parts.items() if _has_anything(a)]
        out[kind] = [_figures(k, names[kind].get(k, k), a) for k, a in sorted(rows, key=lambda r: r[0])]
    return out


# ---------------------------------------------------------------- the console's figures
@dataclass(frozen=True)
class WindowFigures:
    """One window's figures (today, this week, all time) for the overview."""

    window: str
    label: str
    start: datetime | None
    end: datetime
    cases: int
    median_response_min: float | None
    p90_response_min: float | None
    on_time_response: float | None
    on_time_resolution: float | None
    open: int
    overdue_now: int
    escalations: int
    escalated_cases: int
    satisfaction: float | None
    ratings: int
    rating_response_rate: float | None
    reopen_rate: float | None
    answered_questions: int
    refusals: int
    duplicates: int
    hotspots: int

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["start"] = self.start.isoformat() if self.start else None
        d["end"] = self.end.isoformat()
        return d


@dataclass(frozen=True)
class Overview:
    """总览: today's, this week's and all-time figures for a scope (None = the whole street)."""

    now: datetime
    tz: str
    scope: list[str] | None
    today: WindowFigures
    week: WindowFigures
    all: WindowFigures
    labels: dict[str, str]
    wishes: WishFigures | None = None  # the 微心愿 wall, all time (wish_figures)

    def to_dict(self) -> dict[str, Any]:
        return {"now": self.now.isoformat(), "tz": self.tz, "scope": self.scope, "labels": dict(self.labels),
                "windows": dict(WINDOW_LABELS), "today": self.today.to_dict(), "week": self.week.to_dict(),
                "all": self.all.to_dict(), "wishes": self.wishes.to_dict() if self.wishes else None}


def window_starts(now: datetime, tz: ZoneInfo) -> dict[str, datetime | None]:
    """The windows' starts in UTC-aware time: local midnight today, local Monday midnight, and None (all time)."""
    local = now.astimezone(tz)
    midnight = local.replace(hour=0, minute=0, second=0, microsecond=0)
    monday = midnight - timedelta(days=local.weekday())
    return {"today": midnight, "week": monday, "all": None}


def overdue_now(*, session: Session, now: datetime, scope: Collection[str] | None = None,
                opened_after: datetime | None = None) -> int:
    """Open cases past a due time at `now`, whenever they were opened (merged duplicates left out); with
    `opened_after`, only those opened after it (the overview adds these to its all-time pass's count)."""
    if opened_after is None:
        stmt = select(func.count()).select_from(Case).where(overdue_condition(now), _not_merged(),
                                                            *_case_filters(since=None, until=None, scope=scope))
    else:
        # the status test as an expression: else SQLite walks ix_case_status through every open case (~35 ms at
        # 100k) instead of ix_case_created's range after `opened_after`, which is empty unless a fake clock lags
        unindexed_open = case((is_open(), 1), else_=0) == 1
        stmt = (select(func.count()).select_from(Case)
                .where(overdue_condition(now, open_=unindexed_open), _not_merged(), col(Case.created_at) > opened_after,
                       *_case_filters(since=None, until=None, scope=scope)))
    return int(session.execute(stmt).scalar_one())


def question_counts(*, session: Session, windows: Windows, until: datetime,
                    scope: Collection[str] | None = None) -> dict[str, tuple[int, int]]:
    """(answered questions, refusals) per window, in one pass over the recorded questions. Refusals are the
    recorded not-found outcomes; where none were recorded (a database from before `casestore.questions`), the
    review queue's not_found items."""
    data = col(AuditEvent.data)
    outcome, grid = data["outcome"].as_string(), data["grid"].as_string()
    where: list[Any] = [col(AuditEvent.action) == QUESTION_ACTION, col(AuditEvent.at) <= until]
    if _earliest(windows) is not None:
        where.append(col(AuditEvent.at) >= _earliest(windows))
    if scope is not None:
        where.append(grid.in_(sorted(scope)))
    columns: list[Any] = []
    for start in windows.values():
        inside = _inside(col(AuditEvent.at), start)
        columns += [_flag(and_(inside, outcome == Outcome.answered.value)),
                    _flag(and_(inside, outcome == Outcome.not_found.value))]
    sums = [int(v or 0) for v in session.execute(select(*columns).where(*where)).one()]
    out = {w: (sums[2 * i], sums[2 * i + 1]) for i, w in enumerate(windows)}
    recorded = session.execute(select(col(AuditEvent.id)).where(col(AuditEvent.action) == QUESTION_ACTION)
                               .limit(1)).first() is not None
    if recorded:
        return out
    columns = [_flag(_inside(col(ReviewItem.created_at), start)) for start in windows.values()]
    misses = (select(*columns).select_from(ReviewItem)
              .where(col(ReviewItem.kind) == "not_found", col(ReviewItem.created_at) <= until))
    if scope is not None:
        misses = (misses.join(Resident, col(Resident.id) == col(ReviewItem.resident_id))
                  .where(col(Resident.grid_id).in_(sorted(scope))))
    refused = [int(v or 0) for v in session.execute(misses).one()]
    out = {w: (answered, refusals + refused[i]) for i, (w, (answered, refusals)) in enumerate(out.items())}
    return out


def overview(*, session: Session, now: datetime, tz: ZoneInfo = SHANGHAI,
             scope: Collection[str] | None = None) -> Overview:
    """The overview's figures for today and this week (local days, the week from Monday) and all time; its times
    are given in `tz`. One query per kind of part whatever the windows (the street total only)."""
    now = now.astimezone(tz)
    starts = window_starts(now, tz)
    parts = _aggregate(session, None, now=now, windows=starts, scope=scope)
    # overdue now = the all-time pass's overdue (the cases not opened after `now`) + those opened after `now` (as
    # a fake clock may have them): the same count as overdue_now(), without a second pass over the open cases
    overdue = parts["all"].get(None, _Acc()).overdue + overdue_now(session=session, now=now, scope=scope,
                                                                   opened_after=now)
    questions = question_counts(session=session, windows=starts, until=now, scope=scope)
    windows = {}
    for name, start in starts.items():
        f = _figures("all", "全部", parts[name].get(None, _Acc()))
        answered, refused = questions[name]
        windows[name] = WindowFigures(
            window=name, label=WINDOW_LABELS[name], start=start, end=now, cases=f.cases,
            median_response_min=f.median_response_min, p90_response_min=f.p90_response_min,
            on_time_response=f.on_time_response, on_time_resolution=f.on_time_resolution, open=f.open,
            overdue_now=overdue, escalations=f.escalations, escalated_cases=f.escalated_cases,
            satisfaction=f.satisfaction, ratings=f.ratings, rating_response_rate=f.rating_response_rate,
            reopen_rate=f.reopen_rate, answered_questions=answered, refusals=refused, duplicates=f.duplicates,
            hotspots=f.hotspots)
    return Overview(now=now, tz=str(tz), scope=sorted(scope) if scope is not None else None,
                    today=windows["today"], week=windows["week"], all=windows["all"],
                    labels={**LABELS, **WISH_LABELS}, wishes=wish_figures(session=session, now=now, scope=scope))


def grid_figures(*, session: Session, now: datetime, since: datetime | None = None,
                 scope: Collection[str] | None = None) -> list[Figures]:
    """Per-grid figures (the same definitions as the overview), grids of `scope` only."""
    return compute(session=session, now=now, since=since, scope=scope)["grid"]


@dataclass(frozen=True)
class Heatmap:
    """Case counts, community × category (merged duplicates left out)."""

    communities: list[tuple[str, str]]
    categories: list[tuple[str, str]]
    counts: dict[tuple[str, str], int]

    def to_dict(self) -> dict[str, Any]:
        return {"communities": [{"id": c, "name": n} for c, n in self.communities],
                "categories": [{"id": c, "name": n} for c, n in self.categories],
                "cells": [{"community": c, "category": k, "count": n} for (c, k), n in sorted(self.counts.items())]}


def category_heatmap(*, session: Session, now: datetime, since: datetime | None = None,
                     scope: Collection[str] | None = None, category_names: dict[str, str] | None = None) -> Heatmap:
    """Cases opened in the window per (community, category), merged duplicates left out."""
    stmt = (select(col(Case.community_id), col(Case.category), func.count())
            .where(_not_merged(), *_case_filters(since=since, until=now, scope=scope))
            .group_by(col(Case.community_id), col(Case.category)))
    counts: dict[tuple[str, str], int] = {}
    for community, category, n in _rows(session, stmt):
        key = (community or "?", category)
        counts[key] = counts.get(key, 0) + int(n)
    names = {g.community_id: g.community_name for g in session.exec(select_model(Grid))}
    communities = sorted({c for c, _ in counts} | (set(names) if scope is None else set()))
    categories = sorted({k for _, k in counts})
    return Heatmap(communities=[(c, names.get(c, c)) for c in communities],
                   categories=[(k, (category_names or {}).get(k, k)) for k in categories], counts=counts)


@dataclass(frozen=True)
class WorkerLoad:
    """One worker's open cases, those overdue, and the on-time resolution rate of the cases assigned to them."""

    worker_id: int
    name: str
    role: str
    grid_id: str | None
    open: int
    overdue: int
    on_time_resolution: float | None
    resolved: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def worker_load(*, session: Session, now: datetime, since: datetime | None = None,
                scope: Collection[str] | None = None) -> list[WorkerLoad]:
    """Each worker's load (the cases currently assigned to them), most open first; workers of `scope` only."""
    per = _aggregate(session, col(Case.assignee_id), now=now, windows={"w": since}, scope=None, events=False)["w"]
    out: list[WorkerLoad] = []
    for w in session.exec(select_model(Worker).order_by(col(Worker.id))):
        if w.id is None or (scope is not None and w.grid_id not in scope):
            continue
        a = per.get(w.id, _Acc())
        if not w.active and not a.cases:
            continue
        out.append(WorkerLoad(worker_id=w.id, name=w.name, role=w.role, grid_id=w.grid_id, open=a.open,
                              overdue=a.overdue, on_time_resolution=_rate(a.res_ok, a.res_n), resolved=a.resolved))
    return sorted(out, key=lambda x: (-x.open, -x.overdue, x.worker_id))


# ---------------------------------------------------------------- text
def _pct(x: float | None) -> str:
    return "—" if x is None else f"{x * 100:.0f}%"


def _num(x: float | None, fmt: str = "{:.0f}") -> str:
    return "—" if x is None else fmt.format(x)


def summary_text(*, session: Session, now: datetime, tz: object = None, taxonomy: object = None,
                 since: datetime | None = None) -> str:
    """A few lines in Chinese for a chat reply (the admin's /stats): the street's totals and the worst grids."""
    names = None
    if taxonomy is not None and hasattr(taxonomy, "categories"):
        names = {k.value: v.name for k, v in taxonomy.categories.items()}  # type: ignore[attr-defined]
    figures = compute(session=session, now=now, since=since, category_names=names)
    if not figures["total"]:
        return "暂无工单数据。"
    t = figures["total"][0]
    lines = [
        f"工单 {t.cases} 件（在办 {t.open}，超时 {t.overdue}）；合并重复 {t.duplicates} 件，热点 {t.hotspots} 个",
        (f"首次响应（自然时间）：中位 {_num(t.median_response_min)} 分钟，P90 {_num(t.p90_response_min)} 分钟，"
         f"按时响应率 {_pct(t.on_time_response)}"),
        f"按时办结率 {_pct(t.on_time_resolution)}，退回重办率 {_pct(t.reopen_rate)}，超时升级 {t.escalations} 次",
        (f"满意度 {_num(t.satisfaction, '{:.1f}')} 分（{t.ratings} 次评价的平均分；"
         f"评价率 {_pct(t.rating_response_rate)}，超时未评价不计满意）"),
    ]
    late = sorted((g for g in figures["grid"] if g.overdue), key=lambda g: -g.overdue)[:3]
    if late:
        lines.append("超时最多：" + "，".join(f"{g.name} {g.overdue} 件" for g in late))
    return "\n".join(lines)


# ---------------------------------------------------------------- the 微心愿 wall
WISH_LABELS: dict[str, str] = {
    "collected": "微心愿：收集（本期新发布）",
    "claimed": "微心愿：已认领（本期发布的）",
    "fulfilled": "微心愿：已达成（本期发布的，居民确认）",
    "open_now": "微心愿：当前待认领（全部）",
    "median_claim_min": "微心愿：认领用时中位数（分钟，发布到认领）",
    "p90_claim_min": "微心愿：认领用时 P90（分钟）",
}


@dataclass(frozen=True)
class WishFigures:
    """Wishes published from `since` to `now` (collected, then how many of them were claimed and fulfilled, and
    the minutes from publication to claim: median and nearest-rank P90, to 0.1); `open_now` is a snapshot."""

    collected: int = 0
    claimed: int = 0
    fulfilled: int = 0
    open_now: int = 0
    median_claim_min: float | None = None
    p90_claim_min: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def wish_figures(*, session: Session, now: datetime, since: datetime | None = None,
                 scope: Collection[str] | None = None) -> WishFigures:
    """The wall's figures for wishes of `scope`'s grids (None: the street) published in the window."""
    where: list[Any] = [col(Wish.created_at) <= now]
    if since is not None:
        where.append(col(Wish.created_at) >= since)
    if scope is not None:
        where.append(col(Wish.grid_id).in_(list(scope)))
    rows = _rows(session, select(col(Wish.status), col(Wish.created_at), col(Wish.claimed_at)).where(*where))
    waits = sorted((claimed - created).total_seconds() / 60 for _, created, claimed in rows
                   if claimed is not None and claimed <= now)
    open_where = [col(Wish.status) == WishStatus.open.value, col(Wish.created_at) <= now]
    if scope is not None:
        open_where.append(col(Wish.grid_id).in_(list(scope)))
    open_now = int(session.execute(select(func.count()).select_from(Wish).where(*open_where)).scalar_one())
    return WishFigures(
        collected=len(rows), claimed=len(waits),
        fulfilled=sum(1 for status, _, _ in rows if status == WishStatus.fulfilled.value), open_now=open_now,
        median_claim_min=round(statistics.median(waits), 1) if waits else None,
        p90_claim_min=round(waits[max(0, math.ceil(0.9 * len(waits)) - 1)], 1) if waits else None)
