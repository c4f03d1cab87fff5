"""Dialogue eval: scripted multi-turn scenarios through the REAL dialogue engine, on a fake clock, with a
recording notifier and a fresh case store per scenario.

A scenario (evals/data/dialogue/*.yaml, list under `scenarios:`) has an id, an optional `start` (local ISO,
default Fri 2026-11-20 10:00 Asia/Shanghai), optional `residents` set up beforehand (consented, address
bound), and `steps`. Step kinds:
  say: TEXT | press: LABEL | photo: CAPTION | command: NAME   (`as:` a resident alias or a worker's
      telegram id; `case_of:` a resident alias picks the button of that resident's latest case)
  voice: {heard: TEXT, seconds: N}   a voice note; `heard` is what the transcription endpoint returned (the
      suite runs offline: without it the voice is one no endpoint transcribed, a 语音留言)
  location: [LAT, LNG]          a shared location pin (Telegram's location message)
  advance: 48m | until: 61m     move the fake clock (relative / since start), running the sweep and the
                                dispatcher at every due cursor on the way (as the 30 s scheduler would)
  sweep: true                   one sweep + dispatch now
  expect: {...}                 checks, see `CHECKS` below
Reports pass rate, per-scenario results and an SLA timeline (minutes since start) for the report's chart.
Must not: stub the engine, the classifier, the knowledge service or casestore.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlmodel import col

from bot.dialogue.types import Incoming, Voice
from bot.services import Services
from casestore.accounts import get_or_create_resident, get_resident_by_account
from casestore.clock import FakeClock
from casestore.db import make_engine, session_scope
from casestore.dispatch import dispatch_pending
from casestore.models import Case, CaseEvent, Hotspot, Notification
from casestore.notify import RecordingNotifier
from casestore.residents import bind_address, record_consent
from casestore.sweep import sweep
from casestore.wishes import sweep_wishes_all
from evals.core import DATA_DIR, DataProblem, EvalContext, SuiteResult
from evals.fixtures import classifier_for, fresh_database, read_cases, settings_for
from knowledge.service import KnowledgeRuntime
from policies.loader import load_policies

SCENARIO_DIR = DATA_DIR / "dialogue"
DEFAULT_START = "2026-11-20T10:00:00+08:00"  # a Friday morning, inside service hours
RESIDENT_BASE = 610000
# the people play Telegram users: a worker is known by the Telegram account grids.yaml gives them
CHANNEL = "telegram"
MAX_SWEEPS = 2000


class StepError(Exception):
    """A step could not be carried out (e.g. no button with that label): the scenario fails."""


def parse_duration(text: Any) -> timedelta:
    """"48m", "2h", "3d", "1h30m" or a number of minutes."""
    if isinstance(text, (int, float)):
        return timedelta(minutes=float(text))
    parts = re.findall(r"(\d+(?:\.\d+)?)\s*([dhms])", str(text))
    if not parts:
        raise ValueError(f"not a duration: {text!r}")
    unit = {"d": 1440.0, "h": 60.0, "m": 1.0, "s": 1 / 60}
    return timedelta(minutes=sum(float(v) * unit[u] for v, u in parts))


# ====================================================================== the simulation
@dataclass
class Sim:
    """One scenario's world: a fresh case store, the real engine, a fake clock and a recording notifier."""

    settings: Any
    classifier: Any
    knowledge: Any
    start: datetime
    url: str
    engine: Any = None
    clock: Any = None
    services: Any = None
    notifier: Any = None
    last_reply: dict[int, str] = field(default_factory=dict)
    buttons: dict[int, list[Any]] = field(default_factory=dict)  # per chat, oldest first
    replies: list[tuple[int, str]] = field(default_factory=list)  # every reply text, by chat
    delivered: int = 0
    policies: Any = None  # read once per run and shared by its scenarios (parsing the YAML was ~40% of a run)

    def __post_init__(self) -> None:
        self.engine = make_engine(self.url)
        self.clock = FakeClock(self.start)
        settings = self.settings.model_copy(update={"database_url": self.url, "admin_telegram_ids": []})
        self.policies = self.policies or load_policies(settings.policies_dir)
        self.services = Services(settings, clock=self.clock, engine=self.engine, policies=self.policies,
                                 classifier=self.classifier, knowledge=self.knowledge)
        self.notifier = RecordingNotifier()

    def close(self) -> None:
        self.engine.dispose()

    # ---- people
    @staticmethod
    def user_id(alias: Any) -> int:
        if isinstance(alias, int):
            return alias
        text = str(alias or "resident")
        if text.isdigit():
            return int(text)
        if text == "resident":
            return RESIDENT_BASE + 1
        m = re.fullmatch(r"(?:resident|r)(\d+)", text)
        if m:
            return RESIDENT_BASE + int(m.group(1))
        raise StepError(f"unknown person {alias!r} (use resident, r2.., or a worker's telegram id)")

    def add_resident(self, spec: dict[str, Any]) -> None:
        with session_scope(self.engine) as session:
            r = get_or_create_resident(session=session, channel=CHANNEL,
                                       external_id=self.user_id(spec.get("as", "resident")), now=self.clock.now(),
                                       display_name=str(spec.get("name", "")))
            if spec.get("consent", True):
                record_consent(session=session, resident=r, now=self.clock.now())
            if spec.get("estate"):
                bind_address(session=session, resident=r, grids=self.services.policies.grids,
                             estate=str(spec["estate"]), building=int(spec["building"]),
                             unit=int(spec["unit"]) if spec.get("unit") else None, now=self.clock.now())

    # ---- turns
    def handle(self, incoming: Any) -> str:
        reply = self.services.dialogue.handle(incoming)
        text = "\n".join(m.text for m in reply.messages)
        self.last_reply[incoming.chat_id] = text
        self.replies.append((incoming.chat_id, text))
        for m in reply.messages:
            self.buttons.setdefault(incoming.chat_id, []).extend(b for row in m.buttons for b in row)
        self.dispatch()
        return text

    def incoming(self, user: int, kind: str, **kw: Any) -> Any:
        return Incoming(channel=CHANNEL, user_id=user, chat_id=user, kind=kind, display_name="测试居民", **kw)  # type: ignore[arg-type]

    def find_button(self, user: int, label: str, case_code: str | None) -> Any:
        candidates = [b for b in reversed(self.buttons.get(user, []))
                      if case_code is None or b.case_code in (None, case_code)]
        for b in candidates:  # the exact label first ("对" must not press "不对(修改)")
            if b.label == label:
                return b
        for b in candidates:
            if label in b.label:
                return b
        seen = sorted({b.label for b in self.buttons.get(user, [])})
        raise StepError(f"no button {label!r} for {user} (seen: {', '.join(seen[-12:]) or 'none'})")

    # ---- time
    def dispatch(self) -> None:
        before = len(self.notifier.sent)
        asyncio.run(dispatch_pending(engine=self.engine, notifier=self.notifier, clock=self.clock, limit=500))
        for chat_id, message in self.notifier.sent[before:]:
            self.buttons.setdefault(chat_id, []).extend(b for row in message.buttons for b in row)

    def sweep(self) -> None:
        sweep(engine=self.engine, policies=self.services.policies, sla=self.services.sla, clock=self.clock)
        sweep_wishes_all(engine=self.engine, policies=self.services.policies, clock=self.clock)  # as the tick does
        self.dispatch()

    def run_until(self, target: datetime) -> None:
        """Move the clock to `target`, sweeping at every due cursor on the way (event-driven)."""
        last_swept: datetime | None = None
        for _ in range(MAX_SWEEPS):
            with session_scope(self.engine) as session:
                due = session.execute(select(func.min(Case.next_reminder_at))).scalar_one_or_none()
            if due is not None and due.tzinfo is None:
                due = due.replace(tzinfo=UTC)
            if due is None or due > target:
                break
            when = max(due, self.clock.now())
            if last_swept is not None and when <= last_swept:
                when = last_swept + timedelta(minutes=1)  # a cursor the sweep left in place: step past it
                if when > target:
                    break
            self.clock.set(when)
            self.sweep()
            last_swept = when
        if target > self.clock.now():
            self.clock.set(target)
        self.sweep()

    def minute(self, ts: datetime | None) -> float | None:
        if ts is None:
            return None
        ts = ts if ts.tzinfo else ts.replace(tzinfo=UTC)
        return round((ts - self.start).total_seconds() / 60, 2)


