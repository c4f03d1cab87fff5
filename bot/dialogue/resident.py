"""The resident's side of the conversation: the router, consent, address binding and policy answers.

Owns: which question to ask next and which service to call (understanding, knowledge, casestore intake and
feedback); the report flow is in report.py, emergencies and safety in safety.py, a resident's own cases and
ratings in mycases.py. Every text that is stored or shown to others is the masked text from understanding.
Must not: decide routing, deadlines or duplicates (casestore does) or phrase replies inline (texts.py does).
"""

from __future__ import annotations

import logging
import re
from typing import Any

from bot.dialogue import mycases, report, safety, texts
from bot.dialogue.engine import Turn
from bot.dialogue.state import State
from casestore.models import Case, Feedback, Resident
from casestore.notices import role_name
from casestore.notify import Button
from casestore.residents import bind_address, get_or_create_resident, record_consent
from policies.masking import find_personal_data, mask_text
from policies.models import Community

log = logging.getLogger(__name__)

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
THANKS = re.compile(r"^(谢谢|感谢|多谢|辛苦了|太好了|好的谢谢)")

# intents that become cases through the report flow
CASE_INTENTS = {"help", "complaint", "suggestion", "wish", "dispute"}
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
        report.on_photo(turn)
    elif inc.kind == "location":
        report.on_location(turn)
    else:
        on_text(turn, inc.text)


# ====================================================================== helpers
def resident_of(turn: Turn) -> Resident | None:
    from sqlalchemy import select

    stmt = select(Resident).where(Resident.telegram_id == turn.incoming.user_id)
    return turn.session.execute(stmt).scalars().first()


def consented(resident: Resident | None) -> bool:
    return resident is not None and resident.consent_at is not None


def understand(turn: Turn, text: str) -> Any:
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


def expired(turn: Turn) -> None:
    turn.say(texts.BUTTON_EXPIRED)


def due_text(turn: Turn, case: Case) -> str:
    return texts.DUE_RESPONSE.format(when=turn.local(case.response_due_at)) if case.response_due_at else texts.DUE_NONE


def handler_text(turn: Turn, case: Case) -> str:
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
        mycases.my_cases(turn)
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
    ask_consent(turn)


def ask_consent(turn: Turn) -> None:
    turn.say(texts.PRIVACY)
    turn.say(texts.CONSENT_ASK, [[Button(texts.BTN_AGREE, "consent", None, "yes"),
                                  Button(texts.BTN_DISAGREE, "consent", None, "no")]])
    turn.go(State.consent)


# ====================================================================== buttons
def _on_button(turn: Turn) -> None:
    btn = turn.incoming.button
    if btn is None:
        expired(turn)
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
            expired(turn)
            return
        turn.data.setdefault("draft", {})["photo_asked"] = True
        report.advance_report(turn)
    elif action == "confirm":
        report.on_confirm(turn, arg == "yes")
    elif action == "rate":
        mycases.on_rate(turn, btn.case_code, arg)
    else:
        expired(turn)


def _on_consent(turn: Turn, yes: bool) -> None:
    if turn.state not in (State.consent, State.start) or consented(resident_of(turn)):
        expired(turn)
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
        expired(turn)
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
            expired(turn)
            return
        turn.go(State.address, addr={"c": community.id})
        turn.say(texts.ADDRESS_PICK_ESTATE,
                 [[Button(e.name, "addr", None, f"e.{i}") for i, e in enumerate(community.estates)]])
        return
    community = _community(turn, addr.get("c"))
    if community is None:
        expired(turn)
        return
    if kind == "e" and value.isdigit() and int(value) < len(community.estates):
        estate = community.estates[int(value)]
        turn.go(State.address, addr={"c": community.id, "e": estate.name})
        buttons = [Button(f"{n}号楼", "addr", None, f"b.{n}") for n in range(1, estate.buildings + 1)]
        turn.say(texts.ADDRESS_PICK_BUILDING, [buttons[i:i + 6] for i in range(0, len(buttons), 6)])
        return
    estate = next((e for e in community.estates if e.name == addr.get("e")), None)
    if estate is None:
        expired(turn)
        return
    if kind == "b" and value.isdigit() and 1 <= int(value) <= estate.buildings:
        turn.go(State.address, addr={**addr, "b": int(value)})
        turn.say(texts.ADDRESS_PICK_UNIT, [[Button(f"{n}单元", "addr", None, f"u.{n}")
                                            for n in range(1, estate.units_per_building + 1)]])
        return
    if kind == "u" and value.isdigit() and addr.get("b"):
        _bind(turn, estate.name, int(addr["b"]), int(value))
        return
    expired(turn)


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
        process_text(turn, pending)


