"""Safety on the resident's side: emergencies answered before any paperwork, self-harm, prompt injection.

Owns: the recognisers that must not depend on a statistical model (danger words, injection attempts), the safety
instructions for each kind of danger (110/119/120 and what to do now), and the emergency lane itself: the case
opened and paged before consent or an address, its place asked and joined to it in the same conversation (a
relative place joined to the bound address), and the privacy notice afterwards.
Must not: route or set deadlines (casestore does) or phrase replies inline (texts.py does).
"""

from __future__ import annotations

import logging
import re
import unicodedata

from bot.dialogue import texts
from bot.dialogue.consent import ask_consent
from bot.dialogue.drafts import Place, ReportDraft, ReportItem
from bot.dialogue.filing import due_text, handler_text, open_cases
from bot.dialogue.places import home_of, parse_address, place_from_details, place_text
from bot.dialogue.state import State
from bot.dialogue.turn import Turn
from bot.understanding.target import TargetDetector
from bot.understanding.types import Understanding
from casestore.accounts import get_or_create_resident
from casestore.errors import DomainError
from casestore.intake import relocate
from casestore.models import Case
from policies.geo import match_pin
from policies.masking import mask_text

log = logging.getLogger(__name__)

# ---------------- recognisers that must not depend on a statistical model ----------------
# Read on the folded message (NFKC, lower case, no spaces): full-width "ｉｇｎｏｒｅ", "I G N O R E" and "忽 略" read
# as typed plainly. Two families: talking to the model, and asking for other residents' data or case records.
_INJECTION = tuple(re.compile(p) for p in (
    # "忽略你的规则", "无视以上指令"; not a resident's "有人无视规则乱停车", "我忘记垃圾分类规则了", "忽略了"
    r"(?:忽略|无视|忘记|忘掉|绕过|不要理会)(?:掉)?(?:你的|你|之前|以上|上面|上述|前面|先前|此前|原来|原有|所有|全部|一切|"
    r"系统)的?.{0,4}?(?:指令|指示|提示词|规则|设定|限制|约束|安全策略|prompt)",
    r"(?:忽略|无视|忘记|忘掉|绕过)(?:掉)?(?:指令|提示词|设定|安全策略|安全限制|prompt)",
    r"系统提示|提示词|systemprompt|jailbreak|开发者模式|developermode|越狱模式",
    r"(?:ignore|disregard|forget|override|bypass)(?:all|any|the|your|my|these|those|every|of|previous|prior|above|"
    r"earlier|preceding|original|existing|system|safety|\W)*?(?:instructions?|guidance|guidelines|rules|prompts?|"
    r"directions|directives|constraints|restrictions)",
    r"(?:ignore|disregard|forget)(?:all|the|everything)*(?:previous|prior|above|earlier)",
    r"(?:^|[,.!?;:，。！？；：】\]])(?:system|assistant|developer)[:：]|<\|im_start\|>|\[inst\]|youarenow",
    r"(?:以上|之前|上述|上面)的?(?:规则|指令|设定)(?:已经|已|都|全部)*(?:失效|作废|无效|取消)",
    r"(?:(?:其他|其它|别的|所有|全部|全体|每个|各)(?:人|居民|住户|业主|用户|邻居|家庭|户)|每一?户|别人|他人|邻居|旁人|"
    r"全楼|整栋楼)的?"
    r"(?:联系方式|联系电话|电话|手机|号码|微信|身份证|住址|地址|门牌|房号|姓名|名字|名单|信息|资料|工单|报修记录|投诉记录|"
    r"记录|案件)",
))
# every case record, or one building's: refused unless the resident says they are their own ("我的所有工单")
_ALL_RECORDS = re.compile(r"(?:(?:所有|全部|全体)的?(?:人的)?|\d+号?(?:楼|栋|幢|单元)的?"
                          r"(?:全部|所有|其他|其它|每户|各户|住户|居民|业主)?的?)"
                          r"(?:报修|投诉)?(?:记录|工单|报修单|投诉单|案件|名单|清单|明细|列表)")
_OWN = re.compile(r"我|俺|本人|自己|咱")
_INVISIBLE = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff\u00ad"))
_SELF_HARM = re.compile(r"不想活|活不下去|想死|去死|自杀|轻生|寻死|跳楼|割腕|结束(自己的)?生命|了结自己|吃安眠药")
_GAS = re.compile(r"燃气|煤气|天然气|液化气|气味|煤气味")
_FIRE = re.compile(r"着火|起火|失火|火灾|冒烟|烧起来|火苗|浓烟")
_MEDICAL = re.compile(r"晕倒|昏倒|昏迷|不省人事|心脏|抽搐|呼吸困难|喘不上气|大出血|摔倒.*起不来|中风|急病|"
                      r"没有意识|没意识")
_POLICE = re.compile(r"打人|打架|持刀|拿刀|抢劫|小偷|入室|家暴|砍人|威胁|闹事")
_MISSING = re.compile(r"走失|走丢|找不到(人|孩子|老人)|不见了")
_TRAPPED = re.compile(r"被困|困在|关在电梯|电梯.*(困|卡)")
_WATER = re.compile(r"进水|水管爆|爆管|淹了|漫水|跑水")
_ELECTRIC = re.compile(r"电线.*(落地|掉|断)|触电|漏电|电线着火")


