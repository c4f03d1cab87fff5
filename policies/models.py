"""Typed views of the policy files. Validation here is the one place a policy mistake is caught."""

from __future__ import annotations

import re
from datetime import date, time, timedelta
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

from policies.taxonomy import ROUTING_TARGETS, Category, Intent, Urgency


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# ---------- taxonomy.yaml ----------
class Label(_Strict):
    name: str = Field(min_length=1)
    definition: str = Field(min_length=1)


class WishRules(_Strict):
    """微心愿: which wishes are 即接即办 (urgent, with a deadline) or 结对帮扶 (long-term, with check-ins)."""

    urgent_terms: list[str] = Field(default_factory=list)  # a wish naming one (or of urgency urgent+) is urgent
    long_term_terms: list[str] = Field(default_factory=list)  # a wish naming one is a pairing (结对帮扶)
    urgent_due_hours: int = Field(default=24, ge=1)  # 即接即办: claimed and done within this
    regular_due_days: int = Field(default=14, ge=1)  # any other one-off wish
    checkin_days: int = Field(default=7, ge=1)  # 结对帮扶: the claimer is asked how it goes this often
    unclaimed_alert_hours: int = Field(default=48, ge=1)  # nobody claimed it: the volunteer lead is told


class Taxonomy(_Strict):
    intents: dict[Intent, Label]
    categories: dict[Category, Label]
    urgencies: dict[Urgency, Label]
    topicless_intents: list[Intent] = Field(default_factory=list)
    case_intents: frozenset[Intent] = Field(min_length=1)
    place_categories: frozenset[Category] = Field(default_factory=frozenset)
    # words for the community's own people, by the position they name ("community": any of its staff;
    # "office": the community as a body, counted only with its conduct);
    # a complaint about them is handled above them (routing.yaml `target: staff`)
    staff_terms: dict[str, list[str]] = Field(default_factory=dict)
    wishes: WishRules = Field(default_factory=lambda: WishRules())

    @field_validator("staff_terms")
    @classmethod
    def _staff_terms(cls, v: dict[str, list[str]]) -> dict[str, list[str]]:
        unknown = sorted(set(v) - ROUTING_TARGETS - {"community", "office"})
        if unknown:
            raise ValueError(f"unknown positions {unknown}; known: {sorted(ROUTING_TARGETS)}, community or office")
        if any(not w.strip() for words in v.values() for w in words):
            raise ValueError("empty staff term")
        return v

    @model_validator(mode="after")
    def _complete(self) -> Taxonomy:
        for field, enum in (("intents", Intent), ("categories", Category), ("urgencies", Urgency)):
            missing = {e.value for e in enum} - {k.value for k in getattr(self, field)}
            if missing:
                raise ValueError(f"{field}: missing labels {sorted(missing)}")
        clash = set(self.case_intents) & set(self.topicless_intents)
        if clash:
            raise ValueError(f"case_intents: {sorted(clash)} are topicless and cannot open cases")
        return self

    def opens_case(self, intent: str) -> bool:
        """Whether a message of this intent becomes a case through the report flow."""
        return intent in self.case_intents

    def needs_place(self, category: str) -> bool:
        """Whether a problem of this category happens away from home, so the place must be asked."""
        return category in self.place_categories

    def urgency_name(self, urgency: str) -> str:
        """The one Chinese name of an urgency (紧急/加急/一般)."""
        return next((v.name for k, v in self.urgencies.items() if k.value == urgency), urgency)

    def name_of(self, label: str) -> str:
        for table in (self.intents, self.categories, self.urgencies):
            for key, value in table.items():
                if key.value == label:
                    return value.name
        return label


# ---------- sla.yaml ----------
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(m|h|d|wd)$")


def parse_duration(text: str) -> tuple[float, str]:
    m = _DURATION.match(str(text).strip())
    if not m:
        raise ValueError(f"bad duration {text!r}; use 10m, 1h, 24h, 2d or 3wd")
    return float(m.group(1)), m.group(2)


class Clock(_Strict):
    kind: Literal["always", "service_hours"]
    start: time = time(0, 0)
    end: time = time(23, 59, 59)
    extra_holidays: dict[int, list[date]] = Field(default_factory=dict)
    extra_workdays: dict[int, list[date]] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _hours(self) -> Clock:
        if self.kind == "service_hours" and self.start >= self.end:
            raise ValueError("start must be before end")
        return self


