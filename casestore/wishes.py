"""The 微心愿 wall: a resident's wish case published, masked, to the volunteers and party members of its grid and
community, claimed by one of them, carried out, and confirmed by the resident (心愿达成).

Owns: the `Wish` row of each wish case and its life (open → claimed → done → fulfilled; withdrawn when its case
closed another way), who may see and claim a wish (`wall_recipients`), the one claim that wins (a conditional
UPDATE on `status = open`, so concurrent presses on any number of replicas leave exactly one claimer), the
public wording (masked: no name, room, building or number of the resident), and the wish sweep: 即接即办 and
one-off wishes nobody claimed tell the volunteer lead once, 结对帮扶 asks its claimer how it goes every
`checkin_days`. Every change writes its audit event (and, where the case moves, its CaseEvent through
`cases.apply_action`) and its pushes in the caller's transaction.
Must not: know any channel (buttons are `casestore.notify.Button`s) or phrase dialogue replies.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import or_, update
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from casestore.audit import record_audit
from casestore.cases import apply_action, get_case
from casestore.clock import Clock
from casestore.db import session_scope
from casestore.dispatch import record_notification
from casestore.errors import DomainError, NotFound
from casestore.models import Case, CaseStatus, Grid, Resident, Wish, WishStatus, Worker
from casestore.notify import Button, OutboundMessage
from casestore.states import OPEN
from policies.masking import mask_text
from policies.models import Policies, WishRules
from policies.taxonomy import Role

SHANGHAI = ZoneInfo("Asia/Shanghai")
WALL_ROLES = (Role.volunteer.value, Role.party_member.value)
KIND_ZH = {"urgent": "即接即办", "regular": "微心愿", "pairing": "结对帮扶"}
STATUS_ZH = {WishStatus.open: "待认领", WishStatus.claimed: "已认领", WishStatus.done: "待居民确认",
             WishStatus.fulfilled: "心愿达成", WishStatus.withdrawn: "已撤回"}
PUBLIC_CHARS = 120
NOTE_MAX = 300
ALREADY_CLAIMED = "这个心愿已被认领，谢谢您的热心！可以看看心愿墙上的其他心愿。"
NOT_ON_WALL = "这个心愿不在您所在网格或社区的心愿墙上，不能认领。"
NOT_CLAIMER = "只有认领这个心愿的人可以汇报进展。"
WISH_CLOSED = "这个心愿已经结束了，谢谢您。"
NOT_YOURS = "没有找到您的这个心愿。"

# a clause that could name or find the resident is left out whole: a masked number, a room (301室, 3-2-301), a
# building or unit, where they live, how to reach them, who they are; a "王奶奶" in a kept clause becomes 一位居民
_CLAUSE = re.compile(r"[，,。；;！!？?、\n]+|\s+")
_PRIVATE = re.compile(r"\*|\d+\s*(?:号楼|栋|幢|单元|楼|层|室|号|户)|\d+\s*-\s*\d+|\d{3,}|[住家]在|^住|电话|手机号|"
                      r"微信号|"
                      r"联系方式|身份证|我是|我叫|俺是|俺叫|本人|姓名|名字叫")
_SURNAME_TITLE = re.compile(r"[\u4e00-\u9fff](?:阿姨|大爷|大妈|大娘|奶奶|爷爷|女士|先生|老太太|老爷子)")


@dataclass(frozen=True)
class ClaimResult:
    wish: Wish
    won: bool
    message: str = ""  # why it was not won (Chinese, for the presser)


def kind_of(rules: WishRules, *, text: str, urgency: str) -> str:
    """urgent (即接即办) | pairing (结对帮扶) | regular, by the words of the wish and its urgency."""
    if urgency in ("urgent", "emergency") or any(t in text for t in rules.urgent_terms):
        return "urgent"
    if any(t in text for t in rules.long_term_terms):
        return "pairing"
    return "regular"


def public_text(text: str) -> str:
    """The wish as the wall shows it: phone and ID numbers masked, rooms, buildings and self-introductions cut."""
    kept = [c for c in _CLAUSE.split(mask_text(text)) if c and not _PRIVATE.search(c)]
    out = _SURNAME_TITLE.sub("一位居民", "，".join(kept))
    return (out[:PUBLIC_CHARS] + "…") if len(out) > PUBLIC_CHARS else (out or "一个小心愿（详情请认领后询问）")


def wall_recipients(*, session: Session, grid_id: str | None, community_id: str | None) -> list[Worker]:
    """The active volunteers and party members of the grid, and the community's own (of no grid)."""
    scope = []
    if grid_id is not None:
        scope.append(col(Worker.grid_id) == grid_id)
    if community_id is not None:
        scope.append((col(Worker.grid_id).is_(None)) & (col(Worker.community_id) == community_id))
    if not scope:
        return []
    stmt = select(Worker).where(col(Worker.role).in_(WALL_ROLES), col(Worker.active).is_(True),
                                col(Worker.on_leave).is_(False), or_(*scope))
    return list(session.exec(stmt.order_by(col(Worker.id))))


