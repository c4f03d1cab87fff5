"""工单: the case board, a case's detail and the actions staff take on it, as pages and as /api/cases/….

Owns: the board page (a GET form, bookmarkable, refreshed in place by htmx), the detail page (audit timeline,
the resident's words, the worker's notes, attachments), the action forms (reassign, extension decision, close
with a note, merge a duplicate, reopen) and the typed public models (`CasePublic`, `CaseDetail`: masked text,
Chinese labels, never a resident's id, phone or room). Queries live in casestore.board; every change is a
casestore.actions function run as the console's admin `Actor` (limited to the account's grids, so casestore's
permission check holds the scope too) and writes its audit event in the request's transaction.
Must not: query or change cases itself, or show raw personal data.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import BaseModel, Field
from sqlmodel import Session

from bot.web.render import page
from bot.web.security import DbDep, Staff, StaffDep
from casestore import actions
from casestore.board import (
    ACTION_LABELS,
    CLOSE_REASON_LABELS,
    OPEN_LABEL,
    ORDER_LABELS,
    RISK_LABELS,
    STATUS_LABELS,
    Order,
    Risk,
    actor_display,
    list_board,
    mask_public,
    risk_of,
    running_due,
    worker_ids_of,
    worker_label,
    workers_by_id,
    workers_in_scope,
)
from casestore.cases import get_case, list_events
from casestore.errors import DomainError, IllegalTransition, NotFound, PermissionDenied
from casestore.models import Case, CaseEvent, Worker
from casestore.permissions import Actor, can

NAV = ("/cases", "工单")
api = APIRouter(tags=["工单"])
pages = APIRouter()

OUT_OF_SCOPE = "这个工单不在您的数据范围内。"
CODE_MAX = 40
# the channel keeps a photo's bytes (Case.attachments holds its file id only) and voice is not accepted yet
ATTACHMENTS_NOTE = "照片与语音的原件保存在居民所用的聊天渠道（如 Telegram），控制台只记录其存在，不保存文件内容。"
TEXT_MAX = 500
StatusFilter = Literal["open", "new", "assigned", "accepted", "in_progress", "resolved", "closed", "reopened"]
# what a successful form action says on the detail page (a fixed table: nothing from the request is echoed)
DONE = {"reassign": "已转派。", "approve": "已批准延期，已通知网格员。", "deny": "已驳回延期申请，已通知网格员。",
        "close": "已结案。", "merge": "已合并为重复工单。", "reopen": "已重新办理，已重新派单。"}


# ---------------------------------------------------------------- public models
class CasePublic(BaseModel):
    """A case as the console shows it: masked text and Chinese labels, no personal data."""

    code: str
    title: str
    category: str
    category_name: str
    urgency: str
    urgency_name: str
    status: str
    status_name: str
    grid_id: str | None
    grid_name: str
    community_name: str
    location: str
    assignee: str
    created_at: datetime
    response_due_at: datetime | None
    resolve_due_at: datetime | None
    first_response_at: datetime | None
    due_at: datetime | None = Field(description="当前计时的时限：未响应时为响应时限，否则为办结时限")
    risk: str | None
    risk_name: str
    escalation_level: int
    close_reason_name: str
    duplicate_of: str | None
    photos: int


class CaseBoard(BaseModel):
    total: int
    limit: int
    offset: int
    items: list[CasePublic]


class EventPublic(BaseModel):
    at: datetime
    action: str
    action_name: str
    actor: str
    from_status_name: str
    to_status_name: str
    note: str


class MessagePublic(BaseModel):
    at: datetime
    kind: str
    text: str


class AttachmentPublic(BaseModel):
    kind: str
    label: str
    by: str


class ExtensionPublic(BaseModel):
    code: str
    title: str
    requested_by: str
    reason: str
    current_due_at: datetime | None
    until: datetime


class WorkerOption(BaseModel):
    id: int
    label: str
    place: str


class CaseDetail(BaseModel):
    case: CasePublic
    description: str
    resident_messages: list[MessagePublic]
    worker_notes: list[MessagePublic]
    events: list[EventPublic]
    attachments: list[AttachmentPublic]
    attachments_note: str
    pending_extension: ExtensionPublic | None
    merged_duplicates: list[str]
    can: dict[str, bool]


class ActionResult(BaseModel):
    message: str
    case: CasePublic


class ReassignIn(BaseModel):
    worker_id: int
    reason: str = Field(min_length=1, max_length=TEXT_MAX)


class ExtensionDecisionIn(BaseModel):
    approve: bool


class CloseIn(BaseModel):
    note: str = Field(min_length=1, max_length=TEXT_MAX)


class MergeIn(BaseModel):
    into: str = Field(min_length=1, max_length=CODE_MAX)


class ReopenIn(BaseModel):
    reason: str = Field(min_length=1, max_length=TEXT_MAX)


# ---------------------------------------------------------------- building the views
@dataclass(frozen=True)
class Names:
    """Chinese names from policies: categories, urgencies, grids and their communities."""

    categories: dict[str, str]
    urgencies: dict[str, str]
    grids: dict[str, tuple[str, str]]  # grid id -> (grid name, community name)
    communities: dict[str, str]

    @classmethod
    def of(cls, request: Request) -> Names:
        policies = request.app.state.services.policies
        tax = policies.taxonomy
        grids = {g.id: (g.name, c.name) for c in policies.grids.communities for g in c.grids}
        return cls(categories={k.value: v.name for k, v in tax.categories.items()},
                   urgencies={k.value: v.name for k, v in tax.urgencies.items()}, grids=grids,
                   communities={c.id: c.name for c in policies.grids.communities})


def console_actor(staff: Staff) -> Actor:
    """The signed-in account as casestore sees it: an admin limited to the account's grids."""
    return Actor(label=staff.actor, is_admin=True, grid_ids=staff.scope.grid_ids)


