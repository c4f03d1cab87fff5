"""Loop metrics: are the city's promises kept? Per grid, community and category.

Figures (duplicates merged into another case are counted only as "duplicates", not as cases):
time to first response (median, p90; wall-clock minutes), on-time response rate (first response by
response_due_at; cases still unanswered past due count as late, those not yet due are left out), on-time
resolution rate (resolved by resolve_due_at; unresolved past due count as late), open and overdue counts,
reopen rate (reopened / ever resolved), average satisfaction (ratings given) and its response rate
(answered / answered + auto-closed without rating: silence is not satisfaction), duplicates merged and
hotspots raised. Must not: change anything.
"""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass
from datetime import datetime

from sqlalchemy import select
from sqlmodel import Session, col
from sqlmodel import select as select_model

from casestore.models import Case, CaseStatus, CloseReason, Grid, Hotspot
from casestore.states import OPEN

_OPEN = {s.value for s in OPEN}


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

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


@dataclass
class _Acc:
    responses: list[float]
    resp_ok: int = 0
    resp_n: int = 0
    res_ok: int = 0
    res_n: int = 0
    cases: int = 0
    open: int = 0
    overdue: int = 0
    resolved_ever: int = 0
    reopened: int = 0
    ratings: list[int] | None = None
    answered: int = 0
    auto_closed: int = 0
    duplicates: int = 0
    clusters: set[int] | None = None


def _p(values: list[float], q: float) -> float | None:
    if not values:
        return None
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(q * 100) - 1]


def _rate(ok: int, n: int) -> float | None:
    return ok / n if n else None


def compute(*, session: Session, now: datetime, since: datetime | None = None, grid_id: str | None = None,
            category_names: dict[str, str] | None = None) -> dict[str, list[Figures]]:
    """{"total": [...], "grid": [...], "community": [...], "category": [...]}."""
    cols = (Case.grid_id, Case.community_id, Case.category, Case.status, Case.created_at, Case.clock_started_at,
            Case.response_due_at, Case.resolve_due_at, Case.first_response_at, Case.resolved_at, Case.close_reason,
            Case.satisfaction, Case.reopen_count, Case.duplicate_of_id, Case.cluster_id)
    stmt = select(*(col(c) for c in cols))
    if since is not None:
        stmt = stmt.where(col(Case.created_at) >= since)
    if grid_id is not None:
        stmt = stmt.where(col(Case.grid_id) == grid_id)
    groups: dict[tuple[str, str], _Acc] = {}

    def acc(kind: str, key: str) -> _Acc:
        a = groups.get((kind, key))
        if a is None:
            a = groups[(kind, key)] = _Acc(responses=[], ratings=[], clusters=set())
        return a

    for r in session.execute(stmt):
        targets = [acc("total", "all"), acc("grid", r.grid_id or "(未定位)"), acc("community", r.community_id or "?"),
                   acc("category", r.category)]
        for a in targets:
            if r.cluster_id is not None:
                a.clusters.add(r.cluster_id)  # type: ignore[union-attr]
            if r.duplicate_of_id is not None:
                a.duplicates += 1
                continue
            a.cases += 1
            if r.first_response_at is not None:
                start = r.clock_started_at or r.created_at
                a.responses.append(max(0.0, (r.first_response_at - start).total_seconds() / 60))
            if r.response_due_at is not None:
                if r.first_response_at is not None:
                    a.resp_n += 1
                    a.resp_ok += r.first_response_at <= r.response_due_at
                elif now > r.response_due_at and r.status in _OPEN:
                    a.resp_n += 1
            if r.resolve_due_at is not None:
                if r.resolved_at is not None:
                    a.res_n += 1
                    a.res_ok += r.resolved_at <= r.resolve_due_at
                elif now > r.resolve_due_at and r.status in _OPEN:
                    a.res_n += 1
            if r.status in _OPEN:
                a.open += 1
                late = (r.first_response_at is None and r.response_due_at is not None and now > r.response_due_at) \
                    or (r.resolve_due_at is not None and now > r.resolve_due_at)
                a.overdue += late
            if r.resolved_at is not None or r.reopen_count or r.status == CaseStatus.closed:
                a.resolved_ever += 1
            a.reopened += r.reopen_count > 0
            if r.close_reason == CloseReason.rated:
                a.answered += 1
                if r.satisfaction is not None:
                    a.ratings.append(r.satisfaction)  # type: ignore[union-attr]
            elif r.close_reason == CloseReason.auto_closed_without_rating:
                a.auto_closed += 1

    grids = list(session.exec(select_model(Grid)))
    grid_names = {g.id: g.name for g in grids}
    community_names = {g.community_id: g.community_name for g in grids}
    hotspot_ids = {h.id for h in session.exec(select_model(Hotspot))}
    names = {"total": {"all": "全部"}, "grid": grid_names, "community": community_names,
             "category": category_names or {}}
    out: dict[str, list[Figures]] = {"total": [], "grid": [], "community": [], "category": []}
    for (kind, key), a in sorted(groups.items()):
        responses = sorted(a.responses)
        out[kind].append(Figures(
            key=key, name=names[kind].get(key, key), cases=a.cases,
            median_response_min=statistics.median(responses) if responses else None,
            p90_response_min=_p(responses, 0.9), on_time_response=_rate(a.resp_ok, a.resp_n),
            on_time_resolution=_rate(a.res_ok, a.res_n), open=a.open, overdue=a.overdue,
            reopen_rate=_rate(a.reopened, a.resolved_ever),
            satisfaction=statistics.fmean(a.ratings) if a.ratings else None,
            rating_response_rate=_rate(a.answered, a.answered + a.auto_closed), duplicates=a.duplicates,
            hotspots=len((a.clusters or set()) & hotspot_ids)))
    return out


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
        (f"首次响应：中位 {_num(t.median_response_min)} 分钟，P90 {_num(t.p90_response_min)} 分钟，"
         f"按时响应率 {_pct(t.on_time_response)}"),
        f"按时办结率 {_pct(t.on_time_resolution)}，退回重办率 {_pct(t.reopen_rate)}",
        f"满意度 {_num(t.satisfaction, '{:.1f}')} 分（评价率 {_pct(t.rating_response_rate)}，超时未评价不计满意）",
    ]
    late = sorted((g for g in figures["grid"] if g.overdue), key=lambda g: -g.overdue)[:3]
    if late:
        lines.append("超时最多：" + "，".join(f"{g.name} {g.overdue} 件" for g in late))
    return "\n".join(lines)
