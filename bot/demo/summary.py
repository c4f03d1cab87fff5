"""The demo's figures, read back from the case store after the simulated day, as rich tables and an HTML report.

Owns: `compute_figures` (every number comes from the database's cases, audit events, notifications and
hotspots — never from the simulation's own bookkeeping), `print_summary` (Chinese rich tables) and
`write_report` (one self-contained HTML file with inline SVG; nothing to fetch).
Every figure `quanbot stats` also shows (response times, on-time rates, satisfaction, rating rate, escalations,
reopen rate) is taken from `casestore.stats` (its all-time window at the run's end) with that module's label, so
the two agree on the same database. Only the demo's own counts (reminders, rating requests, street-level
escalations, scenario agreement) are counted here. The HTML timeline draws each case's first cycle (opened at
creation, first 已联系/处理中/办结 event, first 办结 event), and says so.
Must not: change the database or define a figure `casestore.stats` defines.
"""

from __future__ import annotations

import html
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

from rich.console import Console
from rich.table import Table
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from bot.demo import charts
from bot.demo.simulation import CHANNEL
from casestore import stats
from casestore.broadcasts import KIND as NOTICE_KIND
from casestore.deadlines import SlaPolicy
from casestore.models import Account, Case, CaseEvent, CloseReason, Feedback, Hotspot, Notice, Notification
from casestore.staff import role_name
from casestore.stats import LABELS
from casestore.stats import Figures as GridFigures
from policies.models import Policies

RESPONSE_EVENTS = ("respond", "start", "resolve")
HIST_BINS = [(0, 5), (5, 10), (10, 15), (15, 20), (20, 30), (30, 45), (45, 60), (60, 90), (90, 120), (120, None)]


class Expected(NamedTuple):
    """A scenario report's sender, time and the labels the scenario expects for it."""

    user_id: int
    at: datetime
    category: str
    urgency: str


@dataclass
class _FirstTimes:
    response: datetime | None = None
    resolve: datetime | None = None


@dataclass(frozen=True)
class CaseLine:
    code: str
    grid: str
    category: str
    urgency: str
    opened: datetime
    responded: datetime | None
    resolved: datetime | None
    response_due: datetime
    resolve_due: datetime
    duplicate: bool


@dataclass
class Figures:
    """The summary numbers; `as_dict()` is what two runs with the same seed must agree on."""

    seed: int
    messages: int
    residents: int
    cases: int = 0  # cases opened, merged duplicates included
    handled_cases: int = 0  # cases that went to a worker (merged duplicates excluded)
    by_category: dict[str, dict[str, int]] = field(default_factory=dict)
    by_urgency: dict[str, int] = field(default_factory=dict)
    responded: int = 0
    response_median_min: float | None = None
    response_p90_min: float | None = None
    response_on_time_rate: float | None = None
    resolved: int = 0
    resolve_on_time_rate: float | None = None
    reminders: int = 0
    escalations: int = 0
    escalated_cases: int = 0
    street_level_cases: int = 0
    hotspots: int = 0
    hotspot_reports: int = 0
    hotspot_notices: int = 0  # 未诉先办 notices of hotspots (one per building and phase: 正在处理 / 已处理完毕)
    hotspot_notices_sent: int = 0  # their deliveries that reached a resident
    duplicates_merged: int = 0
    rating_requests: int = 0
    ratings: int = 0
    rating_avg: float | None = None
    rating_response_rate: float | None = None
    reopen_rate: float | None = None
    answered_questions: int = 0
    refusals: int = 0
    low_ratings: int = 0
    reopened: int = 0
    auto_closed: int = 0
    closed_rated: int = 0
    still_open: int = 0
    answer_feedback: int = 0
    # each person's load (casestore.stats.worker_load): who carried the day, the part-timers' share included
    load: list[dict[str, Any]] = field(default_factory=list)
    voice_cases: int = 0  # cases carrying a resident's voice note (bot.dialogue.voice)
    voice_message_cases: int = 0  # of those: 语音留言, opened from a voice no transcription could read
    wishes: dict[str, Any] = field(default_factory=dict)  # the 微心愿 wall (casestore.stats.wish_figures)
    labelled_cases: int = 0  # cases traced back to a scenario message with expected labels
    category_agreement: float | None = None  # the classifier's category equals the scenario's label
    urgency_agreement: float | None = None
    per_hour: dict[int, dict[str, int]] = field(default_factory=dict)
    histogram: list[int] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def case_lines(session: Session, sla: SlaPolicy) -> list[CaseLine]:
    """One line per case (first cycle): its SLA due times and its first response and first 办结."""
    cases = session.exec(select(Case).order_by(col(Case.id))).all()
    first: dict[int, _FirstTimes] = {}
    for ev in session.exec(select(CaseEvent).where(col(CaseEvent.action).in_(RESPONSE_EVENTS))
                           .order_by(col(CaseEvent.at), col(CaseEvent.id))):
        slot = first.setdefault(ev.case_id, _FirstTimes())
        if slot.response is None:
            slot.response = ev.at
        if ev.action == "resolve" and slot.resolve is None:
            slot.resolve = ev.at
    out: list[CaseLine] = []
    for c in cases:
        d = sla.deadlines(c.urgency, c.created_at)
        f = first.get(c.id or 0, _FirstTimes())
        out.append(CaseLine(code=c.code, grid=c.grid_id or "未定位", category=c.category, urgency=c.urgency,
                            opened=c.created_at, responded=f.response, resolved=f.resolve,
                            response_due=d.response_due_at, resolve_due=d.resolve_due_at,
                            duplicate=c.close_reason == CloseReason.duplicate.value or c.duplicate_of_id is not None))
    return out


