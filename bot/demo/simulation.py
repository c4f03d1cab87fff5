"""The simulated day: residents and grid workers talking to the real dialogue engine on a fake clock.

Owns: the event queue (resident messages, worker button presses, ratings), the fake clock that jumps from
one event to the next, the sweep tick (`casestore.sweep.sweep_all` every simulated minute, every few
minutes in the fast-forward after the day), delivery of pending notifications through a recording
Notifier, and the simulated people's behaviour (seeded, see day.yaml).
Simulated people only act through `DialogueEngine.handle(Incoming)` — text, commands and the same buttons
a Telegram user presses. They *observe* the database (their own conversation state, a case's status) to
decide, as a person reading their chat would; they never write it.
Must not: compute the summary figures (summary.py reads them from the case store) or sleep.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import random
import time as wall
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from typing import Any, Protocol

from sqlalchemy import func
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from bot.demo.scenario import ExpandedDay, SimMessage, SimResident, rng_for
from bot.dialogue.types import Incoming, IncomingKind, Reply, Voice
from casestore.accounts import get_worker_by_account
from casestore.broadcasts import hotspot_notices
from casestore.clock import FakeClock
from casestore.db import session_scope
from casestore.deadlines import SlaPolicy
from casestore.dispatch import dispatch_pending
from casestore.models import Case, CaseEvent, Conversation, Hotspot, Notice, Notification, Worker
from casestore.notify import Button, OutboundMessage
from casestore.sweep import sweep_all
from policies.models import Policies, Taxonomy

log = logging.getLogger(__name__)

CHANNEL = "demo"  # residents and workers alike write from this channel (workers: their grids.yaml ids)
MAX_FOLLOW_UPS = 6  # prompts a person answers for one message before giving up (loop guard)
TYPING = timedelta(seconds=25)  # how long a person takes to answer a prompt
# two messages of the day are spoken, by elderly residents where there are any: a report the (simulated) city
# transcription server hears, read back and confirmed with 对 (long enough to go on its case as audio), and a
# question spoken for longer than the 60 s any voice is transcribed, left for the grid worker as a 语音留言
VOICE_HEARD_S = 26
VOICE_TOO_LONG_S = 75


# ---------------------------------------------------------------- what the live view hears
@dataclass(frozen=True)
class SimEvent:
    at: datetime
    kind: str  # message, case, duplicate, hotspot, reminder, escalation, worker, rating, auto_close, reopen, error
    text: str


@dataclass
class Counters:
    messages: int = 0  # resident messages of the scenario played
    turns: int = 0  # every Incoming handled (onboarding, prompts, buttons included)
    cases: int = 0
    duplicates: int = 0
    hotspots: int = 0
    reminders: int = 0
    escalations: int = 0
    worker_actions: int = 0
    ratings: int = 0
    reopened: int = 0
    auto_closed: int = 0
    pushes: int = 0  # notifications delivered
    errors: int = 0  # engine replies that were the system-error sentence
    voice: int = 0  # resident messages sent as voice notes (VOICE_HEARD_S, VOICE_TOO_LONG_S)


class Observer(Protocol):
    def on_event(self, event: SimEvent) -> None: ...

    def on_tick(self, now: datetime, counters: Counters, progress: float) -> None: ...


class Dialogue(Protocol):
    def handle(self, incoming: Incoming) -> Reply: ...


class SimServices(Protocol):
    """What the day needs of bot.services.Services: the engine to talk to, and the store and rules to sweep."""

    @property
    def dialogue(self) -> Dialogue: ...
    @property
    def engine(self) -> Engine: ...
    @property
    def policies(self) -> Policies: ...
    @property
    def sla(self) -> SlaPolicy: ...


# ---------------------------------------------------------------- the recording channel
class DemoNotifier:
    """A Notifier that records every push and hands it to the simulated person who owns the chat."""

    def __init__(self, deliver: Callable[[int, OutboundMessage], None]) -> None:
        self.sent: list[tuple[int, OutboundMessage]] = []
        self._deliver = deliver

    async def send(self, *, chat_id: int, message: OutboundMessage) -> None:
        self.sent.append((chat_id, message))
        self._deliver(chat_id, message)


@dataclass
class SimResult:
    started_at: datetime
    ended_at: datetime
    counters: Counters
    wall_seconds: float
    transcript_size: int
    notes: list[str] = field(default_factory=list)


def _buttons(messages: list[OutboundMessage]) -> list[Button]:
    return [b for m in messages for row in m.buttons for b in row]


def _find(buttons: list[Button], action: str, *, arg: str | None = None, code: str | None = None) -> Button | None:
    for b in buttons:
        if b.action == action and (arg is None or b.arg == arg) and (code is None or b.case_code == code):
            return b
    return None


# ---------------------------------------------------------------- the simulation
class Simulation:
    """Plays one expanded day through `services.dialogue`; `await run()` returns when the clock reaches the end."""

    def __init__(self, services: SimServices, day: ExpandedDay, clock: FakeClock, *,
                 observer: Observer | None = None) -> None:
        self.services = services
        self.day = day
        self.sc = day.scenario
        self.clock = clock
        self.observer = observer
        self.counters = Counters()
        self.notifier = DemoNotifier(self._on_push)
        self._queue: list[tuple[datetime, int, Callable[[], None]]] = []
        self._seq = itertools.count()
        self._inbox: list[tuple[int, OutboundMessage]] = []
        self.workers: dict[int, WorkerAgent] = {}
        self.residents: dict[int, ResidentAgent] = {r.user_id: ResidentAgent(self, r) for r in day.residents}
        self._seen_event_id = 0
        self._seen_notification_id = 0
        self._seen_hotspot_id = 0
        self._seen_notice_id = 0
        self.notes: list[str] = []
        self._retry_due = False
        self.spoken = _spoken(day)  # (user, at) of a message -> its voice note's seconds

    # ----- plumbing -----
    @property
    def now(self) -> datetime:
        return self.clock.now()

    def at(self, when: datetime, action: Callable[[], None]) -> None:
        """Schedule `action` at `when` (never in the past: the clock only moves forward)."""
        heapq.heappush(self._queue, (max(when, self.now), next(self._seq), action))

    def emit(self, kind: str, text: str) -> None:
        if self.observer is not None:
            self.observer.on_event(SimEvent(self.now, kind, text))

    def handle(self, incoming: Incoming) -> Reply:
        self.counters.turns += 1
        reply = self.services.dialogue.handle(incoming)
        if any(m.text.startswith("系统开小差") for m in reply.messages):
            self.counters.errors += 1
            self.emit("error", f"引擎报错：{reply.messages[-1].text}")
        return reply

    def _on_push(self, chat_id: int, message: OutboundMessage) -> None:
        self.counters.pushes += 1
        self._inbox.append((chat_id, message))

    def _route_inbox(self) -> None:
        while self._inbox:
            chat_id, message = self._inbox.pop(0)
            if chat_id in self.residents:
                self.residents[chat_id].on_push(message)
            else:
                self.worker(chat_id).on_push(message)

    def worker(self, telegram_id: int) -> WorkerAgent:
        if telegram_id not in self.workers:
            with Session(self.services.engine) as s:
                w = get_worker_by_account(session=s, channel=CHANNEL, external_id=telegram_id)
            self.workers[telegram_id] = WorkerAgent(self, telegram_id, w)
        return self.workers[telegram_id]

    def conversation_state(self, user_id: int) -> str:
        with Session(self.services.engine) as s:
            state = s.exec(select(Conversation.state).where(col(Conversation.channel) == CHANNEL,
                                                            col(Conversation.user_id) == user_id)).first()
        return str(state or "start")

    def case(self, code: str) -> Case | None:
        with Session(self.services.engine) as s:
            return s.exec(select(Case).where(col(Case.code) == code)).first()

    async def _dispatch(self) -> None:
        for _ in range(20):  # a push can cause a press that causes pushes; bounded
            sent = await dispatch_pending(engine=self.services.engine, notifier=self.notifier, clock=self.clock,
                                          limit=500)
            self._route_inbox()
            if sent == 0:
                break
        # rows that failed or are leased come back later: keep dispatching on sweeps until none is left
        with Session(self.services.engine) as s:
            left = s.exec(select(func.count()).select_from(Notification).where(
                col(Notification.state).in_(("pending", "sending")))).one()
        self._retry_due = bool(left)

    def _sweep(self) -> bool:
        """One sweep on the fake clock; True if it queued anything (then there is something to dispatch)."""
        report = sweep_all(engine=self.services.engine, policies=self.services.policies, sla=self.services.sla,
                           clock=self.clock)
        with session_scope(self.services.engine) as s:  # 未诉先办: a hotspot's buildings hear of it, as in the tick
            told = hotspot_notices(session=s, grids=self.services.policies.grids,
                                   category_name=self.services.policies.taxonomy.name_of, tz=self.sc.tz,
                                   now=self.clock.now())
        return bool(report.notifications or report.auto_closed or report.escalations or report.errors or told.queued)

    # ----- what happened (read back from the store for the live view) -----
    def _observe(self) -> None:
        tz = self.sc.tz
        with Session(self.services.engine) as s:
            rows = s.exec(
                select(CaseEvent, Case).join(Case, col(Case.id) == col(CaseEvent.case_id))
                .where(col(CaseEvent.id) > self._seen_event_id).order_by(col(CaseEvent.id))).all()
            notes = s.exec(select(col(Notification.id), col(Notification.kind)).where(
                col(Notification.id) > self._seen_notification_id).order_by(col(Notification.id))).all()
            spots = s.exec(select(Hotspot).where(col(Hotspot.id) > self._seen_hotspot_id)
                           .order_by(col(Hotspot.id))).all()
            told = s.exec(select(Notice).where(col(Notice.id) > self._seen_notice_id,
                                               col(Notice.hotspot_id).is_not(None)).order_by(col(Notice.id))).all()
        taxonomy = self.services.policies.taxonomy
        for ev, case in rows:
            self._seen_event_id = max(self._seen_event_id, ev.id or 0)
            code = case.code
            if ev.action == "created":
                self.counters.cases += 1
                self.emit("case", f"{code} {case.grid_id or '—'} 【{taxonomy.name_of(case.category)}·"
                                  f"{taxonomy.name_of(case.urgency)}】{case.title}")
            elif ev.action == "merge_duplicate":
                self.counters.duplicates += 1
                self.emit("duplicate", f"{code} 与已有工单重复，已合并")
            elif ev.action == "escalate":
                self.counters.escalations += 1
                level = (ev.data or {}).get("level", "?")
                self.emit("escalation", f"{code} 超时升级到第{level}级（{(ev.data or {}).get('role', '')}）")
            elif ev.action in ("accept", "respond", "resolve"):
                self.counters.worker_actions += 1
                if ev.action == "resolve":
                    self.emit("worker", f"{code} 已办结（{ev.at.astimezone(tz):%H:%M}）")
            elif ev.action == "reopen":
                self.counters.reopened += 1
                self.emit("reopen", f"{code} 居民不满意，已退回重办")
            elif ev.action == "auto_close":
                self.counters.auto_closed += 1
        for nid, kind in notes:
            self._seen_notification_id = max(self._seen_notification_id, nid or 0)
            if kind.startswith("remind_"):
                self.counters.reminders += 1
        for spot in spots:
            self._seen_hotspot_id = max(self._seen_hotspot_id, spot.id or 0)
            self.counters.hotspots += 1
            self.emit("hotspot", f"热点（未诉先办）：{spot.scope} {taxonomy.name_of(spot.category)} "
                                 f"{spot.report_count} 件")
        for notice in told:
            self._seen_notice_id = max(self._seen_notice_id, notice.id or 0)
            self.emit("hotspot", f"未诉先办通知（{notice.target.removeprefix('buildings:')}）：{notice.recipients} 位"
                                 f"未反映的居民 — {notice.text[:24]}…")

    def _tick(self, progress: float, *, dirty: bool = True) -> None:
        if dirty:  # the store is only read back when something may have changed since the last look
            self._observe()
        if self.observer is not None:
            self.observer.on_tick(self.now, self.counters, progress)

    # ----- the day -----
    def _schedule_day(self) -> None:
        first_seen: dict[int, datetime] = {}
        for m in self.day.messages:
            first_seen.setdefault(m.user_id, m.at)
        for user_id, first in sorted(first_seen.items(), key=lambda kv: (kv[1], kv[0])):
            rng = rng_for(self.day.seed, "onboard", user_id)
            self.at(first - timedelta(minutes=rng.uniform(3, 20)), self.residents[user_id].onboard)
        for m in self.day.messages:
            self.at(m.at, partial(self.residents[m.user_id].say, m))

    async def run(self) -> SimResult:
        started = wall.perf_counter()
        self._schedule_day()
        if not self._queue:
            raise ValueError("the scenario has no messages")
        start = min(self._queue)[0]
        self.clock.set(min(start, self.sc.start))
        day_end, ff_end = self.sc.end, self.sc.fast_forward_end
        begin = self.now
        span = (ff_end - begin).total_seconds() or 1.0
        day_step = timedelta(minutes=self.sc.sweep_every_minutes)
        ff_step = timedelta(minutes=self.sc.fast_forward_sweep_minutes)
        next_sweep = self.now.replace(second=0, microsecond=0) + day_step
        dirty = True
        while True:
            next_event = self._queue[0][0] if self._queue else None
            if next_event is not None and next_event <= next_sweep and next_event <= ff_end:
                when, _, action = heapq.heappop(self._queue)
                self.clock.set(when)
                action()
                await self._dispatch()
                dirty = True
                continue
            if next_sweep > ff_end:
                break
            self.clock.set(next_sweep)
            if self._sweep() or self._retry_due:
                await self._dispatch()
                dirty = True
            self._tick(min(1.0, (self.now - begin).total_seconds() / span), dirty=dirty)
            dirty = False
            next_sweep += day_step if next_sweep < day_end else ff_step
        self.clock.set(ff_end)
        self._sweep()
        await self._dispatch()
        self._tick(1.0)
        if self._queue:
            self.notes.append(f"模拟结束时仍有 {len(self._queue)} 个未到时间的动作（在快进截止时间之后），未执行")
        return SimResult(started_at=begin, ended_at=self.now, counters=self.counters,
                         wall_seconds=wall.perf_counter() - started, transcript_size=len(self.notifier.sent),
                         notes=self.notes)


# ---------------------------------------------------------------- residents
class ResidentAgent:
    """One simulated resident: onboarding, their messages, answers to the engine's prompts, ratings."""

    def __init__(self, sim: Simulation, r: SimResident) -> None:
        self.sim = sim
        self.r = r
        self.rated: set[str] = set()

    def _incoming(self, kind: IncomingKind, **kw: Any) -> Incoming:
        return Incoming(channel=CHANNEL, user_id=self.r.user_id, chat_id=self.r.user_id, kind=kind,
                        display_name=self.r.name, **kw)

    def press(self, button: Button, context: SimMessage | None = None, depth: int = 0) -> None:
        reply = self.sim.handle(self._incoming("button", button=button))
        self.follow_up(reply, context, depth + 1)

    def send(self, text: str, context: SimMessage | None = None, depth: int = 0) -> None:
        reply = self.sim.handle(self._incoming("text", text=text))
        self.follow_up(reply, context, depth + 1)

    def onboard(self) -> None:
        reply = self.sim.handle(self._incoming("command", command="start"))
        self.follow_up(reply, None, 1)

    def say(self, m: SimMessage) -> None:
        self.sim.counters.messages += 1
        seconds = self.sim.spoken.get((m.user_id, m.at))
        if seconds is not None:
            self.speak(m, seconds)
            return
        self.sim.emit("message", f"{self.r.name}（{self.r.grid_id}）：{m.text}")
        self.send(m.text, m)

    def speak(self, m: SimMessage, seconds: int) -> None:
        """The message as a voice note: the words are what the transcription server returns for it (a voice over
        60 s is never transcribed, so it carries none)."""
        self.sim.counters.voice += 1
        self.sim.emit("message", f"{self.r.name}（{self.r.grid_id}）🎤 {seconds}秒语音：{m.text}")
        heard = m.text if seconds <= VOICE_HEARD_S else None
        voice = Voice(file_id=f"demo-voice-{m.user_id}-{seconds}", duration=seconds, transcript=heard)
        reply = self.sim.handle(self._incoming("voice", voice=voice))
        self.follow_up(reply, m, 1)

    # the scripted person answers what the engine is waiting for, like someone reading their chat
    # (each answer is a partial: it binds the button found now, where a lambda would close over a variable
    # whose narrowing to Button mypy cannot see)
    def follow_up(self, reply: Reply, context: SimMessage | None, depth: int) -> None:
        if depth > MAX_FOLLOW_UPS:
            return
        buttons = _buttons(reply.messages)
        state = self.sim.conversation_state(self.r.user_id)
        later = self.sim.now + TYPING
        rng = rng_for(self.sim.day.seed, "resident", self.r.user_id, self.sim.now.isoformat(), depth)
        if state == "consent":
            b = _find(buttons, "consent", arg="yes")
            if b:
                self.sim.at(later, partial(self.press, b, context, depth))
            else:
                self.sim.at(later, partial(self.send, "同意", context, depth))
        elif state == "address":
            b = self._address_button(buttons)
            if b is not None and self.r.style != "young":
                self.sim.at(later, partial(self.press, b, context, depth))
            else:  # young people type the address in one go
                self.sim.at(later, partial(self.send, self.r.address, context, depth))
        elif state == "report_where":
            where = f"{self.r.estate}{self.r.building}号楼{self.r.unit}单元这边"
            self.sim.at(later, partial(self.send, where, context, depth))
        elif state == "report_what":
            text = (context.text if context else "") + f"，{self.r.building}号楼{self.r.unit}单元"
            self.sim.at(later, partial(self.send, text, context, depth))
        elif state == "report_photo":
            b = _find(buttons, "photo_skip")
            self.sim.at(later, partial(self.press, b, context, depth) if b else
                        partial(self.send, "跳过", context, depth))
        elif state == "report_confirm":
            b = _find(buttons, "confirm", arg="yes")
            self.sim.at(later, partial(self.press, b, context, depth) if b else
                        partial(self.send, "对", context, depth))
        elif state == "report_edit":
            self.sim.at(later, partial(self.send, self.r.address, context, depth))
        elif state == "voice_confirm":  # 您说的是：…，对吗？ — the simulated server heard them right
            b = _find(buttons, "voice", arg="yes")
            self.sim.at(later, partial(self.press, b, context, depth) if b else
                        partial(self.send, "对", context, depth))
        elif state == "clarify":
            choice = _clarify_choice(context, self.sim.services.policies.taxonomy)
            b = _find(buttons, "clarify", arg=choice)
            if b:
                self.sim.at(later, partial(self.press, b, context, depth))
        else:
            useful = _find(buttons, "useful")
            if useful is not None and useful.arg and rng.random() < 0.35:
                qid = useful.arg.rsplit(".", 1)[0]
                verdict = "1" if rng.random() < 0.85 else "0"
                b = _find(buttons, "useful", arg=f"{qid}.{verdict}") or useful
                when = self.sim.now + timedelta(minutes=rng.uniform(0.5, 3))
                self.sim.at(when, partial(self.press, b, None, depth))
            rate = [x for x in buttons if x.action == "rate" and x.case_code]
            if rate:
                self.on_rating_request(rate)

    def _address_button(self, buttons: list[Button]) -> Button | None:
        wanted = (self.r.community_name, self.r.estate, f"{self.r.building}号楼", f"{self.r.unit}单元")
        for b in buttons:
            if b.action == "addr" and b.label in wanted:
                return b
        return None

    def on_push(self, message: OutboundMessage) -> None:
        rate = [b for row in message.buttons for b in row if b.action == "rate" and b.case_code]
        if rate:
            self.on_rating_request(rate)
        came_true = next((b for row in message.buttons for b in row if b.action == "wish_ok"), None)
        if came_true is not None:  # the claimer said 已完成: the resident confirms 心愿达成 a little later
            rng = rng_for(self.sim.day.seed, "wish_ok", came_true.case_code or "")
            self.sim.at(self.sim.now + timedelta(minutes=rng.uniform(10, 90)), lambda: self.press(came_true))

    def on_rating_request(self, buttons: list[Button]) -> None:
        code = buttons[0].case_code or ""
        case = self.sim.case(code)
        cycle = case.reopen_count if case is not None else 0
        key = f"{code}#{cycle}"
        if key in self.rated:
            return
        self.rated.add(key)
        spec = self.sim.sc.ratings
        rng = rng_for(self.sim.day.seed, "rating", key)
        if rng.random() >= spec.answer_probability:
            return  # never answers: the case auto-closes after resident_feedback.auto_close_after
        scores = sorted(spec.scores)
        score = rng.choices(scores, [spec.scores[s] for s in scores])[0]
        if cycle > 0:
            score = max(score, 3)  # a case fixed the second time is rarely sent back again
        b = _find(buttons, "rate", arg=str(score))
        if b is None:
            return
        delay = timedelta(minutes=spec.delay_minutes.draw(rng))
        self.sim.at(self.sim.now + delay, lambda: self._rate(b))

    def _rate(self, button: Button) -> None:
        self.sim.counters.ratings += 1
        self.sim.emit("rating", f"{self.r.name} 给 {button.case_code} 打了 {button.arg} 分")
        self.press(button, None, 0)