def _now(request: Request) -> datetime:
    now: datetime = request.app.state.services.clock.now()
    return now


def case_public(c: Case, *, names: Names, now: datetime, workers: dict[int, Worker],
                duplicate_of: str | None = None) -> CasePublic:
    grid_name, community_name = names.grids.get(c.grid_id or "", ("未定位", ""))
    risk = risk_of(c, now)
    return CasePublic(
        code=c.code, title=mask_public(c.title), category=c.category,
        category_name=names.categories.get(c.category, c.category), urgency=c.urgency,
        urgency_name=names.urgencies.get(c.urgency, c.urgency), status=c.status,
        status_name=STATUS_LABELS.get(c.status, c.status), grid_id=c.grid_id, grid_name=grid_name,
        community_name=community_name or names.communities.get(c.community_id or "", ""),
        location=mask_public(c.location_text), created_at=c.created_at,
        assignee=worker_label(workers.get(c.assignee_id)) if c.assignee_id else "—",
        response_due_at=c.response_due_at, resolve_due_at=c.resolve_due_at, first_response_at=c.first_response_at,
        due_at=running_due(c), risk=risk.value if risk else None, risk_name=RISK_LABELS[risk] if risk else "—",
        escalation_level=c.escalation_level, close_reason_name=CLOSE_REASON_LABELS.get(c.close_reason or "", ""),
        duplicate_of=duplicate_of, photos=sum(1 for a in c.attachments if a.get("type") == "photo"))


def cases_public(session: Session, cases: list[Case], *, names: Names, now: datetime) -> list[CasePublic]:
    workers = workers_by_id(session=session, ids=[c.assignee_id for c in cases if c.assignee_id])
    originals = {c.id: c.code for c in (session.get(Case, d) for d in {x.duplicate_of_id for x in cases
                                                                       if x.duplicate_of_id}) if c is not None}
    return [case_public(c, names=names, now=now, workers=workers, duplicate_of=originals.get(c.duplicate_of_id))
            for c in cases]


def scoped_case(session: Session, staff: Staff, code: str) -> Case:
    """The case `code` if the account may see it: NotFound (404) for no such code, PermissionDenied (403)
    outside the account's scope."""
    cleaned = code.strip().upper()[:CODE_MAX]
    if not cleaned:
        raise NotFound("empty case code")
    c = get_case(session=session, code=cleaned)
    if not staff.scope.allows(c.grid_id):
        raise PermissionDenied(f"{staff.actor} outside scope for {c.code}", OUT_OF_SCOPE)
    return c