def on_wall(wish: Wish, worker: Worker) -> bool:
    """May this worker see and claim this wish?"""
    if worker.role not in WALL_ROLES or not worker.active:
        return False
    if worker.grid_id is not None:
        return worker.grid_id == wish.grid_id
    return worker.community_id is not None and worker.community_id == wish.community_id


def _local(ts: datetime | None) -> str:
    return ts.astimezone(SHANGHAI).strftime("%m月%d日 %H:%M") if ts else "—"


def wall_text(wish: Wish, *, place: str, category: str) -> str:
    """The wall's card: kind, place (estate or grid only), category, the masked wish and its deadline."""
    due = f"\n请于 {_local(wish.due_at)} 前完成。" if wish.kind != "pairing" and wish.due_at else ""
    pairing = "\n长期结对帮扶：认领后每周会请您简单说说帮扶情况。" if wish.kind == "pairing" else ""
    return (f"🌟 微心愿（{KIND_ZH[wish.kind]}）\n{place} · {category}\n心愿：{wish.text}{due}{pairing}\n"
            "居民的姓名、门牌和电话不公开；认领后通过本机器人联系。")


def _place(session: Session, case: Case, estate: str | None) -> str:
    """The estate (never the building), else the grid: enough for a volunteer to know it is nearby."""
    resident = session.get(Resident, case.resident_id) if case.resident_id is not None else None
    if estate is None and resident is not None and resident.grid_id == case.grid_id:
        estate = resident.estate
    grid = session.get(Grid, case.grid_id) if case.grid_id else None
    return estate or (grid.name if grid else "本社区")


def _wish_of_case(session: Session, case: Case, *, for_update: bool = False) -> Wish:
    stmt = select(Wish).where(col(Wish.case_id) == case.id)
    if for_update:
        stmt = stmt.with_for_update()
    wish = session.exec(stmt).first()
    if wish is None:
        raise NotFound(f"no wish for case {case.code}", "没有找到这个心愿。")
    return wish


def get_wish(*, session: Session, code: str, for_update: bool = False) -> tuple[Wish, Case]:
    """The wish of case `code` and the case; NotFound (Chinese) otherwise."""
    try:
        case = get_case(session=session, code=code.strip().upper())
    except NotFound:
        raise NotFound(f"case {code} not found", "没有找到这个心愿。") from None
    return _wish_of_case(session, case, for_update=for_update), case


