"""What the terminal shows while the simulated day runs: a rich Live panel, or compact lines when not a TTY.

Owns: two Observers of the simulation (`LiveView`, `ProgressLines`). Must not: compute summary figures.
"""

from __future__ import annotations

import time
from collections import deque
from datetime import datetime
from typing import Self
from zoneinfo import ZoneInfo

from rich.console import Console, Group
from rich.live import Live
from rich.panel import Panel
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from bot.demo.simulation import Counters, SimEvent

STYLE = {"message": "white", "case": "cyan", "duplicate": "magenta", "hotspot": "bold red", "reminder": "yellow",
         "escalation": "bold yellow", "worker": "green", "rating": "blue", "reopen": "red", "error": "bold red"}
ICON = {"message": "💬", "case": "📋", "duplicate": "🔗", "hotspot": "🔥", "escalation": "🚨", "worker": "✅",
        "rating": "⭐", "reopen": "🔁", "error": "❌"}


def _counter_table(c: Counters) -> Table:
    t = Table.grid(padding=(0, 2))
    for _ in range(4):
        t.add_column(justify="left")
        t.add_column(justify="right", style="bold")
    t.add_row("居民消息", str(c.messages), "工单", str(c.cases), "重复合并", str(c.duplicates), "热点", str(c.hotspots))
    t.add_row("催办提醒", str(c.reminders), "超时升级", str(c.escalations), "网格员操作", str(c.worker_actions),
              "评价", str(c.ratings))
    t.add_row("退回重办", str(c.reopened), "自动办结", str(c.auto_closed), "推送", str(c.pushes), "引擎报错",
              str(c.errors))
    return t


class LiveView:
    """A rich Live panel: simulated time, progress, the latest messages and case events, counters."""

    def __init__(self, console: Console, tz: ZoneInfo, *, title: str = "泉小智 · 模拟的一天") -> None:
        self.console = console
        self.tz = tz
        self.title = title
        # fit the terminal: header, bar, counters and four panel borders take about 11 rows
        rows = max(6, min(console.size.height - 11, 24))
        self.n_messages, self.n_events = max(2, rows * 2 // 5), max(3, rows - rows * 2 // 5)
        self.messages: deque[SimEvent] = deque(maxlen=self.n_messages)
        self.events: deque[SimEvent] = deque(maxlen=self.n_events)
        self.now: datetime | None = None
        self.progress = 0.0
        self.counters = Counters()
        self._live = Live(self._render(), console=console, refresh_per_second=8, transient=False)
        self._last = 0.0

    def __enter__(self) -> Self:
        self._live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._live.update(self._render())
        self._live.__exit__(*exc)  # type: ignore[arg-type]

    def on_event(self, event: SimEvent) -> None:
        (self.messages if event.kind == "message" else self.events).append(event)

    def on_tick(self, now: datetime, counters: Counters, progress: float) -> None:
        self.now, self.counters, self.progress = now, counters, progress
        t = time.monotonic()
        if t - self._last > 0.1:  # redraw at most 10 times a second of wall time
            self._last = t
            self._live.update(self._render())

    def _lines(self, events: deque[SimEvent]) -> Text:
        out = Text(no_wrap=True, overflow="ellipsis")
        for ev in events:
            out.append(f"{ev.at.astimezone(self.tz):%m-%d %H:%M} ", style="dim")
            out.append(f"{ICON.get(ev.kind, '•')} {ev.text}\n", style=STYLE.get(ev.kind, "white"))
        out.rstrip()
        return out

    def _render(self) -> Panel:
        clock = self.now.astimezone(self.tz).strftime("%Y-%m-%d %H:%M") if self.now else "—"
        head = Table.grid(expand=True)
        head.add_column()
        head.add_column(justify="right")
        head.add_row(Text(f"模拟时间 {clock}", style="bold"), Text(f"{self.progress * 100:.0f}%"))
        body = Group(head, ProgressBar(total=1.0, completed=self.progress),
                     Panel(self._lines(self.messages), title="居民消息", height=self.n_messages + 2),
                     Panel(self._lines(self.events), title="工单动态（开单、重复、热点、升级、办结、评价）",
                           height=self.n_events + 2),
                     _counter_table(self.counters))
        return Panel(body, title=self.title)


class ProgressLines:
    """For logs and pipes: one line per simulated hour of the day (every six hours in the fast-forward),
    plus hotspots and engine errors as they happen."""

    def __init__(self, console: Console, tz: ZoneInfo, *, day_end: datetime) -> None:
        self.console = console
        self.tz = tz
        self.day_end = day_end
        self._key: tuple[object, int] | None = None

    def on_event(self, event: SimEvent) -> None:
        if event.kind in ("hotspot", "error"):
            self.console.print(f"  {event.at.astimezone(self.tz):%m-%d %H:%M} {ICON.get(event.kind, '')} {event.text}",
                               highlight=False)

    def on_tick(self, now: datetime, counters: Counters, progress: float) -> None:
        local = now.astimezone(self.tz)
        step = 1 if now <= self.day_end else 6
        key = (local.date(), local.hour // step)
        if key == self._key and progress < 1.0:
            return
        self._key = key
        c = counters
        self.console.print(
            f"[{local:%m-%d %H:%M}] 消息 {c.messages} · 工单 {c.cases} · 重复 {c.duplicates} · 热点 {c.hotspots} · "
            f"提醒 {c.reminders} · 升级 {c.escalations} · 评价 {c.ratings} · 自动办结 {c.auto_closed} · "
            f"{progress * 100:.0f}%", highlight=False)
