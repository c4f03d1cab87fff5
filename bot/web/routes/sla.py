"""SLA 风险: what is about to breach or has breached, in the signed-in account's scope, refreshed live.

Owns: the SLA page and `/api/sla`: cases whose running due time falls within 2 hours, overdue cases, open cases
by escalation level (names from the sla.yaml ladder), each worker's open load and on-time resolution rate
(casestore.stats.worker_load, the one definition), and the pending extension requests with 批准/驳回 (the forms
post to the case's own extension action in routes/cases.py).
Must not: define a figure (casestore.stats does) or change a case itself.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel
from sqlmodel import Session

from bot.web.render import page
from bot.web.routes.cases import (
    CasePublic,
    ExtensionPublic,
    Names,
    cases_public,
    console_actor,
    pending_public,
)
from bot.web.security import DbDep, Staff, StaffDep
from casestore import actions
from casestore.board import Order, Risk, list_board, open_by_escalation_level, staff_label
from casestore.stats import worker_load

NAV = ("/sla", "SLA 风险")
api = APIRouter(tags=["SLA 风险"])
pages = APIRouter()
LIST_LIMIT = 50


class RiskList(BaseModel):
    total: int
    items: list[CasePublic]


class EscalationLevel(BaseModel):
    level: int
    name: str
    cases: int


class WorkerLoadPublic(BaseModel):
    worker_id: int
    label: str
    grid_name: str
    open: int
    overdue: int
    on_time_resolution: float | None
    resolved: int


class SlaOverview(BaseModel):
    scope: str
    due_soon: RiskList
    overdue: RiskList
    escalations: list[EscalationLevel]
    workers: list[WorkerLoadPublic]
    pending_extensions: list[ExtensionPublic]


def _overview(request: Request, staff: Staff, session: Session) -> SlaOverview:
    services = request.app.state.services
    now = services.clock.now()
    names = Names.of(request)
    grid_ids = staff.scope.grid_ids
    lists = {}
    for risk in (Risk.due_soon, Risk.overdue):
        found = list_board(session=session, now=now, grid_ids=grid_ids, risk=risk, order=Order.urgent,
                           limit=LIST_LIMIT)
        lists[risk] = RiskList(total=found.total, items=cases_public(session, found.cases, names=names, now=now))
    at_level = open_by_escalation_level(session=session, grid_ids=grid_ids)
    ladder = services.policies.sla.escalation.ladder
    escalations = [EscalationLevel(level=step.level, name=step.name, cases=at_level.get(step.level, 0))
                   for step in sorted(ladder, key=lambda s: s.level)]
    loads = worker_load(session=session, now=now, scope=sorted(grid_ids) if grid_ids is not None else None)
    workers = [WorkerLoadPublic(worker_id=w.worker_id, label=staff_label(name=w.name, role=w.role),
                                grid_name=names.grids.get(w.grid_id or "", ("—", ""))[0], open=w.open,
                                overdue=w.overdue, on_time_resolution=w.on_time_resolution, resolved=w.resolved)
               for w in loads]
    pending = actions.list_pending_extensions(session=session, actor=console_actor(staff), limit=LIST_LIMIT)
    return SlaOverview(scope=staff.scope.label, due_soon=lists[Risk.due_soon], overdue=lists[Risk.overdue],
                       escalations=escalations, workers=workers, pending_extensions=pending_public(session, pending))


@api.get("/sla", response_model=SlaOverview, summary="SLA 风险：即将超时、已超时、升级、人员负荷、待审批延期")
def sla_api(request: Request, staff: StaffDep, session: DbDep) -> SlaOverview:
    return _overview(request, staff, session)


@pages.get("/sla")
def sla_page(request: Request, staff: StaffDep, session: DbDep) -> Response:
    return page(request, "sla.html", staff, o=_overview(request, staff, session))


@pages.get("/sla/fragment")
def sla_fragment(request: Request, staff: StaffDep, session: DbDep) -> Response:
    return page(request, "sla_body.html", staff, o=_overview(request, staff, session))
