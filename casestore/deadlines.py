"""SLA clock arithmetic: due times and reminder points on a 24x7 or a service-hours clock.

Working days follow chinese-calendar (statutory holidays and adjusted working days). For years it does
not know, `sla.yaml` may list holidays and working days; past both, weekends are the only days off and a
warning is logged once per year. A deadline never crashes on an unknown year.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

import chinese_calendar

from policies.models import Clock, Sla, parse_duration
from policies.taxonomy import Urgency

log = logging.getLogger(__name__)
_warned_years: set[int] = set()


@dataclass(frozen=True)
class SlaClock:
    spec: Clock
    tz: ZoneInfo

    # ----- calendar -----
    def is_workday(self, day: date) -> bool:
        return _is_workday(day, self._extras())

    def _extras(self) -> tuple[frozenset[date], frozenset[date], frozenset[int]]:
        holidays = frozenset(d for days in self.spec.extra_holidays.values() for d in days)
        workdays = frozenset(d for days in self.spec.extra_workdays.values() for d in days)
        years = frozenset(self.spec.extra_holidays) | frozenset(self.spec.extra_workdays)
        return holidays, workdays, years

    @property
    def day_minutes(self) -> float:
        if self.spec.kind == "always":
            return 24 * 60
        start = datetime.combine(date.min, self.spec.start)
        end = datetime.combine(date.min, self.spec.end)
        return (end - start).total_seconds() / 60

    # ----- arithmetic -----
    def minutes_for(self, duration: str) -> float:
        """A policy duration ("1h", "3wd") as minutes of this clock's running time."""
        value, unit = parse_duration(duration)
        if unit == "m":
            return value
        if unit == "h":
            return value * 60
        # days: calendar days on a 24x7 clock, working days on a service-hours clock
        return value * self.day_minutes

    def add(self, start: datetime, minutes: float) -> datetime:
        """The instant at which `minutes` of clock running time have passed since `start`."""
        start = start.astimezone(UTC)
        if self.spec.kind == "always":
            return start + timedelta(minutes=minutes)
        local = start.astimezone(self.tz)
        remaining = timedelta(minutes=minutes)
        cursor = local
        for _ in range(3700):  # ten years of days: a bound, not a limit anyone reaches
            day = cursor.date()
            open_at = datetime.combine(day, self.spec.start, tzinfo=self.tz)
            close_at = datetime.combine(day, self.spec.end, tzinfo=self.tz)
            if self.is_workday(day) and cursor < close_at:
                begin = max(cursor, open_at)
                available = close_at - begin
                if remaining <= available:
                    return (begin + remaining).astimezone(UTC)
                remaining -= available
            cursor = datetime.combine(day + timedelta(days=1), time(0, 0), tzinfo=self.tz)
        raise ValueError("deadline is more than ten years away")

    def running_minutes(self, start: datetime, end: datetime) -> float:
        """Clock running time between two instants (0 if end is before start)."""
        if end <= start:
            return 0.0
        if self.spec.kind == "always":
            return (end - start).total_seconds() / 60
        a, b = start.astimezone(self.tz), end.astimezone(self.tz)
        total = 0.0
        day = a.date()
        while day <= b.date():
            if self.is_workday(day):
                open_at = datetime.combine(day, self.spec.start, tzinfo=self.tz)
                close_at = datetime.combine(day, self.spec.end, tzinfo=self.tz)
                lo, hi = max(a, open_at), min(b, close_at)
                if hi > lo:
                    total += (hi - lo).total_seconds() / 60
            day += timedelta(days=1)
        return total


@lru_cache(maxsize=4096)
def _is_workday(day: date, extras: tuple[frozenset[date], frozenset[date], frozenset[int]]) -> bool:
    holidays, workdays, listed_years = extras
    if day in holidays:
        return False
    if day in workdays:
        return True
    if day.year not in listed_years:
        try:
            return bool(chinese_calendar.is_workday(day))
        except NotImplementedError:
            if day.year not in _warned_years:
                _warned_years.add(day.year)
                log.warning("no holiday data for %s: using the weekend rule (add it to sla.yaml)", day.year)
    return day.weekday() < 5


@dataclass(frozen=True)
class Deadlines:
    response_due_at: datetime
    resolve_due_at: datetime


class SlaPolicy:
    """The SLA rules of `sla.yaml` bound to a time zone: windows, reminder points and escalation timing."""

    def __init__(self, sla: Sla, tz: ZoneInfo):
        self.sla = sla
        self.tz = tz
        self.clocks = {name: SlaClock(spec, tz) for name, spec in sla.clocks.items()}

    def clock_for(self, urgency: Urgency | str) -> SlaClock:
        return self.clocks[self.sla.urgencies[Urgency(urgency)].clock]

    def deadlines(self, urgency: Urgency | str, start: datetime) -> Deadlines:
        rule = self.sla.urgencies[Urgency(urgency)]
        clock = self.clocks[rule.clock]
        return Deadlines(
            response_due_at=clock.add(start, clock.minutes_for(rule.response)),
            resolve_due_at=clock.add(start, clock.minutes_for(rule.resolve)),
        )

    def response_deadline(self, urgency: Urgency | str, start: datetime) -> datetime:
        rule = self.sla.urgencies[Urgency(urgency)]
        clock = self.clocks[rule.clock]
        return clock.add(start, clock.minutes_for(rule.response))

    def reminder_points(self, urgency: Urgency | str, start: datetime, due: datetime) -> list[datetime]:
        """The instants at the configured fractions of the window from `start` to `due`."""
        clock = self.clock_for(urgency)
        window = clock.running_minutes(start, due)
        return [clock.add(start, window * f) for f in self.sla.urgencies[Urgency(urgency)].reminders]

    def next_escalation_after(self, urgency: Urgency | str, start: datetime, due: datetime,
                              breach: datetime) -> datetime:
        """When the next ladder level follows, if the case is still not handled after a breach."""
        clock = self.clock_for(urgency)
        window = clock.running_minutes(start, due)
        return clock.add(breach, max(window * self.sla.escalation.repeat_after_fraction, 1.0))
