"""Background jobs started from the console: queued as rows, claimed once across replicas, with progress.

Owns: `enqueue_job`, `claim_job` (FOR UPDATE SKIP LOCKED on PostgreSQL, a guarded UPDATE everywhere, so two
console processes never run one job twice), `report_progress`, `finish_job`, `get_job`, `list_jobs`, and taking
back a job whose runner died (no heartbeat for `STALE_AFTER`). Every enqueue is audited.
Must not: know what a job does (bot/web/jobs.py maps a kind to its runner).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import update
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from casestore.audit import record_audit
from casestore.db import session_scope
from casestore.models import Job, JobState

STALE_AFTER = timedelta(minutes=2)  # a running job with no heartbeat this long is taken back and queued again


def enqueue_job(*, session: Session, kind: str, params: dict[str, Any], actor: str, now: datetime) -> Job:
    job = Job(kind=kind, params=dict(params), created_by=actor, created_at=now, message="排队中")
    session.add(job)
    session.flush()
    record_audit(session=session, actor=actor, action="enqueue_job", subject=f"job:{job.id}", now=now,
                 data={"kind": kind})
    return job


def claim_job(*, engine: Engine, runner: str, now: datetime, kinds: list[str] | None = None,
              stale_after: timedelta = STALE_AFTER) -> int | None:
    """Take the oldest queued job (or one whose runner was silent for `stale_after`) and commit; its id, or None."""
    with session_scope(engine) as session:
        stale = now - stale_after
        stmt = (select(col(Job.id), col(Job.state), col(Job.heartbeat_at))
                .where((col(Job.state) == JobState.queued.value)
                       | ((col(Job.state) == JobState.running.value) & (col(Job.heartbeat_at) < stale)))
                .order_by(col(Job.id)).limit(5))
        if kinds is not None:
            stmt = stmt.where(col(Job.kind).in_(kinds))
        if engine.dialect.name == "postgresql":
            stmt = stmt.with_for_update(skip_locked=True, of=Job)
        for row in session.execute(stmt).all():
            guard = col(Job.state) == row.state
            if row.heartbeat_at is not None:
                guard = guard & (col(Job.heartbeat_at) == row.heartbeat_at)
            result = session.execute(update(Job).where(col(Job.id) == row.id, guard).values(
                state=JobState.running.value, claimed_by=runner[:64], started_at=now, heartbeat_at=now,
                message="运行中"))
            if result.rowcount == 1:  # type: ignore[attr-defined]
                return int(row.id)
    return None


def report_progress(*, engine: Engine, job_id: int, progress: float, message: str, now: datetime) -> None:
    with session_scope(engine) as session:
        session.execute(update(Job).where(col(Job.id) == job_id, col(Job.state) == JobState.running.value)
                        .values(progress=max(0.0, min(1.0, progress)), message=message[:500], heartbeat_at=now))


def finish_job(*, engine: Engine, job_id: int, now: datetime, result: dict[str, Any] | None = None,
               error: str | None = None) -> None:
    state = JobState.failed if error else JobState.done
    with session_scope(engine) as session:
        session.execute(update(Job).where(col(Job.id) == job_id).values(
            state=state.value, progress=1.0 if error is None else Job.progress, finished_at=now,
            result=dict(result or {}), message=(error or "已完成")[:500]))


def get_job(*, session: Session, job_id: int) -> Job | None:
    return session.get(Job, job_id)


def list_jobs(*, session: Session, kind: str | None = None, limit: int = 50) -> list[Job]:
    stmt = select(Job).order_by(col(Job.id).desc()).limit(limit)
    if kind is not None:
        stmt = stmt.where(col(Job.kind) == kind)
    return list(session.exec(stmt))
