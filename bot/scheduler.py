"""APScheduler wiring: one interval job that runs the sweep (in a thread), queues the 未诉先办 notices of hotspots
(casestore.broadcasts.hotspot_notices), dispatches pending pushes and, at most once an hour, erases old inbox
content (bot.channels.inbox.purge_inbox).

The job has a fixed id ("quanbot-sweep") with replace_existing=True, coalesce=True and max_instances=1, so
a restart or a second `build_scheduler` call never multiplies jobs, missed runs collapse into one, and a
slow tick is never overlapped by the next. Any number of scheduler processes may run against one
PostgreSQL: the sweep and the dispatcher claim rows with FOR UPDATE SKIP LOCKED (see casestore.sweep and
casestore.dispatch). Must not: hold business rules; it only calls the services on a timer.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from sqlalchemy.engine import Engine

from bot.channels.inbox import purge_inbox
from casestore.broadcasts import hotspot_notices
from casestore.clock import Clock
from casestore.db import session_scope
from casestore.deadlines import SlaPolicy
from casestore.digests import run_digests
from casestore.dispatch import dispatch_pending
from casestore.notify import Notifier
from casestore.sweep import SweepReport, sweep_all
from casestore.wishes import sweep_wishes_all
from policies.models import Policies

log = logging.getLogger(__name__)
JOB_ID = "quanbot-sweep"
PURGE_EVERY = timedelta(hours=1)


@dataclass
class LoopDeps:
    engine: Engine
    policies: Policies
    sla: SlaPolicy
    clock: Clock
    notifier: Notifier
    inbox_retention: timedelta | None = None  # erase handled updates' content after this (None: never)
    running: set[asyncio.Task[TickResult]] = field(default_factory=set)  # ticks in flight, finished on stop
    last_purge: datetime | None = None


@dataclass
class TickResult:
    sweep: SweepReport
    sent: int
    erased: int = 0  # inbox updates whose content the retention purge erased
    notices: int = 0  # hotspot notice deliveries queued by this tick
    digests: int = 0  # workers' morning digests queued by this tick (casestore.digests)


async def tick(deps: LoopDeps, *, dispatch_limit: int = 500) -> TickResult:
    """One scheduler run: sweep (blocking DB work in a thread), then deliver what is due."""
    report = await asyncio.to_thread(sweep_all, engine=deps.engine, policies=deps.policies, sla=deps.sla,
                                     clock=deps.clock)
    queued = 0
    try:  # a failure here must not hold back the deliveries below; the next tick tries again
        queued = await asyncio.to_thread(_hotspot_notices, deps)
    except Exception:
        log.exception("hotspot notices failed")
    try:  # the 微心愿 wall: unclaimed wishes told to the lead once, 结对帮扶 check-ins (casestore.wishes)
        wished = await asyncio.to_thread(sweep_wishes_all, engine=deps.engine, policies=deps.policies,
                                         clock=deps.clock)
        if wished.alerts or wished.checkins:
            log.info("wishes: %s unclaimed told to the lead, %s check-ins", wished.alerts, wished.checkins)
    except Exception:  # a failure here must not hold back the deliveries below; the next tick tries again
        log.exception("wish sweep failed")
    digests = 0
    try:  # the morning digest, once a worker a day from routing.yaml team.digest_at (unique per worker and day)
        digests = await asyncio.to_thread(run_digests, engine=deps.engine, policies=deps.policies,
                                          now=deps.clock.now())
        if digests:
            log.info("morning digests: %s queued", digests)
    except Exception:  # a failure here must not hold back the deliveries below; the next tick tries again
        log.exception("morning digests failed")
    sent = 0
    while True:  # drain in bounded chunks so one tick cannot hold a huge batch
        n = await dispatch_pending(engine=deps.engine, notifier=deps.notifier, clock=deps.clock,
                                   limit=dispatch_limit)
        sent += n
        if n < dispatch_limit:
            break
    if report.due or sent:
        log.info("sweep: %s due, %s reminders, %s escalations, %s auto-closed; %s sent",
                 report.due, report.reminders, report.escalations, report.auto_closed, sent)
    erased = 0
    now = deps.clock.now()
    if deps.inbox_retention is not None and (deps.last_purge is None or now - deps.last_purge >= PURGE_EVERY):
        purged = await asyncio.to_thread(purge_inbox, deps.engine, now=now, retention=deps.inbox_retention)
        deps.last_purge = now
        erased = purged.erased
        if purged.erased or purged.deleted:
            log.info("inbox retention: %s updates erased, %s old keys deleted", purged.erased, purged.deleted)
    return TickResult(report, sent, erased, queued, digests)


def _hotspot_notices(deps: LoopDeps) -> int:
    with session_scope(deps.engine) as session:
        result = hotspot_notices(session=session, grids=deps.policies.grids,
                                 category_name=deps.policies.taxonomy.name_of, tz=deps.sla.tz, now=deps.clock.now())
    if result.opened or result.resolved:
        log.info("hotspot notices: %s opened, %s resolved, %s deliveries queued", result.opened, result.resolved,
                 result.queued)
    return result.queued


async def _safe_tick(deps: LoopDeps) -> None:
    # The tick runs as its own task, shielded: stopping the scheduler must not cancel a dispatch between
    # "sent" and "marked sent" (that would resend the message after the lease, a duplicate page).
    task = asyncio.ensure_future(tick(deps))
    deps.running.add(task)
    task.add_done_callback(deps.running.discard)
    try:
        await asyncio.shield(task)
    except asyncio.CancelledError:
        pass
    except Exception:  # the next interval tries again; a failed tick must not stop the scheduler
        log.exception("scheduler tick failed")


def add_sweep_job(scheduler: AsyncIOScheduler, deps: LoopDeps, *, interval_s: int) -> None:
    scheduler.add_job(_safe_tick, "interval", args=[deps], seconds=interval_s, id=JOB_ID, name="quanbot sweep",
                      replace_existing=True, coalesce=True, max_instances=1,
                      misfire_grace_time=max(60, interval_s * 10))


def build_scheduler(deps: LoopDeps, *, interval_s: int, scheduler: AsyncIOScheduler | None = None) -> AsyncIOScheduler:
    """An AsyncIOScheduler (not started) holding exactly one sweep job."""
    scheduler = scheduler or AsyncIOScheduler(timezone="UTC")
    add_sweep_job(scheduler, deps, interval_s=interval_s)
    return scheduler


async def run_in_loop(*, services: object, notifier: Notifier, stop: asyncio.Event,
                      interval_s: int | None = None) -> None:
    """Run the sweep job inside an already running event loop (the bot process) until `stop` is set.

    `services` is a bot.services.Services (engine, policies, sla, clock, settings).
    """
    deps = LoopDeps(engine=services.engine, policies=services.policies, sla=services.sla,  # type: ignore[attr-defined]
                    clock=services.clock, notifier=notifier,  # type: ignore[attr-defined]
                    inbox_retention=timedelta(days=services.settings.inbox_retention_days))  # type: ignore[attr-defined]
    interval = interval_s or services.settings.sweep_interval_s  # type: ignore[attr-defined]
    scheduler = build_scheduler(deps, interval_s=interval)
    scheduler.start()
    scheduler.modify_job(JOB_ID, next_run_time=datetime.now(UTC))  # first tick now: catch up after downtime
    try:
        await stop.wait()
    finally:
        scheduler.pause()  # no new ticks; let the one in flight finish its deliveries and bookkeeping
        if deps.running:
            await asyncio.gather(*deps.running, return_exceptions=True)
        scheduler.shutdown(wait=False)