class UrgencySla(_Strict):
    clock: str
    response: str
    resolve: str
    reminders: list[float] = Field(default_factory=lambda: [0.5, 0.8])

    @field_validator("response", "resolve")
    @classmethod
    def _dur(cls, v: str) -> str:
        parse_duration(v)
        return v

    @field_validator("reminders")
    @classmethod
    def _fractions(cls, v: list[float]) -> list[float]:
        if any(not 0 < f < 1 for f in v) or v != sorted(v):
            raise ValueError("reminder points must be increasing fractions between 0 and 1")
        return v


class LadderStep(_Strict):
    level: int = Field(ge=1)
    role: Literal["supervisor", "street_command"]
    name: str


class Escalation(_Strict):
    ladder: list[LadderStep] = Field(min_length=1)
    repeat_after_fraction: float = Field(default=0.5, gt=0)


class ResidentFeedback(_Strict):
    auto_close_after: str = "72h"
    reopen_at_or_below: int = Field(default=2, ge=1, le=5)

    @property
    def auto_close_delta(self) -> timedelta:
        value, unit = parse_duration(self.auto_close_after)
        return timedelta(minutes=value) if unit == "m" else timedelta(hours=value if unit == "h" else value * 24)


class HotspotRule(_Strict):
    """N reports of one category in one grid or community within `window` make one incident (未诉先办)."""

    count: int = Field(default=5, ge=2)
    window: str = "30m"

    @field_validator("window")
    @classmethod
    def _dur(cls, v: str) -> str:
        _, unit = parse_duration(v)
        if unit == "wd":
            raise ValueError("hotspot window must be in m, h or d")
        return v

    @property
    def window_delta(self) -> timedelta:
        value, unit = parse_duration(self.window)
        return timedelta(minutes=value) if unit == "m" else timedelta(hours=value if unit == "h" else value * 24)


class Sla(_Strict):
    clocks: dict[str, Clock]
    urgencies: dict[Urgency, UrgencySla]
    escalation: Escalation
    resident_feedback: ResidentFeedback = ResidentFeedback()
    hotspots: HotspotRule = HotspotRule()

    @model_validator(mode="after")
    def _refs(self) -> Sla:
        missing = {u.value for u in Urgency} - {k.value for k in self.urgencies}
        if missing:
            raise ValueError(f"urgencies: missing {sorted(missing)}")
        for urgency, rule in self.urgencies.items():
            if rule.clock not in self.clocks:
                raise ValueError(f"urgencies.{urgency.value}.clock: unknown clock {rule.clock!r}")
            for field in ("response", "resolve"):
                _, unit = parse_duration(getattr(rule, field))
                if unit == "wd" and self.clocks[rule.clock].kind != "service_hours":
                    raise ValueError(f"urgencies.{urgency.value}.{field}: working days need a service_hours clock")
        return self


# ---------- routing.yaml ----------
class RouteMatch(_Strict):
    intent: Intent | None = None
    category: Category | None = None
    urgency: Urgency | None = None
    target: Literal["staff", "other"] | None = None  # whom a complaint is about (understanding's `target`)


class RouteRule(_Strict):
    match: RouteMatch
    role: str
    cc: list[str] = Field(default_factory=list)

    @field_validator("role")
    @classmethod
    def _role(cls, v: str) -> str:
        if v not in ROUTING_TARGETS:
            raise ValueError(f"unknown role {v!r}; known: {sorted(ROUTING_TARGETS)}")
        return v

    @field_validator("cc")
    @classmethod
    def _cc(cls, v: list[str]) -> list[str]:
        for role in v:
            if role not in ROUTING_TARGETS:
                raise ValueError(f"unknown role {role!r}")
        return v


class RouteDefault(_Strict):
    role: str
    cc: list[str] = Field(default_factory=list)


WEEKDAYS = (1, 2, 3, 4, 5, 6, 7)  # ISO weekdays, Monday = 1


class WorkingHours(_Strict):
    """When a person takes new cases (Asia/Shanghai): `end` before `start` spans midnight."""

    start: time
    end: time
    days: list[int] = Field(default_factory=lambda: list(WEEKDAYS), min_length=1)

    @field_validator("days")
    @classmethod
    def _days(cls, v: list[int]) -> list[int]:
        if any(d not in WEEKDAYS for d in v) or len(set(v)) != len(v):
            raise ValueError("days are distinct ISO weekdays 1 (Monday) to 7 (Sunday)")
        return v

    @model_validator(mode="after")
    def _span(self) -> WorkingHours:
        if self.start == self.end:
            raise ValueError("start and end must differ")
        return self

    def covers(self, weekday: int, at: time) -> bool:
        """Is local `weekday` (1-7) at `at` inside these hours (a night shift counts from the day it starts)?"""
        if self.start < self.end:
            return weekday in self.days and self.start <= at < self.end
        previous = 7 if weekday == 1 else weekday - 1
        return (weekday in self.days and at >= self.start) or (previous in self.days and at < self.end)


