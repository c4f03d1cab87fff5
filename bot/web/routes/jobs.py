"""后台任务: the console's background jobs (ingestion, eval runs) as JSON, and the progress fragment pages poll.

Owns: `GET /api/jobs/{id}`, `GET /api/jobs?kind=`, the htmx fragment `/jobs/{id}/progress` and `job_public`
(the one public shape of a job). Scope: street staff see every job; any other account sees only the jobs it
started (a job's parameters and result may name documents or reports of the whole street).
Must not: run or queue a job (the areas queue theirs; bot/web/jobs.py runs them).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel

from bot.web.render import page
from bot.web.security import DbDep, RowId, Staff, StaffDep
from casestore.errors import NotFound, PermissionDenied
from casestore.jobs import get_job, list_jobs
from casestore.models import Job

api = APIRouter(tags=["后台任务"])
pages = APIRouter()

STATE_LABELS = {"queued": "排队中", "running": "运行中", "done": "已完成", "failed": "失败"}
KIND_LABELS = {"ingest": "知识库入库", "eval": "评测"}


class JobPublic(BaseModel):
    id: int
    kind: str
    kind_label: str
    state: str
    state_label: str
    progress: float
    message: str
    created_by: str
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    params: dict[str, Any]
    result: dict[str, Any]


def job_public(job: Job, *, with_result: bool = True) -> JobPublic:
    assert job.id is not None
    return JobPublic(id=job.id, kind=job.kind, kind_label=KIND_LABELS.get(job.kind, job.kind), state=job.state,
                     state_label=STATE_LABELS.get(job.state, job.state), progress=round(job.progress, 4),
                     message=job.message, created_by=job.created_by, created_at=job.created_at,
                     started_at=job.started_at, finished_at=job.finished_at, params=dict(job.params),
                     result=dict(job.result) if with_result else {})


def visible(staff: Staff, job: Job) -> bool:
    return staff.scope.is_street or job.created_by == staff.actor


def job_in_scope(staff: Staff, session: DbDep, job_id: RowId) -> Job:
    """The job, or NotFound / PermissionDenied (403) when this account may not see it."""
    job = get_job(session=session, job_id=job_id)
    if job is None:
        raise NotFound(f"job {job_id} not found", "没有这个后台任务。")
    if not visible(staff, job):
        raise PermissionDenied(f"job {job_id} outside scope", "这个后台任务不在您的数据范围内。")
    return job


@api.get("/jobs/{job_id}", response_model=JobPublic, summary="一个后台任务的状态、进度与结果")
def job_api(staff: StaffDep, session: DbDep, job_id: RowId) -> JobPublic:
    return job_public(job_in_scope(staff, session, job_id))


@api.get("/jobs", response_model=list[JobPublic], summary="最近的后台任务（可按类型筛选：ingest、eval）")
def jobs_api(staff: StaffDep, session: DbDep,
             kind: Annotated[str | None, Query(max_length=40)] = None,
             limit: Annotated[int, Query(ge=1, le=200)] = 50) -> list[JobPublic]:
    jobs = list_jobs(session=session, kind=kind or None, limit=limit if staff.scope.is_street else 500)
    return [job_public(j, with_result=False) for j in jobs if visible(staff, j)][:limit]


@pages.get("/jobs/{job_id}/progress")
def job_progress(request: Request, staff: StaffDep, session: DbDep, job_id: RowId) -> Response:
    """The progress bar of one job (polled by htmx until the job is done or failed)."""
    job = job_in_scope(staff, session, job_id)
    return page(request, "job_progress.html", staff, job=job_public(job), labels=STATE_LABELS)