# ====================================================================== checks
def latest_case(sim: Sim, alias: Any) -> Any:
    with session_scope(sim.engine) as s:
        r = get_resident_by_account(session=s, channel=CHANNEL, external_id=sim.user_id(alias))
        if r is None:
            return None
        latest = select(Case).where(col(Case.resident_id) == r.id).order_by(col(Case.id).desc())
        return s.execute(latest).scalars().first()


def cases_of(sim: Sim, alias: Any | None) -> list[Any]:
    with session_scope(sim.engine) as s:
        stmt = select(Case).order_by(col(Case.id))
        if alias is not None:
            r = get_resident_by_account(session=s, channel=CHANNEL, external_id=sim.user_id(alias))
            if r is None:
                return []
            stmt = stmt.where(col(Case.resident_id) == r.id)
        return list(s.execute(stmt).scalars())


def _as_list(value: Any) -> list[str]:
    return [str(v) for v in value] if isinstance(value, list) else [str(value)]


def check_reply(sim: Sim, spec: Any, user: int) -> list[str]:
    if isinstance(spec, (str, list)):
        spec = {"contains": spec}
    if "as" in spec:
        user = sim.user_id(spec["as"])
    text = sim.last_reply.get(user, "")
    errors = []
    for s in _as_list(spec.get("contains", [])) if "contains" in spec else []:
        if s not in text:
            errors.append(f"reply lacks {s!r}")
    if "contains_any" in spec and not any(s in text for s in _as_list(spec["contains_any"])):
        errors.append(f"reply has none of {spec['contains_any']}")
    for s in _as_list(spec.get("not_contains", [])) if "not_contains" in spec else []:
        if s in text:
            errors.append(f"reply contains {s!r}")
    if errors:
        errors.append(f"reply was: {text[:160]!r}")
    return errors