def compute_figures(*, engine: Engine, policies: Policies, sla: SlaPolicy, seed: int, messages: int, residents: int,
                    now: datetime, expected: list[Expected] | None = None) -> tuple[Figures, list[CaseLine]]:
    """All summary figures from the case store as it stands at `now` (the end of the simulated run)."""
    tz = sla.tz
    fig = Figures(seed=seed, messages=messages, residents=residents)
    with Session(engine) as session:
        lines = case_lines(session, sla)
        cases = list(session.exec(select(Case)).all())
        events = session.exec(select(CaseEvent).order_by(col(CaseEvent.id))).all()
        kinds = session.exec(select(Notification.kind)).all()
        spots = session.exec(select(Hotspot)).all()
        told = session.exec(select(col(Notice.id)).where(col(Notice.hotspot_id).is_not(None))).all()
        fig.hotspot_notices = len(told)
        fig.hotspot_notices_sent = len(session.exec(select(col(Notification.id)).where(
            col(Notification.kind) == NOTICE_KIND, col(Notification.level).in_(told),
            col(Notification.state) == "sent")).all()) if told else 0
        fig.answer_feedback = len(session.exec(select(col(Feedback.id))).all())
        owners = _chat_users(session)
        street = stats.overview(session=session, now=now, tz=tz).all  # the one definition of each figure
        totals = stats.compute(session=session, now=now)["total"]
        minutes = stats.first_response_minutes(session=session, now=now)
        load = stats.worker_load(session=session, now=now)
        fig.wishes = stats.wish_figures(session=session, now=now).to_dict()
    _agreement(fig, cases, owners, expected or [])
    total = totals[0] if totals else GridFigures(key="all", name="全部")
    fig.cases = len(lines)
    fig.handled_cases = street.cases
    fig.duplicates_merged = street.duplicates
    for ln in lines:
        fig.by_category.setdefault(ln.category, {}).setdefault(ln.urgency, 0)
        fig.by_category[ln.category][ln.urgency] += 1
        fig.by_urgency[ln.urgency] = fig.by_urgency.get(ln.urgency, 0) + 1
        hour = ln.opened.astimezone(tz).hour
        fig.per_hour.setdefault(hour, {}).setdefault(ln.urgency, 0)
        fig.per_hour[hour][ln.urgency] += 1
    fig.responded, fig.resolved = total.responded, total.resolved
    fig.response_median_min, fig.response_p90_min = street.median_response_min, street.p90_response_min
    fig.histogram = [sum(1 for m in minutes if lo <= m and (hi is None or m < hi)) for lo, hi in HIST_BINS]
    fig.response_on_time_rate, fig.resolve_on_time_rate = street.on_time_response, street.on_time_resolution
    fig.escalations, fig.escalated_cases = street.escalations, street.escalated_cases
    fig.ratings, fig.rating_avg = street.ratings, street.satisfaction
    fig.rating_response_rate, fig.reopen_rate = street.rating_response_rate, street.reopen_rate
    fig.answered_questions, fig.refusals = street.answered_questions, street.refusals
    street_level: set[int] = set()
    top = max((s.level for s in policies.sla.escalation.ladder), default=0)
    threshold = policies.sla.resident_feedback.reopen_at_or_below
    for ev in events:
        data = ev.data or {}
        if ev.action == "escalate" and data.get("level") == top:
            street_level.add(ev.case_id)
        elif ev.action in stats.RATING_ACTIONS and isinstance(data.get("rating"), int):
            fig.low_ratings += int(data["rating"]) <= threshold
        if ev.action == "reopen":
            fig.reopened += 1
        elif ev.action == "auto_close":
            fig.auto_closed += 1
    fig.street_level_cases = len(street_level)
    fig.reminders = sum(1 for k in kinds if k.startswith("remind_"))
    fig.rating_requests = sum(1 for k in kinds if k == "rating_request")
    fig.closed_rated = sum(1 for c in cases if c.close_reason == CloseReason.rated.value)
    fig.still_open = sum(1 for c in cases if c.status not in ("resolved", "closed"))
    fig.hotspots = len(spots)
    fig.hotspot_reports = sum(s.report_count for s in spots)
    voiced = [c for c in cases if any(a.get("type") == "voice" for a in c.attachments or [])]
    fig.voice_cases = len(voiced)
    fig.voice_message_cases = sum(1 for c in voiced if c.title.startswith("语音留言"))  # texts.VOICE_CASE_TITLE
    fig.load = [{"name": w.name, "role": w.role, "grid": w.grid_id, "open": w.open, "overdue": w.overdue,
                 "resolved": w.resolved} for w in load if w.open or w.resolved]
    return fig, lines


