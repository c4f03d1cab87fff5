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

from sqlalchemy import and_, case, func, literal, or_, select
from sqlmodel import Session, col
from sqlmodel import select as select_model

from casestore.models import (
    AuditEvent,
    Case,
    CaseEvent,
    CaseStatus,
    CloseReason,
    Grid,
    Hotspot,
    Resident,
    ReviewItem,
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
    """One group's sums, from SQL (cases, events) plus its response minutes and star ratings."""

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
    hotspots: int = 0
    escalations: int = 0
    escalated_cases: int = 0
    responses: list[float] = field(default_factory=list)
    ratings: list[int] = field(default_factory=list)


# ---------------------------------------------------------------- the definitions
def percentile(values: Iterable[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..1): the smallest value with at least q of the values at or below it."""
    ordered = sorted(values)
    if not ordered:
        return None
    return ordered[max(0, min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1))]


def _minutes(x: float | None) -> float | None:
    return None if x is None else round(x, 1)


def _rate(ok: int, n: int) -> float | None:
    return round(ok / n, 4) if n else None


def _flag(condition: Any) -> Any:
    return func.coalesce(func.sum(case((condition, 1), else_=0)), 0)


def is_open() -> Any:
    return col(Case.status).in_(sorted(_OPEN))


def overdue_condition(now: datetime) -> Any:
    """The rule for "overdue" as SQL (the board filters with it too): open and past its response due time
    (unanswered) or its resolution due time."""
    return and_(is_open(), or_(and_(col(Case.first_response_at).is_(None), col(Case.response_due_at).is_not(None),
                                    col(Case.response_due_at) < now),
                               and_(col(Case.resolve_due_at).is_not(None), col(Case.resolve_due_at) < now)))


def _response_minutes_sql(dialect: str) -> Any:
    """Minutes from the current cycle's start (clock_started_at, else the report) to the first response."""
    start = func.coalesce(col(Case.clock_started_at), col(Case.created_at))
    if dialect == "postgresql":
        return func.extract("epoch", col(Case.first_response_at) - start) / 60.0
    return (func.julianday(col(Case.first_response_at)) - func.julianday(start)) * 1440.0


def _case_filters(*, since: datetime | None, until: datetime | None, scope: Collection[str] | None) -> list[Any]:
    where: list[Any] = []
    if since is not None:
        where.append(col(Case.created_at) >= since)
    if until is not None:
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


def _star(data: dict[str, Any] | None) -> int | None:
    rating = (data or {}).get("rating")
    return rating if isinstance(rating, int) and not isinstance(rating, bool) and 1 <= rating <= 5 else None


_SUMS = ("cases", "duplicates", "resp_n", "resp_ok", "res_n", "res_ok", "open", "overdue", "resolved",
         "resolved_ever", "reopened", "answered", "auto_closed", "hotspots")  # _aggregate's columns, in order


def _rows(session: Session, stmt: Any) -> list[Any]:
    return list(session.execute(stmt).all())


def _aggregate(session: Session, key: Any, *, now: datetime, since: datetime | None,
               scope: Collection[str] | None, events: bool = True) -> dict[Any, _Acc]:
    """Every figure's parts per value of `key` (a Case column, or None for one group keyed None)."""
    group = [key] if key is not None else []
    keycol = key if key is not None else literal(None)
    real = col(Case.duplicate_of_id).is_(None)
    due_resp, due_res = col(Case.response_due_at), col(Case.resolve_due_at)
    first, resolved = col(Case.first_response_at), col(Case.resolved_at)
    cases_where = _case_filters(since=since, until=now, scope=scope)
    stmt = (select(keycol,
                   _flag(real), _flag(~real),
                   _flag(and_(real, due_resp.is_not(None),
                              or_(first.is_not(None), and_(due_resp < now, is_open())))),
                   _flag(and_(real, due_resp.is_not(None), first.is_not(None), first <= due_resp)),
                   _flag(and_(real, due_res.is_not(None),
                              or_(resolved.is_not(None), and_(due_res < now, is_open())))),
                   _flag(and_(real, due_res.is_not(None), resolved.is_not(None), resolved <= due_res)),
                   _flag(and_(real, is_open())), _flag(and_(real, overdue_condition(now))),
                   _flag(and_(real, resolved.is_not(None))),
                   _flag(and_(real, or_(resolved.is_not(None), col(Case.reopen_count) > 0,
                                        col(Case.status) == CaseStatus.closed.value))),
                   _flag(and_(real, col(Case.reopen_count) > 0)),
                   _flag(and_(real, col(Case.close_reason) == CloseReason.rated.value)),
                   _flag(and_(real, col(Case.close_reason) == CloseReason.auto_closed_without_rating.value)),
                   func.count(func.distinct(case((col(Case.cluster_id).in_(select(col(Hotspot.id))),
                                                  col(Case.cluster_id)), else_=None))))
            .where(*cases_where).group_by(*group))
    out: dict[Any, _Acc] = {}
    for row in _rows(session, stmt):
        k, *n = row
        acc = out[k] = _Acc()
        for name, value in zip(_SUMS, n, strict=True):
            setattr(acc, name, int(value or 0))
    dialect = session.get_bind().dialect.name
    minutes = (select(keycol, _response_minutes_sql(dialect))
               .where(*cases_where, real, first.is_not(None)))
    for k, m in _rows(session, minutes):
        out.setdefault(k, _Acc()).responses.append(max(0.0, float(m)))
    if not events:
        return out
    joined = select(keycol, col(CaseEvent.data)).join(Case, col(Case.id) == col(CaseEvent.case_id))
    for k, data in _rows(session, joined.where(col(CaseEvent.action).in_(RATING_ACTIONS),
                                                *_event_filters(since=since, until=now, scope=scope))):
        star = _star(data)
        if star is not None:
            out.setdefault(k, _Acc()).ratings.append(star)
    escalations = (select(keycol, func.count(), func.count(func.distinct(col(CaseEvent.case_id))))
                   .join(Case, col(Case.id) == col(CaseEvent.case_id))
                   .where(col(CaseEvent.action) == "escalate", *_event_filters(since=since, until=now, scope=scope))
                   .group_by(*group))
    for k, n, distinct in _rows(session, escalations):
        acc = out.setdefault(k, _Acc())
        acc.escalations, acc.escalated_cases = int(n), int(distinct)
    return out


def first_response_minutes(*, session: Session, now: datetime, since: datetime | None = None,
                           scope: Collection[str] | None = None) -> list[float]:
    """Each answered case's first-response minutes (merged duplicates left out), for a histogram."""
    parts = _aggregate(session, None, now=now, since=since, scope=scope, events=False)
    return sorted(parts[None].responses) if None in parts else []


def _figures(key: str, name: str, a: _Acc) -> Figures:
    return Figures(
        key=key, name=name, cases=a.cases,
        median_response_min=_minutes(statistics.median(a.responses)) if a.responses else None,
        p90_response_min=_minutes(percentile(a.responses, 0.9)), on_time_response=_rate(a.resp_ok, a.resp_n),
        on_time_resolution=_rate(a.res_ok, a.res_n), open=a.open, overdue=a.overdue,
        reopen_rate=_rate(a.reopened, a.resolved_ever),
        satisfaction=round(statistics.fmean(a.ratings), 2) if a.ratings else None,
        rating_response_rate=_rate(a.answered, a.answered + a.auto_closed), duplicates=a.duplicates,
        hotspots=a.hotspots, responded=len(a.responses), resolved=a.resolved,
        ratings=len(a.ratings), escalations=a.escalations, escalated_cases=a.escalated_cases)


def _has_anything(a: _Acc) -> bool:
    return bool(a.cases or a.duplicates or a.ratings or a.escalations)


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
        parts = _aggregate(session, key, now=now, since=since, scope=scope)
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

    def to_dict(self) -> dict[str, Any]:
        return {"now": self.now.isoformat(), "tz": self.tz, "scope": self.scope, "labels": dict(self.labels),
                "windows": dict(WINDOW_LABELS), "today": self.today.to_dict(), "week": self.week.to_dict(),
                "all": self.all.to_dict()}


def window_starts(now: datetime, tz: ZoneInfo) -> dict[str, datetime | None]:
    """The windows' starts in UTC-aware time: local midnight today, local Monday midnight, and None (all time)."""
    local = now.astimezone(tz)
    midnight = local.replace(hour=0, minute=0, second=0, microsecond=0)
    monday = midnight - timedelta(days=local.weekday())
    return {"today": midnight, "week": monday, "all": None}


def overdue_now(*, session: Session, now: datetime, scope: Collection[str] | None = None) -> int:
    """Open cases past a due time at `now`, whenever they were opened (merged duplicates left out)."""
    stmt = select(func.count()).select_from(Case).where(overdue_condition(now), col(Case.duplicate_of_id).is_(None),
                                                        *_case_filters(since=None, until=None, scope=scope))
    return int(session.execute(stmt).scalar_one())


def question_counts(*, session: Session, since: datetime | None, until: datetime,
                    scope: Collection[str] | None = None) -> tuple[int, int]:
    """(answered questions, refusals) in the window. Refusals are the recorded not-found outcomes; where none were
    recorded (a database from before `casestore.questions`), the review queue's not_found items."""
    def in_window(stmt: Any, at: Any) -> Any:
        stmt = stmt.where(at <= until)
        return stmt.where(at >= since) if since is not None else stmt

    grid_of: dict[int, str | None] | None = None
    if scope is not None:
        grid_of = {r.id: r.grid_id for r in session.execute(select(col(Resident.id), col(Resident.grid_id)))}
    answered = refused = 0
    recorded = session.execute(select(col(AuditEvent.id)).where(col(AuditEvent.action) == QUESTION_ACTION)
                               .limit(1)).first() is not None
    stmt = select(col(AuditEvent.data)).where(col(AuditEvent.action) == QUESTION_ACTION)
    events: list[dict[str, Any] | None] = list(session.execute(in_window(stmt, col(AuditEvent.at))).scalars())
    for data in events:
        if scope is not None and (data or {}).get("grid") not in scope:
            continue
        outcome = (data or {}).get("outcome")
        answered += outcome == Outcome.answered
        refused += outcome == Outcome.not_found
    if not recorded:
        misses = in_window(select(col(ReviewItem.resident_id)).where(col(ReviewItem.kind) == "not_found"),
                           col(ReviewItem.created_at))
        residents: list[int | None] = list(session.execute(misses).scalars())
        for resident_id in residents:
            if grid_of is None or (resident_id is not None and grid_of.get(resident_id) in (scope or ())):
                refused += 1
    return answered, refused


def _window(session: Session, name: str, start: datetime | None, now: datetime, scope: Collection[str] | None,
            overdue: int) -> WindowFigures:
    parts = _aggregate(session, None, now=now, since=start, scope=scope)  # the street total only
    f = _figures("all", "全部", parts.get(None, _Acc()))
    answered, refused = question_counts(session=session, since=start, until=now, scope=scope)
    return WindowFigures(
        window=name, label=WINDOW_LABELS[name], start=start, end=now, cases=f.cases,
        median_response_min=f.median_response_min, p90_response_min=f.p90_response_min,
        on_time_response=f.on_time_response, on_time_resolution=f.on_time_resolution, open=f.open,
        overdue_now=overdue, escalations=f.escalations, escalated_cases=f.escalated_cases,
        satisfaction=f.satisfaction, ratings=f.ratings, rating_response_rate=f.rating_response_rate,
        reopen_rate=f.reopen_rate, answered_questions=answered, refusals=refused, duplicates=f.duplicates,
        hotspots=f.hotspots)


def overview(*, session: Session, now: datetime, tz: ZoneInfo = SHANGHAI,
             scope: Collection[str] | None = None) -> Overview:
    """The overview's figures for today and this week (local days, the week from Monday) and all time; its times
    are given in `tz`."""
    now = now.astimezone(tz)
    overdue = overdue_now(session=session, now=now, scope=scope)
    windows = {name: _window(session, name, start, now, scope, overdue)
               for name, start in window_starts(now, tz).items()}
    return Overview(now=now, tz=str(tz), scope=sorted(scope) if scope is not None else None,
                    today=windows["today"], week=windows["week"], all=windows["all"], labels=dict(LABELS))


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
            .where(col(Case.duplicate_of_id).is_(None), *_case_filters(since=since, until=now, scope=scope))
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
    per = _aggregate(session, col(Case.assignee_id), now=now, since=since, scope=None, events=False)
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
