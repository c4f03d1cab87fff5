"""人员: the workers and roles in the signed-in person's scope, and the changes an admin makes to them.

Owns: the people list and detail pages, their forms (register a worker by name, leave, deputy, active, link and
unlink a channel account) and `/api/people`. Every change goes through casestore.staff (audited, with the
console account as the actor) after the scope check here; channel ids are shown masked. The page says which
workers come from grids.yaml (refreshed by every sync: `quanbot db upgrade` and each start) and which were
registered at run time, and warns where the next sync would set a change back.
Replaces the bot's `/register_worker` for admins (that command stays for now).
Must not: change grids.yaml or how it is synchronised (casestore.org).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Form, Path, Query, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import BaseModel, Field
from sqlmodel import Session

from bot.web.render import page
from bot.web.security import MAX_ROW_ID, DbDep, Staff, StaffDep
from casestore.errors import DomainError, NotFound, PermissionDenied
from casestore.models import AdminScopeKind, Grid, Worker
from casestore.staff import (
    CHANNEL_NAMES,
    ORIGIN_NAMES,
    Origin,
    StaffRecord,
    get_worker,
    link_account,
    list_staff,
    mask_external_id,
    register_by_name,
    role_name,
    set_active,
    set_deputy,
    set_leave,
    staff_record,
    unlink_account,
)
from policies.taxonomy import ROLE_NAMES_ZH, Role

NAV = ("/people", "人员")
api = APIRouter(tags=["人员"])
pages = APIRouter()

WorkerId = Annotated[int, Path(ge=1, le=MAX_ROW_ID, description="工作人员编号")]
AccountId = Annotated[int, Path(ge=1, le=MAX_ROW_ID, description="渠道账号编号")]
RoleValue = Literal["full_time", "part_time", "volunteer", "party_member", "supervisor", "mediator",
                    "property_manager", "duty_desk", "street_command"]
ChannelValue = Literal["telegram", "wechat", "wecom", "terminal"]
SYNC_NOTE = ("来自 grids.yaml 的岗位，每次同步（quanbot db upgrade、每次启动）都会按文件重新设置"
             "请假、副网格员、在用和队长；在这里改的这几项会在下次同步时恢复为文件里的值。"
             "要长期生效，请同时修改 grids.yaml。")
# what a redirect after a form says (a code in the URL, never free text)
DONE = {"registered": "已登记。", "leave_on": "已设为请假：新工单转给副网格员或网格长。", "leave_off": "已销假。",
        "deputy_on": "已设为副网格员。", "deputy_off": "已取消副网格员。", "active_off": "已停用。",
        "active_on": "已启用。", "linked": "已关联渠道账号。", "unlinked": "已解除渠道账号。"}


class AccountPublic(BaseModel):
    id: int
    channel: str
    channel_name: str
    external_id_masked: str = Field(description="只显示后三位")
    from_grids_yaml: bool = Field(description="grids.yaml 里写的电报ID：解除后下次同步会重新关联")


class SyncRevert(BaseModel):
    field: str
    now: bool
    grids_yaml: bool


class PersonPublic(BaseModel):
    id: int
    name: str
    role: str
    role_name: str
    grid_id: str | None
    grid_name: str | None
    community_id: str | None
    active: bool
    on_leave: bool
    is_deputy: bool
    is_lead: bool
    open_load: int = Field(description="在办工单数")
    origin: Literal["file", "registered", "stale"]
    origin_name: str
    accounts: list[AccountPublic]
    sync_reverts: list[SyncRevert] = Field(description="下次 grids.yaml 同步会恢复的字段")


class PeopleList(BaseModel):
    scope: str
    people: list[PersonPublic]


class RegisterIn(BaseModel):
    name: str = Field(min_length=1, max_length=60)
    grid_id: str = Field(min_length=1, max_length=12)
    role: RoleValue
    telegram_id: str | None = Field(default=None, max_length=20, description="可选；对方在机器人里发 /myid 可查看")


class LeaveIn(BaseModel):
    on_leave: bool


class DeputyIn(BaseModel):
    deputy: bool


class ActiveIn(BaseModel):
    active: bool


class AccountIn(BaseModel):
    channel: ChannelValue
    external_id: str = Field(min_length=1, max_length=64)


def _grid_names(request: Request) -> dict[str, str]:
    grids = request.app.state.services.policies.grids
    return {g.id: g.name for c in grids.communities for g in c.grids}


def _communities(staff: Staff) -> frozenset[str] | None:
    """Community staff without a grid are shown to their community's scope, not to one grid's."""
    return staff.scope.community_ids if staff.scope.kind is AdminScopeKind.community else None


def _visible(staff: Staff, worker: Worker) -> bool:
    if staff.scope.is_street:
        return True
    if worker.grid_id is not None:
        return staff.scope.allows(worker.grid_id)
    communities = _communities(staff)
    return communities is not None and worker.community_id in communities


def _worker(staff: Staff, session: Session, worker_id: int) -> Worker:
    worker = get_worker(session=session, worker_id=worker_id)
    if not _visible(staff, worker):
        raise PermissionDenied(f"worker {worker_id} outside scope", "这位工作人员不在您的管理范围内。")
    return worker


def _public(request: Request, rec: StaffRecord) -> PersonPublic:
    w = rec.worker
    assert w.id is not None
    return PersonPublic(
        id=w.id, name=w.name, role=w.role, role_name=role_name(w.role), grid_id=w.grid_id,
        grid_name=_grid_names(request).get(w.grid_id or "") if w.grid_id else None, community_id=w.community_id,
        active=w.active, on_leave=w.on_leave, is_deputy=w.is_deputy, is_lead=w.is_lead, open_load=rec.open_load,
        origin=rec.origin.value, origin_name=ORIGIN_NAMES[rec.origin],
        accounts=[AccountPublic(id=a.id or 0, channel=a.channel, channel_name=CHANNEL_NAMES.get(a.channel, a.channel),
                                external_id_masked=mask_external_id(a.external_id), from_grids_yaml=rec.from_file(a))
                  for a in rec.accounts],
        sync_reverts=[SyncRevert(field=f, now=n, grids_yaml=g) for f, n, g in rec.reverts])


def _people(request: Request, staff: Staff, session: Session, *, grid: str | None, role: str | None,
            active: bool | None) -> list[PersonPublic]:
    records = list_staff(session=session, grids=request.app.state.services.policies.grids,
                         grid_ids=staff.scope.grid_ids, community_ids=_communities(staff))
    out = []
    for rec in records:
        w = rec.worker
        if (grid and w.grid_id != grid) or (role and w.role != role) or (active is not None and w.active != active):
            continue
        out.append(_public(request, rec))
    return out


def _person(request: Request, session: Session, worker: Worker) -> PersonPublic:
    return _public(request, staff_record(session=session, grids=request.app.state.services.policies.grids,
                                         worker=worker))


def _grid_for_register(staff: Staff, session: Session, grid_id: str, role: Role) -> Grid:
    grid = session.get(Grid, grid_id.strip().upper())
    if grid is None:
        raise DomainError(f"unknown grid {grid_id!r}", "没有这个网格，请从列表中选择。")
    if not staff.scope.allows(grid.id):
        raise PermissionDenied(f"grid {grid.id} outside scope", "这个网格不在您的管理范围内。")
    if role is Role.street_command and not staff.scope.is_street:
        raise PermissionDenied("street_command by a non-street admin", "只有街道账号可以登记街道指挥中心人员。")
    return grid


def _register(request: Request, staff: Staff, session: Session, body: RegisterIn) -> Worker:
    role = Role(body.role)
    grid = _grid_for_register(staff, session, body.grid_id, role)
    with session.begin_nested():
        return register_by_name(session=session, name=body.name, grid=grid, role=role, actor=staff.actor,
                                now=request.app.state.services.clock.now(), telegram_id=body.telegram_id or None)


def _now(request: Request) -> datetime:
    now: datetime = request.app.state.services.clock.now()
    return now


# ---------------- API ----------------
@api.get("/people", response_model=PeopleList, summary="工作人员与岗位（按账号范围）")
def people_api(request: Request, staff: StaffDep, session: DbDep,
               grid: Annotated[str | None, Query(max_length=12, description="网格号")] = None,
               role: Annotated[RoleValue | None, Query(description="岗位")] = None,
               active: Annotated[bool | None, Query(description="只看在用（true）或已停用（false）")] = None,
               ) -> PeopleList:
    return PeopleList(scope=staff.scope.label,
                      people=_people(request, staff, session, grid=grid, role=role, active=active))


@api.get("/people/{worker_id}", response_model=PersonPublic, summary="一位工作人员")
def person_api(request: Request, staff: StaffDep, session: DbDep, worker_id: WorkerId) -> PersonPublic:
    return _person(request, session, _worker(staff, session, worker_id))


@api.post("/people", response_model=PersonPublic, status_code=201,
          summary="按姓名登记工作人员（取代 /register_worker）")
def register_api(request: Request, staff: StaffDep, session: DbDep, body: RegisterIn) -> PersonPublic:
    return _person(request, session, _register(request, staff, session, body))


@api.post("/people/{worker_id}/leave", response_model=PersonPublic, summary="请假或销假")
def leave_api(request: Request, staff: StaffDep, session: DbDep, worker_id: WorkerId, body: LeaveIn) -> PersonPublic:
    worker = _worker(staff, session, worker_id)
    set_leave(session=session, worker=worker, on_leave=body.on_leave, actor=staff.actor, now=_now(request))
    return _person(request, session, worker)


@api.post("/people/{worker_id}/deputy", response_model=PersonPublic, summary="设为或取消副网格员")
def deputy_api(request: Request, staff: StaffDep, session: DbDep, worker_id: WorkerId,
               body: DeputyIn) -> PersonPublic:
    worker = _worker(staff, session, worker_id)
    with session.begin_nested():
        set_deputy(session=session, worker=worker, deputy=body.deputy, actor=staff.actor, now=_now(request))
    return _person(request, session, worker)


@api.post("/people/{worker_id}/active", response_model=PersonPublic, summary="停用或启用")
def active_api(request: Request, staff: StaffDep, session: DbDep, worker_id: WorkerId,
               body: ActiveIn) -> PersonPublic:
    worker = _worker(staff, session, worker_id)
    set_active(session=session, worker=worker, active=body.active, actor=staff.actor, now=_now(request))
    return _person(request, session, worker)


@api.post("/people/{worker_id}/accounts", response_model=PersonPublic, summary="关联一个渠道账号")
def link_api(request: Request, staff: StaffDep, session: DbDep, worker_id: WorkerId,
             body: AccountIn) -> PersonPublic:
    worker = _worker(staff, session, worker_id)
    with session.begin_nested():
        link_account(session=session, worker=worker, channel=body.channel, external_id=body.external_id,
                     actor=staff.actor, now=_now(request))
    return _person(request, session, worker)


@api.delete("/people/{worker_id}/accounts/{account_id}", response_model=PersonPublic, summary="解除一个渠道账号")
def unlink_api(request: Request, staff: StaffDep, session: DbDep, worker_id: WorkerId,
               account_id: AccountId) -> PersonPublic:
    worker = _worker(staff, session, worker_id)
    unlink_account(session=session, worker=worker, account_id=account_id, actor=staff.actor, now=_now(request))
    return _person(request, session, worker)


# ---------------- pages ----------------
def _grid_choices(request: Request, staff: Staff) -> list[tuple[str, str]]:
    grids = request.app.state.services.policies.grids
    return [(g.id, f"{c.name}·{g.name}") for c in grids.communities for g in c.grids if staff.scope.allows(g.id)]


def _roles(staff: Staff) -> list[tuple[str, str]]:
    return [(r.value, ROLE_NAMES_ZH[r]) for r in Role if staff.scope.is_street or r is not Role.street_command]


def _list_page(request: Request, staff: Staff, session: Session, *, grid: str | None = None,
               role: str | None = None, error: str = "", form: dict[str, str] | None = None,
               status_code: int = 200) -> Response:
    people = _people(request, staff, session, grid=grid, role=role, active=None)
    return page(request, "people.html", staff, status_code=status_code, people=people,
                grids=_grid_choices(request, staff), roles=_roles(staff), grid=grid or "", role=role or "",
                error=error, form=form or {}, sync_note=SYNC_NOTE,
                file_count=sum(p.origin == Origin.file.value for p in people),
                registered_count=sum(p.origin == Origin.registered.value for p in people))


def _detail_page(request: Request, staff: Staff, session: Session, worker: Worker, *, done: str = "",
                 error: str = "", status_code: int = 200) -> Response:
    return page(request, "people_detail.html", staff, status_code=status_code,
                person=_person(request, session, worker), channels=list(CHANNEL_NAMES.items()),
                done=DONE.get(done, ""), error=error, sync_note=SYNC_NOTE)


def _back(worker: Worker, done: str) -> Response:
    return RedirectResponse(f"/people/{worker.id}?done={done}", status_code=303)


@pages.get("/people")
def people_page(request: Request, staff: StaffDep, session: DbDep,
                grid: Annotated[str | None, Query(max_length=12)] = None,
                role: Annotated[str | None, Query(max_length=30)] = None) -> Response:
    return _list_page(request, staff, session, grid=grid or None, role=role or None)


@pages.post("/people")
def register_page(request: Request, staff: StaffDep, session: DbDep,
                  name: Annotated[str, Form(max_length=200)] = "", grid_id: Annotated[str, Form(max_length=12)] = "",
                  role: Annotated[str, Form(max_length=30)] = "",
                  telegram_id: Annotated[str, Form(max_length=20)] = "") -> Response:
    form = {"name": name, "grid_id": grid_id, "role": role, "telegram_id": telegram_id}
    if role not in {r.value for r in Role}:
        return _list_page(request, staff, session, error="请选择岗位。", form=form, status_code=400)
    if not name.strip() or len(name.strip()) > 60:
        return _list_page(request, staff, session, error="请填写姓名或岗位名称（最多 60 个字）。", form=form,
                          status_code=400)
    try:
        worker = _register(request, staff, session, RegisterIn(name=name.strip(), grid_id=grid_id or "?",
                                                               role=role,  # type: ignore[arg-type]
                                                               telegram_id=telegram_id.strip() or None))
    except PermissionDenied:
        raise
    except DomainError as exc:
        return _list_page(request, staff, session, error=exc.user_message, form=form, status_code=400)
    return _back(worker, "registered")


@pages.get("/people/{worker_id}")
def person_page(request: Request, staff: StaffDep, session: DbDep, worker_id: WorkerId,
                done: Annotated[str, Query(max_length=20)] = "") -> Response:
    return _detail_page(request, staff, session, _worker(staff, session, worker_id), done=done)


def _act(request: Request, staff: Staff, session: Session, worker_id: int, action: str, value: str) -> Response:
    worker = _worker(staff, session, worker_id)
    on = value == "1"
    now = _now(request)
    try:
        with session.begin_nested():
            if action == "leave":
                set_leave(session=session, worker=worker, on_leave=on, actor=staff.actor, now=now)
            elif action == "deputy":
                set_deputy(session=session, worker=worker, deputy=on, actor=staff.actor, now=now)
            else:
                set_active(session=session, worker=worker, active=on, actor=staff.actor, now=now)
    except (PermissionDenied, NotFound):
        raise
    except DomainError as exc:
        return _detail_page(request, staff, session, worker, error=exc.user_message, status_code=400)
    return _back(worker, f"{action}_{'on' if on else 'off'}")


@pages.post("/people/{worker_id}/leave")
def leave_page(request: Request, staff: StaffDep, session: DbDep, worker_id: WorkerId,
               value: Annotated[str, Form(max_length=1)] = "0") -> Response:
    return _act(request, staff, session, worker_id, "leave", value)


@pages.post("/people/{worker_id}/deputy")
def deputy_page(request: Request, staff: StaffDep, session: DbDep, worker_id: WorkerId,
                value: Annotated[str, Form(max_length=1)] = "0") -> Response:
    return _act(request, staff, session, worker_id, "deputy", value)


@pages.post("/people/{worker_id}/active")
def active_page(request: Request, staff: StaffDep, session: DbDep, worker_id: WorkerId,
                value: Annotated[str, Form(max_length=1)] = "0") -> Response:
    return _act(request, staff, session, worker_id, "active", value)


@pages.post("/people/{worker_id}/accounts")
def link_page(request: Request, staff: StaffDep, session: DbDep, worker_id: WorkerId,
              channel: Annotated[str, Form(max_length=20)] = "",
              external_id: Annotated[str, Form(max_length=100)] = "") -> Response:
    worker = _worker(staff, session, worker_id)
    try:
        with session.begin_nested():
            link_account(session=session, worker=worker, channel=channel, external_id=external_id,
                         actor=staff.actor, now=_now(request))
    except DomainError as exc:
        return _detail_page(request, staff, session, worker, error=exc.user_message, status_code=400)
    return _back(worker, "linked")


@pages.post("/people/{worker_id}/accounts/{account_id}/unlink")
def unlink_page(request: Request, staff: StaffDep, session: DbDep, worker_id: WorkerId,
                account_id: AccountId) -> Response:
    worker = _worker(staff, session, worker_id)
    unlink_account(session=session, worker=worker, account_id=account_id, actor=staff.actor, now=_now(request))
    return _back(worker, "unlinked")