def _extension_public(p: actions.PendingExtension, workers: dict[int, Worker]) -> ExtensionPublic:
    return ExtensionPublic(code=p.case.code, title=mask_public(p.case.title),
                           requested_by=actor_display(p.requested_by, workers), reason=mask_public(p.reason),
                           current_due_at=p.case.resolve_due_at, until=p.until)


def pending_public(session: Session, pending: list[actions.PendingExtension]) -> list[ExtensionPublic]:
    workers = workers_by_id(session=session, ids=worker_ids_of(p.requested_by for p in pending))
    return [_extension_public(p, workers) for p in pending]


def _attachment(a: dict[str, Any], workers: dict[int, Worker]) -> AttachmentPublic:
    kind = str(a.get("type", ""))
    by = actor_display(str(a["by"]), workers) if a.get("by") else "居民"
    if kind == "photo":
        return AttachmentPublic(kind="photo", label="照片", by=by)
    if kind == "location":
        try:
            lat, lng = float(a.get("lat", 0)), float(a.get("lng", 0))
            label = f"定位（约 {lat:.3f}, {lng:.3f}）"
        except (TypeError, ValueError):
            label = "定位"
        return AttachmentPublic(kind="location", label=label, by=by)
    if kind == "voice":
        return AttachmentPublic(kind="voice", label="语音", by=by)
    return AttachmentPublic(kind=kind or "other", label="附件", by=by)


def _message(e: CaseEvent, kind: str) -> MessagePublic:
    return MessagePublic(at=e.at, kind=kind, text=mask_public(e.note))


def case_detail(session: Session, staff: Staff, c: Case, *, names: Names, now: datetime) -> CaseDetail:
    events = list_events(session=session, case_id=c.id) if c.id is not None else []
    ids = worker_ids_of(e.actor for e in events) | worker_ids_of(str(a.get("by", "")) for a in c.attachments)
    if c.assignee_id:
        ids.add(c.assignee_id)
    workers = workers_by_id(session=session, ids=ids)
    duplicate_of = session.get(Case, c.duplicate_of_id) if c.duplicate_of_id else None
    resident_messages = [MessagePublic(at=c.created_at, kind="报事描述", text=mask_public(c.description))]
    worker_notes: list[MessagePublic] = []
    for e in events:
        if not e.note:
            continue
        if e.actor.startswith("resident:"):
            resident_messages.append(_message(e, "补充" if e.action == "note" else ACTION_LABELS.get(e.action, "")))
        elif e.actor.startswith("worker:"):
            worker_notes.append(_message(e, f"{ACTION_LABELS.get(e.action, e.action)} · "
                                            f"{actor_display(e.actor, workers)}"))
    timeline = [EventPublic(at=e.at, action=e.action, action_name=ACTION_LABELS.get(e.action, e.action),
                            actor=actor_display(e.actor, workers),
                            from_status_name=STATUS_LABELS.get(e.from_status or "", ""),
                            to_status_name=STATUS_LABELS.get(e.to_status or "", ""), note=mask_public(e.note))
                for e in events]
    pending = actions.pending_extension(session=session, case=c)
    if pending is not None:
        workers.update(workers_by_id(session=session, ids=worker_ids_of([pending.requested_by])))
    actor = console_actor(staff)
    merged = [e.data.get("duplicate") for e in events if e.action == "note" and e.data.get("duplicate")]
    return CaseDetail(
        case=case_public(c, names=names, now=now, workers=workers,
                         duplicate_of=duplicate_of.code if duplicate_of else None),
        description=mask_public(c.description), resident_messages=resident_messages, worker_notes=worker_notes,
        events=timeline, attachments=[_attachment(a, workers) for a in c.attachments],
        attachments_note=ATTACHMENTS_NOTE,
        pending_extension=_extension_public(pending, workers) if pending else None,
        merged_duplicates=[str(code) for code in merged],
        can={"reassign": can("transfer", c, actor), "extension": pending is not None,
             "close": can("close", c, actor), "merge": can("merge_duplicate", c, actor),
             "reopen": can("reopen", c, actor) and c.duplicate_of_id is None})


