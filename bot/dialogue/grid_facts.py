"""Questions quanbot answers from its own records, not from documents: "俺们网格员是谁", "网格员电话多少",
"社区在哪", "居委会几点上班", "网格长是谁", "晚上有事找谁".

Owns: `detect` (a table of patterns → the fact asked for, in the words residents use: 网格员/网格长/片长/社区/
居委会/咋联系/电话/手机号/几点/上班/在哪/找谁) and `reply`, which says the fact for the resident's own bound grid:
its full-time worker (position, display name, work phone; the deputy while the full-timer is away, as the case
store has it), the community's address, office hours and phone, the supervisor, the duty desk and its hours, all
from grids.yaml. A resident without a bound address gets the street's communities and an offer to bind it (the
question is kept and answered once the address is known).
Must not: guess a person or number that grids.yaml does not hold, or phrase replies inline (texts.py does).
"""

from __future__ import annotations

import re
from enum import StrEnum

from bot.dialogue import texts
from bot.dialogue.address import ask_community
from bot.dialogue.places import place_text
from bot.dialogue.turn import Turn
from bot.understanding.types import Understanding
from casestore.models import Worker
from casestore.notices import role_name
from casestore.org import list_workers
from policies.models import Community, GridSpec, StaffEntry
from policies.taxonomy import Role


class Fact(StrEnum):
    grid_worker = "grid_worker"
    grid_worker_phone = "grid_worker_phone"
    community_address = "community_address"
    office_hours = "office_hours"
    supervisor = "supervisor"
    duty_desk = "duty_desk"


_WORKER = r"(?:网格员|网格圆|网格管理员|网格上的人|网格的人|片长|片儿长)"
# the office, not the community's clinic, canteen or shop ("社区医院在哪" is a question for the documents)
_COMMUNITY = r"(?:社区(?!医院|卫生|诊所|门诊|食堂|超市|养老|幼儿园|活动室|广场)|居委会|居委|党群服务中心)"
_OFF_HOURS = r"(?:晚上|夜里|夜间|半夜|下班以?后|周末|礼拜[六天日]|星期[六天日]|节假日|过年|放假|假期)"
_PHONE = r"(?<![我俺])(?:电话|手机|号码|联系方式|咋联系|怎么联系|如何联系|微信)"  # not the resident's own ("我电话…")
_ASKED_PHONE = r"(?:(?:电话|号码)(?:是)?(?:多少|几号|啥|是什么)|联系方式|咋联系|怎么联系|电话号码)"
_WHO_AFTER = r"(?:是谁|谁|叫啥|叫什么|名字|哪位|男的女的)"
_WHO_BEFORE = r"(?:谁|哪个|哪位)"
_WHERE = r"(?:在哪(?:里|儿)?(?!办|领|交|申请|开|补|弄)|搁哪|地址|咋走|怎么走|哪个楼|什么地方|什么位置|位置)"
_END = r"(?:$|[\s，,。？?!！])"
_HOURS = (r"(?:几点|上班|下班|午休|中午休息|办公时间|工作时间|(?:几点|啥时候|什么时候).{0,3}开门|开门了?(?:吗|不|没)|"
          rf"有人(?:不|吗|没)?{_END}|有没有人(?:{_END}|值班|上班))")