def _chat_users(session: Session) -> dict[int, int]:
    """Resident id -> the demo channel's user id the simulated resident wrote from."""
    accounts = session.exec(select(Account).where(col(Account.channel) == CHANNEL,
                                                  col(Account.resident_id).is_not(None))).all()
    return {a.resident_id: int(a.external_id) for a in accounts
            if a.resident_id is not None and a.external_id.isdigit()}


def _agreement(fig: Figures, cases: list[Case], owners: dict[int, int], expected: list[Expected]) -> None:
    """Trace each report in the scenario to the case its sender opened within 10 minutes; compare labels."""
    by_user: dict[int, list[Case]] = {}
    for c in sorted(cases, key=lambda c: (c.created_at, c.id or 0)):
        user = owners.get(c.resident_id) if c.resident_id is not None else None
        if user is not None:
            by_user.setdefault(user, []).append(c)
    used: set[int] = set()
    cat = urg = n = 0
    for user_id, at, category, urgency in expected:
        match = next((c for c in by_user.get(user_id, []) if c.id not in used
                      and at <= c.created_at <= at + timedelta(minutes=10)), None)
        if match is None:
            continue
        used.add(match.id or 0)
        n += 1
        cat += match.category == category
        urg += match.urgency == urgency
    fig.labelled_cases = n
    if n:
        fig.category_agreement = round(cat / n, 4)
        fig.urgency_agreement = round(urg / n, 4)


# ---------------------------------------------------------------- terminal
def _wish_counts(fig: Figures) -> str:
    w = fig.wishes
    return f"{w.get('collected', 0)} / {w.get('claimed', 0)} / {w.get('fulfilled', 0)}"


def _rate(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:.1f}%"


def _min(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f} 分钟"


def grid_figures(engine: Engine, now: datetime) -> list[GridFigures]:
    """Per-grid promise figures from `casestore.stats` (current clock cycle of each case, as the admin sees)."""
    with Session(engine) as session:
        return list(stats.compute(session=session, now=now)["grid"])


