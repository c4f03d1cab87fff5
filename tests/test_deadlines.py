"""Deadline arithmetic on the SLA clocks: weekends, statutory holidays, adjusted working days, 2027."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

import pytest

from casestore.deadlines import SlaPolicy
from tests.conftest import SHANGHAI


@pytest.fixture
def sla(policies) -> SlaPolicy:
    return SlaPolicy(policies.sla, SHANGHAI)


def local(*args: int) -> datetime:
    return datetime(*args, tzinfo=SHANGHAI)


def test_emergency_and_urgent_run_around_the_clock(sla: SlaPolicy) -> None:
    start = local(2026, 11, 21, 23, 55)  # Saturday night
    assert sla.deadlines("emergency", start).response_due_at == start + timedelta(minutes=10)
    d = sla.deadlines("urgent", start)
    assert d.response_due_at == start + timedelta(hours=1)
    assert d.resolve_due_at == start + timedelta(hours=24)


def test_normal_within_service_hours(sla: SlaPolicy) -> None:
    d = sla.deadlines("normal", local(2026, 11, 18, 9, 0))  # Wednesday
    assert d.response_due_at.astimezone(SHANGHAI) == local(2026, 11, 18, 10, 0)
    # 3 working days of 9 service hours
    assert d.resolve_due_at.astimezone(SHANGHAI) == local(2026, 11, 23, 9, 0)


def test_normal_across_a_weekend(sla: SlaPolicy) -> None:
    d = sla.deadlines("normal", local(2026, 11, 20, 17, 0))  # Friday 17:00, 30 minutes left that day
    assert d.response_due_at.astimezone(SHANGHAI) == local(2026, 11, 23, 9, 0)  # Monday


def test_report_on_a_sunday_starts_monday_morning(sla: SlaPolicy) -> None:
    d = sla.deadlines("normal", local(2026, 11, 22, 11, 0))
    assert d.response_due_at.astimezone(SHANGHAI) == local(2026, 11, 23, 9, 30)


def test_statutory_holiday_is_skipped(sla: SlaPolicy) -> None:
    # National Day: 1-7 October 2026 are holidays in chinese-calendar
    d = sla.deadlines("normal", local(2026, 9, 30, 17, 0))
    assert d.response_due_at.astimezone(SHANGHAI) == local(2026, 10, 8, 9, 0)


def test_adjusted_working_day_counts(sla: SlaPolicy) -> None:
    # Saturday 10 October 2026 is an adjusted working day (调休上班)
    assert sla.clock_for("normal").is_workday(local(2026, 10, 10, 0, 0).date())
    d = sla.deadlines("normal", local(2026, 10, 9, 17, 0))  # Friday 17:00
    assert d.response_due_at.astimezone(SHANGHAI) == local(2026, 10, 10, 9, 0)


def test_january_2027_past_the_calendar_does_not_crash(sla: SlaPolicy, caplog) -> None:
    # 1 January 2027 is listed in sla.yaml as a holiday; the Monday after is a working day
    d = sla.deadlines("normal", local(2027, 1, 1, 10, 0))
    assert d.response_due_at.astimezone(SHANGHAI) == local(2027, 1, 4, 9, 30)
    assert d.resolve_due_at.astimezone(SHANGHAI) == local(2027, 1, 6, 17, 30)


def test_year_without_any_data_falls_back_to_weekends_and_warns_once(sla: SlaPolicy, caplog) -> None:
    with caplog.at_level(logging.WARNING):
        d1 = sla.deadlines("normal", local(2031, 1, 3, 17, 0))  # a Friday
        sla.deadlines("normal", local(2031, 1, 10, 17, 0))
    assert d1.response_due_at.astimezone(SHANGHAI) == local(2031, 1, 6, 9, 0)
    assert sum("2031" in r.getMessage() for r in caplog.records) == 1


def test_reminder_points_are_fractions_of_the_window(sla: SlaPolicy) -> None:
    start = local(2026, 11, 20, 10, 0)
    d = sla.deadlines("urgent", start)
    points = sla.reminder_points("urgent", start, d.response_due_at)
    assert points == [start + timedelta(minutes=30), start + timedelta(minutes=48)]


def test_reminder_points_skip_closed_hours(sla: SlaPolicy) -> None:
    start = local(2026, 11, 20, 17, 0)  # Friday, 30 service minutes left
    due = sla.deadlines("normal", start).response_due_at
    p50, p80 = sla.reminder_points("normal", start, due)
    assert p50.astimezone(SHANGHAI) == local(2026, 11, 20, 17, 30)
    assert p80.astimezone(SHANGHAI) == local(2026, 11, 23, 8, 48)