def publish_wish(*, session: Session, policies: Policies, case: Case, now: datetime,
                 estate: str | None = None) -> Wish:
    """Put a just opened wish case on the wall and push it to every volunteer and party member who may claim it."""
    rules = policies.taxonomy.wishes
    kind = kind_of(rules, text=case.description, urgency=case.urgency)
    due = (now + timedelta(hours=rules.urgent_due_hours) if kind == "urgent"
           else now + timedelta(days=rules.regular_due_days) if kind == "regular" else None)
    wish = Wish(case_id=case.id, resident_id=case.resident_id, grid_id=case.grid_id,  # type: ignore[arg-type]
                community_id=case.community_id, kind=kind, category=case.category,
                text=public_text(case.description), created_at=now, due_at=due)
    session.add(wish)
    session.flush()
    recipients = wall_recipients(session=session, grid_id=case.grid_id, community_id=case.community_id)
    record_audit(session=session, actor="system", action="wish_publish", subject=f"wish:{wish.id}", now=now,
                 data={"case": case.code, "kind": kind, "recipients": [w.id for w in recipients]})
    message = OutboundMessage(text=wall_text(wish, place=_place(session, case, estate),
                                             category=policies.taxonomy.name_of(case.category)),
                              buttons=[[Button("认领心愿", "wclaim", case.code)]])
    for worker in recipients:
        record_notification(session=session, case_id=case.id, kind="wish", level=0, recipient=f"worker:{worker.id}",
                            message=message, now=now)
    return wish


def _tell_resident(session: Session, wish: Wish, case: Case, kind: str, level: int, text: str, now: datetime,
                   buttons: list[list[Button]] | None = None) -> None:
    if wish.resident_id is None:
        return
    record_notification(session=session, case_id=case.id, kind=kind, level=level,
                        recipient=f"resident:{wish.resident_id}",
                        message=OutboundMessage(text=text, buttons=buttons or []), now=now)


def _withdraw_if_closed(session: Session, wish: Wish, case: Case, now: datetime) -> bool:
    """A wish whose case was closed (by staff, a merge, a withdrawal) leaves the wall."""
    if case.status in {s.value for s in OPEN} or wish.status in (WishStatus.fulfilled, WishStatus.withdrawn):
        return False
    session.execute(update(Wish).where(col(Wish.id) == wish.id, col(Wish.status) == wish.status)
                    .values(status=WishStatus.withdrawn.value).execution_options(synchronize_session=False))
    record_audit(session=session, actor="system", action="wish_withdrawn", subject=f"wish:{wish.id}", now=now,
                 data={"case": case.code, "case_status": case.status})
    session.refresh(wish)
    return True


def claim_wish(*, session: Session, policies: Policies, code: str, worker: Worker, clock: Clock) -> ClaimResult:
    """认领: the first press wins (a conditional UPDATE on status `open`); later ones get ALREADY_CLAIMED.
    The winner's claim is the case's first response (a CaseEvent) and the resident is told, same transaction."""
    now = clock.now()
    wish, case = get_wish(session=session, code=code)
    if not on_wall(wish, worker):
        return ClaimResult(wish, False, NOT_ON_WALL)
    if _withdraw_if_closed(session, wish, case, now):
        return ClaimResult(wish, False, WISH_CLOSED)
    checkin = now + timedelta(days=policies.taxonomy.wishes.checkin_days) if wish.kind == "pairing" else None
    result = session.execute(
        update(Wish).where(col(Wish.id) == wish.id, col(Wish.status) == WishStatus.open.value,
                           col(Wish.claimed_by).is_(None))
        .values(status=WishStatus.claimed.value, claimed_by=worker.id, claimed_at=now, next_checkin_at=checkin)
        .execution_options(synchronize_session=False))
    session.refresh(wish)
    if result.rowcount != 1:  # type: ignore[attr-defined]
        if wish.claimed_by == worker.id:
            return ClaimResult(wish, False, "您已经认领了这个心愿。")
        return ClaimResult(wish, False, ALREADY_CLAIMED if wish.status != WishStatus.withdrawn else WISH_CLOSED)
    actor = f"worker:{worker.id}"
    record_audit(session=session, actor=actor, action="wish_claim", subject=f"wish:{wish.id}", now=now,
                 data={"case": case.code, "minutes_to_claim": round((now - wish.created_at).total_seconds() / 60, 1)})
    case = get_case(session=session, case_id=case.id, for_update=True)
    if case.status in (CaseStatus.assigned, CaseStatus.accepted, CaseStatus.in_progress):
        changes: dict[str, object] = {}
        if case.first_response_at is None:
            changes["first_response_at"] = now
        if wish.kind == "pairing":  # a pairing runs on its check-ins, not on the case's resolution ladder
            changes.update(resolve_due_at=None, next_reminder_at=None)
        elif wish.due_at is not None:
            changes.update(resolve_due_at=wish.due_at, next_reminder_at=wish.due_at)
        apply_action(session=session, case=case, action="respond", actor=actor, now=now,
                     note=f"{worker.name}认领了这个微心愿", changes=changes, data={"wish": wish.id})
    _tell_resident(session, wish, case, "wish_claimed", 0,
                   f"🌟 您的微心愿【{case.code}】已由{worker.name}认领，对方会通过本机器人和您联系。"
                   "心愿达成后，请点「心愿达成」告诉我。", now)
    return ClaimResult(wish, True)