CASE_FIELDS = {"category": "category", "urgency": "urgency", "intent": "intent", "status": "status",
               "role": "assignee_role", "grid": "grid_id", "escalation_level": "escalation_level",
               "reopen_count": "reopen_count", "close_reason": "close_reason", "satisfaction": "satisfaction",
               "needs_address_confirmation": "needs_address_confirmation", "title": "title",
               "location": "location_text"}


def check_case(sim: Sim, spec: dict[str, Any], user: int) -> list[str]:
    case = latest_case(sim, spec.get("of", "resident"))
    if case is None:
        return [f"no case for {spec.get('of', 'resident')}"]
    errors = []
    for key, expected in spec.items():
        if key == "of":
            continue
        if key == "duplicate":
            got: Any = case.duplicate_of_id is not None
        elif key == "hotspot":
            got = case.cluster_id is not None
        elif key == "status_in":
            if case.status not in expected:
                errors.append(f"case status {case.status} not in {expected}")
            continue
        elif key in CASE_FIELDS:
            got = getattr(case, CASE_FIELDS[key])
        else:
            errors.append(f"unknown case field {key!r}")
            continue
        if got != expected:
            errors.append(f"case {key}: expected {expected!r}, got {got!r}")
    return errors


def check_cases(sim: Sim, spec: dict[str, Any], user: int) -> list[str]:
    cases = cases_of(sim, spec.get("of"))
    if "duplicates" in spec:
        n = sum(c.duplicate_of_id is not None for c in cases)
        if n != spec["duplicates"]:
            return [f"expected {spec['duplicates']} duplicate cases, got {n}"]
    if "count" in spec and len(cases) != spec["count"]:
        return [(f"expected {spec['count']} cases{' of ' + str(spec.get('of')) if spec.get('of') else ''}, got "
                f"{len(cases)}")]
    return []


