"""Notices from staff to residents (未诉先办): 停水、停电、电梯维保、疫苗接种 to some buildings, an estate, a grid or
a community. One `Notice` row per notice (unique on its idempotency key) and one `Notification` per consenting
resident of the target who has not opted out of the topic (unique on (kind "notice", notice id, resident)), with
an audit event, all in the caller's transaction.

Sent once per resident: a repeated click or command with the same key finds the notice and queues only what is
missing (nothing, after a commit), so a run cut off before its commit is simply run again. Delivery is the
dispatcher's (its per-channel rate limiter paces it); a resident with no reachable account still gets a row,
which the dispatcher marks failed, so every delivery is on record.
Must not: send anything, check a console account's scope (the caller does: `Target.grid_ids`), or keep raw
personal data in a notice (the text is masked here).
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Table, func, or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, col

from casestore.accounts import resident_addresses
from casestore.audit import record_audit
from casestore.buildings import hotspot_cases
from casestore.dispatch import notification_row
from casestore.errors import DomainError, NotFound
from casestore.models import OPEN_STATUSES, Hotspot, Notice, Notification, Resident
from casestore.notify import Button, OutboundMessage
from policies.masking import mask_text
from policies.models import Grids

TOPICS: dict[str, str] = {"water": "停水", "power": "停电", "elevator": "电梯维保", "vaccine": "疫苗接种",
                          "other": "其他"}
ALL_TOPICS = "all"  # in Resident.notice_opt_out: no notice of any topic
KIND = "notice"  # Notification.kind of a notice's deliveries; level is the notice's id
MAX_TEXT = 500
OPT_OUT_ACTION = "notice_optout"  # the button under each notice (bot.dialogue.notice_optout handles it)
OPT_OUT_LABEL = "不再接收此类通知"
_CHUNK = 1000


class NoticeError(DomainError):
    user_message = "通知没有发出，请检查填写的内容。"


def topic_code(value: str) -> str:
    """A topic's code from its code or its Chinese name (停水 → water); NoticeError if unknown."""
    value = value.strip()
    if value in TOPICS:
        return value
    for code, name in TOPICS.items():
        if name == value:
            return code
    raise NoticeError(f"unknown topic {value!r}", f"通知类型不对：{value}。可选：{'、'.join(TOPICS.values())}。")


# ---------------------------------------------------------------- targets
@dataclass(frozen=True)
class Target:
    """Whom a notice is for. `grid_ids`: every grid the target touches (a console account must hold them all)."""

    kind: str  # "buildings" | "estate" | "grid" | "community"
    ident: str  # the estate name, the grid or community id; "" for buildings
    buildings: tuple[tuple[str, int], ...] = ()
    grid_ids: frozenset[str] = field(default_factory=frozenset)
    community_ids: frozenset[str] = field(default_factory=frozenset)
    label: str = ""  # Chinese, for pages and the audit

    @property
    def key(self) -> str:
        """The stored form (`Notice.target`), which `target_from_key` reads back."""
        if self.kind == "buildings":
            return "buildings:" + ",".join(f"{e}:{n}" for e, n in self.buildings)
        return f"{self.kind}:{self.ident}"


def parse_building(text: str) -> tuple[str, int]:
    """"芙蓉小区:3" (or 芙蓉小区：3) → ("芙蓉小区", 3); NoticeError otherwise."""
    estate, sep, number = text.replace("：", ":").strip().rpartition(":")
    if not sep or not estate.strip() or not number.strip().isdigit():
        raise NoticeError(f"bad building {text!r}", f"楼栋写法不对：{text}。请写成 小区名:楼号，例如 芙蓉小区:3。")
    return estate.strip(), int(number)


