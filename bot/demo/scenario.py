"""The demo scenario: the YAML file's typed model and its deterministic expansion into residents and messages.

Owns: reading `bot/demo/data/day.yaml` (or another scenario file), and turning it with a seed into the
simulated residents (with addresses inside the grids of grids.yaml) and the timed resident messages.
Must not: touch the database or the dialogue engine (simulation.py plays the expanded day).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import random
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from policies.models import Grids

DEFAULT_SCENARIO = Path(__file__).resolve().parent / "data" / "day.yaml"
RESIDENT_ID_BASE = 7_000_000  # simulated residents' channel user ids (workers use their grids.yaml ids)
Kind = Literal["question", "report", "urgent", "emergency", "complaint", "dispute", "wish", "suggestion",
               "status", "feedback", "chitchat"]
FOLLOW_UP_KINDS = ("status", "feedback")  # only make sense from someone who reported something earlier
SUFFIX_KINDS = ("report", "urgent", "complaint")  # "麻烦尽快处理" fits a report, not a question
REPORT_KINDS = ("report", "urgent", "emergency", "complaint", "dispute", "wish")


class ScenarioError(ValueError):
    """The scenario file is malformed; the message names the file and the field."""


class _M(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Expect(_M):
    intent: str
    category: str
    urgency: str


class Template(_M):
    kind: Kind
    expect: Expect
    texts: list[str] = Field(min_length=1)


class Scripted(_M):
    id: str
    at: time
    grid: str
    count: int = Field(ge=1)
    every: tuple[float, float] = (1.0, 1.0)
    same_place: bool = False
    expect: Expect
    texts: list[str] = Field(min_length=1)


class Style(_M):
    weight: float = Field(gt=0)
    names: list[str] = Field(min_length=1)


class ResidentSpec(_M):
    count: int = Field(ge=1)
    grid_weights: dict[str, float]
    surnames: list[str] = Field(min_length=1)
    styles: dict[str, Style]


class Delay(_M):
    median: float = Field(gt=0)
    sigma: float = Field(ge=0)

    def draw(self, rng: random.Random) -> float:
        """Minutes, lognormal around the median."""
        return self.median * (2.718281828459045 ** rng.gauss(0.0, self.sigma)) if self.sigma else self.median


class LateProfile(_M):
    accept: Delay


class IgnoresProfile(_M):
    after_level: int = Field(ge=1)
    max_tasks: int = Field(default=1, ge=0)
    accept: Delay


class SlowResolve(_M):
    probability: float = Field(ge=0, le=1)
    hours: tuple[float, float]


class Override(_M):
    grid: str
    role: str
    profile: Literal["normal", "late", "ignores", "off"]


class WorkerNotes(_M):
    respond: list[str] = Field(min_length=1)
    resolve: list[str] = Field(min_length=1)


class WorkerSpec(_M):
    working_hours: tuple[time, time]
    accept: Delay
    respond_after_accept: Delay
    resolve_after_respond: dict[str, Delay]
    urgency_factor: dict[str, float] = Field(default_factory=dict)
    slow_resolve: SlowResolve = SlowResolve(probability=0.0, hours=(24.0, 48.0))
    late: LateProfile
    ignores: IgnoresProfile
    overrides: list[Override] = Field(default_factory=list)
    notes: WorkerNotes


class RatingSpec(_M):
    answer_probability: float = Field(ge=0, le=1)
    delay_minutes: Delay
    scores: dict[int, float]


class Scenario(_M):
    date: date
    timezone: str = "Asia/Shanghai"
    day_start: time
    day_end: time
    fast_forward_until: datetime
    messages: int = Field(ge=0)
    sweep_every_minutes: float = Field(default=1, gt=0)
    fast_forward_sweep_minutes: float = Field(default=10, gt=0)
    residents: ResidentSpec
    hourly_profile: dict[int, float]
    mix: dict[str, float]
    suffixes: dict[str, list[str]] = Field(default_factory=dict)
    templates: list[Template]
    scripted: list[Scripted] = Field(default_factory=list)
    workers: WorkerSpec
    ratings: RatingSpec

    @field_validator("mix")
    @classmethod
    def _kinds(cls, value: dict[str, float]) -> dict[str, float]:
        known = set(Kind.__args__)  # type: ignore[attr-defined]
        unknown = set(value) - known
        if unknown:
            raise ValueError(f"unknown message kinds {sorted(unknown)}")
        return value

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def local(self, t: time, day: dt.date | None = None) -> datetime:
        return datetime.combine(day or self.date, t, tzinfo=self.tz)

    @property
    def start(self) -> datetime:
        return self.local(self.day_start)

    @property
    def end(self) -> datetime:
        return self.local(self.day_end)

    @property
    def fast_forward_end(self) -> datetime:
        ff = self.fast_forward_until
        return ff.replace(tzinfo=self.tz) if ff.tzinfo is None else ff


def load_scenario(path: Path | str | None = None) -> Scenario:
    """Read and validate a scenario file (the packaged day.yaml by default)."""
    p = Path(path) if path else DEFAULT_SCENARIO
    try:
        raw = yaml.safe_load(p.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ScenarioError(f"{p}: {exc}") from None
    return scenario_from_dict(raw, source=str(p))


def scenario_from_dict(raw: Any, *, source: str = "<scenario>") -> Scenario:
    try:
        return Scenario.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(x) for x in err.get("loc", ()))
        raise ScenarioError(f"{source}: {where}: {err['msg']}") from None


# ---------------- expansion ----------------
@dataclass(frozen=True)
class SimResident:
    user_id: int
    name: str
    style: str
    community_id: str
    community_name: str
    estate: str
    building: int
    unit: int
    floor: int
    grid_id: str

    @property
    def room(self) -> str:
        return f"{self.floor}0{self.unit}"

    @property
    def address(self) -> str:
        return f"{self.estate}{self.building}号楼{self.unit}单元"


@dataclass(frozen=True)
class SimMessage:
    at: datetime  # aware, local time zone of the scenario
    user_id: int
    text: str
    kind: str
    expect: Expect
    block: str | None = None  # the scripted block id, or None for the random part of the day


@dataclass
class ExpandedDay:
    scenario: Scenario
    seed: int
    residents: list[SimResident]
    messages: list[SimMessage] = field(default_factory=list)

    def resident(self, user_id: int) -> SimResident:
        return self._by_id[user_id]

    def __post_init__(self) -> None:
        self._by_id = {r.user_id: r for r in self.residents}


def rng_for(seed: int, *parts: object) -> random.Random:
    """An independent random stream per decision, so one choice never shifts another (stable replays)."""
    key = "|".join([str(seed), *map(str, parts)]).encode()
    return random.Random(int.from_bytes(hashlib.sha256(key).digest()[:8], "big"))


def expand(scenario: Scenario, grids: Grids, *, seed: int = 42, messages: int | None = None) -> ExpandedDay:
    """Residents and the day's messages, the same for the same (scenario, grids, seed, messages)."""
    residents = _residents(scenario, grids, seed)
    day = ExpandedDay(scenario=scenario, seed=seed, residents=residents)
    by_grid: dict[str, list[SimResident]] = {}
    for r in residents:
        by_grid.setdefault(r.grid_id, []).append(r)

    out: list[SimMessage] = []
    for block in scenario.scripted:
        out += _scripted(scenario, block, by_grid, seed)
    total = scenario.messages if messages is None else messages
    random_count = max(0, total - len(out))
    out += _random_messages(scenario, residents, random_count, seed)
    out.sort(key=lambda m: (m.at, m.user_id, m.text))
    day.messages = _place_follow_ups(out, residents, seed)
    return day


