"""Routing eval: message + resident address + a fixed "now" -> role, grid, urgency and SLA due times.

Runs the real classifier and the real casestore intake (open_case: routing.yaml rules, grids.yaml coverage,
fallback chain, SLA clock with chinese-calendar) on a fresh SQLite case store per case. Data:
evals/data/routing.yaml (expected values worked out by hand from the policy files).
Must not: compute expectations with the code under test.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from casestore.accounts import get_or_create_resident
from casestore.cases import create_case
from casestore.clock import FakeClock
from casestore.db import make_engine, session_scope
from casestore.deadlines import SlaPolicy
from casestore.intake import Report, open_case
from casestore.models import CaseCreate
from casestore.residents import bind_address
from casestore.routing import team_of
from casestore.staff import set_leave
from evals.core import DATA_DIR, DataProblem, EvalContext, SuiteResult
from evals.fixtures import classifier_for, fresh_database, read_cases, settings_for
from policies.loader import load_policies

FIELDS = ("role", "grid", "urgency", "response_due", "resolve_due")
DEFAULT_DATA = DATA_DIR / "routing.yaml"


def run(ctx: EvalContext) -> SuiteResult:
    settings = settings_for(ctx.settings, ctx.mode)
    policies = load_policies(settings.policies_dir)
    sla = SlaPolicy(policies.sla, settings.tz)
    classifier = classifier_for(ctx.settings, ctx.mode)
    problems: list[DataProblem] = []
    path = Path(ctx.data) if ctx.data else DEFAULT_DATA
    cases = read_cases(path, "cases", ("id", "text", "estate", "building", "now", "expect"), problems)
    right = dict.fromkeys(FIELDS, 0)
    all_right = 0
    urgency_right = deadlines_right = 0  # the SLA arithmetic, judged only where the urgency came out right
    failures: list[dict[str, Any]] = []
    rows: list[dict[str, Any]] = []
    for i, (line, case) in enumerate(cases, start=1):
        if ctx.progress:
            ctx.progress("routing", i, len(cases))
        try:
            now = datetime.fromisoformat(str(case["now"]))
            if now.tzinfo is None:
                raise ValueError("now must carry a UTC offset (+08:00)")
            expect = dict(case["expect"])
            missing = [f for f in FIELDS if f not in expect]
            if missing:
                raise ValueError(f"expect lacks {', '.join(missing)}")
        except (ValueError, TypeError) as exc:
            problems.append(DataProblem(path.name, line, str(exc)))
            continue
        u = classifier.understand(str(case["text"]))
        with fresh_database(settings.policies_dir) as url:
            engine = make_engine(url)
            try:
                with session_scope(engine) as session:
                    resident = get_or_create_resident(session=session, channel="telegram", external_id=700000 + i,
                                                      now=now)
                    bind_address(session=session, resident=resident, grids=policies.grids,
                                 estate=str(case["estate"]), building=int(case["building"]), now=now)
                    _set_up(session, dict(case.get("setup") or {}), now)
                    report = Report(intent=u.intent.label, category=u.category.label, urgency=u.urgency.label,
                                    title=u.text[:40], description=u.text, estate=str(case["estate"]),
                                    building=int(case["building"]), target=u.target,
                                    target_roles=list(u.target_roles))
                    result = open_case(session=session, policies=policies, sla=sla, clock=FakeClock(now),
                                       resident=resident, report=report)
                    c = result.case
                    got = {"role": c.assignee_role, "grid": c.grid_id, "urgency": c.urgency,
                           "response_due": _local(c.response_due_at, settings.tz),
                           "resolve_due": _local(c.resolve_due_at, settings.tz)}
            finally:
                engine.dispose()
        ok = {f: _same(f, expect[f], got[f]) for f in FIELDS}
        for f in FIELDS:
            right[f] += ok[f]
        all_right += all(ok.values())
        if ok["urgency"]:
            urgency_right += 1
            deadlines_right += ok["response_due"] and ok["resolve_due"]
        row = {"id": case["id"], "passed": all(ok.values()), "labels": u.labels(),
               **{f"got_{k}": v for k, v in got.items()}}
        rows.append(row)
        if not all(ok.values()):
            failures.append({"id": case["id"], "input": case["text"],
                             "address": f"{case['estate']}{case['building']}号楼", "now": case["now"],
                             "labels": u.labels(),
                             "wrong": {f: {"expected": expect[f], "got": got[f]} for f in FIELDS if not ok[f]}})
    n = len(rows)
    figures: dict[str, Any] = {"n": n, "accuracy": _share(all_right, n)}
    for f in FIELDS:
        figures[f"{f}_accuracy"] = _share(right[f], n)
    figures["deadline_accuracy"] = _share(deadlines_right, urgency_right)
    headline = {k: v for k, v in figures.items() if k != "n"}
    return SuiteResult(name="routing", figures=figures, headline=headline, failures=failures, problems=problems,
                       extra={"cases": rows})


def _set_up(session: Any, setup: dict[str, Any], now: datetime) -> None:
    """The team as a case needs it before the message: `on_leave` positions ("FU01.full_time", "FU01.deputy",
    "FU01.part_time": the grid's part-timer who is not the deputy) and `open` cases already held per position."""
    def person(key: str) -> Any:
        grid, _, position = key.partition(".")
        full, parts = team_of(session=session, grid_id=grid)
        found = {"full_time": full, "deputy": next((p for p in parts if p.is_deputy), None),
                 "part_time": next((p for p in parts if not p.is_deputy), None)}.get(position)
        if found is None:
            raise ValueError(f"setup: no {key}")
        return found

    for key in setup.get("on_leave") or []:
        set_leave(session=session, worker=person(str(key)), on_leave=True, actor="eval", now=now)
    for key, n in (setup.get("open") or {}).items():
        worker = person(str(key))
        for k in range(int(n)):
            create_case(session=session, code=f"EV{worker.id:04d}-{k:04d}", now=now, actor="eval",
                        case_in=CaseCreate(intent="help", category="other", urgency="normal",
                                           title="（评测预置）在办工单", description="评测预置的在办工单",
                                           grid_id=worker.grid_id),
                        extra={"assignee_id": worker.id, "assignee_role": worker.role, "status": "assigned",
                               "community_id": worker.community_id})


def _local(ts: datetime | None, tz: Any) -> str | None:
    return ts.astimezone(tz).isoformat(timespec="minutes") if ts is not None else None


def _same(field: str, expected: Any, got: Any) -> bool:
    if field.endswith("_due"):
        if expected is None or got is None:
            return expected is got
        return datetime.fromisoformat(str(expected)) == datetime.fromisoformat(str(got))
    return expected == got


def _share(k: int, n: int) -> float:
    return round(k / n, 4) if n else 0.0
