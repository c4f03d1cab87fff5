"""The resident's side of the conversation: consent, address, questions, reports, emergencies, status, rating.

Owns: which question to ask next and which service to call (understanding, knowledge, casestore intake and
feedback). Every text that is stored or shown to others is the masked text from understanding.
Must not: decide routing, deadlines or duplicates (casestore does) or phrase replies inline (texts.py does).
"""

from __future__ import annotations

import logging
import re
from typing import Any

from bot.dialogue import texts
from bot.dialogue.engine import Turn
from bot.dialogue.state import State
from casestore.cases import get_case, list_cases_for_resident
from casestore.errors import DomainError, NotFound
from casestore.models import Case, CaseStatus, Feedback, Resident
from casestore.notices import role_name
from casestore.notify import Button
from casestore.residents import bind_address, get_or_create_resident, record_consent
from policies.masking import find_personal_data, mask_text
from policies.models import Community

log = logging.getLogger(__name__)

# ---------------- recognisers that must not depend on a statistical model ----------------
_INJECTION = re.compile(
    r"(忽略|无视|忘记|忘掉|绕过|跳过).{0,8}(指令|指示|提示|规则|设定|要求|限制)|系统提示|提示词|system\s*prompt|"
    r"ignore (all |the )?(previous|above)|jailbreak|开发者模式|"
    r"(所有|全部|别人|其他|其它)(人|居民|住户|用户)?的?(电话|手机|号码|身份证|住址|地址|信息|资料|工单)",
    re.IGNORECASE)
