"""The sweep and the outbound queue on a fake clock: reminder points, the ladder, catch-up after downtime,
the resident loop (reopen, auto-close), and what the delivery order guarantees when a process dies."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlmodel import select

from casestore import actions, feedback
from casestore import sweep as sweep_mod
from casestore.db import session_scope
from casestore.dispatch import LEASE, MAX_ATTEMPTS, dispatch_pending
from casestore.errors import IllegalTransition
from casestore.models import CaseStatus, CloseReason, Notification, NotificationState
from casestore.notify import DeliveryError, OutboundMessage, RecordingNotifier, RetryLater
from casestore.sweep import sweep
from tests.factories import actor
from tests.test_loop_support import (
    FU01_FULL,
    FURONG_SUPERVISOR,
    STREET_COMMAND,
    case_by_code,
    every_minute,
    notes,
    open_,
    resident,
    sla,
)

__all__ = ["sla"]


def _sweep(engine, policies, sla, clock):
    return sweep(engine=engine, policies=policies, sla=sla, clock=clock)


def _timeline(engine, code, start):
    """(minute created, kind, level, chat id) of every row of the case except the task push."""
    return [(int((n.created_at - start).total_seconds() // 60), n.kind, n.level, n.chat_id)
            for n in notes(engine, code) if n.kind != "task"]


async def test_urgent_case_reminders_and_ladder_exactly_once(engine, policies, sla, clock) -> None:
    start = clock.now()
    code = open_(engine, policies, sla, clock).case.code
    notifier = RecordingNotifier()
    for _ in every_minute(clock, 300):  # five hours, sweeping and dispatching every simulated minute
        _sweep(engine, policies, sla, clock)
        await dispatch_pending(engine=engine, notifier=notifier, clock=clock)
    assert _timeline(engine, code, start) == [
        (30, "remind_response", 0, FU01_FULL),
        (48, "remind_response", 1, FU01_FULL),
        (60, "escalation", 1, FURONG_SUPERVISOR),
        (60, "escalation", 1, FU01_FULL),
        (90, "escalation", 2, STREET_COMMAND),
        (90, "escalation", 2, FU01_FULL),
    ]
    assert [t for t in notifier.texts_to(FU01_FULL) if "还剩" in t] == [
        f"⏰ 工单 {code}「楼道灯不亮」还剩 30 分钟需联系居民（首次响应）（截止 11-20 15:00）。",
        f"⏰ 工单 {code}「楼道灯不亮」还剩 12 分钟需联系居民（首次响应）（截止 11-20 15:00）。",
    ]
    assert len(notifier.sent) == 7  # task + 2 reminders + 2 x 2 escalations, each once
    assert "第1级" in notifier.texts_to(FURONG_SUPERVISOR)[0] and "第2级" in notifier.texts_to(STREET_COMMAND)[0]
    case = case_by_code(engine, code)
    assert case.escalation_level == 2 and case.next_reminder_at is None  # top of the ladder: nothing more due
    assert all(n.state == NotificationState.sent for n in notes(engine, code))


def test_resolution_window_after_first_response(engine, policies, sla, clock) -> None:
    start = clock.now()
    code = open_(engine, policies, sla, clock).case.code
    for minute in every_minute(clock, 26 * 60):
        if minute == 40:
            with session_scope(engine) as s:
                actions.respond(session=s, sla=sla, code=code, actor=actor(s, FU01_FULL), clock=clock,
                                note="已上门查看")
        if minute % 5 == 0 or minute in (1, 40, 41):
            _sweep(engine, policies, sla, clock)
    assert _timeline(engine, code, start) == [
        (30, "remind_response", 0, FU01_FULL),
        (12 * 60, "remind_resolve", 0, FU01_FULL),  # 50 % of 24 h
        (1155, "remind_resolve", 1, FU01_FULL),  # 80 % = 19 h 12 m, seen by the sweep at minute 1155
        (24 * 60, "escalation_resolve", 1, FURONG_SUPERVISOR),
        (24 * 60, "escalation_resolve", 1, FU01_FULL),
    ]


def test_downtime_catch_up_sends_one_not_a_burst(engine, policies, sla, clock) -> None:
    start = clock.now()
    code = open_(engine, policies, sla, clock).case.code
    clock.advance(hours=3)  # the scheduler was down past both reminders, the breach and level 2's time
    r = _sweep(engine, policies, sla, clock)
    assert (r.due, r.reminders, r.escalations) == (1, 0, 1)
    assert _timeline(engine, code, start) == [
        (180, "escalation", 1, FURONG_SUPERVISOR), (180, "escalation", 1, FU01_FULL)]
    assert _sweep(engine, policies, sla, clock).due == 0  # nothing more right now
    clock.advance(minutes=29)
    assert _sweep(engine, policies, sla, clock).due == 0
    clock.advance(minutes=1)  # level 2 follows one step (30 min) after the late escalation, not at once
    assert _sweep(engine, policies, sla, clock).escalations == 1
    assert [t[:3] for t in _timeline(engine, code, start)][-1] == (210, "escalation", 2)


def test_downtime_past_both_reminder_points_sends_only_the_latest(engine, policies, sla, clock) -> None:
    start = clock.now()
    code = open_(engine, policies, sla, clock).case.code
    clock.advance(minutes=50)
    _sweep(engine, policies, sla, clock)
    [row] = notes(engine, code, "remind_response")
    assert row.level == 1 and "还剩 10 分钟" in row.payload["text"]
    assert _timeline(engine, code, start) == [(50, "remind_response", 1, FU01_FULL)]


def test_repeated_sweep_at_the_same_instant_records_nothing_twice(engine, policies, sla, clock) -> None:
    code = open_(engine, policies, sla, clock).case.code
    clock.advance(minutes=30)
    _sweep(engine, policies, sla, clock)
    with session_scope(engine) as s:  # simulate a second scheduler that read the old cursor
        case = s.exec(select(sweep_mod.Case).where(sweep_mod.Case.code == code)).one()
        case.next_reminder_at = clock.now()
        s.add(case)
    _sweep(engine, policies, sla, clock)
    assert len(notes(engine, code, "remind_response")) == 1


def _resolve(engine, sla, clock, code, photo=None):
    with session_scope(engine) as s:
        actions.resolve(session=s, sla=sla, code=code, actor=actor(s, FU01_FULL), clock=clock,
                        note="已更换灯泡", photo=photo)


async def test_rating_two_reopens_routes_back_and_restarts_the_clock(engine, policies, sla, clock) -> None:
    who = resident(engine, clock, policies, user=5001)
    code = open_(engine, policies, sla, clock, who).case.code
    clock.advance(minutes=20)
    _resolve(engine, sla, clock, code, photo="photo-after")
    [ask] = notes(engine, code, "rating_request")
    msg = OutboundMessage.from_payload(ask.payload)
    assert ask.chat_id == 5001 and msg.photo == "photo-after"
    assert [b.label for row in msg.buttons for b in row] == ["已解决", "⭐1", "⭐2", "⭐3", "⭐4", "⭐5", "没解决"]
    clock.advance(hours=2)
    with session_scope(engine) as s:
        feedback.rate(session=s, policies=policies, sla=sla, clock=clock, resident_id=who.id, code=code,
                      fixed=True, rating=2)
    case = case_by_code(engine, code)
    assert case.status == CaseStatus.assigned and case.reopen_count == 1 and case.satisfaction == 2
    assert case.assignee_id is not None and case.clock_started_at == clock.now()
    assert case.response_due_at == clock.now() + timedelta(hours=1) and case.first_response_at is None
    tasks = notes(engine, code, "task")
    assert [(t.level, t.chat_id) for t in tasks] == [(0, FU01_FULL), (1, FU01_FULL)]
    assert "退回" in tasks[1].payload["text"]
    reopened_at = clock.now()
    for _ in every_minute(clock, 31):
        _sweep(engine, policies, sla, clock)
    again = [n for n in notes(engine, code, "remind_response") if n.created_at > reopened_at]
    assert [(n.level, int((n.created_at - reopened_at).total_seconds() // 60)) for n in again] == [(10, 30)]


def test_not_fixed_reopens_and_a_good_rating_closes(engine, policies, sla, clock) -> None:
    who = resident(engine, clock, policies, user=5001)
    code = open_(engine, policies, sla, clock, who).case.code
    _resolve(engine, sla, clock, code)
    with session_scope(engine) as s:
        feedback.rate(session=s, policies=policies, sla=sla, clock=clock, resident_id=who.id, code=code, fixed=False)
    assert case_by_code(engine, code).status == CaseStatus.assigned
    _resolve(engine, sla, clock, code)
    assert [n.level for n in notes(engine, code, "rating_request")] == [0, 1]
    with session_scope(engine) as s:
        feedback.rate(session=s, policies=policies, sla=sla, clock=clock, resident_id=who.id, code=code,
                      fixed=True, rating=5)
    case = case_by_code(engine, code)
    assert (case.status, case.close_reason, case.satisfaction) == (CaseStatus.closed, CloseReason.rated, 5)
    with pytest.raises(IllegalTransition), session_scope(engine) as s:  # a second answer is refused
        feedback.rate(session=s, policies=policies, sla=sla, clock=clock, resident_id=who.id, code=code,
                      fixed=True, rating=1)


def test_auto_close_after_72_hours_without_an_answer(engine, policies, sla, clock) -> None:
    who = resident(engine, clock, policies, user=5001)
    code = open_(engine, policies, sla, clock, who).case.code
    _resolve(engine, sla, clock, code)
    clock.advance(hours=72, seconds=-1)
    assert _sweep(engine, policies, sla, clock).auto_closed == 0
    clock.advance(seconds=1)
    assert _sweep(engine, policies, sla, clock).auto_closed == 1
    case = case_by_code(engine, code)
    assert case.status == CaseStatus.closed and case.close_reason == CloseReason.auto_closed_without_rating
    assert case.satisfaction is None and case.next_reminder_at is None


class _DiesAfterSending:
    """The HTTP call succeeds, then the process dies before the row is marked."""

    def __init__(self) -> None:
        self.sent: list[int] = []

    async def send(self, *, chat_id: int, message: OutboundMessage) -> None:
        self.sent.append(chat_id)
        raise SystemExit("killed")


async def test_crash_between_send_and_mark_resends_after_the_lease(engine, policies, sla, clock) -> None:
    code = open_(engine, policies, sla, clock).case.code
    dying = _DiesAfterSending()
    with pytest.raises(SystemExit):
        await dispatch_pending(engine=engine, notifier=dying, clock=clock)
    [task] = notes(engine, code, "task")
    assert dying.sent == [FU01_FULL] and task.state == NotificationState.sending
    survivor = RecordingNotifier()
    assert await dispatch_pending(engine=engine, notifier=survivor, clock=clock) == 0  # leased: not yet
    clock.advance(LEASE - timedelta(seconds=1))
    assert await dispatch_pending(engine=engine, notifier=survivor, clock=clock) == 0
    clock.advance(seconds=1)
    assert await dispatch_pending(engine=engine, notifier=survivor, clock=clock) == 1  # at-least-once
    assert await dispatch_pending(engine=engine, notifier=survivor, clock=clock) == 0
    [task] = notes(engine, code, "task")
    assert task.state == NotificationState.sent and task.attempts == 2 and len(survivor.sent) == 1


def test_crash_before_commit_records_and_sends_nothing(engine, policies, sla, clock, monkeypatch) -> None:
    code = open_(engine, policies, sla, clock).case.code
    clock.advance(minutes=30)

    def boom(**_kw):
        raise SystemExit("killed between the case update and the notification insert")

    monkeypatch.setattr(sweep_mod, "record_many", boom)
    with pytest.raises(SystemExit):
        _sweep(engine, policies, sla, clock)
    assert notes(engine, code, "remind_response") == []
    assert case_by_code(engine, code).next_reminder_at == clock.now()  # cursor rolled back with it
    monkeypatch.undo()
    _sweep(engine, policies, sla, clock)
    assert len(notes(engine, code, "remind_response")) == 1


class _Flaky:
    def __init__(self, errors: list[Exception]) -> None:
        self.errors = errors
        self.delivered: list[int] = []

    async def send(self, *, chat_id: int, message: OutboundMessage) -> None:
        if self.errors:
            raise self.errors.pop(0)
        self.delivered.append(chat_id)


async def test_retry_later_keeps_the_row_pending_and_delivery_errors_fail_after_n(engine, policies, sla, clock) -> None:
    code = open_(engine, policies, sla, clock).case.code
    flaky = _Flaky([RetryLater(30)])
    assert await dispatch_pending(engine=engine, notifier=flaky, clock=clock) == 0
    [task] = notes(engine, code, "task")
    assert task.state == NotificationState.pending and task.next_attempt_at == clock.now() + timedelta(seconds=30)
    assert task.attempts == 0
    clock.advance(seconds=30)
    assert await dispatch_pending(engine=engine, notifier=flaky, clock=clock) == 1 and flaky.delivered == [FU01_FULL]

    code2 = open_(engine, policies, sla, clock, title="路灯坏了", description="小区门口路灯不亮").case.code
    refusing = _Flaky([DeliveryError("bot was blocked by the user")] * MAX_ATTEMPTS)
    for _ in range(MAX_ATTEMPTS):
        await dispatch_pending(engine=engine, notifier=refusing, clock=clock)
        clock.advance(hours=1)
    [task2] = notes(engine, code2, "task")
    assert task2.state == NotificationState.failed and task2.attempts == MAX_ATTEMPTS
    assert "blocked" in task2.last_error and refusing.delivered == []


async def test_row_without_a_chat_id_fails_at_once(engine, policies, sla, clock) -> None:
    code = open_(engine, policies, sla, clock).case.code
    with session_scope(engine) as s:
        row = s.exec(select(Notification)).first()
        row.chat_id = None
        s.add(row)
    assert await dispatch_pending(engine=engine, notifier=RecordingNotifier(), clock=clock) == 0
    assert notes(engine, code, "task")[0].state == NotificationState.failed
