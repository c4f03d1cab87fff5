"""总览: the loop's figures for the signed-in person's scope, refreshed live.

Owns: the overview page and `/api/overview`. Every figure comes from casestore.stats, the one definition that
`quanbot stats` and the demo summary use as well.
Must not: compute a figure itself.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from sqlmodel import Session

from bot.web.render import page
from bot.web.security import DbDep, Staff, StaffDep
from casestore.stats import compute

NAV = ("/", "总览")
api = APIRouter(tags=["总览"])
pages = APIRouter()


def _figures(request: Request, staff: Staff, session: Session) -> list[dict[str, Any]]:
    services = request.app.state.services
    names = {k.value: v.name for k, v in services.policies.taxonomy.categories.items()}
    figures = compute(session=session, now=services.clock.now(), category_names=names)
    if staff.scope.is_street:
        return [f.to_dict() for f in figures["total"]]
    return [f.to_dict() for f in figures["grid"] if staff.scope.allows(f.key)]


@api.get("/overview", summary="总览指标（按账号范围）")
def overview_api(request: Request, staff: StaffDep,
                 session: DbDep) -> dict[str, Any]:
    return {"scope": staff.scope.label, "figures": _figures(request, staff, session)}


@pages.get("/")
def overview_page(request: Request, staff: StaffDep,
                  session: DbDep) -> Response:
    return page(request, "overview.html", staff, figures=_figures(request, staff, session))