def building_target(grids: Grids, buildings: Iterable[tuple[str, int]]) -> Target:
    """Some buildings (each must exist in grids.yaml)."""
    chosen = tuple(sorted(set(buildings)))
    if not chosen:
        raise NoticeError("no building chosen", "请至少选择一栋楼。")
    grid_ids: set[str] = set()
    communities: set[str] = set()
    for estate, number in chosen:
        community = next((c for c in grids.communities for e in c.estates if e.name == estate), None)
        spec = next((e for e in community.estates if e.name == estate), None) if community else None
        if community is None or spec is None or not 1 <= number <= spec.buildings:
            raise NotFound(f"no building {estate}:{number}", f"没有这栋楼：{estate}{number}号楼。")
        communities.add(community.id)
        grid = grids.grid_for(estate, number)
        if grid:
            grid_ids.add(grid)
    names: dict[str, list[str]] = {}
    for estate, number in chosen:
        names.setdefault(estate, []).append(f"{number}号楼")
    label = "；".join(f"{e}{'、'.join(ns)}" for e, ns in names.items())
    return Target("buildings", "", chosen, frozenset(grid_ids), frozenset(communities), label)


def estate_target(grids: Grids, name: str) -> Target:
    for community in grids.communities:
        for estate in community.estates:
            if estate.name == name.strip():
                covering = {g.id for g in community.grids for cov in g.covers if cov.estate == estate.name}
                return Target("estate", estate.name, (), frozenset(covering), frozenset({community.id}),
                              f"{community.name}·{estate.name}")
    raise NotFound(f"no estate {name!r}", f"没有这个小区：{name}。")


def grid_target(grids: Grids, grid_id: str) -> Target:
    for community in grids.communities:
        for grid in community.grids:
            if grid.id == grid_id.strip().upper():
                return Target("grid", grid.id, (), frozenset({grid.id}), frozenset({community.id}), grid.name)
    raise NotFound(f"no grid {grid_id!r}", f"没有这个网格：{grid_id}。")


def community_target(grids: Grids, community_id: str) -> Target:
    for community in grids.communities:
        if community.id == community_id.strip():
            return Target("community", community.id, (), frozenset(g.id for g in community.grids),
                          frozenset({community.id}), community.name)
    raise NotFound(f"no community {community_id!r}", f"没有这个社区：{community_id}。")


def target_from_key(grids: Grids, key: str) -> Target:
    kind, _, ident = key.partition(":")
    if kind == "buildings":
        return building_target(grids, [parse_building(b) for b in ident.split(",") if b])
    makers = {"estate": estate_target, "grid": grid_target, "community": community_target}
    if kind not in makers:
        raise NoticeError(f"bad target {key!r}", "通知对象不对。")
    return makers[kind](grids, ident)


# ---------------------------------------------------------------- recipients
def _residents(session: Session, target: Target) -> list[tuple[int, list[str]]]:
    """(id, opt-out topics) of every consenting resident of `target`."""
    stmt = select(col(Resident.id), col(Resident.notice_opt_out), col(Resident.estate), col(Resident.building)) \
        .where(col(Resident.consent_at).is_not(None))
    pairs: set[tuple[str, int]] | None = None
    if target.kind == "buildings":
        pairs = set(target.buildings)
        stmt = stmt.where(col(Resident.estate).in_(sorted({e for e, _ in pairs})),
                          col(Resident.building).in_(sorted({n for _, n in pairs})))
    elif target.kind == "estate":
        stmt = stmt.where(col(Resident.estate) == target.ident)
    elif target.kind == "grid":
        stmt = stmt.where(col(Resident.grid_id) == target.ident)
    else:
        stmt = stmt.where(or_(col(Resident.community_id) == target.ident,
                              col(Resident.grid_id).in_(sorted(target.grid_ids))))
    out: list[tuple[int, list[str]]] = []
    for row in session.execute(stmt.order_by(col(Resident.id))):
        if pairs is not None and (row.estate, row.building) not in pairs:
            continue
        out.append((row.id, list(row.notice_opt_out or [])))
    return out


def opted_out(topics: Collection[str], topic: str) -> bool:
    return topic in topics or ALL_TOPICS in topics


def notice_message(notice: Notice) -> OutboundMessage:
    """What a resident receives: the topic, the (masked) text and the button to stop this topic."""
    head = "【通知】" if notice.topic == "other" else f"【{TOPICS.get(notice.topic, '')}通知】"
    return OutboundMessage(text=f"{head}{notice.text}",
                           buttons=[[Button(OPT_OUT_LABEL, OPT_OUT_ACTION, None, notice.topic)]])


