"""Small inline-SVG charts for the demo report: stacked bars, a histogram and an SLA timeline.

Owns: turning plain numbers into SVG strings (no fonts, scripts or links to fetch; labels are escaped).
Must not: read the case store (summary.py hands it the numbers).
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from datetime import datetime

FONT = "font-family='sans-serif'"
PALETTE = {"emergency": "#dc2626", "urgent": "#f59e0b", "normal": "#2563eb"}
ON_TIME, LATE, OPEN = "#16a34a", "#dc2626", "#9ca3af"


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _text(x: float, y: float, text: object, *, size: int = 11, anchor: str = "start", fill: str = "#374151") -> str:
    return (f"<text x='{x:.1f}' y='{y:.1f}' font-size='{size}' text-anchor='{anchor}' fill='{fill}' {FONT}>"
            f"{_e(text)}</text>")


def _nice_max(value: float) -> float:
    if value <= 0:
        return 1.0
    for step in (1, 2, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1000, 2000, 5000):
        if value <= step * 5:
            return float(step * 5 if value > step * 4 else (int(value / step) + 1) * step)
    return float(value)


def stacked_bars(title: str, labels: list[str], series: dict[str, list[float]], *, names: dict[str, str],
                 colors: dict[str, str] | None = None, width: int = 760, height: int = 260) -> str:
    """Vertical bars, one per label, stacked by series (e.g. cases per hour by urgency)."""
    colors = colors or PALETTE
    left, right, top, bottom = 44, 12, 30, 40
    plot_w, plot_h = width - left - right, height - top - bottom
    totals = [sum(series[s][i] for s in series) for i in range(len(labels))]
    top_value = _nice_max(max(totals, default=0))
    band = plot_w / max(len(labels), 1)
    parts = [(f"<svg width='{width}' height='{height}' role='img' "
             f"aria-label='{_e(title)}'>"), _text(left, 18, title, size=13, fill="#111827")]
    steps = 5 if top_value % 5 == 0 else 4  # whole-number gridlines (15 → 0,3,6,9,12,15)
    for k in range(steps + 1):
        v = top_value * k / steps
        y = top + plot_h - plot_h * k / steps
        parts.append(f"<line x1='{left}' y1='{y:.1f}' x2='{width - right}' y2='{y:.1f}' stroke='#e5e7eb'/>")
        parts.append(_text(left - 6, y + 4, f"{v:g}", size=10, anchor="end"))
    for i, label in enumerate(labels):
        x = left + i * band + band * 0.15
        y = top + plot_h
        for s, values in series.items():
            h = plot_h * values[i] / top_value if top_value else 0
            if h > 0:
                y -= h
                parts.append(f"<rect x='{x:.1f}' y='{y:.1f}' width='{band * 0.7:.1f}' height='{h:.1f}' "
                             f"fill='{colors.get(s, '#6b7280')}'><title>{_e(label)} {_e(names.get(s, s))}: "
                             f"{values[i]:g}</title></rect>")
        if totals[i]:
            parts.append(_text(x + band * 0.35, y - 3, f"{totals[i]:g}", size=9, anchor="middle"))
        parts.append(_text(left + i * band + band / 2, top + plot_h + 14, label, size=10, anchor="middle"))
    lx = left
    for s in series:
        parts.append(f"<rect x='{lx}' y='{height - 16}' width='10' height='10' fill='{colors.get(s, '#6b7280')}'/>")
        parts.append(_text(lx + 14, height - 7, names.get(s, s), size=10))
        lx += 14 + 12 * len(names.get(s, s)) + 16
    parts.append("</svg>")
    return "".join(parts)


def histogram(title: str, bins: list[str], counts: list[int], *, color: str = "#2563eb", width: int = 760,
              height: int = 240, x_label: str = "") -> str:
    """Bars for pre-binned counts (e.g. minutes to first response)."""
    svg = stacked_bars(title, bins, {"n": [float(c) for c in counts]}, names={"n": x_label or "件数"},
                       colors={"n": color}, width=width, height=height)
    return svg


@dataclass(frozen=True)
class Span:
    """One case on the SLA timeline."""

    label: str
    group: str
    opened: datetime
    responded: datetime | None
    resolved: datetime | None
    response_on_time: bool | None  # None: not due yet and not responded
    resolve_on_time: bool | None


def timeline(title: str, spans: list[Span], *, start: datetime, end: datetime, tick_hours: int = 2,
             tz: object | None = None, width: int = 980, row_h: int = 7) -> str:
    """Cases as bars grouped by grid: opened → first response (solid), first response → resolved (light).

    Green when that part was on time, red when late, grey while still open. Bars past `end` are clipped
    and end in an arrow.
    """
    left, right, top = 70.0, 16, 40
    groups: dict[str, list[Span]] = {}
    for s in sorted(spans, key=lambda s: (s.group, s.opened, s.label)):
        groups.setdefault(s.group, []).append(s)
    rows = sum(len(v) for v in groups.values()) + len(groups)
    height = top + rows * row_h + 40
    plot_w = width - left - right
    total = (end - start).total_seconds() or 1.0

    def x_of(t: datetime) -> float:
        return left + plot_w * min(max((t - start).total_seconds() / total, 0.0), 1.0)

    parts = [(f"<svg width='{width}' height='{height}' role='img' "
             f"aria-label='{_e(title)}'>"), _text(left, 16, title, size=13, fill="#111827")]
    hours = int(total // 3600)
    for h in range(0, hours + 1, tick_hours):
        t = start.timestamp() + h * 3600
        x = left + plot_w * (h * 3600) / total
        label = datetime.fromtimestamp(t, tz=tz).strftime("%H:%M") if tz else f"+{h}h"  # type: ignore[arg-type]
        parts.append(f"<line x1='{x:.1f}' y1='{top - 6}' x2='{x:.1f}' y2='{height - 30}' stroke='#f3f4f6'/>")
        parts.append(_text(x, top - 10, label, size=9, anchor="middle"))
    y = float(top)
    for group, items in groups.items():
        parts.append(f"<line x1='{left}' y1='{y:.1f}' x2='{width - right}' y2='{y:.1f}' stroke='#d1d5db'/>")
        parts.append(_text(left - 6, y + row_h * min(len(items), 3) / 2 + 8, group, size=10, anchor="end"))
        y += row_h / 2
        for s in items:
            x0 = x_of(s.opened)
            first_end = s.responded or end
            c1 = OPEN if s.response_on_time is None else (ON_TIME if s.response_on_time else LATE)
            x1 = x_of(first_end)
            parts.append(f"<rect x='{x0:.1f}' y='{y:.1f}' width='{max(x1 - x0, 1.5):.1f}' height='{row_h - 2}' "
                         f"fill='{c1}'><title>{_e(s.label)}</title></rect>")
            if s.responded is not None:
                c2 = OPEN if s.resolve_on_time is None else (ON_TIME if s.resolve_on_time else LATE)
                x2 = x_of(s.resolved or end)
                parts.append(f"<rect x='{x1:.1f}' y='{y + 1:.1f}' width='{max(x2 - x1, 0.0):.1f}' "
                             f"height='{row_h - 4}' fill='{c2}' fill-opacity='0.35'>"
                             f"<title>{_e(s.label)}</title></rect>")
                if (s.resolved or end) > end:
                    parts.append(f"<path d='M{x2:.1f},{y:.1f} l4,{(row_h - 2) / 2:.1f} l-4,{(row_h - 2) / 2:.1f}z' "
                                 f"fill='{c2}'/>")
            y += row_h
        y += row_h / 2
    ly = height - 14
    for color, name, opacity in ((ON_TIME, "按时", 1), (LATE, "超时", 1), (OPEN, "未到期/未办", 1),
                                 (ON_TIME, "办理中→办结（浅色）", 0.35)):
        parts.append(f"<rect x='{left}' y='{ly - 9}' width='10' height='10' fill='{color}' fill-opacity='{opacity}'/>")
        parts.append(_text(left + 14, ly, name, size=10))
        left += 30 + 12 * len(name)
    parts.append("</svg>")
    return "".join(parts)