def claimer_buttons(code: str) -> list[list[Button]]:
    """汇报进展 / 已完成 under a push to the claimer (the dialogue shows the same pair)."""
    return [[Button("汇报进展", "wprog", code), Button("已完成", "wdone", code)]]


def _claimed_by(session: Session, code: str, worker: Worker) -> tuple[Wish, Case]:
    wish, case = get_wish(session=session, code=code, for_update=True)
    if wish.claimed_by != worker.id:
        raise DomainError(f"worker {worker.id} did not claim wish {wish.id}", NOT_CLAIMER)
    if wish.status not in (WishStatus.claimed, WishStatus.done):
        raise DomainError(f"wish {wish.id} is {wish.status}", WISH_CLOSED)
    return wish, case


def report_progress(*, session: Session, code: str, worker: Worker, note: str, clock: Clock) -> Wish:
    """汇报进展: a masked note on the case (CaseEvent `note`) and to the resident."""
    now = clock.now()
    wish, case = _claimed_by(session, code, worker)
    note = mask_text(note).strip()[:NOTE_MAX] or "正在帮您办"
    wish.progress_notes += 1
    session.add(wish)
    actor = f"worker:{worker.id}"
    record_audit(session=session, actor=actor, action="wish_progress", subject=f"wish:{wish.id}", now=now,
                 data={"case": case.code, "n": wish.progress_notes})
    if case.status in {s.value for s in OPEN}:
        apply_action(session=session, case=case, action="note", actor=actor, now=now, note=note,
                     data={"wish": wish.id, "progress": wish.progress_notes})
    _tell_resident(session, wish, case, "wish_progress", wish.progress_notes,
                   f"🌟 您的微心愿【{case.code}】有新进展：{note}", now)
    session.flush()
    return wish


def report_done(*, session: Session, code: str, worker: Worker, clock: Clock) -> Wish:
    """已完成: the claimer says it came true; the resident is asked to confirm with 心愿达成 / 还没有."""
    now = clock.now()
    wish, case = _claimed_by(session, code, worker)
    if wish.status == WishStatus.done:
        return wish
    wish.status, wish.done_at = WishStatus.done.value, now
    session.add(wish)
    n = wish.progress_notes + wish.checkins + 1
    record_audit(session=session, actor=f"worker:{worker.id}", action="wish_done", subject=f"wish:{wish.id}",
                 now=now, data={"case": case.code})
    _tell_resident(session, wish, case, "wish_done", n,
                   f"🌟 {worker.name}说您的微心愿【{case.code}】已经帮您完成了：{wish.text}\n心愿达成了吗？", now,
                   [[Button("心愿达成", "wish_ok", case.code), Button("还没有", "wish_no", case.code)]])
    session.flush()
    return wish


def _resident_wish(session: Session, code: str, resident_id: int) -> tuple[Wish, Case]:
    try:
        wish, case = get_wish(session=session, code=code, for_update=True)
    except NotFound:
        raise NotFound(f"wish {code} not found", NOT_YOURS) from None
    if wish.resident_id != resident_id:
        raise NotFound(f"wish {wish.id} is not resident {resident_id}'s", NOT_YOURS)
    return wish, case