# ---------------------------------------------------------------- sending
def content_key(*, prefix: str, target: Target, topic: str, text: str, day: str) -> str:
    """The idempotency key of a notice by what it says: the same target, topic and text on the same local `day`
    is the same notice (a repeated click, a form submitted again after 返回, a command run twice)."""
    body = mask_text(" ".join(text.split()))
    digest = hashlib.sha256(f"{target.key}|{topic_code(topic)}|{body}|{day}".encode()).hexdigest()
    return f"{prefix}:{digest[:40]}"


@dataclass(frozen=True)
class NoticeResult:
    notice: Notice
    created: bool  # False: this key was sent before (a repeated click); only missing deliveries were queued
    queued: int  # Notification rows of this notice
    added: int  # of them, queued by this call
    opted_out: int


def _insert(session: Session, model: Any) -> Any:
    table: Table = model.__table__
    return (postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert)(table)


def _count(session: Session, notice_id: int) -> int:
    return int(session.execute(select(func.count()).select_from(Notification).where(
        col(Notification.kind) == KIND, col(Notification.level) == notice_id,
        col(Notification.case_id).is_(None))).scalar_one())


def send_notice(*, session: Session, key: str, topic: str, text: str, target: Target, actor: str, now: datetime,
                hotspot_id: int | None = None, exclude_residents: Collection[int] = ()) -> NoticeResult:
    """Queue the notice `key` for every consenting, not-opted-out resident of `target` (less `exclude_residents`,
    e.g. a hotspot's reporters, who follow their own cases); a known key queues only the missing deliveries."""
    key = key.strip()
    if not key or len(key) > 64:
        raise NoticeError(f"bad key {key!r}", "页面已过期，请刷新后再发。")
    code = topic_code(topic)
    body = mask_text(" ".join(text.split()))  # personal data never goes out to a building
    if not body:
        raise NoticeError("empty text", "请填写通知内容。")
    if len(body) > MAX_TEXT:
        raise NoticeError("text too long", f"通知内容最多 {MAX_TEXT} 字，现在是 {len(body)} 字。")
    table: Table = Notice.__table__  # type: ignore[attr-defined]  # SQLModel does not declare __table__
    inserted = session.execute(
        _insert(session, Notice).values(key=key, topic=code, text=body, target=target.key[:200],
                                        hotspot_id=hotspot_id, recipients=0, opted_out=0, created_by=actor[:64],
                                        created_at=now)
        .on_conflict_do_nothing(index_elements=["key"]).returning(table.c.id)).first()
    notice: Notice = session.execute(select(Notice).where(col(Notice.key) == key)).scalars().one()
    created = inserted is not None
    assert notice.id is not None
    message = notice_message(notice)
    residents = _residents(session, target)
    skipped = sum(1 for _, topics in residents if opted_out(topics, notice.topic))
    ids = [rid for rid, topics in residents if not opted_out(topics, notice.topic) and rid not in exclude_residents]
    addresses = resident_addresses(session=session, resident_ids=ids)
    before = 0 if created else _count(session, notice.id)
    rows = [notification_row(case_id=None, kind=KIND, level=notice.id, recipient=f"resident:{rid}",
                             address=addresses.get(rid), message=message, now=now) for rid in ids]
    stmt = _insert(session, Notification).on_conflict_do_nothing()  # any unique key: a twin is never queued
    for start in range(0, len(rows), _CHUNK):
        session.connection().execute(stmt, rows[start:start + _CHUNK])
    queued = _count(session, notice.id)
    added = queued - before
    notice.recipients, notice.opted_out = queued, skipped
    session.add(notice)
    if created or added:
        record_audit(session=session, actor=actor, action="notice" if created else "notice_resume",
                     subject=f"notice:{notice.id}", now=now,
                     data={"topic": notice.topic, "target": target.key[:200], "queued": queued, "added": added,
                           "opted_out": skipped, "unreachable": len(ids) - len(addresses), "hotspot": hotspot_id})
    session.flush()
    return NoticeResult(notice, created, queued, added, skipped)