def reassign_options(session: Session, staff: Staff, names: Names, c: Case) -> list[WorkerOption]:
    found = workers_in_scope(session=session, grid_ids=staff.scope.grid_ids,
                             community_ids=staff.scope.community_ids)
    out = []
    for w in found:
        if w.id is None or w.id == c.assignee_id:
            continue
        place = names.grids[w.grid_id][0] if w.grid_id in names.grids else names.communities.get(
            w.community_id or "", "街道")
        out.append(WorkerOption(id=w.id, label=worker_label(w), place=place))
    return out


# ---------------------------------------------------------------- the actions (shared by API and forms)
def do_reassign(request: Request, staff: Staff, session: Session, code: str, worker_id: int, reason: str) -> Case:
    c = scoped_case(session, staff, code)
    target = session.get(Worker, worker_id)
    if target is None or not (staff.scope.allows(target.grid_id) if target.grid_id
                              else staff.scope.allows_community(target.community_id)):
        raise DomainError(f"worker {worker_id} not in scope", "请选择您数据范围内的人员。")
    svc = request.app.state.services
    return actions.transfer(session=session, policies=svc.policies, sla=svc.sla, code=c.code,
                            actor=console_actor(staff), clock=svc.clock, reason=reason, to_worker_id=worker_id)


def do_extension(request: Request, staff: Staff, session: Session, code: str, approve: bool) -> Case:
    c = scoped_case(session, staff, code)
    svc = request.app.state.services
    return actions.decide_extension(session=session, sla=svc.sla, code=c.code, actor=console_actor(staff),
                                    clock=svc.clock, approve=approve)


def do_close(request: Request, staff: Staff, session: Session, code: str, note: str) -> Case:
    c = scoped_case(session, staff, code)
    return actions.close(session=session, code=c.code, actor=console_actor(staff),
                         clock=request.app.state.services.clock, note=note)


def do_merge(request: Request, staff: Staff, session: Session, code: str, into: str) -> Case:
    c = scoped_case(session, staff, code)
    original = scoped_case(session, staff, into)
    return actions.merge_duplicate(session=session, code=c.code, into=original.code, actor=console_actor(staff),
                                   clock=request.app.state.services.clock)


def do_reopen(request: Request, staff: Staff, session: Session, code: str, reason: str) -> Case:
    c = scoped_case(session, staff, code)
    svc = request.app.state.services
    return actions.reopen(session=session, policies=svc.policies, sla=svc.sla, code=c.code,
                          actor=console_actor(staff), clock=svc.clock, reason=reason)


def _result(request: Request, session: Session, c: Case, key: str) -> ActionResult:
    names = Names.of(request)
    return ActionResult(message=DONE[key], case=cases_public(session, [c], names=names, now=_now(request))[0])


# ---------------------------------------------------------------- API
Limit = Annotated[int, Query(description="每页条数（1–200，超出按边界取）")]
Offset = Annotated[int, Query(description="跳过条数（≥0）")]


def _board(request: Request, staff: Staff, session: Session, *, status: str | None, grid: str | None,
           category: str | None, urgency: str | None, risk: Risk | None, order: Order, limit: int,
           offset: int) -> CaseBoard:
    names = Names.of(request)
    now = _now(request)
    found = list_board(session=session, now=now, grid_ids=staff.scope.grid_ids, status=status, grid_id=grid or None,
                       category=category or None, urgency=urgency or None, risk=risk, order=order, limit=limit,
                       offset=offset)
    return CaseBoard(total=found.total, limit=found.limit, offset=found.offset,
                     items=cases_public(session, found.cases, names=names, now=now))


FilterText = Annotated[str | None, Query(max_length=40)]


@api.get("/cases", response_model=CaseBoard, summary="工单列表（按账号范围，可筛选、分页）")
def board_api(request: Request, staff: StaffDep, session: DbDep, status: StatusFilter | None = None,
              grid: FilterText = None, category: FilterText = None, urgency: FilterText = None,
              risk: Risk | None = None, order: Order = Order.newest, limit: Limit = 50,
              offset: Offset = 0) -> CaseBoard:
    return _board(request, staff, session, status=status, grid=grid, category=category, urgency=urgency, risk=risk,
                  order=order, limit=limit, offset=offset)


@api.get("/cases/{code}", response_model=CaseDetail, summary="工单详情：处理记录、居民描述、网格员备注、附件")
def detail_api(request: Request, staff: StaffDep, session: DbDep, code: str) -> CaseDetail:
    c = scoped_case(session, staff, code)
    return case_detail(session, staff, c, names=Names.of(request), now=_now(request))