def is_injection(text: str) -> bool:
    """A message that talks to the model or asks for other residents' data or case records: refused."""
    folded = "".join(unicodedata.normalize("NFKC", text or "").translate(_INVISIBLE).casefold().split())
    if any(p.search(folded) for p in _INJECTION):
        return True
    return any(not _OWN.search(folded[max(0, m.start() - 4):m.start()]) for m in _ALL_RECORDS.finditer(folded))


def _is_self_harm(u: Understanding, text: str) -> bool:
    return "self_harm" in _hit_names(u) or bool(_SELF_HARM.search(text))


def is_emergency(u: Understanding, text: str) -> bool:
    return u.urgency.label == "emergency" or _is_self_harm(u, text)


def _hit_names(u: Understanding) -> set[str]:
    """Danger-rule names from understanding ("gas:燃气味" -> "gas")."""
    return {str(h).split(":", 1)[0] for h in (u.rule_hits or [])}


# (rule hits, words in the message, the guidance), first match wins: the order is the order of danger to life
_GUIDANCE = (
    ({"gas"}, _GAS, texts.EMERGENCY_GAS),
    ({"fire", "smoke"}, _FIRE, texts.EMERGENCY_FIRE),
    ({"live_wire"}, _ELECTRIC, texts.EMERGENCY_ELECTRIC),
    ({"trapped"}, _TRAPPED, texts.EMERGENCY_TRAPPED),
    ({"collapse", "falling"}, _MEDICAL, texts.EMERGENCY_MEDICAL),
    ({"missing"}, _MISSING, texts.EMERGENCY_MISSING),
    ({"violence"}, _POLICE, texts.EMERGENCY_POLICE),
    ({"flooding"}, _WATER, texts.EMERGENCY_WATER),
)


def safety_guidance(u: Understanding, text: str) -> str:
    """The first reply to an emergency: what to do now and whom to call, by what the message says."""
    hits = _hit_names(u)
    if _is_self_harm(u, text):
        return texts.SELF_HARM
    for rule_hits, words, guidance in _GUIDANCE:
        if hits & rule_hits or words.search(text):
            return guidance
    if u.category.label == "health":
        return texts.EMERGENCY_MEDICAL
    return texts.EMERGENCY_GENERIC


def emergency(turn: Turn, u: Understanding, text: str) -> None:
    """Guidance first, then an emergency case and an immediate page: no confirmation, no paperwork.

    Before consent and before any address (PIPL Art. 13(4): to protect life and health): a case whose place is
    not known asks for it, and the next address or shared location joins it (`try_place`, `on_location`);
    the privacy notice comes after that, saying why the case was opened first."""
    turn.say(safety_guidance(u, text))
    resident = turn.resident()
    has_consent = turn.consented()
    if resident is None:
        # the row holds only the channel account, so updates can reach them; no address, no consent recorded
        resident = get_or_create_resident(session=turn.session, channel=turn.channel, external_id=turn.external_id,
                                          now=turn.now)
        turn.remember_resident(resident)
    category = u.category.label
    if _is_self_harm(u, text) and category == "other":
        category = "health"
    item = ReportItem(intent="help", category=category, urgency="emergency", text=u.text)
    staff = TargetDetector(turn.services.policies.taxonomy.staff_terms).read(u.text)
    if staff.target == "staff":  # 网格员打人了: the danger is one of ours, so the case must not go to the grid
        item = ReportItem(intent="complaint", category=category, urgency="emergency", text=u.text,
                          target="staff", target_roles=list(staff.roles))
    draft = ReportDraft(items=[item])
    said = place_from_details(u.details)
    near = said.where if said is not None and not said.estate and said.building is None else None
    place = near_home(home_of(resident) if has_consent else None, said)
    if place is not None:
        draft.set_place(place)
    turn.go(State.idle)
    turn.data.draft, turn.data.clarify = None, None
    cases = open_cases(turn, resident, draft, announce=False)
    if not cases:
        return
    case = cases[0]
    if case.duplicate_of_id is None:  # merged: open_cases said who already handles it; nobody new was paged
        turn.say(texts.EMERGENCY_OPENED.format(code=case.code, handler=handler_text(turn, case),
                                               due=due_text(turn, case)))
    if not has_consent:
        turn.say(texts.EMERGENCY_NO_CONSENT)
    if case.grid_id is None:  # the place is asked now, and joins this case whatever the consent state
        turn.data.emergency_case, turn.data.emergency_near = case.code, near
        turn.say(texts.EMERGENCY_ASK_PLACE)
        if not has_consent:
            turn.data.privacy_due = True  # asked on the next turn, once the place is in
            turn.go(State.consent)
        return
    if not has_consent:
        ask_privacy(turn)


