"""The console's background-job runner: a thread per process that claims queued jobs from the database.

Owns: the registry of job kinds (`job_runner("ingest")` on a function of a `JobContext`), `JobWorker` (claims
with casestore.jobs, so of two replicas exactly one runs a job, reports progress, records the result or the
error). A job that raises is marked failed with a Chinese message; the detail goes to the log.
Must not: run a job in the request that queued it.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from casestore.audit import record_audit
from casestore.db import session_scope
from casestore.jobs import claim_job, finish_job, get_job, report_progress

if TYPE_CHECKING:
    from bot.services import Services

log = logging.getLogger(__name__)


@dataclass
class JobContext:
    job_id: int
    params: dict[str, Any]
    actor: str
    services: Services
    runner: str = ""  # which process runs it ("host:pid:tag")

    def progress(self, fraction: float, message: str) -> None:
        report_progress(engine=self.services.engine, job_id=self.job_id, progress=fraction, message=message,
                        now=self.services.clock.now())


Runner = Callable[[JobContext], dict[str, Any]]
RUNNERS: dict[str, Runner] = {}


class JobFailed(Exception):
    """A job's expected failure, with the Chinese message to show beside it."""


def job_runner(kind: str) -> Callable[[Runner], Runner]:
    def register(fn: Runner) -> Runner:
        RUNNERS[kind] = fn
        return fn
    return register


def run_one(services: Services, runner_name: str) -> int | None:
    """Claim and run one queued job; its id, or None when there was none."""
    job_id = claim_job(engine=services.engine, runner=runner_name, now=services.clock.now(),
                       kinds=sorted(RUNNERS), stale_after=timedelta(seconds=services.settings.web_job_stale_after_s))
    if job_id is None:
        return None
    with session_scope(services.engine) as session:
        job = get_job(session=session, job_id=job_id)
        assert job is not None
        kind, params, actor = job.kind, dict(job.params), job.created_by
    try:
        result = RUNNERS[kind](JobContext(job_id, params, actor, services, runner_name))
    except JobFailed as exc:
        finish_job(engine=services.engine, job_id=job_id, now=services.clock.now(), error=str(exc))
    except Exception:
        ref = uuid.uuid4().hex[:8]
        log.exception("job %s (%s) failed [ref %s]", job_id, kind, ref)
        finish_job(engine=services.engine, job_id=job_id, now=services.clock.now(),
                   error=f"任务出错了（编号 {ref}），请查看日志或重试。")
    else:
        finish_job(engine=services.engine, job_id=job_id, now=services.clock.now(), result=result)
    return job_id


NOOP_MAX_S = 60.0


@job_runner("noop")
def run_noop(ctx: JobContext) -> dict[str, Any]:
    """A harmless job for checking the queue across replicas (tests, an operator's smoke test): waits
    `seconds` (at most a minute) with a heartbeat, and records each run as a `job_run` audit event."""
    try:
        seconds = min(max(float(ctx.params.get("seconds", 0.1)), 0.0), NOOP_MAX_S)
    except (TypeError, ValueError):
        raise JobFailed("参数 seconds 应为数字（秒）。") from None
    with session_scope(ctx.services.engine) as session:
        record_audit(session=session, actor=ctx.actor, action="job_run", subject=f"job:{ctx.job_id}",
                     now=ctx.services.clock.now(), data={"runner": ctx.runner})
    ends = time.monotonic() + seconds
    while (left := ends - time.monotonic()) > 0:
        ctx.progress(1 - left / seconds, "等待中")
        time.sleep(min(left, 0.2))
    return {"runner": ctx.runner, "seconds": seconds}


class JobWorker(threading.Thread):
    """Polls the job table every `interval_s` until stopped."""

    def __init__(self, services: Services, *, interval_s: float = 1.0) -> None:
        super().__init__(name="console-jobs", daemon=True)
        self.services = services
        self.interval_s = interval_s
        self.runner_name = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            try:
                ran = run_one(self.services, self.runner_name)
            except Exception:  # the database went away for a moment: try again on the next tick
                log.exception("console job runner: claim failed")
                ran = None
            if ran is None:
                self._stop_event.wait(self.interval_s)

    def stop(self) -> None:
        self._stop_event.set()