# ====================================================================== text
def on_text(turn: Turn, text: str) -> None:
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
        report.on_where(turn, text)
        return
    elif state == State.report_what:
        report.on_what(turn, text)
        return
    elif state == State.report_photo:
        if text in _SKIP:
            turn.data.setdefault("draft", {})["photo_asked"] = True
            report.advance_report(turn)
            return
        turn.go(State.idle, draft=None)  # they moved on; treat as a new message
    elif state == State.report_confirm:
        if text in _YES:
            report.on_confirm(turn, True)
            return
        if text in _NO:
            report.on_confirm(turn, False)
            return
        report.on_edit(turn, text)
        return
    elif state == State.report_edit:
        report.on_edit(turn, text)
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
    process_text(turn, text)


def _first_contact(turn: Turn, text: str) -> None:
    """Any first message: an emergency or a question is served at once; the rest waits for consent."""
    u = understand(turn, text)
    if safety.is_emergency(u, text) or safety.is_injection(text):
        process_text(turn, text, u)
        turn.say(texts.WELCOME)
        ask_consent(turn)
        return
    if u.intent.label == "inquiry" and not u.low_confidence:
        process_text(turn, text, u)
        turn.say(texts.WELCOME)
        ask_consent(turn)
        return
    turn.say(texts.WELCOME)
    ask_consent(turn)
    if u.intent.label in CASE_INTENTS or u.low_confidence:
        turn.data["pending"] = u.text  # masked; replayed after consent and address


def process_text(turn: Turn, text: str, u: Any | None = None) -> None:
    """A message in idle state: decide the path from the understanding."""
    if safety.is_injection(text):
        log.info("prompt-injection-like input refused cid=%s", turn.cid)
        turn.say(texts.INJECTION)
        return
    if text in _HUMAN_WORDS and (turn.data.get("last_q") or {}).get("text"):
        _open_inquiry(turn, automatic=False)
        return
    code = _CASE_CODE.search(text)
    if code:
        mycases.one_case(turn, code.group(0).upper())
        return
    if u is None:
        u = understand(turn, text)
    _remember_phone(turn, text)
    if safety.is_emergency(u, text):
        safety.emergency(turn, u, text)
        return
    intent = u.intent.label
    if _STATUS_WORDS.search(text) or (intent == "status" and not u.low_confidence):
        mycases.my_cases(turn)
        return
    if u.low_confidence and "intent" in (u.uncertain_axes or ["intent"]):
        turn.go(State.clarify, clarify={"text": u.text})
        turn.say(texts.CLARIFY, _clarify_buttons())
        return
    if intent == "inquiry":
        _answer(turn, u)
    elif intent in CASE_INTENTS:
        report.start_report(turn, u)
    elif intent == "feedback":
        mycases.text_feedback(turn, text)
    elif intent == "status":
        mycases.my_cases(turn)
    else:
        turn.say(texts.THANKS_REPLY if THANKS.match(text) else texts.CHITCHAT)


def _clarify_buttons() -> list[list[Button]]:
    return [[Button(texts.BTN_CLARIFY_INQUIRY, "clarify", None, "inquiry"),
             Button(texts.BTN_CLARIFY_REPORT, "clarify", None, "report")],
            [Button(texts.BTN_CLARIFY_EMERGENCY, "clarify", None, "emergency"),
             Button(texts.BTN_CLARIFY_OTHER, "clarify", None, "other")]]


def _on_clarify(turn: Turn, choice: str) -> None:
    pending = (turn.data.get("clarify") or {}).get("text")
    if turn.state != State.clarify or not pending:
        expired(turn)
        return
    turn.go(State.idle, clarify=None)
    u = understand(turn, pending)
    if choice == "inquiry":
        _answer(turn, u)
    elif choice == "report":
        intent = u.intent.label if u.intent.label in CASE_INTENTS else "help"
        report.start_report(turn, u, intent=intent)
    elif choice == "emergency":
        safety.emergency(turn, u, pending, forced=True)
    else:
        turn.say(texts.CLARIFY_OTHER)


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
        expired(turn)
        return
    if action == "human":
        _open_inquiry(turn, automatic=False)
        return
    if last.get("rated"):
        expired(turn)
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
        expired(turn)
        return
    text = str(last.get("text", ""))
    item = {"intent": "inquiry", "category": last.get("category") or "other", "urgency": "normal", "text": text}
    assert resident is not None
    draft = {"items": [item], **report.home_where(resident)}
    cases = report.open_cases(turn, resident, draft, announce=False)
    if not cases:
        return
    case = cases[0]
    turn.data["last_q"] = {**last, "case": case.code}
    turn.say(texts.HUMAN_OPENED.format(handler=handler_text(turn, case), code=case.code,
                                                due=due_text(turn, case)))