@api.get("/cases/{code}/workers", response_model=list[WorkerOption], summary="可转派的人员（账号范围内）")
def workers_api(request: Request, staff: StaffDep, session: DbDep, code: str) -> list[WorkerOption]:
    c = scoped_case(session, staff, code)
    return reassign_options(session, staff, Names.of(request), c)


@api.post("/cases/{code}/reassign", response_model=ActionResult, summary="转派给范围内的人员")
def reassign_api(request: Request, staff: StaffDep, session: DbDep, code: str, body: ReassignIn) -> ActionResult:
    c = do_reassign(request, staff, session, code, body.worker_id, body.reason)
    return _result(request, session, c, "reassign")


@api.post("/cases/{code}/extension", response_model=ActionResult, summary="批准或驳回延期申请")
def extension_api(request: Request, staff: StaffDep, session: DbDep, code: str,
                  body: ExtensionDecisionIn) -> ActionResult:
    c = do_extension(request, staff, session, code, body.approve)
    return _result(request, session, c, "approve" if body.approve else "deny")


@api.post("/cases/{code}/close", response_model=ActionResult, summary="填写说明后结案")
def close_api(request: Request, staff: StaffDep, session: DbDep, code: str, body: CloseIn) -> ActionResult:
    return _result(request, session, do_close(request, staff, session, code, body.note), "close")


@api.post("/cases/{code}/merge", response_model=ActionResult, summary="合并为另一在办工单的重复工单")
def merge_api(request: Request, staff: StaffDep, session: DbDep, code: str, body: MergeIn) -> ActionResult:
    return _result(request, session, do_merge(request, staff, session, code, body.into), "merge")


@api.post("/cases/{code}/reopen", response_model=ActionResult, summary="重新办理（已办结或已结案的工单）")
def reopen_api(request: Request, staff: StaffDep, session: DbDep, code: str, body: ReopenIn) -> ActionResult:
    return _result(request, session, do_reopen(request, staff, session, code, body.reason), "reopen")


# ---------------------------------------------------------------- pages
def _filter_choices(request: Request, staff: Staff, names: Names) -> dict[str, Any]:
    grids = [(gid, f"{community}·{name}") for gid, (name, community) in names.grids.items()
             if staff.scope.allows(gid)]
    return {"statuses": [("open", OPEN_LABEL), *STATUS_LABELS.items()], "grids": grids,
            "categories": sorted(names.categories.items()), "urgencies": list(names.urgencies.items()),
            "risks": [(r.value, label) for r, label in RISK_LABELS.items()],
            "orders": [(o.value, label) for o, label in ORDER_LABELS.items()]}


def _clean(value: str | None, allowed: set[str]) -> str | None:
    return value if value in allowed else None


@pages.get("/cases")
def board_page(request: Request, staff: StaffDep, session: DbDep, status: str | None = None,
               grid: str | None = None, category: str | None = None, urgency: str | None = None,
               risk: str | None = None, order: str | None = None, limit: int = 50, offset: int = 0) -> Response:
    names = Names.of(request)
    choices = _filter_choices(request, staff, names)
    # a page's filters come from a bookmark or a hand-edited URL: an unknown value is dropped, never a 500
    chosen = {"status": _clean(status, {k for k, _ in choices["statuses"]}),
              "grid": _clean(grid, {k for k, _ in choices["grids"]}),
              "category": _clean(category, set(names.categories)), "urgency": _clean(urgency, set(names.urgencies)),
              "risk": _clean(risk, {r.value for r in Risk}), "order": _clean(order, {o.value for o in Order})}
    found = _board(request, staff, session, status=chosen["status"], grid=chosen["grid"],
                   category=chosen["category"], urgency=chosen["urgency"],
                   risk=Risk(chosen["risk"]) if chosen["risk"] else None,
                   order=Order(chosen["order"]) if chosen["order"] else Order.newest, limit=limit, offset=offset)
    query = {k: v for k, v in chosen.items() if v}
    ctx = {"board": found, "chosen": chosen, "query": query, **choices}
    fragment = request.headers.get("hx-request") == "true" and request.headers.get("hx-history-restore-request") \
        != "true"
    return page(request, "cases_board.html" if fragment else "cases.html", staff, **ctx)