def _notifications(sim: Sim, spec: dict[str, Any]) -> list[Any]:
    with session_scope(sim.engine) as s:
        rows: list[Notification] = list(s.execute(select(Notification).order_by(col(Notification.id))).scalars())
    out = []
    for n in rows:
        if "to" in spec and n.chat_id != sim.user_id(spec["to"]):
            continue
        if "kind" in spec and not re.fullmatch(str(spec["kind"]), n.kind):
            continue
        if "by_minute" in spec and (sim.minute(n.created_at) or 0) > float(spec["by_minute"]) + 1e-6:
            continue
        if "after_minute" in spec and (sim.minute(n.created_at) or 0) < float(spec["after_minute"]) - 1e-6:
            continue
        if "contains" in spec and str(spec["contains"]) not in str((n.payload or {}).get("text", "")):
            continue
        out.append(n)
    return out


def check_notified(sim: Sim, spec: dict[str, Any], user: int) -> list[str]:
    found = _notifications(sim, spec)
    sent = [n for n in found if n.state == "sent"]
    if "count" in spec:
        return [] if len(sent) == spec["count"] else [f"expected {spec['count']} notifications {spec}, got {len(sent)}"]
    lo = int(spec.get("min", 1))
    if len(sent) < lo:
        return [f"expected ≥{lo} sent notification(s) {spec}, got {len(sent)} (recorded {len(found)})"]
    if "max" in spec and len(sent) > spec["max"]:
        return [f"expected ≤{spec['max']} notifications {spec}, got {len(sent)}"]
    return []


def check_not_notified(sim: Sim, spec: dict[str, Any], user: int) -> list[str]:
    found = _notifications(sim, spec)
    seen = [(n.kind, sim.minute(n.created_at)) for n in found][:5]
    return [f"unexpected notification(s) {spec}: {seen}"] if found else []


def check_event(sim: Sim, spec: dict[str, Any], user: int) -> list[str]:
    case = latest_case(sim, spec.get("of", "resident"))
    if case is None:
        return [f"no case for {spec.get('of', 'resident')}"]
    with session_scope(sim.engine) as s:
        of_case = select(CaseEvent).where(col(CaseEvent.case_id) == case.id).order_by(col(CaseEvent.id))
        events: list[CaseEvent] = list(s.execute(of_case).scalars())
    hits = [e for e in events if e.action == spec["action"]
            and ("by_minute" not in spec or (sim.minute(e.at) or 0) <= float(spec["by_minute"]) + 1e-6)
            and ("after_minute" not in spec or (sim.minute(e.at) or 0) >= float(spec["after_minute"]) - 1e-6)]
    if "count" in spec:
        if len(hits) == spec["count"]:
            return []
        return [f"expected {spec['count']} {spec['action']} events, got {len(hits)} "
                f"(at {[sim.minute(e.at) for e in hits]})"]
    if not hits:
        seen = [(e.action, sim.minute(e.at)) for e in events]
        return [f"no {spec['action']} event {spec} (events: {seen})"]
    return []


def check_pushed(sim: Sim, spec: dict[str, Any], user: int) -> list[str]:
    to = sim.user_id(spec["to"])
    texts = [m.text for c, m in sim.notifier.sent if c == to]
    want = _as_list(spec.get("contains", ""))
    if not any(all(w in t for w in want) for t in texts):
        return [f"no message to {to} containing {want} (got {len(texts)} messages)"]
    if spec.get("voice") and not any(m.voice for c, m in sim.notifier.sent if c == to):  # a 语音留言's audio
        return [f"no message to {to} carries a voice"]
    # not_contains: no message to them holds any of these (a phone number that must not cross)
    leaked = [w for w in _as_list(spec.get("not_contains", [])) if any(w in t for t in texts)]
    return [f"a message to {to} contains {w!r}" for w in leaked]


def check_hotspots(sim: Sim, spec: dict[str, Any], user: int) -> list[str]:
    with session_scope(sim.engine) as s:
        n = len(list(s.execute(select(Hotspot)).scalars()))
    lo = int(spec.get("min", 1)) if isinstance(spec, dict) else int(spec)
    return [] if n >= lo else [f"expected ≥{lo} hotspot(s), got {n}"]


