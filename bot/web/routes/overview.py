"""总览: today's, this week's and all-time figures for the signed-in person's scope, refreshed live.

Owns: the overview page, its htmx fragment and `/api/overview`. Every figure and its Chinese label come from
`casestore.stats.overview`, the one definition that `quanbot stats` and the demo summary use as well.
Must not: compute a figure itself.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from sqlmodel import Session

from bot.web.render import page
from bot.web.security import DbDep, Staff, StaffDep
from casestore.stats import Overview, overview

NAV = ("/", "总览")
api = APIRouter(tags=["总览"])
pages = APIRouter()
# the tiles, in the order a duty officer reads them: (figure, format, is it bad when above zero)
TILES = [("cases", "n", False), ("median_response_min", "n", False), ("p90_response_min", "n", False),
         ("on_time_response", "pct", False), ("on_time_resolution", "pct", False), ("overdue_now", "n", True),
         ("escalations", "n", True), ("satisfaction", "1f", False), ("reopen_rate", "pct", False),
         ("answered_questions", "n", False), ("refusals", "n", False)]


def _overview(request: Request, staff: Staff, session: Session) -> Overview:
    services = request.app.state.services
    scope = None if staff.scope.grid_ids is None else sorted(staff.scope.grid_ids)
    return overview(session=session, now=services.clock.now(), tz=services.settings.tz, scope=scope)


@api.get("/overview", summary="总览指标：今日、本周与全部时间（按账号范围）")
def overview_api(request: Request, staff: StaffDep, session: DbDep) -> dict[str, Any]:
    return {"scope_label": staff.scope.label, **_overview(request, staff, session).to_dict()}


@pages.get("/")
def overview_page(request: Request, staff: StaffDep, session: DbDep) -> Response:
    return page(request, "overview.html", staff, o=_overview(request, staff, session), tiles=TILES)


@pages.get("/overview/fragment")
def overview_fragment(request: Request, staff: StaffDep, session: DbDep) -> Response:
    return page(request, "overview_body.html", staff, o=_overview(request, staff, session), tiles=TILES)
