"""report.html opens in a real headless Chromium with no network: the charts are in the DOM and a screenshot
is taken. Needs Debian's chromium (`apt-get install -y chromium`); skipped with that reason when absent."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from evals.report import write_report

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(),
                                reason="/usr/bin/chromium is absent: install it with `apt-get install -y chromium`")


def _doc() -> dict:  # type: ignore[type-arg]
    labels = ["emergency", "normal", "urgent"]
    axis = {"accuracy": 0.9, "macro_f1": 0.88,
            "per_class": {k: {"precision": 0.9, "recall": 0.85, "f1": f}
                          for k, f in zip(labels, (1.0, 0.93, 0.7), strict=True)},
            "confusion": {"labels": labels, "matrix": [[20, 0, 0], [1, 300, 12], [0, 15, 80]]}}
    events = [{"kind": "opened", "minute": 0}, {"kind": "reminder", "minute": 30}, {"kind": "reminder", "minute": 48},
              {"kind": "escalation", "minute": 60}, {"kind": "first_response", "minute": 75},
              {"kind": "resolved", "minute": 300}, {"kind": "closed", "minute": 4620}]

    def ok(name: str, figures: dict, extra: dict, checks: list) -> dict:  # type: ignore[type-arg]
        return {"status": "ok", "reason": "", "figures": figures, "headline": {}, "checks": checks, "failures": [],
                "problems": [], "extra": extra, "duration_s": 1.2}

    return {"created_at": "2026-11-20T10:00:00+00:00", "modes": ["offline"], "duration_s": 3.0, "notes": [],
            "gate": {"passed": False, "failures": []},
            "runs": {"offline": {
                "classification": ok("classification", {"intent": axis, "category": axis, "urgency": axis}, {},
                                     [{"figure": "urgency_macro_f1", "value": 0.88, "op": ">=", "threshold": 0.85,
                                       "passed": True}]),
                "retrieval": ok("retrieval", {"hit_at_5": 0.93},
                                {"hit_at_k": {"1": 0.7, "3": 0.88, "5": 0.93, "10": 0.97}},
                                [{"figure": "hit_at_5", "value": 0.93, "op": ">=", "threshold": 0.95,
                                  "passed": False}]),
                "dialogue": ok("dialogue", {"pass_rate": 1.0},
                               {"timeline": [{"scenario": f"scenario-{i}", "passed": i != 2, "events": events}
                                             for i in range(5)]},
                               [{"figure": "pass_rate", "value": 1.0, "op": ">=", "threshold": 1.0, "passed": True}])}}}


def test_report_renders_offline_in_headless_chromium(tmp_path: Path) -> None:
    _, html = write_report(_doc(), tmp_path / "report")
    profile = tmp_path / "profile"
    common = [str(CHROMIUM), *FLAGS, f"--user-data-dir={profile}"]
    dom = subprocess.run([*common, "--dump-dom", html.as_uri()], capture_output=True, text=True, timeout=120,
                         check=False)
    assert dom.returncode == 0, dom.stderr[-2000:]
    for svg_id in ("confusion-intent", "confusion-category", "confusion-urgency", "per-class-urgency", "hit-at-k",
                   "sla-timeline", "headline"):
        assert f'id="{svg_id}"' in dom.stdout, f"{svg_id} missing from the rendered DOM"
    shot = tmp_path / "report.png"
    res = subprocess.run([*common, f"--screenshot={shot}", "--window-size=1280,2000", html.as_uri()],
                         capture_output=True, text=True, timeout=120, check=False)
    assert res.returncode == 0 and shot.exists() and shot.stat().st_size > 10_000, res.stderr[-2000:]