class Team(_Strict):
    """How a grid's team (1 full-time + part-timers) shares the cases routed to its full-time position."""

    # the full-time worker holding more than this many open cases: new ones go to the least loaded part-timer
    overflow_after: int = Field(default=8, ge=0)
    # per position, unless a person's own `working_hours` in grids.yaml says otherwise; a role left out: any time
    working_hours: dict[Literal["full_time", "part_time"], WorkingHours] = Field(default_factory=dict)
    # where a case goes when nobody of the team is in hours (someone is, but off duty)
    after_hours: str = "duty_desk"
    # the morning digest of what is due today and overdue, from this local time until `digest_until`
    digest_at: time = time(8, 30)
    digest_until: time = time(12, 0)

    @field_validator("after_hours")
    @classmethod
    def _after_hours(cls, v: str) -> str:
        if v not in ROUTING_TARGETS:
            raise ValueError(f"unknown role {v!r}; known: {sorted(ROUTING_TARGETS)}")
        return v

    @model_validator(mode="after")
    def _digest(self) -> Team:
        if self.digest_until <= self.digest_at:
            raise ValueError("digest_until must be later than digest_at")
        return self


class Routing(_Strict):
    default: RouteDefault
    rules: list[RouteRule] = Field(default_factory=list)
    fallback: list[str] = Field(default_factory=lambda: ["deputy", "supervisor"])
    unknown_grid: str = "duty_desk"
    transfer_roles: list[str] = Field(min_length=1)
    extension_hours: list[int] = Field(min_length=1)
    team: Team = Field(default_factory=Team)

    @field_validator("transfer_roles")
    @classmethod
    def _transfer_roles(cls, v: list[str]) -> list[str]:
        unknown = [r for r in v if r not in ROUTING_TARGETS]
        if unknown:
            raise ValueError(f"unknown roles {unknown}; known: {sorted(ROUTING_TARGETS)}")
        return v

    @field_validator("extension_hours")
    @classmethod
    def _hours(cls, v: list[int]) -> list[int]:
        if any(h <= 0 or h > 24 * 30 for h in v) or v != sorted(set(v)):
            raise ValueError("extension hours must be increasing whole hours between 1 and 720")
        return v


# ---------- grids.yaml ----------
def _check_work_phone(value: str) -> str:
    shown = value.strip()
    if not re.fullmatch(r"\d[\d-]{1,18}\d", shown) or not 3 <= sum(ch.isdigit() for ch in shown) <= 13:
        raise ValueError(f"{value!r}: a work phone is 3 to 13 digits, dashes allowed (0531-8xxxxxxx)")
    return shown


WorkPhone = Annotated[str, AfterValidator(_check_work_phone)]


class StaffEntry(_Strict):
    name: str  # the position ("芙蓉社区第一网格专职网格员"): what cases, pushes and the console show
    telegram_id: int | None = None
    on_leave: bool = False
    active: bool = True
    deputy: bool = False
    lead: bool = False
    # what a resident who asks "俺们网格员是谁" is told besides the position: how to address them, a work phone
    # (a staff line, shown as written) and, for a duty desk, when it is staffed
    display_name: str | None = None
    phone: WorkPhone | None = None
    hours: str | None = None
    # when this person takes new cases, if not their position's hours in routing.yaml `team.working_hours`
    working_hours: WorkingHours | None = None


class Coverage(_Strict):
    estate: str
    buildings: str

    @field_validator("buildings")
    @classmethod
    def _range(cls, v: str) -> str:
        parse_building_range(v)
        return v

    def building_numbers(self) -> list[int]:
        return parse_building_range(self.buildings)


def parse_building_range(text: str) -> list[int]:
    out: list[int] = []
    for part in str(text).split(","):
        part = part.strip()
        if re.fullmatch(r"\d+-\d+", part):
            lo, hi = (int(x) for x in part.split("-"))
            if lo > hi:
                raise ValueError(f"bad building range {text!r}")
            out.extend(range(lo, hi + 1))
        elif part.isdigit():
            out.append(int(part))
        else:
            raise ValueError(f"bad building range {text!r}; use 1-6 or 1,3,5")
    return out