def _grid_table(rows: list[GridFigures]) -> Table:
    t = Table(title="各网格（casestore.stats 口径：按当前办理周期）")
    for name, justify in (("网格", "left"), ("工单", "right"), ("响应中位数", "right"), ("按时响应", "right"),
                          ("按时办结", "right"), ("满意度", "right"), ("重复", "right"), ("热点", "right")):
        t.add_column(name, justify=justify)  # type: ignore[arg-type]
    for g in rows:
        t.add_row(g.key, str(g.cases), _min(g.median_response_min), _rate(g.on_time_response),
                  _rate(g.on_time_resolution), "—" if g.satisfaction is None else f"{g.satisfaction:.2f}",
                  str(g.duplicates), str(g.hotspots))
    return t


LOAD_COLUMNS = ("人员", "岗位", "网格", "在办", "其中超时", "已办结")


def load_rows(fig: Figures) -> list[tuple[str, ...]]:
    """The load per person as table rows: most open first (the order of casestore.stats.worker_load)."""
    return [(w["name"], role_name(w["role"]), w["grid"] or "社区/街道", str(w["open"]), str(w["overdue"]),
             str(w["resolved"])) for w in fig.load]


def _load_table(fig: Figures) -> Table:
    t = Table(title="各人负荷（在办 / 超时 / 已办结，casestore.stats 口径）")
    for i, name in enumerate(LOAD_COLUMNS):
        t.add_column(name, justify="right" if i >= 3 else "left")
    for row in load_rows(fig):
        t.add_row(*row)
    return t


def print_summary(console: Console, fig: Figures, policies: Policies, *, missing: list[str] | None = None,
                  grids: list[GridFigures] | None = None) -> None:
    tax = policies.taxonomy
    urgencies = ["emergency", "urgent", "normal"]
    t = Table(title="工单：类别 × 紧急程度", show_footer=True)
    t.add_column("类别", footer="合计")
    for u in urgencies:
        t.add_column(tax.name_of(u), justify="right", footer=str(fig.by_urgency.get(u, 0)))
    t.add_column("合计", justify="right", footer=str(fig.cases))
    for cat, row in sorted(fig.by_category.items(), key=lambda kv: -sum(kv[1].values())):
        t.add_row(tax.name_of(cat), *[str(row.get(u, 0)) for u in urgencies], str(sum(row.values())))
    console.print(t)

    k = Table(title="办理时效与闭环", show_header=True)
    k.add_column("指标")
    k.add_column("数值", justify="right")
    rows = [
        ("居民消息（剧本）", str(fig.messages)),
        ("模拟居民", str(fig.residents)),
        ("工单总数（含合并的重复）", str(fig.cases)),
        (LABELS["cases"], str(fig.handled_cases)),
        (LABELS["median_response_min"], _min(fig.response_median_min)),
        (LABELS["p90_response_min"], _min(fig.response_p90_min)),
        (LABELS["on_time_response"], _rate(fig.response_on_time_rate)),
        (LABELS["on_time_resolution"], _rate(fig.resolve_on_time_rate)),
        (LABELS["reopen_rate"], _rate(fig.reopen_rate)),
        ("催办提醒", str(fig.reminders)),
        ("超时升级（次 / 件）", f"{fig.escalations} / {fig.escalated_cases}"),
        ("升级到街道指挥中心（件）", str(fig.street_level_cases)),
        ("热点（未诉先办）", f"{fig.hotspots}（涉及 {fig.hotspot_reports} 件诉求）"),
        ("未诉先办通知：条 / 送达未反映的居民", f"{fig.hotspot_notices} / {fig.hotspot_notices_sent}"),
        (LABELS["duplicates"], str(fig.duplicates_merged)),
        ("仍未办结", str(fig.still_open)),
        ("带居民语音的工单 / 其中语音留言（未转写）", f"{fig.voice_cases} / {fig.voice_message_cases}"),
        ("微心愿：收集 / 认领 / 达成", _wish_counts(fig)),
        (stats.WISH_LABELS["median_claim_min"], _min(fig.wishes.get("median_claim_min"))),
        ("分类与剧本标注一致（类别 / 紧急程度）",
         f"{_rate(fig.category_agreement)} / {_rate(fig.urgency_agreement)}（{fig.labelled_cases} 件）"),
    ]
    for name, value in rows:
        k.add_row(name, value)
    console.print(k)
    console.print("[dim]注：以上与 quanbot stats 同一口径（casestore.stats，全部时间）。时间为自然时间，"
                  "从当前办理周期开始（报告、退回重办或转派）算起；一般件按服务时间（8:30–17:30，工作日）计时限，夜里报的一般件次日上班处理仍算"
                  "按时，所以 P90 可能很长；按时率按各自的时限计算。[/dim]")

    s = Table(title="居民满意度")
    s.add_column("指标")
    s.add_column("数值", justify="right")
    for name, value in (
        ("评价邀请", str(fig.rating_requests)),
        (LABELS["ratings"], str(fig.ratings)),
        (LABELS["rating_response_rate"], _rate(fig.rating_response_rate)),
        (LABELS["satisfaction"], "—" if fig.rating_avg is None else f"{fig.rating_avg:.2f}"),
        (f"低分（≤{policies.sla.resident_feedback.reopen_at_or_below}）次数 / 退回重办次数",
         f"{fig.low_ratings} / {fig.reopened}"),
        ("评价后办结", str(fig.closed_rated)),
        ("72 小时未评价自动办结", str(fig.auto_closed)),
        ("政策回答的有用/没用反馈", str(fig.answer_feedback)),
        (LABELS["answered_questions"], str(fig.answered_questions)),
        (LABELS["refusals"], str(fig.refusals)),
    ):
        s.add_row(name, value)
    console.print(s)
    if grids:
        console.print(_grid_table(grids))
    if fig.load:
        console.print(_load_table(fig))
    for line in missing or []:
        console.print(f"[yellow]⚠ {line}[/yellow]")