def _spoken(day: ExpandedDay) -> dict[tuple[int, datetime], int]:
    """Which two messages are spoken (VOICE_HEARD_S, VOICE_TOO_LONG_S): the first report and the first question of
    the day from elderly residents (from anyone if none is elderly), two different people."""
    elderly = {r.user_id for r in day.residents if r.style == "elderly"}
    ordered = sorted(day.messages, key=lambda m: (m.at, m.user_id))
    out: dict[tuple[int, datetime], int] = {}
    for kind, seconds in (("report", VOICE_HEARD_S), ("question", VOICE_TOO_LONG_S)):
        taken = {user for user, _ in out}
        pool = [m for m in ordered if m.kind == kind and m.user_id not in taken]
        pick = next((m for m in pool if m.user_id in elderly), pool[0] if pool else None)
        if pick is not None:
            out[(pick.user_id, pick.at)] = seconds
    return out


def _clarify_choice(m: SimMessage | None, taxonomy: Taxonomy) -> str:
    """The clarify button a person who meant the scenario's expected labels presses."""
    if m is None:
        return "other"
    if m.expect.intent == "inquiry":
        return "inquiry"
    if m.expect.urgency == "emergency":
        return "emergency"
    if taxonomy.opens_case(m.expect.intent):
        return "report"
    return "other"