class GridWorkers(_Strict):
    full_time: StaffEntry
    part_time: list[StaffEntry] = Field(default_factory=list, max_length=2)
    volunteer: list[StaffEntry] = Field(default_factory=list)
    party_member: list[StaffEntry] = Field(default_factory=list)  # 党员: they claim 微心愿 with the volunteers


def _check_lat_lng(v: tuple[float, float]) -> tuple[float, float]:
    lat, lng = v
    if not (-90 <= lat <= 90 and -180 <= lng <= 180):
        raise ValueError(f"{v!r} is not [latitude, longitude] (WGS-84 degrees)")
    return v


LatLng = Annotated[tuple[float, float], AfterValidator(_check_lat_lng)]  # [36.664, 117.016]: north, east


def _check_area(v: list[tuple[float, float]]) -> list[tuple[float, float]]:
    if v and len(v) < 3:
        raise ValueError("a grid's area needs at least 3 corners")
    return v


class GridSpec(_Strict):
    id: str = Field(pattern=r"^[A-Z0-9]{2,12}$")
    name: str
    covers: list[Coverage] = Field(min_length=1)
    workers: GridWorkers
    households: int | None = None
    # the grid's outline, corners in order ([lat, lng] each): a location pin inside it belongs to this grid
    area: Annotated[list[LatLng], AfterValidator(_check_area)] = Field(default_factory=list)


class Estate(_Strict):
    name: str
    buildings: int = Field(ge=1)
    units_per_building: int = Field(default=3, ge=1)
    # other names residents use for it ("曲水亭" for 曲水亭小区): read as the estate itself, so each names one estate
    aliases: list[str] = Field(default_factory=list)
    location: LatLng | None = None  # the estate's gate
    building_locations: dict[int, LatLng] = Field(default_factory=dict)  # building number → [lat, lng]

    @model_validator(mode="after")
    def _known_buildings(self) -> Estate:
        for number in self.building_locations:
            if not 1 <= number <= self.buildings:
                raise ValueError(f"estate {self.name}: building_locations names building {number}, "
                                 f"which it does not have (1-{self.buildings})")
        return self


class CommunityStaff(_Strict):
    supervisor: StaffEntry
    duty_desk: StaffEntry
    mediator: StaffEntry
    property_manager: StaffEntry
    # the community's own volunteers and party members (not of one grid): the 微心愿 wall reaches them too
    volunteer: list[StaffEntry] = Field(default_factory=list)
    party_member: list[StaffEntry] = Field(default_factory=list)


class Community(_Strict):
    id: str
    name: str
    estates: list[Estate] = Field(min_length=1)
    staff: CommunityStaff
    grids: list[GridSpec] = Field(min_length=1)
    # the residents' committee office, as a resident is told it ("社区在哪", "居委会几点上班")
    address: str | None = None
    office_hours: str | None = None
    phone: WorkPhone | None = None


class Street(_Strict):
    id: str
    name: str
    case_code_prefix: str = Field(default="JN", pattern=r"^[A-Z]{1,6}$")