_SELF_HARM = re.compile(r"不想活|活不下去|想死|去死|自杀|轻生|寻死|跳楼|割腕|结束(自己的)?生命|了结自己|吃安眠药")
_GAS = re.compile(r"燃气|煤气|天然气|液化气|气味|煤气味")
_FIRE = re.compile(r"着火|起火|失火|火灾|冒烟|烧起来|火苗|浓烟")
_MEDICAL = re.compile(r"晕倒|昏倒|昏迷|不省人事|心脏|抽搐|呼吸困难|喘不上气|大出血|摔倒.*起不来|中风|急病|没有意识|没意识")
_POLICE = re.compile(r"打人|打架|持刀|拿刀|抢劫|小偷|入室|家暴|砍人|威胁|闹事")
_MISSING = re.compile(r"走失|走丢|找不到(人|孩子|老人)|不见了")
_TRAPPED = re.compile(r"被困|困在|关在电梯|电梯.*(困|卡)")
_WATER = re.compile(r"进水|水管爆|爆管|淹了|漫水|跑水")
_ELECTRIC = re.compile(r"电线.*(落地|掉|断)|触电|漏电|电线着火")
_ADDRESS_WORDS = re.compile(r"小区|花园|东苑|号楼|栋|幢|单元|楼")
_CASE_CODE = re.compile(r"JN\d{8}-\d{4}", re.IGNORECASE)
_STATUS_WORDS = re.compile(r"(工单|事项|反映的|报修的).{0,6}(怎么样|进度|到哪|办好|处理得|结果)|我的工单")
_CN_NUM = {"一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7, "八": 8, "九": 9, "十": 10}
_BUILDING = re.compile(r"(\d{1,3}|[一二两三四五六七八九十]{1,3})\s*(?:号楼|号|栋|幢|楼)")
_UNIT = re.compile(r"(\d{1,2}|[一二两三四五六七八九十]{1,3})\s*单元")
_YES = {"对", "是", "是的", "对的", "确认", "好", "好的", "嗯", "没错", "可以", "行"}
_NO = {"不对", "不是", "错了", "修改", "不对(修改)", "改一下"}
_AGREE = {"同意", "我同意", "好", "好的", "可以", "行", "同意的"}
_DISAGREE = {"不同意", "我不同意", "拒绝", "不"}
_SKIP = {"跳过", "没有", "没有照片", "不用", "不需要", "算了", "没"}
_HUMAN_WORDS = {"转人工", "人工", "找人工", "人工客服", "找网格员"}
_THANKS = re.compile(r"^(谢谢|感谢|多谢|辛苦了|太好了|好的谢谢)")

# problems whose place cannot be the resident's home: a bound address does not say where they are
_PLACE_NEEDED = {"public_facilities", "parking_traffic", "urban_management", "environment"}
# intents that become cases through the report flow
_CASE_INTENTS = {"help", "complaint", "suggestion", "wish", "dispute"}
MIN_ACTIONABLE = 4  # fewer characters than this ("坏了") cannot be acted on


# ====================================================================== entry point
def handle(turn: Turn, *, is_admin: bool = False) -> None:
    inc = turn.incoming
    if inc.kind == "unsupported":
        turn.say(texts.UNSUPPORTED)
    elif inc.kind == "button":
        _on_button(turn)
    elif inc.kind == "command":
        _on_command(turn, is_admin=is_admin)
    elif inc.kind == "photo":
        _on_photo(turn)
    elif inc.kind == "location":
        _on_location(turn)
    else:
        _on_text(turn, inc.text)


# ====================================================================== helpers
def resident_of(turn: Turn) -> Resident | None:
    from sqlalchemy import select

    stmt = select(Resident).where(Resident.telegram_id == turn.incoming.user_id)
    return turn.session.execute(stmt).scalars().first()


def consented(resident: Resident | None) -> bool:
    return resident is not None and resident.consent_at is not None


def _understand(turn: Turn, text: str) -> Any:
    return turn.services.classifier.understand(text)


def _cn_int(token: str) -> int | None:
    if token.isdigit():
        return int(token)
    if token in _CN_NUM:
        return _CN_NUM[token]
    if len(token) == 2 and token[0] == "十":
        return 10 + _CN_NUM.get(token[1], 0)
    if len(token) == 2 and token[1] == "十":
        return _CN_NUM.get(token[0], 0) * 10
    if len(token) == 3 and token[1] == "十":
        return _CN_NUM.get(token[0], 0) * 10 + _CN_NUM.get(token[2], 0)
    return None


def parse_address(turn: Turn, text: str, *, estate: str | None = None) -> dict[str, Any] | None:
    """Estate, building and unit typed as "芙蓉小区3号楼2单元"; `estate` fills in when only the number is typed."""
    names = sorted((e.name for c in turn.services.policies.grids.communities for e in c.estates), key=len, reverse=True)
    found = next((n for n in names if n in text), None) or estate
    b = _BUILDING.search(text)
    building = _cn_int(b.group(1)) if b else None
    if building is None and estate and text.strip().isdigit():
        building = int(text.strip())
    u = _UNIT.search(text)
    unit = _cn_int(u.group(1)) if u else None
    if found is None or building is None:
        return None
    return {"estate": found, "building": building, "unit": unit}


def address_text(resident: Resident) -> str:
    if not resident.estate:
        return ""
    out = resident.estate
    if resident.building:
        out += f"{resident.building}号楼"
    if resident.unit:
        out += f"{resident.unit}单元"
    return out


def _community(turn: Turn, community_id: str | None) -> Community | None:
    return next((c for c in turn.services.policies.grids.communities if c.id == community_id), None)


def _grid_name(turn: Turn, grid_id: str | None) -> str:
    for c in turn.services.policies.grids.communities:
        for g in c.grids:
            if g.id == grid_id:
                return g.name
    return ""


def _expired(turn: Turn) -> None:
    turn.say(texts.BUTTON_EXPIRED)


def _due_text(turn: Turn, case: Case) -> str:
    return texts.DUE_RESPONSE.format(when=turn.local(case.response_due_at)) if case.response_due_at else texts.DUE_NONE


def _handler_text(turn: Turn, case: Case) -> str:
    grid = _grid_name(turn, case.grid_id)
    return f"{grid}{role_name(case.assignee_role)}" if grid else role_name(case.assignee_role) or "网格工作人员"


# ====================================================================== commands
def _on_command(turn: Turn, *, is_admin: bool) -> None:
    cmd = turn.incoming.command or ""
    if cmd == "start":
        _start(turn)
    elif cmd == "help":
        turn.say(texts.HELP_RESIDENT + ("\n\n" + texts.HELP_ADMIN if is_admin else ""))
    elif cmd == "address":
        resident = resident_of(turn)
        if not consented(resident):
            turn.say(texts.ADDRESS_NEEDS_CONSENT)
            return
        if turn.incoming.args and _try_typed_address(turn, turn.incoming.args, resident):
            return
        _ask_community(turn)
    elif cmd in ("mycases", "status"):
        _my_cases(turn)
    elif cmd == "cancel":
        turn.go(State.idle, draft=None, clarify=None, addr=None)
        turn.say(texts.CANCELLED)
    else:
        turn.say(texts.UNKNOWN_COMMAND)


def _start(turn: Turn) -> None:
    resident = resident_of(turn)
    turn.say(texts.WELCOME)
    if consented(resident):
        assert resident is not None
        if resident.grid_id is None:
            _ask_community(turn)
        else:
            turn.go(State.idle)
            turn.say(texts.HELP_RESIDENT)
        return
    _ask_consent(turn)


def _ask_consent(turn: Turn) -> None:
    turn.say(texts.PRIVACY)
    turn.say(texts.CONSENT_ASK, [[Button(texts.BTN_AGREE, "consent", None, "yes"),
                                  Button(texts.BTN_DISAGREE, "consent", None, "no")]])
    turn.go(State.consent)


# ====================================================================== buttons
def _on_button(turn: Turn) -> None:
    btn = turn.incoming.button
    if btn is None:
        _expired(turn)
        return
    action, arg = btn.action, btn.arg or ""
    if action == "consent":
        _on_consent(turn, arg == "yes")
    elif action == "addr":
        _on_address_button(turn, arg)
    elif action in ("useful", "human"):
        _on_answer_button(turn, action, arg)
    elif action == "clarify":
        _on_clarify(turn, arg)
    elif action == "photo_skip":
        if turn.state != State.report_photo:
            _expired(turn)
            return
        turn.data.setdefault("draft", {})["photo_asked"] = True
        _advance_report(turn)
    elif action == "confirm":
        _on_confirm(turn, arg == "yes")
    elif action == "rate":
        _on_rate(turn, btn.case_code, arg)
    else:
        _expired(turn)


def _on_consent(turn: Turn, yes: bool) -> None:
    if turn.state not in (State.consent, State.start) or consented(resident_of(turn)):
        _expired(turn)
        return
    if not yes:
        turn.go(State.idle, consent=False, pending=None)
        turn.say(texts.CONSENT_DECLINED)
        return
    resident = get_or_create_resident(session=turn.session, telegram_id=turn.incoming.user_id, now=turn.now,
                                      display_name=turn.incoming.display_name[:40], channel=turn.incoming.channel)
    record_consent(session=turn.session, resident=resident, now=turn.now)
    turn.data.pop("consent", None)
    turn.say(texts.CONSENT_THANKS)
    if resident.grid_id is None:
        _ask_community(turn)
    else:
        _continue_pending(turn)


# ====================================================================== address binding
def _ask_community(turn: Turn) -> None:
    rows = [[Button(c.name, "addr", None, f"c.{c.id}") for c in turn.services.policies.grids.communities],
            [Button(texts.ADDRESS_SKIP, "addr", None, "skip")]]
    turn.go(State.address, addr={})
    turn.say(texts.ADDRESS_PICK_COMMUNITY, rows)


def _on_address_button(turn: Turn, arg: str) -> None:
    if turn.state != State.address:
        _expired(turn)
        return
    addr: dict[str, Any] = dict(turn.data.get("addr") or {})
    kind, _, value = arg.partition(".")
    if kind == "skip":
        turn.go(State.idle, addr=None)
        turn.say(texts.ADDRESS_SKIPPED)
        _continue_pending(turn)
        return
    if kind == "c":
        community = _community(turn, value)
        if community is None:
            _expired(turn)
            return
        turn.go(State.address, addr={"c": community.id})
        turn.say(texts.ADDRESS_PICK_ESTATE,
                 [[Button(e.name, "addr", None, f"e.{i}") for i, e in enumerate(community.estates)]])
        return
    community = _community(turn, addr.get("c"))
    if community is None:
        _expired(turn)
        return
    if kind == "e" and value.isdigit() and int(value) < len(community.estates):
        estate = community.estates[int(value)]
        turn.go(State.address, addr={"c": community.id, "e": estate.name})
        buttons = [Button(f"{n}号楼", "addr", None, f"b.{n}") for n in range(1, estate.buildings + 1)]
        turn.say(texts.ADDRESS_PICK_BUILDING, [buttons[i:i + 6] for i in range(0, len(buttons), 6)])
        return
    estate = next((e for e in community.estates if e.name == addr.get("e")), None)
    if estate is None:
        _expired(turn)
        return
    if kind == "b" and value.isdigit() and 1 <= int(value) <= estate.buildings:
        turn.go(State.address, addr={**addr, "b": int(value)})
        turn.say(texts.ADDRESS_PICK_UNIT, [[Button(f"{n}单元", "addr", None, f"u.{n}")
                                            for n in range(1, estate.units_per_building + 1)]])
        return
    if kind == "u" and value.isdigit() and addr.get("b"):
        _bind(turn, estate.name, int(addr["b"]), int(value))
        return
    _expired(turn)


def _try_typed_address(turn: Turn, text: str, resident: Resident | None) -> bool:
    addr = turn.data.get("addr") or {}
    parsed = parse_address(turn, text, estate=addr.get("e"))
    if parsed is None:
        return False
    _bind(turn, parsed["estate"], parsed["building"], parsed["unit"])
    return True


def _bind(turn: Turn, estate: str, building: int, unit: int | None) -> None:
    resident = resident_of(turn)
    if not consented(resident):
        turn.go(State.idle, addr=None)
        turn.say(texts.ADDRESS_NEEDS_CONSENT)
        return
    assert resident is not None
    if turn.services.policies.grids.grid_for(estate, building) is None:
        turn.say(texts.ADDRESS_OUTSIDE.format(estate=estate, building=building))
        return
    grid_id = bind_address(session=turn.session, resident=resident, grids=turn.services.policies.grids,
                           estate=estate, building=building, unit=unit)
    turn.go(State.idle, addr=None)
    turn.say(texts.ADDRESS_BOUND.format(address=address_text(resident), grid=_grid_name(turn, grid_id)))
    _continue_pending(turn)


def _continue_pending(turn: Turn) -> None:
    """After consent and address: carry on with what the resident said first."""
    pending = turn.data.pop("pending", None)
    if pending:
        turn.go(State.idle)
        _process_text(turn, pending)


# ====================================================================== text
def _on_text(turn: Turn, text: str) -> None:
    if not text:
        turn.say(texts.EMPTY_INPUT)
        return
    state = turn.state
    if state == State.consent and (text in _AGREE or text in _DISAGREE):
        _on_consent(turn, text in _AGREE)
        return
    if state == State.address:
        if _try_typed_address(turn, text, resident_of(turn)):
            return
        if _ADDRESS_WORDS.search(text) or len(text) <= 6:
            turn.say(texts.ADDRESS_NOT_UNDERSTOOD)
            return
        turn.go(State.idle, addr=None)  # not an address: they moved on to telling us something
    elif state == State.report_where:
        _on_where(turn, text)
        return
    elif state == State.report_what:
        _on_what(turn, text)
        return
    elif state == State.report_photo:
        if text in _SKIP:
            turn.data.setdefault("draft", {})["photo_asked"] = True
            _advance_report(turn)
            return
        turn.go(State.idle, draft=None)  # they moved on; treat as a new message
    elif state == State.report_confirm:
        if text in _YES:
            _on_confirm(turn, True)
            return
        if text in _NO:
            _on_confirm(turn, False)
            return
        _on_edit(turn, text)
        return
    elif state == State.report_edit:
        _on_edit(turn, text)
        return
    elif state == State.clarify:
        choice = {texts.BTN_CLARIFY_INQUIRY: "inquiry", texts.BTN_CLARIFY_REPORT: "report",
                  texts.BTN_CLARIFY_EMERGENCY: "emergency", texts.BTN_CLARIFY_OTHER: "other"}.get(text)
        if choice:
            _on_clarify(turn, choice)
            return
        turn.go(State.idle, clarify=None)
    if state == State.start:
        if consented(resident_of(turn)):  # known from another session or channel: no second welcome
            turn.go(State.idle)
        else:
            _first_contact(turn, text)
            return
    _process_text(turn, text)


def _first_contact(turn: Turn, text: str) -> None:
    """Any first message: an emergency or a question is served at once; the rest waits for consent."""
    u = _understand(turn, text)
    if _is_emergency(u, text) or _is_injection(text):
        _process_text(turn, text, u)
        turn.say(texts.WELCOME)
        _ask_consent(turn)
        return
    if u.intent.label == "inquiry" and not u.low_confidence:
        _process_text(turn, text, u)
        turn.say(texts.WELCOME)
        _ask_consent(turn)
        return
    turn.say(texts.WELCOME)
    _ask_consent(turn)
    if u.intent.label in _CASE_INTENTS or u.low_confidence:
        turn.data["pending"] = u.text  # masked; replayed after consent and address


def _process_text(turn: Turn, text: str, u: Any | None = None) -> None:
    """A message in idle state: decide the path from the understanding."""
    if _is_injection(text):
        log.info("prompt-injection-like input refused cid=%s", turn.cid)
        turn.say(texts.INJECTION)
        return
    if text in _HUMAN_WORDS and (turn.data.get("last_q") or {}).get("text"):
        _open_inquiry(turn, automatic=False)
        return
    code = _CASE_CODE.search(text)
    if code:
        _one_case(turn, code.group(0).upper())
        return
    if u is None:
        u = _understand(turn, text)
    _remember_phone(turn, text)
    if _is_emergency(u, text):
        _emergency(turn, u, text)
        return
    intent = u.intent.label
    if _STATUS_WORDS.search(text) or (intent == "status" and not u.low_confidence):
        _my_cases(turn)
        return
    if u.low_confidence and "intent" in (u.uncertain_axes or ["intent"]):
        turn.go(State.clarify, clarify={"text": u.text})
        turn.say(texts.CLARIFY, _clarify_buttons())
        return
    if intent == "inquiry":
        _answer(turn, u)
    elif intent in _CASE_INTENTS:
        _start_report(turn, u)
    elif intent == "feedback":
        _text_feedback(turn, text)
    elif intent == "status":
        _my_cases(turn)
    else:
        turn.say(texts.THANKS_REPLY if _THANKS.match(text) else texts.CHITCHAT)


def _clarify_buttons() -> list[list[Button]]:
    return [[Button(texts.BTN_CLARIFY_INQUIRY, "clarify", None, "inquiry"),
             Button(texts.BTN_CLARIFY_REPORT, "clarify", None, "report")],
            [Button(texts.BTN_CLARIFY_EMERGENCY, "clarify", None, "emergency"),
             Button(texts.BTN_CLARIFY_OTHER, "clarify", None, "other")]]


def _on_clarify(turn: Turn, choice: str) -> None:
    pending = (turn.data.get("clarify") or {}).get("text")
    if turn.state != State.clarify or not pending:
        _expired(turn)
        return
    turn.go(State.idle, clarify=None)
    u = _understand(turn, pending)
    if choice == "inquiry":
        _answer(turn, u)
    elif choice == "report":
        intent = u.intent.label if u.intent.label in _CASE_INTENTS else "help"
        _start_report(turn, u, intent=intent)
    elif choice == "emergency":
        _emergency(turn, u, pending, forced=True)
    else:
        turn.say(texts.CLARIFY_OTHER)


def _is_injection(text: str) -> bool:
    return bool(_INJECTION.search(text))


def _is_self_harm(u: Any, text: str) -> bool:
    return "self_harm" in _hit_names(u) or bool(_SELF_HARM.search(text))


def _is_emergency(u: Any, text: str) -> bool:
    return u.urgency.label == "emergency" or _is_self_harm(u, text)


def _remember_phone(turn: Turn, text: str) -> None:
    """A resident's own phone number may be kept on their row (raw for the owner, masked for workers)."""
    phones = [p for p in find_personal_data(text) if p.kind in ("mobile", "landline")]
    resident = resident_of(turn)
    if phones and consented(resident):
        assert resident is not None
        resident.contact_phone = re.sub(r"[^\d]", "", phones[0].raw)[-11:]
        resident.contact_masked = mask_text(phones[0].raw)
        turn.session.add(resident)


# ====================================================================== policy answers
def _answer(turn: Turn, u: Any) -> None:
    answer = turn.services.knowledge.ask(u.text)
    qid = int(turn.data.get("qseq", 0)) + 1
    turn.data["qseq"] = qid
    turn.data["last_q"] = {"id": qid, "text": u.text[:500], "category": u.category.label,
                           "answered": bool(answer.answered)}
    body = answer.text.strip()
    refs: list[str] = []
    for c in answer.citations or []:
        ref = f"《{c.title}》{c.section if c.section and c.section != c.title else ''}"
        if ref not in refs:
            refs.append(ref)
    if refs and answer.answered:
        # the service ends with its own "来源：[1] 标题 › 小节" line; show the numbered sources in our form
        body = body.rsplit("\n来源：", 1)[0].rstrip()
        body += "\n" + texts.SOURCES + "；".join(f"[{n}]{r}" for n, r in enumerate(refs[:3], start=1))
    lines = [body]
    if not answer.answered:
        turn.say("\n\n".join(line for line in lines if line) or texts.NOT_ANSWERED)
        if _worth_a_person(u):
            _open_inquiry(turn, automatic=True)
        else:
            turn.say(texts.NOT_ANSWERED_RETRY, [[Button(texts.BTN_HUMAN, "human", None, str(qid))]])
        return
    turn.say("\n\n".join(lines), [[Button(texts.BTN_USEFUL, "useful", None, f"{qid}.1"),
                                   Button(texts.BTN_NOT_USEFUL, "useful", None, f"{qid}.0"),
                                   Button(texts.BTN_HUMAN, "human", None, str(qid))]])


def _worth_a_person(u: Any) -> bool:
    """An unanswered question goes to a person unless it is noise ("啊啊啊…", one word, a guess)."""
    content = re.sub(r"[\W_]+", "", u.text)
    return not u.low_confidence and len(set(content)) >= MIN_ACTIONABLE


def _on_answer_button(turn: Turn, action: str, arg: str) -> None:
    last = turn.data.get("last_q") or {}
    qid, _, value = arg.partition(".")
    if not last or str(last.get("id")) != qid:
        _expired(turn)
        return
    if action == "human":
        _open_inquiry(turn, automatic=False)
        return
    if last.get("rated"):
        _expired(turn)
        return
    useful = value == "1"
    resident = resident_of(turn)
    turn.session.add(Feedback(resident_id=resident.id if consented(resident) and resident else None,
                              question=str(last.get("text", ""))[:500], useful=useful, at=turn.now))
    turn.data["last_q"] = {**last, "rated": True}
    turn.say(texts.USEFUL_THANKS if useful else texts.NOT_USEFUL_THANKS,
             None if useful else [[Button(texts.BTN_HUMAN, "human", None, qid)]])


def _open_inquiry(turn: Turn, *, automatic: bool) -> None:
    last = turn.data.get("last_q") or {}
    resident = resident_of(turn)
    if not consented(resident):
        turn.say(texts.HUMAN_NO_CONSENT)
        return
    if last.get("case"):
        _expired(turn)
        return
    text = str(last.get("text", ""))
    item = {"intent": "inquiry", "category": last.get("category") or "other", "urgency": "normal", "text": text}
    assert resident is not None
    draft = {"items": [item], **_home_where(resident)}
    cases = _open_cases(turn, resident, draft, announce=False)
    if not cases:
        return
    case = cases[0]
    turn.data["last_q"] = {**last, "case": case.code}
    turn.say(texts.HUMAN_OPENED.format(handler=_handler_text(turn, case), code=case.code,
                                                due=_due_text(turn, case)))


# ====================================================================== reports
def _home_where(resident: Resident | None) -> dict[str, Any]:
    if resident is None or not resident.estate:
        return {}
    return {"where": address_text(resident), "estate": resident.estate, "building": resident.building,
            "unit": resident.unit}


def _where_from_details(details: Any) -> dict[str, Any]:
    if details is None:
        return {}
    bits = []
    if details.estate:
        bits.append(details.estate)
    if details.building:
        bits.append(f"{details.building}号楼")
    if details.unit:
        bits.append(f"{details.unit}单元")
    if details.room:
        bits.append(str(details.room))
    if details.place:
        bits.append(str(details.place))
    if not bits:
        return {}
    return {"where": "".join(bits), "estate": details.estate, "building": details.building, "unit": details.unit}


def _start_report(turn: Turn, u: Any, *, intent: str | None = None) -> None:
    resident = resident_of(turn)
    if not consented(resident):
        turn.data["pending"] = u.text
        turn.say(texts.NEED_CONSENT_FOR_CASE)
        _ask_consent(turn)
        return
    parts = [p for p in (u.parts or []) if p is not None] if len(u.parts or []) >= 2 else [u]
    items = [{"intent": intent or (p.intent.label if p.intent.label in _CASE_INTENTS else u.intent.label),
              "category": p.category.label, "urgency": p.urgency.label, "text": p.text} for p in parts]
    draft: dict[str, Any] = {"items": items, "attachments": list(turn.data.pop("pending_attachments", []) or [])}
    draft.update(_where_from_details(u.details))
    turn.data["draft"] = draft
    _advance_report(turn)


def _needs_place(draft: dict[str, Any]) -> bool:
    return any(i["category"] in _PLACE_NEEDED for i in draft["items"])


def _advance_report(turn: Turn) -> None:
    """Ask for the first missing piece (what, where, photo), then confirm."""
    draft = turn.data.get("draft") or {}
    if not draft.get("items"):
        turn.go(State.idle, draft=None)
        _expired(turn)
        return
    text_len = len(re.sub(r"[\W_]+", "", draft["items"][0]["text"]))
    if text_len < MIN_ACTIONABLE and not draft.get("what_asked"):
        draft["what_asked"] = True
        turn.go(State.report_what, draft=draft)
        turn.say(texts.ASK_WHAT)
        return
    resident = resident_of(turn)
    home = _home_where(resident)
    if draft.get("where") and draft.get("building") is None and not draft.get("estate") and home \
            and not _needs_place(draft) and not draft.get("where_asked"):
        # "楼道" alone: the resident's own building is meant
        draft.update({**home, "where": home["where"] + draft["where"]})
    if not draft.get("where"):
        if home and not _needs_place(draft) and not draft.get("where_asked"):
            draft.update(home)
            draft["where_is_home"] = True
        elif not draft.get("where_asked"):
            draft["where_asked"] = True
            turn.go(State.report_where, draft=draft)
            turn.say(texts.ASK_WHERE)
            return
    if not draft.get("photo_asked") and not any(a.get("type") == "photo" for a in draft.get("attachments", [])):
        draft["photo_asked"] = True
        turn.go(State.report_photo, draft=draft)
        turn.say(texts.ASK_PHOTO, [[Button(texts.BTN_SKIP, "photo_skip")]])
        return
    turn.go(State.report_confirm, draft=draft)
    turn.say(_confirm_text(turn, draft), [[Button(texts.BTN_YES, "confirm", None, "yes"),
                                           Button(texts.BTN_NO, "confirm", None, "no")]])


def _label(turn: Turn, item: dict[str, Any]) -> str:
    tax = turn.services.policies.taxonomy
    if item["intent"] in ("wish", "dispute", "suggestion", "complaint", "inquiry"):
        return f"{tax.name_of(item['intent'])}·{tax.name_of(item['category'])}"
    return tax.name_of(item["category"])


def _confirm_text(turn: Turn, draft: dict[str, Any]) -> str:
    where = draft.get("where") or texts.WHERE_UNKNOWN
    items = draft["items"]
    if len(items) == 1:
        return texts.CONFIRM_ONE.format(category=_label(turn, items[0]), where=where, text=items[0]["text"])
    lines = "\n".join(texts.CONFIRM_ITEM.format(i=i + 1, category=_label(turn, it), text=it["text"])
                      for i, it in enumerate(items))
    return texts.CONFIRM_MANY.format(n=len(items), items=lines, where=where)


def _on_what(turn: Turn, text: str) -> None:
    draft = turn.data.get("draft") or {}
    if not draft.get("items"):
        turn.go(State.idle, draft=None)
        _process_text(turn, text)
        return
    u = _understand(turn, text)
    first = draft["items"][0]
    first["text"] = f"{first['text']}，{u.text}".strip("，")
    combined = _understand(turn, first["text"])
    if combined.intent.label in _CASE_INTENTS:
        first["intent"] = combined.intent.label
    first["category"], first["urgency"] = combined.category.label, combined.urgency.label
    if not draft.get("where"):
        draft.update(_where_from_details(u.details) or _where_from_details(combined.details))
    turn.data["draft"] = draft
    if combined.urgency.label == "emergency":
        turn.go(State.idle, draft=None)
        _emergency(turn, combined, first["text"])
        return
    _advance_report(turn)


def _on_where(turn: Turn, text: str) -> None:
    draft = turn.data.get("draft") or {}
    if not draft.get("items"):
        turn.go(State.idle, draft=None)
        _process_text(turn, text)
        return
    masked = mask_text(text)[:300]
    resident = resident_of(turn)
    parsed = parse_address(turn, masked, estate=resident.estate if resident else None)
    draft["where"] = masked
    if parsed:
        draft.update({"estate": parsed["estate"], "building": parsed["building"], "unit": parsed["unit"]})
    turn.data["draft"] = draft
    _advance_report(turn)


def _on_edit(turn: Turn, text: str) -> None:
    """The resident corrects the draft: a place replaces the place, anything else the description."""
    draft = turn.data.get("draft") or {}
    if not draft.get("items"):
        turn.go(State.idle, draft=None)
        _process_text(turn, text)
        return
    masked = mask_text(text)[:500]
    resident = resident_of(turn)
    parsed = parse_address(turn, masked, estate=resident.estate if resident else None)
    u = _understand(turn, masked)
    only_place = parsed is not None and len(re.sub(r"[\W_]+", "", masked)) <= 14 and u.intent.label not in _CASE_INTENTS
    if parsed or masked.startswith(("地点", "在")):
        draft["where"] = re.sub(r"^(地点|位置)?(是|在)?[:：]?", "", masked) or masked
        if parsed:
            draft.update({"estate": parsed["estate"], "building": parsed["building"], "unit": parsed["unit"]})
    if not only_place and not masked.startswith(("地点", "在")):
        if len(u.parts or []) >= 2:
            draft["items"] = [{"intent": p.intent.label if p.intent.label in _CASE_INTENTS else "help",
                               "category": p.category.label, "urgency": p.urgency.label, "text": p.text}
                              for p in u.parts]
        else:
            intent = u.intent.label if u.intent.label in _CASE_INTENTS else draft["items"][0]["intent"]
            draft["items"] = [{"intent": intent, "category": u.category.label, "urgency": u.urgency.label,
                               "text": u.text}]
        if not parsed:
            draft.update(_where_from_details(u.details))
    draft["photo_asked"] = True
    draft["what_asked"] = True
    turn.data["draft"] = draft
    _advance_report(turn)


def _on_confirm(turn: Turn, yes: bool) -> None:
    draft = turn.data.get("draft") or {}
    if turn.state != State.report_confirm or not draft.get("items"):
        _expired(turn)
        return
    if not yes:
        turn.go(State.report_edit)
        turn.say(texts.ASK_CORRECTION)
        return
    resident = resident_of(turn)
    if not consented(resident):
        turn.go(State.idle, draft=None)
        turn.say(texts.NEED_CONSENT_FOR_CASE)
        return
    assert resident is not None
    turn.go(State.idle, draft=None)
    _open_cases(turn, resident, draft, announce=True)


def _open_cases(turn: Turn, resident: Resident | None, draft: dict[str, Any], *, announce: bool) -> list[Case]:
    """One case per item of the draft, through casestore intake (routing, deadlines, duplicates, pushes)."""
    from casestore.intake import Report, open_case

    opened: list[Case] = []
    for item in draft["items"]:
        text = mask_text(item["text"])  # already masked by understanding; masking twice is harmless
        report = Report(intent=item["intent"], category=item["category"], urgency=item["urgency"],
                        title=_title(text), description=text[:4000],
                        location_text=(draft.get("where") or None),
                        estate=draft.get("estate"), building=draft.get("building"), unit=draft.get("unit"),
                        attachments=list(draft.get("attachments") or []))
        try:
            result = open_case(session=turn.session, policies=turn.services.policies, sla=turn.services.sla,
                               clock=turn.services.clock, resident=resident, report=report)
        except DomainError as exc:
            turn.say(exc.user_message)
            continue
        case = result.case
        if result.duplicate_of is not None:
            original = result.duplicate_of
            turn.say(texts.CASE_DUPLICATE.format(code=original.code, handler=_handler_text(turn, original)))
            opened.append(original)
            continue
        opened.append(case)
        if announce:
            turn.say(texts.CASE_OPENED.format(code=case.code, handler=_handler_text(turn, case),
                                              due=_due_text(turn, case)))
            if case.grid_id is None:
                turn.say(texts.NO_ADDRESS_DUTY)
        if result.hotspot is not None and announce:
            turn.say(texts.CASE_HOTSPOT)
    return opened


def _title(text: str) -> str:
    first = re.split(r"[。！？!?\n]", text.strip(), maxsplit=1)[0]
    return (first[:30] + "…") if len(first) > 30 else (first or "居民反映")


# ====================================================================== emergencies
def _hit_names(u: Any) -> set[str]:
    """Danger-rule names from understanding ("gas:燃气味" -> "gas")."""
    return {str(h).split(":", 1)[0] for h in (u.rule_hits or [])}


def safety_guidance(u: Any, text: str) -> str:
    """The first reply to an emergency: what to do now and whom to call, by what the message says."""
    hits = _hit_names(u)
    if _is_self_harm(u, text):
        return texts.SELF_HARM
    if "gas" in hits or _GAS.search(text):
        return texts.EMERGENCY_GAS
    if hits & {"fire", "smoke"} or _FIRE.search(text):
        return texts.EMERGENCY_FIRE
    if "live_wire" in hits or _ELECTRIC.search(text):
        return texts.EMERGENCY_ELECTRIC
    if "trapped" in hits or _TRAPPED.search(text):
        return texts.EMERGENCY_TRAPPED
    if hits & {"collapse", "falling"} or _MEDICAL.search(text):
        return texts.EMERGENCY_MEDICAL
    if "missing" in hits or _MISSING.search(text):
        return texts.EMERGENCY_MISSING
    if "violence" in hits or _POLICE.search(text):
        return texts.EMERGENCY_POLICE
    if "flooding" in hits or _WATER.search(text):
        return texts.EMERGENCY_WATER
    if u.category.label == "health":
        return texts.EMERGENCY_MEDICAL
    return texts.EMERGENCY_GENERIC


def _emergency(turn: Turn, u: Any, text: str, *, forced: bool = False) -> None:
    """Guidance first, then an emergency case and an immediate page: no confirmation, no paperwork."""
    turn.say(safety_guidance(u, text))
    resident = resident_of(turn)
    has_consent = consented(resident)
    if resident is None:
        # the row holds only the channel id, so updates can reach them; no address, no consent recorded
        resident = get_or_create_resident(session=turn.session, telegram_id=turn.incoming.user_id, now=turn.now,
                                          channel=turn.incoming.channel)
    category = u.category.label
    if _is_self_harm(u, text) and category == "other":
        category = "health"
    draft: dict[str, Any] = {"items": [{"intent": "help", "category": category, "urgency": "emergency",
                                        "text": u.text}]}
    details = _where_from_details(u.details)
    if details:
        draft.update(details)
    elif has_consent:
        draft.update(_home_where(resident))
    turn.go(State.idle, draft=None, clarify=None)
    cases = _open_cases(turn, resident, draft, announce=False)
    if not cases:
        return
    case = cases[0]
    turn.say(texts.EMERGENCY_OPENED.format(code=case.code, handler=_handler_text(turn, case),
                                           due=_due_text(turn, case)))
    if not has_consent:
        turn.say(texts.EMERGENCY_NO_CONSENT)
    if case.grid_id is None:
        turn.say(texts.EMERGENCY_NO_ADDRESS)


# ====================================================================== status and rating
def _status_line(turn: Turn, case: Case) -> str:
    status = texts.STATUS_NAMES.get(case.status, case.status)
    promise = ""
    if case.status in (CaseStatus.new, CaseStatus.assigned, CaseStatus.reopened) and case.first_response_at is None \
            and case.response_due_at:
        promise = texts.PROMISE_RESPONSE.format(when=turn.local(case.response_due_at))
    elif case.status in (CaseStatus.assigned, CaseStatus.accepted, CaseStatus.in_progress, CaseStatus.reopened) \
            and case.resolve_due_at:
        promise = texts.PROMISE_RESOLVE.format(when=turn.local(case.resolve_due_at))
    category = turn.services.policies.taxonomy.name_of(case.category)
    return texts.MYCASES_ITEM.format(code=case.code, category=category, title=case.title, status=status,
                                     promise=promise)


def _my_cases(turn: Turn) -> None:
    resident = resident_of(turn)
    cases = list_cases_for_resident(session=turn.session, resident_id=resident.id) if resident and resident.id else []
    if not cases:
        turn.say(texts.MYCASES_EMPTY)
        return
    lines = [texts.MYCASES_HEADER] + [_status_line(turn, c) for c in cases]
    turn.say("\n".join(lines))
    for case in cases:
        if case.status == CaseStatus.resolved:
            turn.say(texts.RATE_ASK.format(code=case.code), _rating_buttons(case.code))


def _rating_buttons(code: str) -> list[list[Button]]:
    return [[Button(f"⭐{n}", "rate", code, str(n)) for n in range(1, 6)],
            [Button(texts.BTN_NOT_FIXED, "rate", code, "not_fixed")]]


def _one_case(turn: Turn, code: str) -> None:
    resident = resident_of(turn)
    try:
        case = get_case(session=turn.session, code=code)
    except NotFound:
        case = None
    if case is None or resident is None or case.resident_id != resident.id:
        turn.say(texts.CASE_NOT_FOUND)  # never reveal that someone else's case exists
        return
    turn.say(_status_line(turn, case))


def _on_rate(turn: Turn, code: str | None, arg: str) -> None:
    from casestore.feedback import rate

    resident = resident_of(turn)
    if not code or resident is None or resident.id is None:
        _expired(turn)
        return
    if arg == "fixed":
        fixed, rating = True, None
    elif arg == "not_fixed":
        fixed, rating = False, None
    elif arg.isdigit() and 1 <= int(arg) <= 5:
        fixed, rating = True, int(arg)
    else:
        _expired(turn)
        return
    try:
        with turn.session.begin_nested():
            case = rate(session=turn.session, policies=turn.services.policies, sla=turn.services.sla,
                        clock=turn.services.clock, resident_id=resident.id, code=code, fixed=fixed, rating=rating)
    except DomainError as exc:  # someone else's case, or not waiting for a rating: nothing changes
        log.info("rating refused cid=%s: %s", turn.cid, type(exc).__name__)
        _expired(turn)
        return
    reopened = case.status in (CaseStatus.reopened, CaseStatus.assigned)
    turn.say(texts.RATE_REOPENED.format(code=case.code) if reopened else texts.RATE_THANKS)


def _text_feedback(turn: Turn, text: str) -> None:
    resident = resident_of(turn)
    cases = list_cases_for_resident(session=turn.session, resident_id=resident.id) if resident and resident.id else []
    resolved = [c for c in cases if c.status == CaseStatus.resolved]
    if resolved:
        turn.say(texts.RATE_ASK.format(code=resolved[0].code), _rating_buttons(resolved[0].code))
        return
    turn.say(texts.THANKS_REPLY if _THANKS.match(text) else texts.FEEDBACK_NO_CASE)


# ====================================================================== photos and locations
def _on_photo(turn: Turn) -> None:
    inc = turn.incoming
    attachment = {"type": "photo", "file_id": inc.photo_file_id}
    draft = turn.data.get("draft")
    if draft and turn.state in (State.report_where, State.report_what, State.report_photo, State.report_confirm,
                                State.report_edit):
        draft.setdefault("attachments", []).append(attachment)
        draft["photo_asked"] = True
        turn.data["draft"] = draft
        turn.say(texts.PHOTO_RECEIVED)
        if turn.state == State.report_photo:
            _advance_report(turn)
        return
    if inc.text:
        turn.data.setdefault("pending_attachments", []).append(attachment)
        _on_text(turn, inc.text)
        return
    turn.data.setdefault("pending_attachments", []).append(attachment)
    turn.say(texts.PHOTO_RECEIVED + texts.PHOTO_WHAT_ABOUT)


def _on_location(turn: Turn) -> None:
    inc = turn.incoming
    if inc.location is None:
        turn.say(texts.UNSUPPORTED)
        return
    lat, lng = inc.location
    attachment = {"type": "location", "lat": round(lat, 6), "lng": round(lng, 6)}
    where = texts.LOCATION_WHERE.format(lat=lat, lng=lng)
    draft = turn.data.get("draft")
    if draft and turn.state == State.report_where:
        draft.setdefault("attachments", []).append(attachment)
        draft["where"] = where
        turn.data["draft"] = draft
        _advance_report(turn)
        return
    if draft and turn.state.startswith("report_"):
        draft.setdefault("attachments", []).append(attachment)
        turn.data["draft"] = draft
        turn.say(texts.LOCATION_RECEIVED)
        return
    turn.data.setdefault("pending_attachments", []).append(attachment)
    turn.say(texts.LOCATION_RECEIVED + texts.LOCATION_WHAT_ABOUT)
