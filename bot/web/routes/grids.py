"""网格与热点 (未诉先办): per-grid figures, the community × category heatmap, a schematic map of grids and buildings
drawn from grids.yaml (server-rendered SVG, no tiles), hotspot clusters with their cases, and 「发通知」 to the
residents of chosen buildings.

Owns: the /grids pages and /api/grids*. Figures come from casestore.stats (grid_figures, category_heatmap), cases by
building and hotspots from casestore.buildings, notices from casestore.broadcasts (one Notification per consenting,
not-opted-out resident, unique per notice key; the dispatcher sends them at each channel's rate limit).
Scope: an account sees the grids of its scope only, and may notify a target only if it holds every grid the
target touches (403 otherwise).
Must not: compute a figure, choose recipients or send anything itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import BaseModel, Field
from sqlmodel import Session

from bot.web.render import page
from bot.web.security import MAX_ROW_ID, DbDep, RowId, Staff, StaffDep
from casestore import broadcasts
from casestore.board import STATUS_LABELS
from casestore.broadcasts import TOPICS, NoticeError, Target
from casestore.buildings import HotspotCases, building_cases, hotspot_cases, list_hotspots, open_cases_by_building
from casestore.errors import NotFound, PermissionDenied
from casestore.models import Case, Hotspot, Notice
from casestore.stats import category_heatmap, grid_figures, window_starts
from policies.masking import mask_text
from policies.models import Grids

NAV = ("/grids", "网格与热点")
api = APIRouter(tags=["网格与热点"])
pages = APIRouter()

DELIVERY_LABELS = {"pending": "待发送", "sending": "发送中", "sent": "已送达", "failed": "发送失败"}
WINDOW_LABELS = {"today": "今日", "week": "本周", "all": "全部时间"}
Window = Literal["today", "week", "all"]
# one hue per grid, in grids.yaml order (the map's outlines and legend)
GRID_COLOURS = ("#2f6fad", "#3c9a5f", "#9a5bb5", "#c07a16", "#1f9aa3", "#b5475b", "#5b6bb5", "#7a8c1f")


# ---------------------------------------------------------------- scope
def _hotspot_scopes(staff: Staff, grids: Grids) -> set[str] | None:
    """The Hotspot.scope values an account sees: a grid leader only their grid's, a community its own and its grids'."""
    if staff.scope.is_street:
        return None
    out = {f"grid:{g}" for g in staff.scope.grid_ids or ()}
    if staff.scope.kind == "community":
        out |= {f"community:{c}" for c in staff.scope.community_ids or ()}
    return out


def _may_notify(staff: Staff, target: Target) -> bool:
    if staff.scope.is_street:
        return True
    return bool(target.grid_ids) and all(staff.scope.allows(g) for g in target.grid_ids)


def _check_target(staff: Staff, target: Target) -> None:
    if not _may_notify(staff, target):
        raise PermissionDenied(f"{staff.actor} may not notify {target.key}",
                               f"您没有权限给「{target.label}」发通知：只能通知您负责范围内的楼栋。")


def _visible_notice(staff: Staff, grids: Grids, notice: Notice) -> bool:
    try:
        return _may_notify(staff, broadcasts.target_from_key(grids, notice.target))
    except (NotFound, NoticeError):  # grids.yaml no longer has it: the street only
        return staff.scope.is_street


# ---------------------------------------------------------------- the map
@dataclass(frozen=True)
class BuildingBox:
    estate: str
    number: int
    grid_id: str | None
    grid_name: str
    open: int
    hot: bool
    x: int
    y: int
    colour: str
    fill: str

    @property
    def title(self) -> str:
        hot = " · 热点" if self.hot else ""
        return f"{self.estate}{self.number}号楼 · {self.grid_name or '未划网格'} · 在办 {self.open} 件{hot}"


@dataclass(frozen=True)
class MapLabel:
    x: int
    y: int
    text: str
    kind: str  # "community" | "estate"


@dataclass(frozen=True)
class SchematicMap:
    width: int
    height: int
    buildings: list[BuildingBox]
    labels: list[MapLabel]
    legend: list[tuple[str, str, str]]  # (grid id, name, colour)


BOX, GAP, PER_ROW, LEFT = 30, 6, 18, 130


def _fill(open_cases: int) -> str:
    if open_cases <= 0:
        return "#eef3f8"
    if open_cases == 1:
        return "#fde7c8"
    if open_cases <= 3:
        return "#f6b26b"
    return "#e4572e"


def build_map(grids: Grids, staff: Staff, open_by_building: dict[tuple[str, int], int],
              hot: set[tuple[str, int]]) -> SchematicMap:
    """Communities → estates → buildings of the account's scope, each building outlined in its grid's colour and
    filled by its open cases; hotspot buildings marked."""
    colours: dict[str, str] = {}
    names: dict[str, str] = {}
    for community in grids.communities:
        for grid in community.grids:
            colours[grid.id] = GRID_COLOURS[len(colours) % len(GRID_COLOURS)]
            names[grid.id] = grid.name
    boxes: list[BuildingBox] = []
    labels: list[MapLabel] = []
    legend: list[tuple[str, str, str]] = []
    y = 10
    for community in grids.communities:
        if not staff.scope.allows_community(community.id):
            continue
        shown = [g for g in community.grids if staff.scope.allows(g.id)]
        if not shown:
            continue
        legend += [(g.id, g.name, colours[g.id]) for g in shown]
        labels.append(MapLabel(10, y + 16, community.name, "community"))
        y += 28
        for estate in community.estates:
            numbers = [n for n in range(1, estate.buildings + 1)
                       if staff.scope.allows(grids.grid_for(estate.name, n)) or staff.scope.is_street]
            if not numbers:
                continue
            labels.append(MapLabel(16, y + 20, estate.name, "estate"))
            for i, n in enumerate(numbers):
                grid_id = grids.grid_for(estate.name, n)
                count = open_by_building.get((estate.name, n), 0)
                boxes.append(BuildingBox(
                    estate.name, n, grid_id, names.get(grid_id or "", ""), count, (estate.name, n) in hot,
                    LEFT + (i % PER_ROW) * (BOX + GAP), y + (i // PER_ROW) * (BOX + GAP),
                    colours.get(grid_id or "", "#999999"), _fill(count)))
            rows = (len(numbers) + PER_ROW - 1) // PER_ROW
            y += rows * (BOX + GAP) + 10
        y += 8
    return SchematicMap(LEFT + PER_ROW * (BOX + GAP) + 10, max(y, 40), boxes, labels, legend)


# ---------------------------------------------------------------- reading
def _services(request: Request) -> Any:
    return request.app.state.services


def _since(request: Request, window: str) -> Any:
    services = _services(request)
    return window_starts(services.clock.now(), services.settings.tz).get(window)


def _category_names(request: Request) -> dict[str, str]:
    return {k.value: v.name for k, v in _services(request).policies.taxonomy.categories.items()}


def _case_row(case: Case, grids_by_id: dict[str, str]) -> dict[str, Any]:
    return {"code": case.code, "title": mask_text(case.title), "status": case.status,
            "status_name": STATUS_LABELS.get(case.status, case.status), "grid_id": case.grid_id,
            "grid_name": grids_by_id.get(case.grid_id or "", case.grid_id or "—"), "created_at": case.created_at}


def _grid_names(grids: Grids) -> dict[str, str]:
    return {g.id: g.name for c in grids.communities for g in c.grids}


def _scope_name(grids: Grids, scope: str) -> str:
    kind, _, ident = scope.partition(":")
    if kind == "grid":
        return _grid_names(grids).get(ident, ident)
    return next((c.name for c in grids.communities if c.id == ident), ident)


def _hotspots(request: Request, staff: Staff, session: Session, limit: int = 30) -> list[dict[str, Any]]:
    grids = _services(request).policies.grids
    names = _grid_names(grids)
    categories = _category_names(request)
    found = list_hotspots(session=session, scopes=_hotspot_scopes(staff, grids), limit=limit)
    out = []
    for item in hotspot_cases(session=session, hotspots=found):
        out.append(_hotspot_dict(item, grids, names, categories, staff))
    return out


def _hotspot_dict(item: HotspotCases, grids: Grids, names: dict[str, str], categories: dict[str, str],
                  staff: Staff) -> dict[str, Any]:
    h = item.hotspot
    buildings = [b for b in item.buildings if staff.scope.is_street or staff.scope.allows(grids.grid_for(*b))]
    return {"id": h.id, "scope": h.scope, "scope_name": _scope_name(grids, h.scope), "category": h.category,
            "category_name": categories.get(h.category, h.category), "opened_at": h.opened_at,
            "last_report_at": h.last_report_at, "report_count": h.report_count,
            "buildings": [f"{e}:{n}" for e, n in buildings],
            "building_names": [f"{e}{n}号楼" for e, n in buildings],
            "cases": [_case_row(c, names) for c in item.cases if staff.scope.allows(c.grid_id)]}


def _heatmap(request: Request, staff: Staff, session: Session, since: Any) -> dict[str, Any]:
    now = _services(request).clock.now()
    heat = category_heatmap(session=session, now=now, since=since, scope=staff.scope.grid_ids,
                            category_names=_category_names(request))
    communities = [(c, n) for c, n in heat.communities if staff.scope.allows_community(c)]
    peak = max(heat.counts.values(), default=0)
    rows = []
    for cid, cname in communities:
        cells = []
        for kid, _ in heat.categories:
            n = heat.counts.get((cid, kid), 0)
            cells.append({"count": n, "alpha": round(0.12 + 0.78 * n / peak, 2) if n and peak else 0})
        rows.append({"id": cid, "name": cname, "cells": cells, "total": sum(c["count"] for c in cells)})
    return {"categories": [{"id": k, "name": n} for k, n in heat.categories], "rows": rows, "peak": peak}


def _figures(request: Request, staff: Staff, session: Session, since: Any) -> list[dict[str, Any]]:
    now = _services(request).clock.now()
    figures = grid_figures(session=session, now=now, since=since, scope=staff.scope.grid_ids)
    return [f.to_dict() for f in figures if staff.scope.allows(f.key)]


def _notices(request: Request, staff: Staff, session: Session, limit: int = 20) -> list[dict[str, Any]]:
    grids = _services(request).policies.grids
    shown = [n for n in broadcasts.list_notices(session=session, limit=200) if _visible_notice(staff, grids, n)]
    shown = shown[:limit]
    states = broadcasts.delivery_states(session=session, notice_ids=[n.id for n in shown if n.id is not None])
    return [_notice_dict(n, grids, states.get(n.id or 0, {})) for n in shown]


def _notice_dict(notice: Notice, grids: Grids, states: dict[str, int]) -> dict[str, Any]:
    try:
        label = broadcasts.target_from_key(grids, notice.target).label
    except (NotFound, NoticeError):
        label = notice.target
    return {"id": notice.id, "topic": notice.topic, "topic_name": TOPICS.get(notice.topic, notice.topic),
            "text": notice.text, "target": notice.target, "target_name": label, "hotspot_id": notice.hotspot_id,
            "recipients": notice.recipients, "opted_out": notice.opted_out, "created_by": notice.created_by,
            "created_at": notice.created_at, "states": {k: states.get(k, 0) for k in DELIVERY_LABELS}}


# ---------------------------------------------------------------- API models
class BuildingOut(BaseModel):
    estate: str
    number: int
    grid_id: str | None
    open: int
    hotspot: bool


class CaseOut(BaseModel):
    code: str
    title: str
    status: str
    status_name: str
    grid_id: str | None
    created_at: Any


class HotspotOut(BaseModel):
    id: int | None
    scope: str
    scope_name: str
    category: str
    category_name: str
    opened_at: Any
    last_report_at: Any
    report_count: int
    buildings: list[str]
    cases: list[CaseOut]


class NoticeIn(BaseModel):
    key: str = Field(min_length=8, max_length=64, description="去重键：同一个键只发一次（重复提交不会重复发送）")
    topic: str = Field(max_length=20, description="停水、停电、电梯维保、疫苗接种、其他（或 water/power/…）")
    text: str = Field(min_length=1, max_length=2000)
    buildings: list[str] = Field(default_factory=list, max_length=500, description="楼栋：小区名:楼号")
    estate: str | None = Field(default=None, max_length=50)
    grid: str | None = Field(default=None, max_length=12)
    community: str | None = Field(default=None, max_length=50)
    hotspot_id: int | None = Field(default=None, ge=1, le=MAX_ROW_ID)
    skip_reporters: bool = Field(default=True, description="热点通知不发给已反映的居民（他们会收到自己工单的进展）")


class NoticeOut(BaseModel):
    id: int | None
    topic: str
    topic_name: str
    text: str
    target: str
    target_name: str
    hotspot_id: int | None
    recipients: int
    opted_out: int
    created_by: str
    created_at: Any
    states: dict[str, int]


class NoticeSent(BaseModel):
    notice: NoticeOut
    created: bool
    added: int


# ---------------------------------------------------------------- sending
def _target(grids: Grids, body: NoticeIn) -> Target:
    given = [x for x in (bool(body.buildings), bool(body.estate), bool(body.grid), bool(body.community)) if x]
    if len(given) != 1:
        raise NoticeError("one target", "请只选择一种通知对象：楼栋、小区、网格或社区。")
    if body.buildings:
        return broadcasts.building_target(grids, [broadcasts.parse_building(b) for b in body.buildings])
    if body.estate:
        return broadcasts.estate_target(grids, body.estate)
    if body.grid:
        return broadcasts.grid_target(grids, body.grid)
    return broadcasts.community_target(grids, body.community or "")


def _send(request: Request, staff: Staff, session: Session, body: NoticeIn) -> NoticeSent:
    services = _services(request)
    grids = services.policies.grids
    target = _target(grids, body)
    _check_target(staff, target)
    exclude: frozenset[int] = frozenset()
    if body.hotspot_id is not None:
        hotspot = session.get(Hotspot, body.hotspot_id)
        scopes = _hotspot_scopes(staff, grids)
        if hotspot is None or (scopes is not None and hotspot.scope not in scopes):
            raise NotFound(f"no hotspot {body.hotspot_id}", "没有找到这个热点。")
        if body.skip_reporters:
            exclude = hotspot_cases(session=session, hotspots=[hotspot])[0].reporters
    result = broadcasts.send_notice(session=session, key=body.key, topic=body.topic, text=body.text, target=target,
                                    actor=staff.actor, now=services.clock.now(), hotspot_id=body.hotspot_id,
                                    exclude_residents=exclude)
    assert result.notice.id is not None
    states = broadcasts.delivery_states(session=session, notice_ids=[result.notice.id])
    out = NoticeOut(**_notice_dict(result.notice, grids, states.get(result.notice.id, {})))
    return NoticeSent(notice=out, created=result.created, added=result.added)


def _notice_or_404(request: Request, staff: Staff, session: Session, notice_id: int) -> dict[str, Any]:
    grids = _services(request).policies.grids
    notice = broadcasts.get_notice(session=session, notice_id=notice_id)
    if not _visible_notice(staff, grids, notice):
        raise PermissionDenied(f"{staff.actor} may not see notice {notice_id}", "您没有权限查看这条通知。")
    states = broadcasts.delivery_states(session=session, notice_ids=[notice_id])
    return _notice_dict(notice, grids, states.get(notice_id, {}))


# ---------------------------------------------------------------- API
WindowQ = Annotated[Window, Query(description="今日 today / 本周 week / 全部 all")]


@api.get("/grids", summary="各网格指标与社区×类别热力表（按账号范围）")
def grids_api(request: Request, staff: StaffDep, session: DbDep, window: WindowQ = "all") -> dict[str, Any]:
    since = _since(request, window)
    return {"scope": staff.scope.label, "window": window, "grids": _figures(request, staff, session, since),
            "heatmap": _heatmap(request, staff, session, since)}


@api.get("/grids/buildings", summary="示意图上的楼栋：所属网格、在办工单、是否热点", response_model=list[BuildingOut])
def buildings_api(request: Request, staff: StaffDep, session: DbDep) -> list[BuildingOut]:
    drawn = _map(request, staff, session)
    return [BuildingOut(estate=b.estate, number=b.number, grid_id=b.grid_id, open=b.open, hotspot=b.hot)
            for b in drawn.buildings]


@api.get("/grids/hotspots", summary="热点（未诉先办）及其工单", response_model=list[HotspotOut])
def hotspots_api(request: Request, staff: StaffDep, session: DbDep,
                 limit: Annotated[int, Query(ge=1, le=200)] = 30) -> list[dict[str, Any]]:
    return _hotspots(request, staff, session, limit)


@api.get("/grids/notices", summary="已发通知及送达状态", response_model=list[NoticeOut])
def notices_api(request: Request, staff: StaffDep, session: DbDep,
                limit: Annotated[int, Query(ge=1, le=200)] = 20) -> list[dict[str, Any]]:
    return _notices(request, staff, session, limit)


@api.get("/grids/notices/{notice_id}", summary="一条通知的送达状态", response_model=NoticeOut)
def notice_api(request: Request, staff: StaffDep, session: DbDep,
               notice_id: RowId) -> dict[str, Any]:
    return _notice_or_404(request, staff, session, notice_id)


@api.post("/grids/notices", summary="发通知（未诉先办）：每位居民一条，已退订的不发，同一去重键只发一次",
          response_model=NoticeSent)
def send_api(request: Request, staff: StaffDep, session: DbDep, body: NoticeIn) -> NoticeSent:
    return _send(request, staff, session, body)


# ---------------------------------------------------------------- pages
def _map(request: Request, staff: Staff, session: Session) -> SchematicMap:
    grids = _services(request).policies.grids
    open_by = open_cases_by_building(session=session, grid_ids=staff.scope.grid_ids)
    active = list_hotspots(session=session, scopes=_hotspot_scopes(staff, grids), limit=50)
    hot = {b for item in hotspot_cases(session=session, hotspots=active) for b in item.buildings}
    return build_map(grids, staff, open_by, hot)


@pages.get("/grids")
def grids_page(request: Request, staff: StaffDep, session: DbDep, window: WindowQ = "all") -> Response:
    since = _since(request, window)
    return page(request, "grids.html", staff, window=window, windows=WINDOW_LABELS,
                figures=_figures(request, staff, session, since), heatmap=_heatmap(request, staff, session, since),
                map=_map(request, staff, session), hotspots=_hotspots(request, staff, session),
                notices=_notices(request, staff, session, 10), delivery_labels=DELIVERY_LABELS)


@pages.get("/grids/building")
def building_page(request: Request, staff: StaffDep, session: DbDep,
                  estate: Annotated[str, Query(max_length=50)], n: Annotated[int, Query(ge=1, le=999)]) -> Response:
    grids = _services(request).policies.grids
    target = broadcasts.building_target(grids, [(estate, n)])
    if not _may_notify(staff, target):
        raise PermissionDenied(f"{staff.actor} may not see {target.key}", "您没有权限查看这栋楼。")
    names = _grid_names(grids)
    cases = [_case_row(c, names) for c in building_cases(session=session, estate=estate, building=n,
                                                         grid_ids=staff.scope.grid_ids)]
    grid_id = grids.grid_for(estate, n)
    return page(request, "grids_building.html", staff, estate=estate, number=n, grid_id=grid_id,
                grid_name=names.get(grid_id or "", "未划网格"), cases=cases, label=target.label)


def _choices(grids: Grids, staff: Staff) -> list[dict[str, Any]]:
    """Every building the account may notify, by estate (the form's checkboxes)."""
    out = []
    for community in grids.communities:
        for estate in community.estates:
            numbers = [n for n in range(1, estate.buildings + 1)
                       if staff.scope.is_street or staff.scope.allows(grids.grid_for(estate.name, n))]
            if numbers:
                out.append({"estate": estate.name, "community": community.name, "numbers": numbers})
    return out


@pages.get("/grids/notify")
def notify_page(request: Request, staff: StaffDep, session: DbDep,
                hotspot: Annotated[int | None, Query(ge=1, le=MAX_ROW_ID)] = None,
                building: Annotated[list[str], Query(max_length=200)] = [],  # noqa: B006 - FastAPI's query list
                error: str = "") -> Response:
    grids = _services(request).policies.grids
    chosen = set(building)
    spot = None
    if hotspot is not None:
        found = [h for h in _hotspots(request, staff, session, 200) if h["id"] == hotspot]
        if not found:
            raise NotFound(f"no hotspot {hotspot}", "没有找到这个热点。")
        spot = found[0]
        chosen |= set(spot["buildings"])
    return page(request, "grids_notify.html", staff, topics=TOPICS, choices=_choices(grids, staff),
                chosen=chosen, hotspot=spot, error=error, max_text=broadcasts.MAX_TEXT)


@pages.post("/grids/notify")
def notify_submit(request: Request, staff: StaffDep, session: DbDep, topic: Annotated[str, Form(max_length=20)],
                  text: Annotated[str, Form(max_length=2000)],
                  building: Annotated[list[str], Form(max_length=500)] = [],  # noqa: B006 - FastAPI's form list
                  hotspot_id: Annotated[int | None, Form(ge=1, le=MAX_ROW_ID)] = None,
                  skip_reporters: Annotated[bool, Form()] = False) -> Response:
    services = _services(request)
    grids = services.policies.grids
    try:
        # keyed by what it says (target, topic, text, day): a second click, or the form sent again after 返回
        # (which renders it anew), finds the first notice instead of sending another
        day = services.clock.now().astimezone(services.settings.tz).strftime("%Y%m%d")
        target = broadcasts.building_target(grids, [broadcasts.parse_building(b) for b in building])
        key = broadcasts.content_key(prefix="web", target=target, topic=topic, text=text, day=day)
    except NoticeError as exc:
        return _form_again(request, staff, grids, building, topic, text, exc.user_message)
    body = NoticeIn.model_construct(key=key, topic=topic, text=text, buildings=building, estate=None, grid=None,
                                    community=None, hotspot_id=hotspot_id, skip_reporters=skip_reporters)
    try:
        sent = _send(request, staff, session, body)
    except NoticeError as exc:
        return _form_again(request, staff, grids, building, topic, text, exc.user_message)
    return RedirectResponse(f"/grids/notices/{sent.notice.id}?new={int(sent.created)}", status_code=303)


def _form_again(request: Request, staff: Staff, grids: Grids, building: list[str], topic: str, text: str,
                error: str) -> Response:
    """The form again, as it was filled, with what to fix."""
    return page(request, "grids_notify.html", staff, status_code=400, topics=TOPICS, choices=_choices(grids, staff),
                chosen=set(building), hotspot=None, error=error, max_text=broadcasts.MAX_TEXT, text=text,
                topic=topic)


@pages.get("/grids/notices/{notice_id}")
def notice_page(request: Request, staff: StaffDep, session: DbDep,
                notice_id: RowId, new: int = 0) -> Response:
    notice = _notice_or_404(request, staff, session, notice_id)
    return page(request, "grids_notice.html", staff, notice=notice, new=new, delivery_labels=DELIVERY_LABELS)


@pages.get("/grids/notices/{notice_id}/states")
def notice_states_fragment(request: Request, staff: StaffDep, session: DbDep,
                           notice_id: RowId) -> Response:
    notice = _notice_or_404(request, staff, session, notice_id)
    return page(request, "grids_notice_states.html", staff, notice=notice, delivery_labels=DELIVERY_LABELS)
