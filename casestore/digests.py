"""The morning digest: each worker's open cases that are overdue or due today, queued once a worker a day.

Owns: what a digest lists (`digest_for`: the running deadline of casestore.board, so "overdue" here is the board's
and the stats' overdue), its Chinese text (titles masked, no resident's name, room or number), and queuing one
Notification per worker per local day from routing.yaml `team.digest_at` until `team.digest_until`, keyed
(kind "digest", level = the local day as YYYYMMDD, recipient) under uq_notification_nocase_once, so a restart, a
second scheduler or a second tick never queues it twice. Workers on leave or inactive get none.
Must not: send (the dispatcher does) or hold the timer (bot.scheduler calls `queue_digests` on every tick).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from zoneinfo import ZoneInfo

from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from casestore.board import running_due
from casestore.db import session_scope
from casestore.dispatch import record_push_once
from casestore.models import Case, Notification, Worker
from casestore.notify import Button, OutboundMessage
from casestore.states import OPEN
from policies.masking import mask_text
from policies.models import Policies

KIND = "digest"
LOCAL_TZ = ZoneInfo("Asia/Shanghai")
MAX_LISTED = 8  # cases listed under each heading; the rest are counted (/tasks shows all)
MAX_BUTTONS = 4  # 查看 buttons for the most pressing cases

HEADER = "早上好，{name}。今天（{day}）的工单提醒："
OVERDUE = "⏰ 已超时 {n} 件："
DUE_TODAY = "📅 今天到期 {n} 件："
ITEM = "· {code} {title}（{category}）{what}：{when}"
RESPONSE = "应联系居民"
RESOLVE = "应办结"
MORE = "  …另有 {n} 件"
NOTHING_DUE = "今天没有到期或超时的工单。"
FOOTER = "您手上共 {n} 件在办，发 /tasks 查看全部并办理。"


@dataclass
class Digest:
    worker: Worker
    day: date
    overdue: list[Case] = field(default_factory=list)
    due_today: list[Case] = field(default_factory=list)
    open_count: int = 0


def day_key(day: date) -> int:
    """The idempotency key of one local day: 20261120."""
    return day.year * 10000 + day.month * 100 + day.day


def _responding(case: Case) -> bool:
    return case.first_response_at is None and running_due(case) == case.response_due_at


def digest_for(*, session: Session, worker: Worker, now: datetime) -> Digest:
    """The worker's open cases past their running deadline, and those whose deadline falls on today (local)."""
    today = now.astimezone(LOCAL_TZ).date()
    cases = session.exec(select(Case).where(col(Case.assignee_id) == worker.id,
                                            col(Case.status).in_([s.value for s in OPEN]))
                         .order_by(col(Case.id))).all()
    out = Digest(worker=worker, day=today, open_count=len(cases))
    for case in cases:
        due = running_due(case)
        if due is None:
            continue
        if due < now:
            out.overdue.append(case)
        elif due.astimezone(LOCAL_TZ).date() == today:
            out.due_today.append(case)
    out.overdue.sort(key=lambda c: running_due(c) or now)
    out.due_today.sort(key=lambda c: running_due(c) or now)
    return out


def render(digest: Digest, *, policies: Policies) -> OutboundMessage:
    """The digest as one message: masked titles, local times, 查看 buttons for the most pressing cases."""
    tax = policies.taxonomy
    lines = [HEADER.format(name=digest.worker.name, day=f"{digest.day.month}月{digest.day.day}日")]
    for heading, cases in ((OVERDUE, digest.overdue), (DUE_TODAY, digest.due_today)):
        if not cases:
            continue
        lines.append(heading.format(n=len(cases)))
        for case in cases[:MAX_LISTED]:
            due = running_due(case)
            lines.append(ITEM.format(code=case.code, title=mask_text(case.title)[:40],
                                     category=tax.name_of(case.category),
                                     what=RESPONSE if _responding(case) else RESOLVE,
                                     when=due.astimezone(LOCAL_TZ).strftime("%m-%d %H:%M") if due else "—"))
        if len(cases) > MAX_LISTED:
            lines.append(MORE.format(n=len(cases) - MAX_LISTED))
    if not digest.overdue and not digest.due_today:
        lines.append(NOTHING_DUE)
    lines.append(FOOTER.format(n=digest.open_count))
    pressing = [*digest.overdue, *digest.due_today][:MAX_BUTTONS]
    rows = [[Button(f"查看 {c.code}", "view", c.code)] for c in pressing]
    return OutboundMessage(text="\n".join(lines), buttons=rows)


def digest_window(*, policies: Policies, now: datetime) -> bool:
    """Is it digest time (routing.yaml team.digest_at ≤ local time < digest_until)?"""
    team = policies.routing.team
    at = now.astimezone(LOCAL_TZ).time()
    return team.digest_at <= at < team.digest_until


def queue_digests(*, session: Session, policies: Policies, now: datetime) -> int:
    """In the digest window, queue today's digest for every available worker holding open cases who has none
    yet; returns how many were queued (0 outside the window or when all are queued already)."""
    if not digest_window(policies=policies, now=now):
        return 0
    key = day_key(now.astimezone(LOCAL_TZ).date())
    done = set(session.exec(select(Notification.recipient).where(col(Notification.kind) == KIND,
                                                                  col(Notification.level) == key,
                                                                  col(Notification.case_id).is_(None))))
    holders = select(Case.assignee_id).where(col(Case.status).in_([s.value for s in OPEN])).distinct()
    workers = session.exec(select(Worker).where(col(Worker.id).in_(holders), col(Worker.active).is_(True),
                                                col(Worker.on_leave).is_(False)).order_by(col(Worker.id))).all()
    queued = 0
    for worker in workers:
        recipient = f"worker:{worker.id}"
        if recipient in done:
            continue
        message = render(digest_for(session=session, worker=worker, now=now), policies=policies)
        queued += record_push_once(session=session, kind=KIND, level=key, recipient=recipient, message=message,
                                   now=now)
    return queued


def run_digests(*, engine: Engine, policies: Policies, now: datetime) -> int:
    """`queue_digests` in its own transaction (the scheduler's tick calls this in a thread)."""
    if not digest_window(policies=policies, now=now):
        return 0
    with session_scope(engine) as session:
        return queue_digests(session=session, policies=policies, now=now)