def _detail_page(request: Request, staff: Staff, session: Session, c: Case, *, done: str = "", error: str = "",
                 status_code: int = 200) -> Response:
    names = Names.of(request)
    detail = case_detail(session, staff, c, names=names, now=_now(request))
    options = reassign_options(session, staff, names, c) if detail.can["reassign"] else []
    return page(request, "cases_detail.html", staff, status_code=status_code, d=detail, options=options,
                done=done, error=error)


@pages.get("/cases/{code}")
def detail_page(request: Request, staff: StaffDep, session: DbDep, code: str, done: str = "") -> Response:
    c = scoped_case(session, staff, code)
    return _detail_page(request, staff, session, c, done=DONE.get(done, ""))


_STATUS_OF_ERROR = ((IllegalTransition, 409), (DomainError, 400))


def _form_action(request: Request, staff: Staff, session: Session, code: str, key: str, run: Any,
                 next_path: str = "") -> Response:
    """Run one action from a form: 303 back to the case (or the SLA page); a refusal re-renders the case with
    the Chinese reason. Scope and unknown codes are checked first and answered 403 / 404 as pages."""
    c = scoped_case(session, staff, code)
    try:
        with session.begin_nested():
            run(c)
    except (PermissionDenied, NotFound):
        raise
    except DomainError as exc:
        session.refresh(c)
        status = next(s for kind, s in _STATUS_OF_ERROR if isinstance(exc, kind))
        return _detail_page(request, staff, session, c, error=exc.user_message, status_code=status)
    target = "/sla" if next_path == "/sla" else f"/cases/{c.code}?done={key}"
    return RedirectResponse(target, status_code=303)


FormText = Annotated[str, Form(max_length=TEXT_MAX)]


@pages.post("/cases/{code}/reassign")
def reassign_form(request: Request, staff: StaffDep, session: DbDep, code: str,
                  worker_id: Annotated[str, Form(max_length=12)] = "", reason: FormText = "") -> Response:
    def run(c: Case) -> None:
        if not worker_id.isdigit():
            raise DomainError("no worker chosen", "请选择要转派的人员。")
        do_reassign(request, staff, session, c.code, int(worker_id), reason)
    return _form_action(request, staff, session, code, "reassign", run)


@pages.post("/cases/{code}/extension")
def extension_form(request: Request, staff: StaffDep, session: DbDep, code: str,
                   decision: Annotated[str, Form(max_length=10)] = "",
                   next: Annotated[str, Form(max_length=10)] = "") -> Response:
    def run(c: Case) -> None:
        if decision not in ("approve", "deny"):
            raise DomainError("no decision", "请选择批准或驳回。")
        do_extension(request, staff, session, c.code, decision == "approve")
    return _form_action(request, staff, session, code, "approve" if decision == "approve" else "deny", run, next)


@pages.post("/cases/{code}/close")
def close_form(request: Request, staff: StaffDep, session: DbDep, code: str, note: FormText = "") -> Response:
    return _form_action(request, staff, session, code, "close",
                        lambda c: do_close(request, staff, session, c.code, note))


@pages.post("/cases/{code}/merge")
def merge_form(request: Request, staff: StaffDep, session: DbDep, code: str,
               into: Annotated[str, Form(max_length=CODE_MAX)] = "") -> Response:
    def run(c: Case) -> None:
        if not into.strip():
            raise DomainError("no original", "请填写原工单号。")
        try:
            do_merge(request, staff, session, c.code, into)
        except NotFound as exc:  # the original's code was mistyped: say so on this case's page
            raise DomainError("merge target not found", "没有找到要并入的原工单，请核对工单号。") from exc
        except PermissionDenied as exc:
            raise DomainError("merge target out of scope", "要并入的原工单不在您的数据范围内。") from exc
    return _form_action(request, staff, session, code, "merge", run)


@pages.post("/cases/{code}/reopen")
def reopen_form(request: Request, staff: StaffDep, session: DbDep, code: str, reason: FormText = "") -> Response:
    return _form_action(request, staff, session, code, "reopen",
                        lambda c: do_reopen(request, staff, session, c.code, reason))


__all__ = ["api", "pages"]