def confirm_fulfilled(*, session: Session, code: str, resident_id: int, clock: Clock) -> Wish:
    """心愿达成: the resident confirms; the wish is fulfilled and its case resolved and closed (CaseEvents)."""
    now = clock.now()
    wish, case = _resident_wish(session, code, resident_id)
    if wish.status not in (WishStatus.claimed, WishStatus.done):
        why = {WishStatus.fulfilled: "这个心愿已经确认过了，谢谢您。",
               WishStatus.open: "这个心愿还没有人认领，认领后才能确认达成。"}.get(WishStatus(wish.status), WISH_CLOSED)
        raise DomainError(f"wish {wish.id} is {wish.status}", why)
    wish.status, wish.fulfilled_at, wish.next_checkin_at = WishStatus.fulfilled.value, now, None
    session.add(wish)
    actor = f"resident:{resident_id}"
    record_audit(session=session, actor=actor, action="wish_fulfilled", subject=f"wish:{wish.id}", now=now,
                 data={"case": case.code, "claimed_by": wish.claimed_by})
    case = get_case(session=session, case_id=case.id, for_update=True)
    if case.status == CaseStatus.assigned:
        apply_action(session=session, case=case, action="accept", actor=actor, now=now, note="心愿达成时自动接单")
    if case.status in (CaseStatus.accepted, CaseStatus.in_progress):
        apply_action(session=session, case=case, action="resolve", actor=actor, now=now, note="居民确认心愿达成",
                     changes={"resolved_at": now, "first_response_at": case.first_response_at or now},
                     data={"wish": wish.id})
    if case.status == CaseStatus.resolved:
        apply_action(session=session, case=case, action="confirm", actor=actor, now=now,
                     changes={"closed_at": now, "close_reason": "wish_fulfilled", "next_reminder_at": None},
                     data={"wish": wish.id})
    if wish.claimed_by is not None:
        record_notification(session=session, case_id=case.id, kind="wish_fulfilled", level=0,
                            recipient=f"worker:{wish.claimed_by}", now=now,
                            message=OutboundMessage(text=f"🎉 居民确认微心愿【{case.code}】已经达成，谢谢您的帮助！"))
    session.flush()
    return wish


def not_yet(*, session: Session, code: str, resident_id: int, clock: Clock) -> Wish:
    """还没有: back to the claimer, who is told."""
    now = clock.now()
    wish, case = _resident_wish(session, code, resident_id)
    if wish.status != WishStatus.done:
        raise DomainError(f"wish {wish.id} is {wish.status}", WISH_CLOSED if wish.status != WishStatus.claimed
                          else "好的，志愿者还在帮您办。")
    wish.status = WishStatus.claimed.value
    session.add(wish)
    record_audit(session=session, actor=f"resident:{resident_id}", action="wish_not_yet", subject=f"wish:{wish.id}",
                 now=now, data={"case": case.code})
    if wish.claimed_by is not None:
        record_notification(session=session, case_id=case.id, kind="wish_not_yet",
                            level=wish.progress_notes + wish.checkins + 1, recipient=f"worker:{wish.claimed_by}",
                            now=now, message=OutboundMessage(
                                text=f"居民说微心愿【{case.code}】还没有达成，请和居民再联系一下。",
                                buttons=claimer_buttons(case.code)))
    session.flush()
    return wish


def list_wall(*, session: Session, worker: Worker, limit: int = 10) -> list[tuple[Wish, Case]]:
    """The open wishes this worker may claim, oldest first, and the ones they hold."""
    stmt = (select(Wish, Case).join(Case, col(Case.id) == col(Wish.case_id))
            .where(or_(col(Wish.status) == WishStatus.open.value,
                       (col(Wish.claimed_by) == worker.id) & col(Wish.status).in_(
                           [WishStatus.claimed.value, WishStatus.done.value])))
            .order_by(col(Wish.created_at)))
    return [(w, c) for w, c in session.exec(stmt) if on_wall(w, worker) or w.claimed_by == worker.id][:limit]


# ---------------------------------------------------------------- the sweep
@dataclass
class WishSweep:
    alerts: int = 0  # unclaimed wishes told to the volunteer lead
    checkins: int = 0  # 结对帮扶 check-ins sent