class Grids(_Strict):
    street: Street
    street_command: StaffEntry
    communities: list[Community] = Field(min_length=1)
    pin_radius_m: float = Field(default=30.0, gt=0, le=1000)  # a location pin this close to a building is at it

    @model_validator(mode="after")
    def _consistent(self) -> Grids:
        seen_grids: set[str] = set()
        seen_ids: set[int] = set()
        for c in self.communities:
            estates = {e.name: e for e in c.estates}
            covered: dict[tuple[str, int], str] = {}
            for g in c.grids:
                if g.id in seen_grids:
                    raise ValueError(f"grid id {g.id} appears twice")
                seen_grids.add(g.id)
                for cov in g.covers:
                    if cov.estate not in estates:
                        raise ValueError(f"grid {g.id}: estate {cov.estate!r} is not listed in {c.id}.estates")
                    for b in cov.building_numbers():
                        if b > estates[cov.estate].buildings:
                            raise ValueError(f"grid {g.id}: {cov.estate} has no building {b}")
                        if (cov.estate, b) in covered:
                            raise ValueError(f"{cov.estate} {b}号楼 is in {covered[(cov.estate, b)]} and {g.id}")
                        covered[(cov.estate, b)] = g.id
        named: dict[str, str] = {e.name: e.name for c in self.communities for e in c.estates}
        for c in self.communities:
            for e in c.estates:
                for alias in e.aliases:
                    if not alias.strip():
                        raise ValueError(f"estate {e.name}: an empty alias")
                    if named.setdefault(alias, e.name) != e.name:
                        raise ValueError(f"alias {alias!r} of {e.name} already names {named[alias]}")
        for staff in self.all_staff():
            if staff.telegram_id is not None:
                if staff.telegram_id in seen_ids:
                    raise ValueError(f"telegram_id {staff.telegram_id} is used twice")
                seen_ids.add(staff.telegram_id)
        return self

    def all_staff(self) -> list[StaffEntry]:
        out = [self.street_command]
        for c in self.communities:
            out += [c.staff.supervisor, c.staff.duty_desk, c.staff.mediator, c.staff.property_manager,
                    *c.staff.volunteer, *c.staff.party_member]
            for g in c.grids:
                out += [g.workers.full_time, *g.workers.part_time, *g.workers.volunteer, *g.workers.party_member]
        return out

    def estate_names(self) -> list[str]:
        """Every estate of the street, longest name first (so 芙蓉东苑 is tried before a shorter name inside it)."""
        return sorted((e.name for c in self.communities for e in c.estates), key=len, reverse=True)

    def estate_aliases(self) -> dict[str, str]:
        """Every alias of grids.yaml and the estate it names ("曲水亭" → "曲水亭小区")."""
        return {a: e.name for c in self.communities for e in c.estates for a in e.aliases if a != e.name}

    def community(self, community_id: str | None) -> Community | None:
        return next((c for c in self.communities if c.id == community_id), None)

    def grid(self, grid_id: str | None) -> tuple[Community, GridSpec] | None:
        """The grid with this id and its community, or None."""
        for c in self.communities:
            for g in c.grids:
                if g.id == grid_id:
                    return c, g
        return None

    def grid_for(self, estate: str, building: int) -> str | None:
        for c in self.communities:
            for g in c.grids:
                for cov in g.covers:
                    if cov.estate == estate and building in cov.building_numbers():
                        return g.id
        return None


# ---------- links.yaml ----------
_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")


def _check_host(value: str) -> str:
    """A host ("www.jinan.gov.cn") or a wildcard over a domain of at least two labels ("*.gov.cn")."""
    host = value.strip()
    if host != host.lower():
        raise ValueError(f"{value!r}: write hosts in lower case")
    if "://" in host or "/" in host or ":" in host:
        raise ValueError(f"{value!r}: a host only, without scheme, port or path")
    labels = host.removeprefix("*.").split(".")
    if not all(_LABEL.match(label) for label in labels) or "*" in host.removeprefix("*."):
        raise ValueError(f"{value!r}: not a host name")
    if host.startswith("*.") and len(labels) < 2:
        raise ValueError(f"{value!r}: a wildcard needs at least two labels (\"*.cn\" would allow anyone)")
    if len(labels) < 2:
        raise ValueError(f"{value!r}: a host needs a domain (\"jinan.gov.cn\")")
    return host


def _check_phone(value: str) -> str:
    digits = value.strip().replace("-", "")
    if not re.fullmatch(r"\d{3,12}", digits):
        raise ValueError(f"{value!r}: an official number is 3 to 12 digits (dashes allowed)")
    return digits


AllowedHost = Annotated[str, AfterValidator(_check_host)]
OfficialPhone = Annotated[str, AfterValidator(_check_phone)]


class Links(_Strict):
    """The hosts and phone numbers a knowledge document may give residents; ingestion quarantines the rest."""

    hosts: list[AllowedHost] = Field(min_length=1)
    phones: list[OfficialPhone] = Field(default_factory=list)

    @model_validator(mode="after")
    def _no_repeats(self) -> Links:
        for field in ("hosts", "phones"):
            values: list[str] = getattr(self, field)
            repeated = sorted({v for v in values if values.count(v) > 1})
            if repeated:
                raise ValueError(f"{field}: listed twice: {repeated}")
        return self

    def allows_host(self, host: str) -> bool:
        """Whether a link to `host` may be shown ("*.gov.cn" covers gov.cn and everything under it)."""
        host = host.lower().rstrip(".")
        for entry in self.hosts:
            if entry.startswith("*."):
                domain = entry[2:]
                if host == domain or host.endswith("." + domain):
                    return True
            elif host == entry:
                return True
        return False

    def allows_phone(self, number: str) -> bool:
        """Whether `number` (digits; an area code in front is ignored) is an official service number."""
        digits = re.sub(r"\D", "", number)
        return any(digits == p or (digits.startswith("0") and digits.endswith(p) and len(digits) - len(p) <= 4)
                   for p in self.phones)


