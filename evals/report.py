"""Writes a run document as report.json and a self-contained report.html (inline CSS and SVG, no network).

Owns: the HTML layout and the SVG charts (confusion heatmaps, per-class bars, the hit@k curve, the SLA
timeline of the dialogue scenarios). Failing inputs are masked before they are written.
Must not: run suites or decide pass/fail (the runner does); fetch anything (no CDN, no web fonts).
"""

from __future__ import annotations

import html
import json
import math
from pathlib import Path
from typing import Any

from policies.masking import mask_text

SUITE_ZH = {"classification": "分类 classification", "retrieval": "检索 retrieval", "answers": "回答 answers",
            "routing": "分派 routing", "dialogue": "对话闭环 dialogue", "safety": "安全 safety",
            "reviewed": "复核回归 reviewed"}
EVENT_COLOURS = {"opened": "#2563eb", "first_response": "#16a34a", "reminder": "#f59e0b",
                 "escalation": "#dc2626", "resolved": "#7c3aed", "closed": "#475569", "reopened": "#db2777"}
EVENT_ZH = {"opened": "立案", "first_response": "首次响应", "reminder": "提醒", "escalation": "升级",
            "resolved": "办结", "closed": "关闭", "reopened": "重办"}

CSS = """
body{font-family:"Noto Sans CJK SC","Source Han Sans SC","Microsoft YaHei","PingFang SC",sans-serif;
 margin:24px auto;max-width:1200px;color:#111827;background:#f8fafc;padding:0 16px}
h1{font-size:24px;margin:0 0 4px}h2{font-size:19px;margin:28px 0 8px;border-bottom:2px solid #e5e7eb;padding-bottom:4px}
h3{font-size:15px;margin:18px 0 6px}.meta{color:#6b7280;font-size:13px}
table{border-collapse:collapse;font-size:13px;margin:6px 0;background:#fff}
th,td{border:1px solid #e5e7eb;padding:4px 8px;text-align:left;vertical-align:top}th{background:#f1f5f9}
td.num{text-align:right;font-variant-numeric:tabular-nums}
.pass{background:#dcfce7;color:#166534;font-weight:600}.fail{background:#fee2e2;color:#991b1b;font-weight:600}
.na{background:#f3f4f6;color:#6b7280}.badge{display:inline-block;padding:2px 8px;border-radius:10px;font-size:12px}
.cards{display:flex;flex-wrap:wrap;gap:10px;margin:10px 0}
.card{background:#fff;border:1px solid #e5e7eb;border-radius:8px;padding:8px 12px;min-width:150px}
.card .v{font-size:22px;font-weight:700}.card .t{font-size:12px;color:#6b7280}
.card.pass{border-left:6px solid #16a34a}.card.fail{border-left:6px solid #dc2626}
.card.na{border-left:6px solid #9ca3af}
.charts{display:flex;flex-wrap:wrap;gap:16px;align-items:flex-start}
.chart{background:#fff;border:1px solid #e5e7eb;border-radius:8px;padding:8px}
pre{white-space:pre-wrap;word-break:break-all;margin:0;font-size:12px}
details{margin:6px 0}summary{cursor:pointer;font-weight:600}
.up{color:#166534}.down{color:#991b1b}
"""