# ---------------------------------------------------------------- HTML
_CSS = """
body{font-family:sans-serif;margin:24px;color:#111827;max-width:1040px}
h1{font-size:22px}h2{font-size:17px;margin-top:28px;border-bottom:1px solid #e5e7eb;padding-bottom:4px}
table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #e5e7eb;padding:4px 10px;font-size:13px}
th{background:#f9fafb}td.n{text-align:right}.warn{color:#b45309}.cards{display:flex;flex-wrap:wrap;gap:10px}
.card{border:1px solid #e5e7eb;border-radius:6px;padding:8px 12px;min-width:130px}
.card b{display:block;font-size:20px}.card span{font-size:12px;color:#6b7280}
"""


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def render_html(fig: Figures, lines: list[CaseLine], policies: Policies, *, title: str, start: datetime,
                day_end: datetime, now: datetime, tz: ZoneInfo, run_info: dict[str, str],
                missing: list[str] | None = None, grids: list[GridFigures] | None = None) -> str:
    tax = policies.taxonomy
    hours = list(range(start.astimezone(tz).hour, day_end.astimezone(tz).hour + 1))
    series = {u: [float(fig.per_hour.get(h, {}).get(u, 0)) for h in hours] for u in ("emergency", "urgent", "normal")}
    per_hour = charts.stacked_bars("每小时新建工单（按紧急程度）", [f"{h}时" for h in hours], series,
                                   names={u: tax.name_of(u) for u in series})
    bins = [f"{lo}–{hi}" if hi is not None else f"≥{lo}" for lo, hi in HIST_BINS]
    hist = charts.histogram("首次响应用时分布（分钟）", bins, fig.histogram, x_label="工单数")
    spans = []
    for ln in lines:
        if ln.duplicate:
            continue
        resp_ok = None if ln.responded is None and ln.response_due > now else bool(
            ln.responded and ln.responded <= ln.response_due)
        res_ok = None if ln.resolved is None and ln.resolve_due > now else bool(
            ln.resolved and ln.resolved <= ln.resolve_due)
        label = (f"{ln.code} {tax.name_of(ln.category)}·{tax.name_of(ln.urgency)} 开 {ln.opened.astimezone(tz):%H:%M}"
                 f" 响应 {ln.responded.astimezone(tz).strftime('%d日%H:%M') if ln.responded else '—'}"
                 f" 办结 {ln.resolved.astimezone(tz).strftime('%d日%H:%M') if ln.resolved else '—'}")
        spans.append(charts.Span(label=label, group=ln.grid, opened=ln.opened, responded=ln.responded,
                                 resolved=ln.resolved, response_on_time=resp_ok, resolve_on_time=res_ok))
    timeline_end = day_end + timedelta(hours=2)
    tl = charts.timeline("各网格工单时效（首个办理周期：开单 → 首次响应 → 办结；超出右边界的以箭头表示）", spans,
                         start=start, end=timeline_end, tz=tz)
    cards = [("居民消息", fig.messages), ("工单（含合并的重复）", fig.cases),
             (LABELS["median_response_min"], _min(fig.response_median_min)),
             (LABELS["p90_response_min"], _min(fig.response_p90_min)),
             (LABELS["on_time_response"], _rate(fig.response_on_time_rate)),
             (LABELS["on_time_resolution"], _rate(fig.resolve_on_time_rate)), (LABELS["escalations"], fig.escalations),
             (LABELS["hotspots"], fig.hotspots), (LABELS["duplicates"], fig.duplicates_merged),
             (LABELS["satisfaction"], "—" if fig.rating_avg is None else f"{fig.rating_avg:.2f}"),
             (LABELS["rating_response_rate"], _rate(fig.rating_response_rate)), ("自动办结", fig.auto_closed),
             ("带语音的工单 / 语音留言", f"{fig.voice_cases} / {fig.voice_message_cases}"),
             ("微心愿：收集 / 认领 / 达成", _wish_counts(fig))]
    cat_rows = "".join(
        f"<tr><td>{_e(tax.name_of(c))}</td>" + "".join(f"<td class='n'>{row.get(u, 0)}</td>"
                                                        for u in ("emergency", "urgent", "normal"))
        + f"<td class='n'>{sum(row.values())}</td></tr>"
        for c, row in sorted(fig.by_category.items(), key=lambda kv: -sum(kv[1].values())))
    info = "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in run_info.items())
    grid_rows = "".join(
        f"<tr><td>{_e(g.key)} {_e(g.name)}</td><td class='n'>{g.cases}</td>"
        f"<td class='n'>{_e(_min(g.median_response_min))}</td>"
        f"<td class='n'>{_rate(g.on_time_response)}</td><td class='n'>{_rate(g.on_time_resolution)}</td>"
        f"<td class='n'>{'—' if g.satisfaction is None else f'{g.satisfaction:.2f}'}</td>"
        f"<td class='n'>{g.duplicates}</td><td class='n'>{g.hotspots}</td></tr>" for g in grids or [])
    load = "".join("<tr>" + "".join(f"<td class='n'>{_e(v)}</td>" if i >= 3 else f"<td>{_e(v)}</td>"
                                  for i, v in enumerate(row)) + "</tr>" for row in load_rows(fig))
    warn = "".join(f"<p class='warn'>⚠ {_e(m)}</p>" for m in missing or [])
    return (
        "<!doctype html><html lang='zh-CN'><head><meta charset='utf-8'>"
        f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>"
        f"<h1>{_e(title)}</h1>{warn}<div class='cards'>"
        + "".join(f"<div class='card'><b>{_e(v)}</b><span>{_e(k)}</span></div>" for k, v in cards)
        + f"</div><h2>每小时新建工单</h2>{per_hour}<h2>首次响应用时</h2>{hist}"
        f"<h2>各网格 SLA 时间线</h2>{tl}"
        "<h2>类别 × 紧急程度</h2><table><tr><th>类别</th><th>紧急</th><th>加急</th><th>一般</th><th>合计</th></tr>"
        f"{cat_rows}</table><h2>各网格（按当前办理周期）</h2><table><tr><th>网格</th><th>工单</th><th>响应中位数</th>"
        f"<th>按时响应</th><th>按时办结</th><th>满意度</th><th>重复</th><th>热点</th></tr>{grid_rows}</table>"
        "<h2>各人负荷</h2><table><tr>" + "".join(f"<th>{_e(c)}</th>" for c in LOAD_COLUMNS) + f"</tr>{load}</table>"
        f"<h2>运行信息</h2><table>{info}</table></body></html>"
    )


def write_report(path: Path, content: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content, encoding="utf-8")
    return path