class Lexicon(_Strict):
    """Everyday words residents use → the official terms the documents use (policies/lexicon.yaml, optional).

    The knowledge base adds the official terms to a question that has the everyday word (query expansion);
    `quanbot review lexicon` appends lines learnt from missed questions."""

    terms: dict[str, list[str]] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _non_empty(self) -> Lexicon:
        for term, means in self.terms.items():
            if not str(term).strip() or not means or any(not str(m).strip() for m in means):
                raise ValueError(f"terms.{term}: needs a word and at least one official term")
        return self

    def expand(self, text: str) -> list[str]:
        """The official terms for every everyday word in `text` that `text` does not already say, longest
        word first (so 老年卡 is not also read as 卡)."""
        folded = text.lower()
        out: list[str] = []
        for term in sorted(self.terms, key=len, reverse=True):
            if term.lower() in folded:
                out += [m for m in self.terms[term] if m.lower() not in folded and m not in out]
        return out


# ---------- elsewhere.yaml ----------
class ElsewhereTopic(_Strict):
    """One topic the community knowledge base does not cover, the words that name it, and who handles it."""

    name: str = Field(min_length=1, max_length=40)
    words: list[str] = Field(min_length=1)
    # and, when given, one of these too: 银行卡 names the topic with 丢/挂失/密码, not in 补贴打到银行卡上
    with_any: list[str] = Field(default_factory=list)
    where: str = Field(min_length=1, max_length=120)

    @model_validator(mode="after")
    def _words(self) -> ElsewhereTopic:
        if any(len(str(w).strip()) < 2 for w in self.words):
            raise ValueError("words: each needs at least 2 characters (one character matches everything)")
        return self


class Elsewhere(_Strict):
    """Topics handled by other offices (policies/elsewhere.yaml, optional): a question that names one is not
    answered from a document that never mentions the word it used (knowledge.answers says where to go instead)."""

    topics: list[ElsewhereTopic] = Field(default_factory=list)

    def named(self, text: str) -> list[tuple[ElsewhereTopic, str]]:
        """Each topic `text` names, with the (longest) word it used."""
        folded = text.lower()
        out: list[tuple[ElsewhereTopic, str]] = []
        for topic in self.topics:
            said = [w for w in topic.words if w.lower() in folded]
            if said and (not topic.with_any or any(w.lower() in folded for w in topic.with_any)):
                out.append((topic, max(said, key=len)))
        return out


# ---------- quick_replies.yaml ----------
QUICK_REPLY_MAX = 40  # characters of one phrase: it is a button's label
QUICK_REPLIES_PER_SET = 6


def _check_phrases(v: list[str]) -> list[str]:
    cleaned = [p.strip() for p in v]
    if any(not p or len(p) > QUICK_REPLY_MAX for p in cleaned):
        raise ValueError(f"a quick reply is 1 to {QUICK_REPLY_MAX} characters")
    if len(cleaned) > QUICK_REPLIES_PER_SET or len(set(cleaned)) != len(cleaned):
        raise ValueError(f"at most {QUICK_REPLIES_PER_SET} distinct quick replies per set")
    return cleaned


Phrases = Annotated[list[str], AfterValidator(_check_phrases)]


class QuickReplySet(_Strict):
    respond: Phrases = Field(default_factory=list)  # 反馈进展 (the note of 已联系)
    relay: Phrases = Field(default_factory=list)  # 回复居民 (words the resident reads)


class QuickReplies(_Strict):
    """常用语 offered as buttons to a worker writing a note or a reply, per category; `default` for the rest."""

    default: QuickReplySet = Field(default_factory=QuickReplySet)
    categories: dict[Category, QuickReplySet] = Field(default_factory=dict)

    def phrases(self, category: str, kind: Literal["respond", "relay"]) -> list[str]:
        """The phrases for a case of `category` (the category's own, else the default)."""
        try:
            own = self.categories.get(Category(category))
        except ValueError:
            own = None
        chosen: list[str] = getattr(own, kind) if own is not None else []
        return chosen or list(getattr(self.default, kind))


class Policies(_Strict):
    """All policy files, validated together."""

    taxonomy: Taxonomy
    sla: Sla
    routing: Routing
    grids: Grids
    links: Links
    lexicon: Lexicon = Field(default_factory=Lexicon)
    quick_replies: QuickReplies = Field(default_factory=QuickReplies)
    elsewhere: Elsewhere = Field(default_factory=Elsewhere)