CHECKS: dict[str, Callable[[Sim, Any, int], list[str]]] = {
    "reply": check_reply, "case": check_case, "cases": check_cases, "notified": check_notified,
    "not_notified": check_not_notified, "event": check_event, "pushed": check_pushed, "hotspots": check_hotspots,
}


# ====================================================================== running a scenario
def run_steps(sim: Sim, steps: list[dict[str, Any]], failed: list[str]) -> None:
    """Carry out the steps, adding failed expectations to `failed` (empty at the end: the scenario passed)."""
    for n, step in enumerate(steps, start=1):
        if not isinstance(step, dict):
            raise StepError(f"step {n} is not a mapping")
        user = sim.user_id(step.get("as", "resident"))
        if "say" in step:
            sim.handle(sim.incoming(user, "text", text=str(step["say"])))
        elif "press" in step:
            code = None
            if step.get("case_of"):
                case = latest_case(sim, step["case_of"])
                code = case.code if case is not None else None
            b = sim.find_button(user, str(step["press"]), code)
            sim.handle(sim.incoming(user, "button", button=b))
        elif "photo" in step:
            sim.handle(sim.incoming(user, "photo", text=str(step.get("photo") or ""),
                                    photo_file_id=f"eval-photo-{n}"))
        elif "voice" in step:
            spec = step["voice"] if isinstance(step["voice"], dict) else {"heard": step["voice"]}
            heard = spec.get("heard")
            sim.handle(sim.incoming(user, "voice", voice=Voice(
                file_id=f"eval-voice-{n}", duration=int(spec.get("seconds", 8)),
                transcript=str(heard) if heard else None)))
        elif "location" in step:
            lat, lng = (float(x) for x in step["location"])
            sim.handle(sim.incoming(user, "location", location=(lat, lng)))
        elif "command" in step:
            cmd = str(step["command"]).lstrip("/")
            sim.handle(sim.incoming(user, "command", text=f"/{cmd} {step.get('args', '')}".strip(), command=cmd,
                                    args=str(step.get("args", ""))))
        elif "advance" in step:
            sim.run_until(sim.clock.now() + parse_duration(step["advance"]))
        elif "until" in step:
            sim.run_until(sim.start + parse_duration(step["until"]))
        elif "sweep" in step:
            sim.sweep()
        elif "expect" in step:
            for key, spec in step["expect"].items():
                if key not in CHECKS:
                    raise StepError(f"step {n}: unknown expectation {key!r} (known: {', '.join(CHECKS)})")
                failed += [f"step {n} {key}: {e}" for e in CHECKS[key](sim, spec, user)]
        else:
            raise StepError(f"step {n}: unknown step {sorted(step)}")


def timeline(sim: Sim) -> list[dict[str, Any]]:
    """Every case's opened / first response / reminders / escalations / resolved / closed, in minutes."""
    out: list[dict[str, Any]] = []
    with session_scope(sim.engine) as s:
        cases: list[Case] = list(s.execute(select(Case).order_by(col(Case.id))).scalars())
        for c in cases:
            if c.duplicate_of_id is not None:
                continue
            out.append({"kind": "opened", "minute": sim.minute(c.created_at), "detail": f"{c.code} {c.urgency}"})
            e: CaseEvent
            of_case = select(CaseEvent).where(col(CaseEvent.case_id) == c.id).order_by(col(CaseEvent.id))
            for e in s.execute(of_case).scalars():
                kind = {"escalate": "escalation", "resolve": "resolved", "confirm": "closed", "auto_close": "closed",
                        "reopen": "reopened"}.get(e.action)
                if e.action in ("accept", "respond") and not any(x["kind"] == "first_response" and x["detail"] == c.code
                                                                for x in out):
                    kind = "first_response"
                if kind:
                    out.append({"kind": kind, "minute": sim.minute(e.at),
                                "detail": c.code if kind == "first_response" else f"{c.code} {e.action}"})
            n: Notification
            for n in s.execute(select(Notification).where(col(Notification.case_id) == c.id,
                                                          col(Notification.kind).like("remind%"))).scalars():
                out.append({"kind": "reminder", "minute": sim.minute(n.created_at), "detail": f"{c.code} {n.kind}"})
    return sorted(out, key=lambda e: e["minute"] or 0)