# first match wins: the off-hours desk and the supervisor before the worker ("网格长" holds "网格"), the worker
# before the community ("社区网格员电话")
PATTERNS: list[tuple[re.Pattern[str], Fact]] = [
    (re.compile(r"值班"), Fact.duty_desk),
    (re.compile(rf"{_OFF_HOURS}.{{0,12}}(?:找谁|找哪|急事|出事|有人管|谁管)"), Fact.duty_desk),
    (re.compile(rf"(?:网格长|社区书记|社区主任|居委会主任).{{0,10}}(?:{_WHO_AFTER}|{_PHONE}|找谁)"), Fact.supervisor),
    (re.compile(rf"{_WHO_BEFORE}.{{0,4}}(?:网格长|社区书记)"), Fact.supervisor),
    (re.compile(rf"管{_WORKER}|{_WORKER}.{{0,12}}(?:上头|上级|领导)|(?:上头|上级|领导).{{0,4}}(?:是谁|找谁)"),
     Fact.supervisor),
    (re.compile(rf"{_WORKER}.{{0,10}}{_PHONE}|{_PHONE}.{{0,6}}{_WORKER}|网格.{{0,3}}联系电话"), Fact.grid_worker_phone),
    (re.compile(rf"{_WORKER}.{{0,6}}{_WHO_AFTER}|{_WHO_BEFORE}.{{0,4}}{_WORKER}"), Fact.grid_worker),
    (re.compile(rf"{_COMMUNITY}.{{0,8}}{_HOURS}|(?:几点|什么时候).{{0,4}}(?:上班|开门|办公).{{0,4}}{_COMMUNITY}"),
     Fact.office_hours),
    (re.compile(rf"{_COMMUNITY}.{{0,8}}(?:{_WHERE}|{_ASKED_PHONE})"), Fact.community_address),
]
# a complaint about staff is not a question about them ("网格员不接电话", "值班的人爱答不理"): such a clause is
# left out, and a question in another clause still counts ("周末网格员不接电话 社区值班电话多少")
_COMPLAINT = re.compile(r"不接|打不通|没人接|不回|不管事|不作为|不来|爱答不理|难听|骂人|态度")
_CLAUSES = re.compile(r"[\s，,。；;！!？?]+")


def detect(text: str) -> Fact | None:
    """The fact a question asks for, or None."""
    kept = " ".join(c for c in _CLAUSES.split(text) if c and not _COMPLAINT.search(c))
    for pattern, fact in PATTERNS:
        if pattern.search(kept):
            return fact
    return None


def gives_way(u: Understanding, *, opens_case: bool) -> bool:
    """Whether the message is a report after all ("网格员电话多少 楼道灯坏了": a case, not a phone number).

    It is when the reading opens a case and is confident, or when a clause besides the question says something
    (the problem: "楼道灯坏了，网格员电话多少" reads as a report of low confidence, the question diluting it).
    A complaint does not count: the words of these questions (网格员, 居委会, 找谁) are the words of a complaint
    about staff, and a real one ("网格员不接电话") is not detected as a question in the first place."""
    if not opens_case or u.intent.label == "complaint":
        return False
    return not u.low_confidence or len(_rest(u.text)) >= MIN_PROBLEM_CHARS


MIN_PROBLEM_CHARS = 4  # "灯坏了" is three: with the question's dilution, four or more say a problem


def _rest(text: str) -> str:
    """The clauses of `text` that are not a grid-fact question, letters and digits only."""
    kept = [c for c in _CLAUSES.split(text) if c and not any(p.search(c) for p, _ in PATTERNS)]
    return "".join(ch for ch in "".join(kept) if ch.isalnum())


# ====================================================================== the reply
def reply(turn: Turn, fact: Fact, question: str) -> None:
    """Say `fact` for the resident's own grid and community; `question` (masked) is kept if an address is needed."""
    grids = turn.services.policies.grids
    resident = turn.resident()
    found = grids.grid(resident.grid_id) if resident is not None else None
    if found is not None and resident is not None:
        community, grid = found
        home = texts.FACT_HOME.format(address=place_text(resident.estate, resident.building, resident.unit),
                                      grid=grid.name)
        turn.say(home + _fact_text(turn, fact, community, grid))
        return
    own = grids.community(resident.community_id) if resident is not None else None
    if own is not None and fact not in (Fact.grid_worker, Fact.grid_worker_phone):
        turn.say(_fact_text(turn, fact, own, None))
        return
    lines = [texts.FACT_NO_ADDRESS]
    lines += [texts.FACT_COMMUNITY_LINE.format(community=c.name, details=_community_details(c, fact))
              for c in grids.communities]
    if fact == Fact.duty_desk:
        lines.append(texts.FACT_DUTY_EMERGENCY)
    if not turn.consented():
        turn.say("\n".join([*lines, texts.FACT_BIND_NEEDS_CONSENT]))
        return
    turn.say("\n".join(lines))
    turn.data.pending = question  # answered for their own grid once the address is bound
    ask_community(turn, lead=texts.FACT_BIND_OFFER)