# ---------------------------------------------------------------- 未诉先办: a hotspot's buildings hear of it
HOTSPOT_HORIZON = timedelta(days=30)  # hotspots older than this (by their last report) are not looked at again
HOTSPOT_ACTOR = "system:hotspot"
# a hotspot's topic (what a resident may opt out of) and how its notice names the problem; 电梯 before 电
_TOPIC_WORDS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("elevator", ("电梯",)), ("vaccine", ("疫苗",)), ("water", ("停水", "没水", "没有水", "水压", "自来水", "供水")),
    ("power", ("停电", "没电", "断电", "跳闸", "供电")))
_PROBLEM = {"water": "停水", "power": "停电", "elevator": "电梯故障", "vaccine": "疫苗接种的问题"}


def hotspot_topic(texts: Iterable[str]) -> str:
    """The notice topic of an incident from its reports' words (they choose the topic, they are never shown)."""
    joined = " ".join(texts)
    return next((code for code, words in _TOPIC_WORDS if any(w in joined for w in words)), "other")


def _hotspot_key(hotspot_id: int, phase: str, building: tuple[str, int]) -> str:
    digest = hashlib.sha256(f"{building[0]}:{building[1]}".encode()).hexdigest()[:16]
    return f"hs:{hotspot_id}:{phase}:{digest}"


def _when(ts: datetime | None, tz: ZoneInfo) -> str:
    if ts is None:
        return "尽快"
    at = ts.astimezone(tz)
    return f"{at.month}月{at.day}日 {at:%H:%M}前"


@dataclass
class HotspotNoticeReport:
    opened: int = 0  # notices "已有人反映，正在处理" created (one per building)
    resolved: int = 0  # notices "已处理完毕" created
    queued: int = 0  # deliveries queued by this run


def hotspot_notices(*, session: Session, grids: Grids, category_name: Callable[[str], str], tz: ZoneInfo,
                    now: datetime) -> HotspotNoticeReport:
    """未诉先办: for each recent hotspot, the residents of each building its reports came from who did not report
    get ONE notice while it is open ("3号楼停水已有人反映，正在处理，预计…前处理完毕", the promised time being the
    first open case's resolve_due_at) and ONE more when none of its cases is open. Idempotent (a notice per
    (hotspot, phase, building) key, a delivery per resident): the scheduler runs it every tick."""
    report = HotspotNoticeReport()
    since = now - HOTSPOT_HORIZON
    spots: list[Hotspot] = list(session.execute(select(Hotspot).where(or_(col(Hotspot.last_report_at) >= since,
                                                            col(Hotspot.opened_at) >= since))
                                 .order_by(col(Hotspot.id))).scalars())
    if not spots:
        return report
    done = set(session.execute(select(col(Notice.key)).where(
        col(Notice.hotspot_id).in_([h.id for h in spots]))).scalars())
    for item in hotspot_cases(session=session, hotspots=spots):
        hotspot = item.hotspot
        assert hotspot.id is not None
        open_cases = [c for c in item.cases if c.status in OPEN_STATUSES]
        topic = hotspot_topic(f"{c.title} {c.description}" for c in item.cases)
        problem = _PROBLEM.get(topic) or f"「{category_name(hotspot.category)}」方面的问题"
        for building in item.buildings:
            estate, number = building
            opened_key = _hotspot_key(hotspot.id, "open", building)
            if open_cases:
                if opened_key in done:
                    continue
                key = opened_key
                due = _when(min(open_cases, key=lambda c: (c.created_at, c.id or 0)).resolve_due_at, tz)
                text = (f"{estate}{number}号楼{problem}已有人反映，社区正在处理，预计{due}处理完毕。"
                        "您不用重复反映；如果您家还有别的情况，直接发消息告诉我。")
            else:
                key = _hotspot_key(hotspot.id, "done", building)
                if opened_key not in done or key in done:
                    continue
                text = f"{estate}{number}号楼{problem}已处理完毕。如果您家仍有问题，直接发消息告诉我。"
            try:
                target = building_target(grids, [building])
            except NotFound:  # a building grids.yaml no longer lists
                continue
            result = send_notice(session=session, key=key, topic=topic, text=text, target=target,
                                 actor=HOTSPOT_ACTOR, now=now, hotspot_id=hotspot.id,
                                 exclude_residents=item.reporters)
            done.add(key)
            if result.created:
                report.resolved += key != opened_key
                report.opened += key == opened_key
            report.queued += result.added
    return report