def knowledge_for(settings: Any) -> Any:
    """The real knowledge service on the eval index (shared with the answers suite)."""
    ks = settings.model_copy(update={"chroma_dir": Path(settings.var_dir) / "eval" / "answers-chroma"})
    runtime = KnowledgeRuntime(ks)
    runtime.ingest()
    return runtime.service()


def load_scenarios(ctx: EvalContext, problems: list[DataProblem]) -> list[tuple[str, int, dict[str, Any]]]:
    files = [Path(ctx.data)] if ctx.data else sorted(SCENARIO_DIR.glob("*.yaml"))
    out = []
    for path in files:
        for line, item in read_cases(path, "scenarios", ("id", "steps"), problems):
            if not isinstance(item["steps"], list) or not item["steps"]:
                problems.append(DataProblem(path.name, line, "steps must be a non-empty list"))
                continue
            out.append((path.name, line, item))
    return out


def run_scenario(settings: Any, classifier: Any, knowledge: Any, scenario: dict[str, Any], tz: ZoneInfo,
                 policies: Any = None) -> tuple[list[str], list[dict[str, Any]], list[tuple[int, str]]]:
    start = datetime.fromisoformat(str(scenario.get("start", DEFAULT_START)))
    if start.tzinfo is None:
        start = start.replace(tzinfo=tz)
    with fresh_database(settings.policies_dir) as url:
        sim = Sim(settings=settings, classifier=classifier, knowledge=knowledge, start=start, url=url,
                  policies=policies)
        try:
            for spec in scenario.get("residents") or []:
                sim.add_resident(spec)
            failed: list[str] = []
            try:
                run_steps(sim, scenario["steps"], failed)
            except StepError as exc:
                failed.append(str(exc))
            return failed, timeline(sim), sim.replies
        finally:
            sim.close()


def run(ctx: EvalContext) -> SuiteResult:
    settings = settings_for(ctx.settings, ctx.mode)
    classifier = classifier_for(ctx.settings, ctx.mode)
    knowledge = knowledge_for(settings)
    policies = load_policies(settings.policies_dir)
    problems: list[DataProblem] = []
    scenarios = load_scenarios(ctx, problems)
    results: list[dict[str, Any]] = []
    failures: list[dict[str, Any]] = []
    lines: list[dict[str, Any]] = []
    for i, (fname, line, sc) in enumerate(scenarios, start=1):
        if ctx.progress:
            ctx.progress(f"dialogue [{ctx.mode}]", i, len(scenarios))
        try:
            failed, events, replies = run_scenario(settings, classifier, knowledge, sc, settings.tz, policies)
        except (ValueError, TypeError, KeyError) as exc:  # a malformed scenario: reported by file and line
            problems.append(DataProblem(fname, line, f"scenario {sc.get('id')}: {type(exc).__name__}: {exc}"))
            continue
        passed = not failed
        results.append({"id": sc["id"], "passed": passed, "failed": failed})
        lines.append({"scenario": sc["id"], "passed": passed, "events": events})
        if not passed:
            said = [s for step in sc["steps"] if isinstance(step, dict)
                    for k, s in step.items() if k in ("say", "press")]
            failures.append({"scenario": sc["id"], "file": f"{fname}:{line}", "title": sc.get("title", ""),
                             "inputs": said, "failed": failed[:6],
                             "last_replies": [t[:200] for _, t in replies[-3:]]})
    n = len(results)
    passed_n = sum(r["passed"] for r in results)
    figures = {"n": n, "passed": passed_n, "pass_rate": round(passed_n / n, 4) if n else None,
               "scenarios": {r["id"]: r["passed"] for r in results}}
    return SuiteResult(name="dialogue", figures=figures, headline={"pass_rate": figures["pass_rate"]} if n else {},
                       failures=failures, problems=problems, extra={"timeline": lines})
