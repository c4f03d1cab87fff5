"""The console as replicas (#16): two real `quanbot web` processes on one PostgreSQL, no state in memory.

A session opened on one replica is accepted by the other (the signing key is kept in the database) and a logout
on one ends it on both; queued jobs are claimed from the database (SKIP LOCKED) so each runs exactly once across
the two; a replica killed with SIGKILL mid-job loses its job to the other once the heartbeat is older than
WEB_JOB_STALE_AFTER_S (3 s here instead of the 2 minutes of production). Jobs are of the harmless "noop" kind
(bot/web/jobs.py), which records each run as a `job_run` audit event.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from casestore.db import session_scope
from casestore.jobs import enqueue_job
from casestore.models import AuditEvent, Job, JobState
from tests.web_support import csrf_of, form_token, free_port, make_admin

ROOT = Path(__file__).resolve().parent.parent
STALE_AFTER_S = 3
START_TIMEOUT_S = 120


@dataclass
class Replica:
    proc: subprocess.Popen[str]
    base: str
    log: Path

    @property
    def pid(self) -> int:
        return self.proc.pid


def _start(pg_url: str, tmp: Path, name: str) -> Replica:
    port = free_port()
    log = tmp / f"{name}.log"
    env = {"DATABASE_URL": pg_url, "PATH": "/usr/bin:/bin", "HOME": str(tmp), "VAR_DIR": str(tmp / name),
           "CHROMA_DIR": str(tmp / name / "chroma"), "WEB_JOB_STALE_AFTER_S": str(STALE_AFTER_S)}
    with log.open("w") as out:  # no WEB_SECRET_KEY: both replicas use the key kept in the database
        proc = subprocess.Popen([sys.executable, "-m", "bot.cli", "web", "--port", str(port)], cwd=ROOT, env=env,
                                stdout=out, stderr=subprocess.STDOUT, text=True)
    return Replica(proc, f"http://127.0.0.1:{port}", log)


def _wait_up(replica: Replica) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if replica.proc.poll() is not None:
            pytest.fail(f"quanbot web exited {replica.proc.returncode}: {replica.log.read_text()[-2000:]}")
        try:
            if httpx.get(f"{replica.base}/login", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    pytest.fail(f"quanbot web did not start in {START_TIMEOUT_S} s: {replica.log.read_text()[-2000:]}")


@pytest.fixture
def replicas(pg_engine: Engine, pg_url: str, tmp_path: Path) -> Iterator[tuple[Replica, Replica]]:
    make_admin(pg_engine, "street_chief")
    pair = (_start(pg_url, tmp_path, "r1"), _start(pg_url, tmp_path, "r2"))
    try:
        for replica in pair:
            _wait_up(replica)
        yield pair
    finally:
        for replica in pair:
            if replica.proc.poll() is None:
                replica.proc.terminate()
                try:
                    replica.proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    replica.proc.kill()
                    replica.proc.wait(timeout=5)


def _login(base: str) -> httpx.Client:
    client = httpx.Client(base_url=base, timeout=30)
    page = client.get("/login")
    done = client.post("/login", data={"username": "street_chief", "password": "城市大脑-2026",
                                       "form_token": form_token(page.text), "next": "/"})
    assert done.status_code == 303, done.text[:300]
    return client


def _pid(claimed_by: str | None) -> int:
    assert claimed_by, "a finished job names its runner"
    return int(claimed_by.split(":")[-2])  # "host:pid:tag"


def _runs(engine: Engine, job_id: int) -> list[AuditEvent]:
    with Session(engine) as session:
        return list(session.exec(select(AuditEvent).where(AuditEvent.action == "job_run",
                                                          AuditEvent.subject == f"job:{job_id}")
                                 .order_by(col(AuditEvent.id))))


def _wait_jobs(engine: Engine, ids: list[int], timeout_s: float) -> list[Job]:
    deadline = time.monotonic() + timeout_s
    while True:
        with Session(engine) as session:
            jobs = [session.get(Job, i) for i in ids]
        if all(j is not None and j.state in (JobState.done.value, JobState.failed.value) for j in jobs):
            return [j for j in jobs if j is not None]
        if time.monotonic() > deadline:
            pytest.fail(f"jobs not finished in {timeout_s} s: {[(j.id, j.state) for j in jobs if j]}")
        time.sleep(0.2)


def _enqueue(engine: Engine, n: int, seconds: float) -> list[int]:
    ids = []
    with session_scope(engine) as session:
        for _ in range(n):
            job = enqueue_job(session=session, kind="noop", params={"seconds": seconds}, actor="test",
                              now=datetime.now(UTC))
            assert job.id is not None
            ids.append(job.id)
    return ids


def test_a_session_from_one_replica_works_on_the_other_and_jobs_run_once(replicas: tuple[Replica, Replica],
                                                                        pg_engine: Engine) -> None:
    r1, r2 = replicas
    one = _login(r1.base)
    assert one.get("/api/me").json()["username"] == "street_chief"
    two = httpx.Client(base_url=r2.base, cookies=dict(one.cookies), timeout=30)
    assert two.get("/api/me").status_code == 200  # signed by r1, verified by r2: the key is in the database
    page = two.get("/")
    assert page.status_code == 200
    assert two.post("/logout", data={"csrf_token": csrf_of(page.text)}).status_code == 303
    assert one.get("/api/me").status_code == 401  # the session ended in the database, for every replica

    ids = _enqueue(pg_engine, 16, 0.3)
    jobs = _wait_jobs(pg_engine, ids, 90)
    assert [j.state for j in jobs] == ["done"] * len(ids), [j.message for j in jobs]
    for job in jobs:
        runs = _runs(pg_engine, job.id or 0)
        assert len(runs) == 1, f"job {job.id} ran {len(runs)} times"
        assert runs[0].data["runner"] == job.claimed_by == job.result["runner"]
    pids = {_pid(j.claimed_by) for j in jobs}
    assert pids <= {r1.pid, r2.pid}
    assert pids == {r1.pid, r2.pid}, "both replicas claim jobs from the one queue"


def test_a_replica_killed_mid_job_loses_the_job_to_the_other(replicas: tuple[Replica, Replica],
                                                             pg_engine: Engine) -> None:
    r1, r2 = replicas
    [job_id] = _enqueue(pg_engine, 1, 6.0)
    deadline = time.monotonic() + 60
    while True:
        with Session(pg_engine) as session:
            job = session.get(Job, job_id)
            assert job is not None
        if job.state == JobState.running.value and job.progress > 0:
            break
        assert time.monotonic() < deadline, "nobody claimed the job"
        time.sleep(0.1)
    first = _pid(job.claimed_by)
    victim, survivor = (r1, r2) if first == r1.pid else (r2, r1)
    assert first == victim.pid
    os.kill(victim.pid, signal.SIGKILL)
    victim.proc.wait(timeout=10)
    [done] = _wait_jobs(pg_engine, [job_id], 60)
    assert done.state == "done" and _pid(done.claimed_by) == survivor.pid
    runs = _runs(pg_engine, job_id)
    assert [_pid(r.data["runner"]) for r in runs] == [victim.pid, survivor.pid]  # started twice, finished once
    # taken back only once the heartbeat went stale (the victim beat until it died, after its run began), and
    # long before production's 2 minutes
    gap = (runs[1].at - runs[0].at).total_seconds()
    assert STALE_AFTER_S <= gap < 60, gap