def broadcast_to_grid(*, session: Session, grid_id: str, message: OutboundMessage, actor: str, now: datetime) -> int:
    """Queue `message` once for every consenting resident of `grid_id` (the admin's /broadcast); returns how many.
    Residents who opted out of every notice (退订通知 → 全部) are left out."""
    residents = _residents(session, Target("grid", grid_id))
    ids = [rid for rid, topics in residents if ALL_TOPICS not in topics]
    addresses = resident_addresses(session=session, resident_ids=ids)
    level = int(now.timestamp())  # one broadcast: (kind, level, recipient) unique
    rows = [notification_row(case_id=None, kind="broadcast", level=level, recipient=f"resident:{rid}",
                             address=addresses.get(rid), message=message, now=now) for rid in ids]
    if rows:
        session.connection().execute(_insert(session, Notification).on_conflict_do_nothing(), rows)
    record_audit(session=session, actor=actor, action="broadcast", subject=f"grid:{grid_id}", now=now,
                 data={"recipients": len(rows), "chars": len(message.text)})
    return len(rows)


# ---------------------------------------------------------------- reading back
def get_notice(*, session: Session, notice_id: int) -> Notice:
    notice = session.get(Notice, notice_id)
    if notice is None:
        raise NotFound(f"no notice {notice_id}", "没有找到这条通知。")
    return notice


def list_notices(*, session: Session, limit: int = 50) -> list[Notice]:
    """The latest notices, newest first."""
    stmt = select(Notice).order_by(col(Notice.created_at).desc(), col(Notice.id).desc()).limit(limit)
    return list(session.execute(stmt).scalars())


def delivery_states(*, session: Session, notice_ids: Collection[int]) -> dict[int, dict[str, int]]:
    """{notice id: {state: count}} of the notices' deliveries (pending / sending / sent / failed)."""
    out: dict[int, Counter[str]] = {i: Counter() for i in notice_ids}
    if not notice_ids:
        return {}
    stmt = (select(col(Notification.level), col(Notification.state), func.count())
            .where(col(Notification.kind) == KIND, col(Notification.case_id).is_(None),
                   col(Notification.level).in_(list(notice_ids)))
            .group_by(col(Notification.level), col(Notification.state)))
    rows: list[Any] = list(session.execute(stmt))
    for level, state, n in rows:
        out.setdefault(int(level), Counter())[str(state)] += int(n)
    return {i: dict(c) for i, c in out.items()}


def set_opt_out(*, session: Session, resident: Resident, topic: str, opt_out: bool, now: datetime) -> bool:
    """Stop (or resume) notices of `topic` ("all": every topic) for `resident`, audited; False if nothing changed."""
    code = topic if topic == ALL_TOPICS else topic_code(topic)
    current = list(resident.notice_opt_out or [])
    if opt_out:
        if code in current or ALL_TOPICS in current:
            return False
        updated = [*current, code]
    else:
        if code != ALL_TOPICS and ALL_TOPICS in current:  # "all but this one" after 退订全部 then 恢复停水通知
            updated = [t for t in TOPICS if t != code]
        else:
            updated = [] if code == ALL_TOPICS else [t for t in current if t != code]
        if updated == current:
            return False
    resident.notice_opt_out = updated
    session.add(resident)
    record_audit(session=session, actor=f"resident:{resident.id}", action="notice_opt_out" if opt_out
                 else "notice_opt_in", subject=f"resident:{resident.id}", now=now, data={"topic": code})
    return True