def _residents(scenario: Scenario, grids: Grids, seed: int) -> list[SimResident]:
    rng = rng_for(seed, "residents")
    spec = scenario.residents
    known: dict[str, tuple[str, str, list[tuple[str, int, int]]]] = {}
    for c in grids.communities:
        per_estate = {e.name: e.units_per_building for e in c.estates}
        for g in c.grids:
            places = [(cov.estate, b, per_estate[cov.estate]) for cov in g.covers for b in cov.building_numbers()]
            known[g.id] = (c.id, c.name, places)
    missing = [g for g in spec.grid_weights if g not in known]
    if missing:
        raise ScenarioError(f"residents.grid_weights: grids {missing} are not in grids.yaml")
    picks = _apportion(spec.grid_weights, spec.count)
    style_names = sorted(spec.styles)
    style_weights = [spec.styles[s].weight for s in style_names]
    used_names: set[str] = set()
    out: list[SimResident] = []
    for i, grid_id in enumerate(sorted(picks)):
        community_id, community_name, places = known[grid_id]
        estate, building, units = rng.choice(places)
        style = rng.choices(style_names, style_weights)[0]
        name = ""
        for _ in range(20):
            name = rng.choice(spec.styles[style].names).format(s=rng.choice(spec.surnames))
            if name not in used_names:
                break
        used_names.add(name)
        out.append(SimResident(user_id=RESIDENT_ID_BASE + i + 1, name=name, style=style,
                               community_id=community_id, community_name=community_name, estate=estate,
                               building=building, unit=rng.randint(1, units), floor=rng.randint(1, 6),
                               grid_id=grid_id))
    return out