def write_report(doc: dict[str, Any], out_dir: Path) -> tuple[Path, Path]:
    """Write report.json and report.html into `out_dir` and return their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path = out_dir / "report.json"
    html_path = out_dir / "report.html"
    json_path.write_text(json.dumps(_masked(doc), ensure_ascii=False, indent=2), encoding="utf-8")
    html_path.write_text(render_html(doc), encoding="utf-8")
    return json_path, html_path


def _masked(obj: Any) -> Any:
    """Every string in the document with phone and ID numbers masked (failing inputs may hold them)."""
    if isinstance(obj, str):
        return mask_text(obj)
    if isinstance(obj, dict):
        return {k: _masked(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_masked(v) for v in obj]
    return obj


def _e(value: Any) -> str:
    return html.escape(mask_text(str(value)), quote=True)


def _fmt(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "✓" if value else "✗"
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) < 100 else f"{value:.1f}"
    return str(value)


# ---------------- page ----------------
def render_html(doc: dict[str, Any]) -> str:
    gate = doc.get("gate", {})
    parts = [
        "<!DOCTYPE html><html lang='zh-CN'><head><meta charset='utf-8'>",
        "<meta name='viewport' content='width=device-width, initial-scale=1'>",
        "<title>quanbot 评测报告 eval report</title>",
        f"<style>{CSS}</style></head><body>",
        "<h1>quanbot 评测报告 <span class='meta'>eval report</span></h1>",
        (f"<div class='meta'>生成 created {_e(doc.get('created_at', ''))} · 模式 modes "
        f"{_e(', '.join(doc.get('modes', [])) or '—')} · 用时 {_fmt(doc.get('duration_s'))} s"
        f"{' · quick' if doc.get('quick') else ''}</div>"),
        (f"<p id='gate' class='badge {'pass' if gate.get('passed') else 'fail'}'>"
        f"{'门禁通过 gate passed' if gate.get('passed') else '门禁未通过 gate failed'}</p>"),
    ]
    for note in doc.get("notes", []):
        parts.append(f"<p class='meta'>ℹ {_e(note)}</p>")
    parts.append(_summary_table(doc))
    if doc.get("baseline"):
        parts.append(_baseline_section(doc["baseline"]))
    for mode, suites in doc.get("runs", {}).items():
        prefix = "" if mode == "offline" else f"{mode}-"
        for name, run in suites.items():
            parts.append(_suite_section(name, mode, prefix, run))
    parts.append("</body></html>")
    return "\n".join(parts)


def _summary_table(doc: dict[str, Any]) -> str:
    rows = []
    for mode, suites in doc.get("runs", {}).items():
        for name, run in suites.items():
            if run["status"] != "ok":
                cls = "na" if run["status"] == "unavailable" else "fail"
                rows.append(f"<tr><td>{_e(mode)}</td><td>{_e(SUITE_ZH.get(name, name))}</td>"
                            f"<td colspan='3' class='{cls}'>{_e(run['reason'])}</td><td class='{cls}'>"
                            f"{'—' if cls == 'na' else '✗'}</td></tr>")
                continue
            for c in run.get("checks", []):
                cls = "pass" if c["passed"] else "fail"
                rows.append(f"<tr><td>{_e(mode)}</td><td>{_e(SUITE_ZH.get(name, name))}</td><td>{_e(c['figure'])}</td>"
                            f"<td class='num'>{_fmt(c['value'])}</td><td class='num'>{_e(c['op'])} "
                            f"{_fmt(c['threshold'])}</td><td class='{cls}'>{'✓' if c['passed'] else '✗'}</td></tr>")
    return ("<h2>门禁指标 Gated figures</h2><table id='headline'><tr><th>模式 mode</th><th>套件 suite</th>"
            "<th>指标 figure</th><th>数值 value</th><th>阈值 threshold</th><th></th></tr>"
            + "".join(rows) + "</table>")


def _baseline_section(diff: dict[str, Any]) -> str:
    out = [f"<h2>与基线对比 Change since baseline ({_e(diff.get('baseline_created_at') or '?')})</h2>"]
    if diff.get("new_gate_failures"):
        out.append("<h3 class='down'>新的门禁失败 New gate failures</h3><ul>")
        out += [f"<li>{_e(f['mode'])} · {_e(f['suite'])} · {_e(f['figure'])} = {_fmt(f['value'])} "
                f"({_e(f['op'])} {_fmt(f['threshold'])})</li>" for f in diff["new_gate_failures"]]
        out.append("</ul>")
    rows = []
    for c in diff.get("changes", []):
        ch = c.get("change")
        if ch is None and c.get("before") is not None and c.get("after") is not None:
            continue
        cls = "" if not ch else ("up" if ch > 0 else "down")
        rows.append(f"<tr><td>{_e(c['mode'])}</td><td>{_e(c['suite'])}</td><td>{_e(c['figure'])}</td>"
                    f"<td class='num'>{_fmt(c['before'])}</td><td class='num'>{_fmt(c['after'])}</td>"
                    f"<td class='num {cls}'>{'' if ch is None else f'{ch:+.4f}'}</td></tr>")
    out.append("<details><summary>全部指标变化 every figure</summary><table id='baseline-diff'><tr><th>mode</th>"
               "<th>suite</th><th>figure</th><th>before</th><th>after</th><th>change</th></tr>"
               + "".join(rows) + "</table></details>")
    if diff.get("new_failing_cases"):
        out.append(f"<details><summary>新的失败样例 new failing cases ({len(diff['new_failing_cases'])})</summary><ul>")
        out += [f"<li>{_e(c['suite'])}: <pre>{_e(json.dumps(c['case'], ensure_ascii=False))}</pre></li>"
                for c in diff["new_failing_cases"][:200]]
        out.append("</ul></details>")
    return "".join(out)


def _suite_section(name: str, mode: str, prefix: str, run: dict[str, Any]) -> str:
    title = f"{SUITE_ZH.get(name, name)} <span class='meta'>[{_e(mode)}] {_fmt(run.get('duration_s'))} s</span>"
    out = [f"<h2 id='{prefix}suite-{_e(name)}'>{title}</h2>"]
    if run["status"] != "ok":
        out.append(f"<p class='badge {'na' if run['status'] == 'unavailable' else 'fail'}'>{_e(run['reason'])}</p>")
        return "".join(out)
    out.append(_cards(run))
    figures, extra = run.get("figures", {}), run.get("extra", {})
    charts: list[str] = []
    if name == "classification":
        for axis in ("intent", "category", "urgency"):
            axis_obj = figures.get(axis)
            if isinstance(axis_obj, dict):
                cm = confusion_of(axis_obj)
                if cm:
                    charts.append(svg_confusion(f"{prefix}confusion-{axis}", f"{axis} 混淆矩阵 confusion", *cm))
                pc = per_class_of(axis_obj)
                if pc:
                    charts.append(svg_bars(f"{prefix}per-class-{axis}", f"{axis} 各类 F1 per class", pc))
    if name == "retrieval":
        curve = hit_curve_of(figures, extra)
        if curve:
            charts.append(svg_curve(f"{prefix}hit-at-k", "hit@k 曲线", curve))
    if name == "dialogue" and extra.get("timeline"):
        charts.append(svg_timeline(f"{prefix}sla-timeline", "SLA 时间线（分钟）SLA timeline, minutes since start",
                                   extra["timeline"]))
    if name in ("routing", "answers", "safety", "dialogue"):
        per = {k: v for k, v in figures.items() if isinstance(v, (int, float)) and not isinstance(v, bool)
               and 0 <= v <= 1 and not k.startswith("false_")
               and ("accuracy" in k or "rate" in k or "recall" in k or "correctness" in k)}
        if len(per) >= 2:
            charts.append(svg_bars(f"{prefix}{name}-figures", "指标 figures", per))
    if charts:
        out.append("<div class='charts'>" + "".join(f"<div class='chart'>{c}</div>" for c in charts) + "</div>")
    out.append(_figures_details(figures))
    if run.get("problems"):
        out.append("<h3 class='down'>数据文件问题 malformed data lines (skipped)</h3><ul>")
        out += [f"<li>{_e(p['file'])}:{p['line']}: {_e(p['message'])}</li>" for p in run["problems"]]
        out.append("</ul>")
    failures = run.get("failures", [])
    if failures:
        out.append(f"<h3>失败样例 failing cases ({len(failures)})</h3><table class='failures' "
                   f"id='{prefix}failures-{_e(name)}'>")
        keys: list[str] = []
        for f in failures:
            keys += [k for k in f if k not in keys]
        out.append("<tr>" + "".join(f"<th>{_e(k)}</th>" for k in keys) + "</tr>")
        for f in failures[:300]:
            out.append("<tr>" + "".join(f"<td><pre>{_e(_cell(f.get(k)))}</pre></td>" for k in keys) + "</tr>")
        out.append("</table>")
        if len(failures) > 300:
            out.append(f"<p class='meta'>… {len(failures) - 300} more in report.json</p>")
    return "".join(out)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def _cards(run: dict[str, Any]) -> str:
    cards = []
    for c in run.get("checks", []):
        cls = "pass" if c["passed"] else "fail"
        cards.append(f"<div class='card {cls}'><div class='t'>{_e(c['figure'])}</div><div class='v'>"
                     f"{_fmt(c['value'])}</div><div class='t'>{_e(c['op'])} {_fmt(c['threshold'])}</div></div>")
    gated = {c["figure"] for c in run.get("checks", [])}
    for key, value in run.get("figures", {}).items():
        if key in gated or isinstance(value, (dict, list, bool)):
            continue
        cards.append(f"<div class='card na'><div class='t'>{_e(key)}</div><div class='v'>{_fmt(value)}</div></div>")
    return "<div class='cards'>" + "".join(cards[:24]) + "</div>"


def _figures_details(figures: dict[str, Any]) -> str:
    text = json.dumps(figures, ensure_ascii=False, indent=1)
    if len(text) > 60_000:
        text = text[:60_000] + "\n…"
    return f"<details><summary>全部指标 all figures (JSON)</summary><pre>{_e(text)}</pre></details>"


# ---------------- data shapes from other suites ----------------
def confusion_of(axis: dict[str, Any]) -> tuple[list[str], list[list[float]]] | None:
    """(labels, matrix[true][pred]) from the shapes a classification suite may give, or None."""
    cm = axis.get("confusion")
    if cm is None:
        return None
    if isinstance(cm, dict) and "matrix" in cm:
        labels = [str(x) for x in cm.get("labels", [])]
        matrix = cm["matrix"]
    elif isinstance(cm, dict):  # {true: {pred: n}}
        labels = list(cm)
        for row in cm.values():
            if isinstance(row, dict):
                labels += [p for p in row if p not in labels]
        matrix = [[(cm.get(t) or {}).get(p, 0) if isinstance(cm.get(t), dict) else 0 for p in labels] for t in labels]
    elif isinstance(cm, list):
        labels = [str(x) for x in axis.get("labels", list(axis.get("per_class", {}) or []))]
        matrix = cm
    else:
        return None
    if not labels or len(matrix) != len(labels) or any(len(r) != len(labels) for r in matrix):
        return None
    return labels, [[float(v or 0) for v in row] for row in matrix]


def per_class_of(axis: dict[str, Any]) -> dict[str, float] | None:
    pc = axis.get("per_class")
    if not isinstance(pc, dict) or not pc:
        return None
    out: dict[str, float] = {}
    for label, value in pc.items():
        v = value.get("f1", value.get("f1_score", value.get("recall"))) if isinstance(value, dict) else value
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            out[str(label)] = float(v)
    return out or None


def hit_curve_of(figures: dict[str, Any], extra: dict[str, Any]) -> list[tuple[int, float]] | None:
    raw = extra.get("hit_at_k", extra.get("hit@k"))
    points: list[tuple[int, float]] = []
    if isinstance(raw, dict):
        for k, v in raw.items():
            try:
                points.append((int(str(k).replace("hit_at_", "").replace("@", "")), float(v)))
            except (TypeError, ValueError):
                continue
    elif isinstance(raw, list):
        for i, v in enumerate(raw, start=1):
            if isinstance(v, dict):
                k, val = v.get("k", i), v.get("hit", v.get("value"))
            else:
                k, val = i, v
            if isinstance(val, (int, float)):
                points.append((int(k), float(val)))
    if not points:
        for key, v in figures.items():
            if key.startswith("hit_at_") and isinstance(v, (int, float)):
                try:
                    points.append((int(key[7:]), float(v)))
                except ValueError:
                    continue
    return sorted(points) or None


# ---------------- SVG ----------------
def _t(x: float, y: float, text: str, *, size: int = 11, anchor: str = "start", rotate: float | None = None,
       fill: str = "#111827", weight: str = "normal") -> str:
    tr = f" transform='rotate({rotate} {x:.1f} {y:.1f})'" if rotate is not None else ""
    return (f"<text x='{x:.1f}' y='{y:.1f}' font-size='{size}' text-anchor='{anchor}' fill='{fill}' "
            f"font-weight='{weight}'{tr}>{_e(text)}</text>")


def svg_confusion(svg_id: str, title: str, labels: list[str], matrix: list[list[float]]) -> str:
    n = len(labels)
    cell = max(18, min(40, 520 // max(n, 1)))
    left, top = 130, 40 + 100
    width, height = left + n * cell + 20, top + n * cell + 40
    parts = [(f"<svg id='{svg_id}' width='{width}' height='{height}' "
             f"role='img' aria-label='{_e(title)}'>"), _t(4, 16, title, size=13, weight="bold"),
             _t(left + n * cell / 2, height - 8, "预测 predicted", anchor="middle"),
             _t(12, top + n * cell / 2, "真实 true", anchor="middle", rotate=-90)]
    for i, row in enumerate(matrix):
        total = sum(row) or 1.0
        for j, v in enumerate(row):
            share = v / total
            if i == j:
                colour = f"rgb({int(255 - 200 * share)},{int(255 - 90 * share)},{int(255 - 200 * share)})"
            else:
                colour = f"rgb(255,{int(255 - 200 * min(1.0, share * 3))},{int(255 - 200 * min(1.0, share * 3))})"
            x, y = left + j * cell, top + i * cell
            parts.append(f"<rect x='{x}' y='{y}' width='{cell}' height='{cell}' fill='{colour}' stroke='#e5e7eb'>"
                         f"<title>{_e(labels[i])} → {_e(labels[j])}: {int(v)}</title></rect>")
            if v and cell >= 22:
                parts.append(_t(x + cell / 2, y + cell / 2 + 4, str(int(v)), size=10, anchor="middle"))
        parts.append(_t(left - 4, top + i * cell + cell / 2 + 4, labels[i], size=10, anchor="end"))
        parts.append(_t(left + i * cell + cell / 2 + 3, top - 4, labels[i], size=10, rotate=-60))
    parts.append("</svg>")
    return "".join(parts)


def svg_bars(svg_id: str, title: str, values: dict[str, float]) -> str:
    bar_h, left, width = 18, 170, 560
    top = 28
    height = top + len(values) * (bar_h + 4) + 24
    scale = width - left - 60
    parts = [(f"<svg id='{svg_id}' width='{width}' height='{height}' "
             f"role='img' aria-label='{_e(title)}'>"), _t(4, 16, title, size=13, weight="bold")]
    for i, (label, v) in enumerate(values.items()):
        y = top + i * (bar_h + 4)
        share = max(0.0, min(1.0, v))
        colour = "#16a34a" if share >= 0.9 else ("#f59e0b" if share >= 0.75 else "#dc2626")
        parts.append(_t(left - 6, y + bar_h - 5, label, size=11, anchor="end"))
        parts.append(f"<rect x='{left}' y='{y}' width='{scale}' height='{bar_h}' fill='#f1f5f9'/>")
        parts.append(f"<rect class='bar' x='{left}' y='{y}' width='{scale * share:.1f}' height='{bar_h}' "
                     f"fill='{colour}'><title>{_e(label)}: {v:.3f}</title></rect>")
        parts.append(_t(left + scale + 6, y + bar_h - 5, f"{v:.3f}", size=11))
    parts.append("</svg>")
    return "".join(parts)


def svg_curve(svg_id: str, title: str, points: list[tuple[int, float]]) -> str:
    width, height, left, top, bottom = 480, 300, 56, 52, 40
    plot_w, plot_h = width - left - 30, height - top - bottom
    kmax = max(k for k, _ in points)
    kmin = min(k for k, _ in points)
    span = max(kmax - kmin, 1)
    # the y axis starts a little under the lowest point, so a curve near 1.0 still shows its shape
    lo = max(0.0, math.floor((min(v for _, v in points) - 0.05) * 10) / 10)

    def xy(k: int, v: float) -> tuple[float, float]:
        return left + (k - kmin) / span * plot_w, top + (1 - (max(lo, min(1.0, v)) - lo) / (1 - lo or 1)) * plot_h

    parts = [(f"<svg id='{svg_id}' width='{width}' height='{height}' "
              f"role='img' aria-label='{_e(title)}'>"), _t(4, 16, title, size=13, weight="bold")]
    for i in range(5):
        tick = lo + (1 - lo) * i / 4
        _, y = xy(kmin, tick)
        parts.append(f"<line x1='{left}' x2='{left + plot_w}' y1='{y:.1f}' y2='{y:.1f}' stroke='#e5e7eb'/>")
        parts.append(_t(left - 10, y + 4, f"{tick:.2f}", size=10, anchor="end", fill="#6b7280"))
    path = " ".join(f"{'M' if i == 0 else 'L'}{x:.1f},{y:.1f}" for i, (x, y) in enumerate(xy(k, v) for k, v in points))
    parts.append(f"<path d='{path}' fill='none' stroke='#2563eb' stroke-width='2.5'/>")
    for k, v in points:
        x, y = xy(k, v)
        parts.append(f"<circle cx='{x:.1f}' cy='{y:.1f}' r='4' fill='#2563eb'>"
                     f"<title>hit@{k} = {v:.3f}</title></circle>")
        parts.append(_t(x, top + plot_h + 16, f"k={k}", size=10, anchor="middle"))
        parts.append(_t(x + 4, y - 10, f"{v:.2f}", size=10, anchor="middle"))
    parts.append("</svg>")
    return "".join(parts)


def svg_timeline(svg_id: str, title: str, timeline: list[dict[str, Any]]) -> str:
    """One row per scenario; markers at the minutes of its case events (log-ish scale past two hours)."""
    rows = [r for r in timeline if r.get("events")]
    left, top, row_h, width = 230, 46, 20, 1080
    plot_w = width - left - 30
    last = max((e["minute"] for r in rows for e in r["events"]), default=60.0)
    last = max(last, 60.0)

    def x_of(minute: float) -> float:
        # linear for the first two hours (reminders and escalations live there), compressed after
        m = max(0.0, minute)
        if last <= 120:
            return left + m / last * plot_w
        lin = 0.6 * plot_w
        if m <= 120:
            return left + m / 120 * lin
        return left + lin + (math.log1p(m - 120) / math.log1p(last - 120)) * (plot_w - lin)

    height = top + max(len(rows), 1) * row_h + 50
    parts = [(f"<svg id='{svg_id}' width='{width}' height='{height}' "
             f"role='img' aria-label='{_e(title)}'>"), _t(4, 16, title, size=13, weight="bold")]
    lx = 4
    for kind, colour in EVENT_COLOURS.items():
        parts.append(f"<circle cx='{lx + 6}' cy='32' r='5' fill='{colour}'/>")
        parts.append(_t(lx + 14, 36, f"{EVENT_ZH[kind]} {kind}", size=10))
        lx += 130
    ticks = [0, 10, 30, 60, 90, 120] + [t for t in (240, 480, 1440, 2880, 4320, 10080) if t <= last]
    for t in ticks:
        x = x_of(t)
        parts.append(f"<line x1='{x:.1f}' x2='{x:.1f}' y1='{top - 4}' y2='{top + len(rows) * row_h}' "
                     f"stroke='#e5e7eb'/>")
        label = f"{t}m" if t < 120 else f"{t / 60:g}h"
        parts.append(_t(x, top + len(rows) * row_h + 14, label, size=10, anchor="middle"))
    for i, row in enumerate(rows):
        y = top + i * row_h + row_h / 2
        ok = row.get("passed", True)
        parts.append(_t(left - 8, y + 4, str(row.get("scenario", "?"))[:34], size=10, anchor="end",
                        fill="#111827" if ok else "#991b1b"))
        parts.append(f"<line x1='{left}' x2='{left + plot_w}' y1='{y:.1f}' y2='{y:.1f}' stroke='#f1f5f9'/>")
        for e in row["events"]:
            colour = EVENT_COLOURS.get(e.get("kind", ""), "#111827")
            x = x_of(float(e["minute"]))
            parts.append(f"<circle class='ev' cx='{x:.1f}' cy='{y:.1f}' r='5' fill='{colour}' fill-opacity='0.85'>"
                         f"<title>{_e(row.get('scenario'))}: {_e(EVENT_ZH.get(e.get('kind', ''), e.get('kind')))} "
                         f"{_e(e.get('detail', ''))} @ {float(e['minute']):.0f} min</title></circle>")
    parts.append("</svg>")
    return "".join(parts)