def _lead_of(session: Session, wish: Wish) -> Worker | None:
    stmt = select(Worker).where(col(Worker.role) == Role.volunteer.value, col(Worker.active).is_(True))
    if wish.grid_id is not None:
        stmt = stmt.where(col(Worker.grid_id) == wish.grid_id, col(Worker.is_lead).is_(True))
        lead = session.exec(stmt.order_by(col(Worker.id))).first()
        if lead is not None:
            return lead
    sup = select(Worker).where(col(Worker.role) == Role.supervisor.value, col(Worker.community_id) == wish.community_id)
    return session.exec(sup.order_by(col(Worker.id))).first()


def _locked(session: Session, stmt: object) -> list[Wish]:
    if session.get_bind().dialect.name == "postgresql":
        stmt = stmt.with_for_update(skip_locked=True)  # type: ignore[attr-defined]
    return list(session.exec(stmt))  # type: ignore[call-overload]


def sweep_wishes(*, session: Session, policies: Policies, now: datetime, limit: int = 200) -> WishSweep:
    """Tell the lead about wishes nobody claimed (once each), and send each 结对帮扶 check-in that is due."""
    rules, out = policies.taxonomy.wishes, WishSweep()
    stale = now - timedelta(hours=rules.unclaimed_alert_hours)
    unclaimed = select(Wish).where(col(Wish.status) == WishStatus.open.value, col(Wish.alerted_at).is_(None),
                                   or_(col(Wish.due_at) <= now, col(Wish.created_at) <= stale)).limit(limit)
    for wish in _locked(session, unclaimed):
        case = session.get(Case, wish.case_id)
        assert case is not None
        if _withdraw_if_closed(session, wish, case, now):
            continue
        wish.alerted_at = now
        session.add(wish)
        lead = _lead_of(session, wish)
        record_audit(session=session, actor="system", action="wish_unclaimed_alert", subject=f"wish:{wish.id}",
                     now=now, data={"case": case.code, "to": lead.id if lead else None})
        if lead is not None:
            record_notification(session=session, case_id=case.id, kind="wish_unclaimed", level=0,
                                recipient=f"worker:{lead.id}", now=now, message=OutboundMessage(
                                    text=f"⏰ 微心愿【{case.code}】（{KIND_ZH[wish.kind]}）还没有人认领："
                                         f"{wish.text}\n请动员志愿者和党员认领。"))
        out.alerts += 1
    due = select(Wish).where(col(Wish.status) == WishStatus.claimed.value, col(Wish.next_checkin_at) <= now) \
        .limit(limit)
    for wish in _locked(session, due):
        case = session.get(Case, wish.case_id)
        assert case is not None and wish.next_checkin_at is not None
        wish.checkins += 1
        next_at = wish.next_checkin_at + timedelta(days=rules.checkin_days)
        wish.next_checkin_at = next_at if next_at > now else now + timedelta(days=rules.checkin_days)
        session.add(wish)
        record_audit(session=session, actor="system", action="wish_checkin", subject=f"wish:{wish.id}", now=now,
                     data={"case": case.code, "n": wish.checkins})
        if wish.claimed_by is not None:
            record_notification(session=session, case_id=case.id, kind="wish_checkin", level=wish.checkins,
                                recipient=f"worker:{wish.claimed_by}", now=now, message=OutboundMessage(
                                    text=f"🤝 结对帮扶回访（第{wish.checkins}次）：微心愿【{case.code}】{wish.text}\n"
                                         "最近帮扶得怎么样？请点「汇报进展」说一句。",
                                    buttons=claimer_buttons(case.code)))
        out.checkins += 1
    session.flush()
    return out


def sweep_wishes_all(*, engine: Engine, policies: Policies, clock: Clock) -> WishSweep:
    """One scheduler pass in its own transaction (rows locked SKIP LOCKED on PostgreSQL: any number of hosts)."""
    with session_scope(engine) as session:
        return sweep_wishes(session=session, policies=policies, now=clock.now())