def _apportion(weights: dict[str, float], count: int) -> list[str]:
    """Largest-remainder split of `count` residents over the grids, so the proportions hold exactly."""
    total = sum(weights.values())
    shares = {g: count * w / total for g, w in weights.items()}
    seats = {g: int(s) for g, s in shares.items()}
    for g in sorted(shares, key=lambda g: (-(shares[g] - seats[g]), g))[: count - sum(seats.values())]:
        seats[g] += 1
    return [g for g in sorted(seats) for _ in range(seats[g])]


def fill(text: str, resident: SimResident, *, building: int | None = None) -> str:
    return text.format(estate=resident.estate, building=building or resident.building, unit=resident.unit,
                       floor=resident.floor, room=resident.room, name=resident.name)


def _scripted(scenario: Scenario, block: Scripted, by_grid: dict[str, list[SimResident]],
              seed: int) -> list[SimMessage]:
    rng = rng_for(seed, "scripted", block.id)
    people = list(by_grid.get(block.grid, []))
    if not people:
        raise ScenarioError(f"scripted {block.id}: no simulated resident lives in grid {block.grid}")
    rng.shuffle(people)
    shared = people[0].building if block.same_place else None
    texts = list(block.texts)
    rng.shuffle(texts)
    at = scenario.local(block.at)
    out: list[SimMessage] = []
    for n in range(block.count):
        who = people[n % len(people)]
        text = fill(texts[n % len(texts)], who, building=shared)
        out.append(SimMessage(at=at, user_id=who.user_id, text=text, kind="scripted", expect=block.expect,
                              block=block.id))
        at += timedelta(minutes=rng.uniform(*block.every), seconds=rng.randint(0, 59))
    return out


def _random_messages(scenario: Scenario, residents: list[SimResident], count: int, seed: int) -> list[SimMessage]:
    rng = rng_for(seed, "messages")
    hours = sorted(h for h in scenario.hourly_profile if scenario.day_start.hour <= h < max(scenario.day_end.hour, 1))
    if not hours or count == 0:
        return []
    hour_w = [scenario.hourly_profile[h] for h in hours]
    kinds = sorted(scenario.mix)
    kind_w = [scenario.mix[k] for k in kinds]
    by_kind: dict[str, list[Template]] = {}
    for t in scenario.templates:
        by_kind.setdefault(t.kind, []).append(t)
    out: list[SimMessage] = []
    for _ in range(count):
        kind = rng.choices(kinds, kind_w)[0]
        if kind not in by_kind:
            continue
        template = rng.choice(by_kind[kind])
        who = rng.choice(residents)
        hour = rng.choices(hours, hour_w)[0]
        at = datetime.combine(scenario.date, time(hour, rng.randint(0, 59), rng.randint(0, 59)),
                              tzinfo=scenario.tz)
        text = fill(rng.choice(template.texts), who)
        suffix = rng.choice(scenario.suffixes.get(who.style, [""]) or [""])
        if suffix and kind in SUFFIX_KINDS and not text.endswith(("？", "?", "！", "!", "。")):
            text += suffix
        out.append(SimMessage(at=at, user_id=who.user_id, text=text, kind=kind, expect=template.expect))
    return out


def _place_follow_ups(messages: list[SimMessage], residents: list[SimResident], seed: int) -> list[SimMessage]:
    """A status question or a thank-you comes from someone who reported something at least an hour earlier."""
    rng = rng_for(seed, "follow-ups")
    reported: list[SimMessage] = [m for m in messages if m.kind in REPORT_KINDS or m.kind == "scripted"]
    out: list[SimMessage] = []
    for m in messages:
        if m.kind not in FOLLOW_UP_KINDS:
            out.append(m)
            continue
        earlier = [r for r in reported if r.at <= m.at - timedelta(hours=1)]
        if earlier:
            source, at = rng.choice(earlier), m.at
        elif reported:  # too early in the day for a follow-up: move it to after someone's report
            source = rng.choice(reported[: max(1, len(reported) // 4)])
            at = source.at + timedelta(minutes=rng.randint(60, 150))
        else:
            continue  # nobody reported anything: a status question would make no sense
        out.append(SimMessage(at=at, user_id=source.user_id, text=m.text, kind=m.kind, expect=m.expect))
    out.sort(key=lambda m: (m.at, m.user_id, m.text))
    return out