# ---------------------------------------------------------------- grid workers
@dataclass
class _Plan:
    code: str
    cycle: int
    done: bool = False


class WorkerAgent:
    """One simulated worker: presses 接单 / 已联系 / 办结 on task pushes after seeded delays.

    Profiles (day.yaml `workers.overrides`): normal; late (accepts past the reminders); ignores (does
    nothing until the case reaches the street command, then responds); off (never acts).
    """

    def __init__(self, sim: Simulation, telegram_id: int, worker: Worker | None) -> None:
        self.sim = sim
        self.telegram_id = telegram_id
        self.worker = worker
        self.plans: dict[str, _Plan] = {}
        # anyone may be handed a case (the duty desk for unknown grids, the supervisor as a fallback);
        # they only act on pushes for cases assigned to them
        self.profile = "off" if worker is None else "normal"
        for o in sim.sc.workers.overrides:
            if worker is not None and o.grid == worker.grid_id and o.role == worker.role:
                self.profile = o.profile
        self.pending_note: str | None = None
        self.ignored: set[str] = set()

    def _incoming(self, kind: IncomingKind, **kw: Any) -> Incoming:
        return Incoming(channel=CHANNEL, user_id=self.telegram_id, chat_id=self.telegram_id, kind=kind,
                        display_name=self.worker.name if self.worker else "", **kw)

    def on_push(self, message: OutboundMessage) -> None:
        if self.profile == "off":
            return
        claim = next((b for row in message.buttons for b in row if b.action == "wclaim" and b.case_code), None)
        if claim is not None:  # a 微心愿 card: every volunteer and party member of the wall tries; one wins
            rng = rng_for(self.sim.day.seed, "wish", claim.case_code or "", self.telegram_id)
            when = self._working_time(self.sim.now + timedelta(minutes=rng.uniform(10, 90)), "normal", rng)
            self.sim.at(when, lambda: self._claim_wish(claim, rng))
            return
        accept = next((b for row in message.buttons for b in row if b.action == "accept" and b.case_code), None)
        if accept is None:
            return
        code = accept.case_code or ""
        case = self.sim.case(code)
        if case is None or case.assignee_id != (self.worker.id if self.worker else None):
            return
        if case.intent == "wish":  # the wall answers it: the claim is its first response, 心愿达成 closes it
            return
        cycle = case.reopen_count  # a reopened case is a new piece of work
        plan = self.plans.get(code)
        if plan is not None and plan.cycle == cycle:
            return  # already working on it (or done): a reminder does not change the plan
        spec = self.sim.sc.workers
        rng = rng_for(self.sim.day.seed, "worker", code, cycle)
        factor = spec.urgency_factor.get(case.urgency, 1.0)
        if self.profile == "ignores" and (code in self.ignored or (
                case.urgency == "normal" and len(self.ignored) < spec.ignores.max_tasks)):
            self.ignored.add(code)
            if case.escalation_level < spec.ignores.after_level:
                return  # lets it lie (reminders too) until the street command is involved
            delay = spec.ignores.accept.draw(rng)
        elif self.profile == "late":
            delay = spec.late.accept.draw(rng)
        else:
            delay = spec.accept.draw(rng) * factor
        self.plans[code] = _Plan(code, cycle)
        start = self._working_time(self.sim.now + timedelta(minutes=delay), case.urgency, rng)
        self.sim.at(start, lambda: self._step(code, cycle, "accept", rng))

    def _working_time(self, when: datetime, urgency: str, rng: random.Random) -> datetime:
        """Normal-urgency work waits for working hours; emergencies and urgent cases do not."""
        if urgency != "normal":
            return when
        tz = self.sim.sc.tz
        begin, end = self.sim.sc.workers.working_hours
        local = when.astimezone(tz)
        if local.time() < begin:
            return datetime.combine(local.date(), begin, tzinfo=tz) + timedelta(minutes=rng.uniform(0, 40))
        if local.time() >= end:
            return datetime.combine(local.date() + timedelta(days=1), begin, tzinfo=tz) + timedelta(
                minutes=rng.uniform(0, 40))
        return when

    def _step(self, code: str, cycle: int, action: str, rng: random.Random) -> None:
        case = self.sim.case(code)
        plan = self.plans.get(code)
        if case is None or plan is None or plan.cycle != cycle or plan.done:
            return
        if case.assignee_id != (self.worker.id if self.worker else None) or case.status in ("resolved", "closed"):
            plan.done = True
            return
        spec = self.sim.sc.workers
        nxt: tuple[str, float] | None = None
        if action == "accept":
            if case.status in ("assigned", "reopened", "new"):
                self._press(Button("接单", "accept", code), action, rng)
            nxt = ("respond", spec.respond_after_accept.draw(rng) * spec.urgency_factor.get(case.urgency, 1.0))
        elif action == "respond":
            if case.first_response_at is None:
                self._press(Button("已联系", "respond", code), action, rng)
            rule = spec.resolve_after_respond.get(case.urgency) or spec.resolve_after_respond["normal"]
            minutes = rule.draw(rng)
            if rng.random() < spec.slow_resolve.probability:
                minutes = 60 * rng.uniform(*spec.slow_resolve.hours)
            nxt = ("resolve", minutes)
        elif action == "resolve":
            self._press(Button("办结", "resolve", code), action, rng)
            plan.done = True
        if nxt is not None:
            when = self._working_time(self.sim.now + timedelta(minutes=nxt[1]), case.urgency, rng)
            self.sim.at(when, lambda: self._step(code, cycle, nxt[0], rng))

    def _claim_wish(self, claim: Button, rng: random.Random) -> None:
        """认领心愿; the winner presses 已完成 a few working hours later (the others were told 已被认领)."""
        reply = self.sim.handle(self._incoming("button", button=claim))
        if not any(m.text.startswith("认领成功") for m in reply.messages):
            return
        self.sim.emit("worker", f"{self.worker.name if self.worker else self.telegram_id} 认领微心愿 {claim.case_code}")
        done = Button("已完成", "wdone", claim.case_code)
        when = self._working_time(self.sim.now + timedelta(minutes=rng.uniform(60, 240)), "normal", rng)
        self.sim.at(when, lambda: self._press_done(done))

    def _press_done(self, done: Button) -> None:
        self.sim.handle(self._incoming("button", button=done))

    def _press(self, button: Button, action: str, rng: random.Random) -> None:
        notes = self.sim.sc.workers.notes
        self.pending_note = rng.choice(notes.resolve if action == "resolve" else notes.respond)
        reply = self.sim.handle(self._incoming("button", button=button))
        self._follow_up(reply, 1)

    def _follow_up(self, reply: Reply, depth: int) -> None:
        """Answer the engine's prompts at once (a note, then 跳过 for the photo)."""
        if depth > MAX_FOLLOW_UPS:
            return
        state = self.sim.conversation_state(self.telegram_id)
        buttons = _buttons(reply.messages)
        if state == "worker_note":
            reply = self.sim.handle(self._incoming("text", text=self.pending_note or "已处理"))
        elif state == "worker_photo":
            skip = next((b for b in buttons if b.action in ("wphoto_skip", "photo_skip", "skip")), None)
            reply = self.sim.handle(self._incoming("button", button=skip) if skip else
                                    self._incoming("text", text="跳过"))
        else:
            return
        self._follow_up(reply, depth + 1)