def _fact_text(turn: Turn, fact: Fact, community: Community, grid: GridSpec | None) -> str:
    if fact in (Fact.grid_worker, Fact.grid_worker_phone) and grid is not None:
        return _worker_text(turn, fact, community, grid)
    if fact == Fact.supervisor:
        entry = community.staff.supervisor
        return texts.FACT_SUPERVISOR.format(community=community.name, person=entry.display_name or entry.name,
                                            phone=_phone(entry)) + texts.FACT_TELL_ME
    if fact == Fact.duty_desk:
        return texts.FACT_DUTY.format(desk=_duty_desk(community.staff.duty_desk)) + texts.FACT_DUTY_EMERGENCY
    return "\n".join([texts.FACT_COMMUNITY.format(community=community.name), *_office(community)])


def _worker_text(turn: Turn, fact: Fact, community: Community, grid: GridSpec) -> str:
    entry = grid.workers.full_time
    role = role_name(Role.full_time.value)
    worker = _worker_row(turn, grid.id, Role.full_time, entry.name)
    away = worker is not None and (worker.on_leave or not worker.active)
    cover = _cover(turn, grid) if away else None
    if cover is not None:
        entry, row = cover
        said = texts.FACT_WORKER_COVER.format(role=role, cover=role_name("deputy" if row.is_deputy else row.role),
                                              person=entry.display_name or "", phone=_phone(entry))
    else:
        said = texts.FACT_WORKER.format(role=role, person=entry.display_name or "", phone=_phone(entry))
    if fact == Fact.grid_worker_phone and not entry.phone:
        return said + texts.FACT_NO_PHONE + (texts.FACT_OTHER_PHONE.format(phone=community.phone)
                                             if community.phone else "")
    return said + texts.FACT_TELL_ME


def _worker_row(turn: Turn, grid_id: str, role: Role, name: str) -> Worker | None:
    rows = list_workers(session=turn.session, grid_id=grid_id, role=role.value)
    return next((w for w in rows if w.name == name), rows[0] if rows else None)


def _cover(turn: Turn, grid: GridSpec) -> tuple[StaffEntry, Worker] | None:
    """Who stands in for an absent full-timer: the deputy part-timer first, then any part-timer who is in."""
    rows = {w.name: w for w in list_workers(session=turn.session, grid_id=grid.id, role=Role.part_time.value)}
    ready = [(e, rows[e.name]) for e in grid.workers.part_time
             if e.name in rows and rows[e.name].active and not rows[e.name].on_leave]
    ready.sort(key=lambda pair: not pair[1].is_deputy)
    return ready[0] if ready else None


def _phone(entry: StaffEntry) -> str:
    return texts.FACT_PHONE.format(phone=entry.phone) if entry.phone else ""


def _duty_desk(desk: StaffEntry) -> str:
    """"芙蓉社区值班台，工作电话 …，值班时间：…"."""
    return desk.name + _phone(desk) + (texts.FACT_DUTY_HOURS.format(hours=desk.hours) if desk.hours else "")


def _office(community: Community) -> list[str]:
    lines = [texts.FACT_ADDRESS.format(address=community.address) if community.address else "",
             texts.FACT_HOURS.format(hours=community.office_hours) if community.office_hours else "",
             texts.FACT_COMMUNITY_PHONE.format(phone=community.phone) if community.phone else ""]
    return [line for line in lines if line]


def _community_details(community: Community, fact: Fact) -> str:
    if fact == Fact.duty_desk:
        return _duty_desk(community.staff.duty_desk)
    return "；".join(_office(community)) or community.name