# ---------------- where the danger is: relative words joined to the bound address ----------------
_ESTATE_LEVEL = re.compile(r"小区|大门|车棚|车库|停车场|广场|花园|公园|路口|垃圾站|绿化|花坛|健身|游乐场|门卫")
_BUILDING_LEVEL = re.compile(r"楼下|楼前|楼后|楼顶|天台")
_TRAILING = re.compile(r"(?:里|内|中|上|边|旁|这儿|这里|那儿|那里)$")


def near_home(home: Place | None, said: Place | None) -> Place | None:
    """The place to file: a parsed address as it is; "楼道里" with 芙蓉小区3号楼2单元 bound becomes
    "芙蓉小区3号楼2单元 楼道", "楼下" "芙蓉小区3号楼 楼下", "小区门口" "芙蓉小区 门口"; else the bound address."""
    if said is not None and not said.estate and said.building is not None and home is not None and home.estate:
        # "3号楼楼道里" from a resident of 芙蓉小区: their estate's building, so the worker knows which estate
        return Place(where=f"{home.estate}{said.where}", estate=home.estate, building=said.building, unit=said.unit)
    if said is None or said.estate or said.building is not None or not said.where:
        return said or home
    if home is None or not home.estate:
        return said
    word = _TRAILING.sub("", said.where) or said.where
    if _ESTATE_LEVEL.search(word):
        base = Place(where=home.estate, estate=home.estate, building=home.building, unit=home.unit)
        word = word.removeprefix("小区") or word
    elif _BUILDING_LEVEL.search(word):
        base = Place(where=place_text(home.estate, home.building, None), estate=home.estate, building=home.building,
                     unit=home.unit)
    else:
        base = home
    return Place(where=f"{base.where} {word}", estate=base.estate, building=base.building, unit=base.unit)


def try_place(turn: Turn, text: str) -> bool:
    """A typed address while an emergency waits for its place: it joins that case (place, grid, routing)."""
    code = turn.data.emergency_case
    resident = turn.resident()
    if not code or resident is None or resident.id is None:
        return False
    grids = turn.services.policies.grids
    parsed = parse_address(grids, mask_text(text)[:200])
    if parsed is None or parsed.estate is None:
        return False
    where = place_text(parsed.estate, parsed.building, parsed.unit)
    if turn.data.emergency_near:
        where = f"{where} {turn.data.emergency_near}"
    case = _relocate(turn, resident.id, code, where=where, estate=parsed.estate, building=parsed.building,
                     unit=parsed.unit)
    if case is None:
        return False
    turn.data.emergency_case = turn.data.emergency_near = None
    turn.say(texts.EMERGENCY_PLACE_ADDED.format(code=case.code, where=where, handler=handler_text(turn, case)))
    ask_privacy_if_due(turn)
    return True


def on_location(turn: Turn) -> bool:
    """A shared location while an emergency waits for its place: attached to that case."""
    code = turn.data.emergency_case
    resident = turn.resident()
    if not code or resident is None or resident.id is None or turn.incoming.location is None:
        return False
    lat, lng = turn.incoming.location
    attachment = {"type": "location", "lat": round(lat, 6), "lng": round(lng, 6)}
    pin = match_pin(turn.services.policies.grids, lat, lng)  # placed: the case goes to that building's grid, unasked
    where = pin.where(lat, lng) if pin else texts.LOCATION_WHERE.format(lat=lat, lng=lng)
    if turn.data.emergency_near:
        where = f"{where} {turn.data.emergency_near}"
    case = _relocate(turn, resident.id, code, where=where, attachment=attachment,
                     estate=pin.estate if pin else None, building=pin.building if pin else None)
    if case is None:
        return False
    if pin is not None:
        turn.data.emergency_case = turn.data.emergency_near = None
        turn.say(texts.EMERGENCY_PLACE_ADDED.format(code=case.code, where=where, handler=handler_text(turn, case)))
    else:
        turn.say(texts.EMERGENCY_LOCATION_ADDED.format(code=case.code))
    ask_privacy_if_due(turn)
    return True


def _relocate(turn: Turn, resident_id: int, code: str, *, where: str, estate: str | None = None,
              building: int | None = None, unit: int | None = None,
              attachment: dict[str, object] | None = None) -> Case | None:
    try:
        with turn.session.begin_nested():
            return relocate(session=turn.session, policies=turn.services.policies, sla=turn.services.sla,
                            clock=turn.services.clock, resident_id=resident_id, code=code, location_text=where,
                            estate=estate, building=building, unit=unit, attachment=attachment)
    except DomainError as exc:  # closed meanwhile: the place is handled as any other message
        log.info("emergency place not attached cid=%s: %s", turn.cid, type(exc).__name__)
        turn.data.emergency_case = turn.data.emergency_near = None
        return None


def ask_privacy(turn: Turn) -> None:
    """The privacy notice after an emergency was served, saying why it came first."""
    turn.data.privacy_due = False
    ask_consent(turn, why=texts.PRIVACY_AFTER_EMERGENCY)


def ask_privacy_if_due(turn: Turn) -> None:
    if turn.data.privacy_due and not turn.consented():
        ask_privacy(turn)
    turn.data.privacy_due = False
