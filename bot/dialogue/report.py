"""A resident's report, from the first message to the case number: what happened, where, a photo, confirm.

Owns: asking only what is missing (the place when the home address cannot be it, the problem when the message
was too short), the confirmation and edits, opening one case per problem, photos and shared locations.
Must not: route, set deadlines or merge duplicates (casestore does) or phrase replies inline (texts.py does).
"""

from __future__ import annotations

import re
from typing import Any

from bot.dialogue import resident as router
from bot.dialogue import safety, texts
from bot.dialogue.engine import Turn
from bot.dialogue.state import State
from casestore.errors import DomainError
from casestore.models import Case, Resident
from casestore.notify import Button
from policies.masking import mask_text

# problems whose place cannot be the resident's home: a bound address does not say where they are
_PLACE_NEEDED = {"public_facilities", "parking_traffic", "urban_management", "environment"}


def home_where(resident: Resident | None) -> dict[str, Any]:
    if resident is None or not resident.estate:
        return {}
    return {"where": router.address_text(resident), "estate": resident.estate, "building": resident.building,
            "unit": resident.unit}


def where_from_details(details: Any) -> dict[str, Any]:
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


def start_report(turn: Turn, u: Any, *, intent: str | None = None) -> None:
    resident = router.resident_of(turn)
    if not router.consented(resident):
        turn.data["pending"] = u.text
        turn.say(texts.NEED_CONSENT_FOR_CASE)
        router.ask_consent(turn)
        return
    parts = [p for p in (u.parts or []) if p is not None] if len(u.parts or []) >= 2 else [u]
    items = [{"intent": intent or (p.intent.label if p.intent.label in router.CASE_INTENTS else u.intent.label),
              "category": p.category.label, "urgency": p.urgency.label, "text": p.text} for p in parts]
    draft: dict[str, Any] = {"items": items, "attachments": list(turn.data.pop("pending_attachments", []) or [])}
    draft.update(where_from_details(u.details))
    turn.data["draft"] = draft
    advance_report(turn)


def _needs_place(draft: dict[str, Any]) -> bool:
    return any(i["category"] in _PLACE_NEEDED for i in draft["items"])


def advance_report(turn: Turn) -> None:
    """Ask for the first missing piece (what, where, photo), then confirm."""
    draft = turn.data.get("draft") or {}
    if not draft.get("items"):
        turn.go(State.idle, draft=None)
        router.expired(turn)
        return
    text_len = len(re.sub(r"[\W_]+", "", draft["items"][0]["text"]))
    if text_len < router.MIN_ACTIONABLE and not draft.get("what_asked"):
        draft["what_asked"] = True
        turn.go(State.report_what, draft=draft)
        turn.say(texts.ASK_WHAT)
        return
    resident = router.resident_of(turn)
    home = home_where(resident)
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


def on_what(turn: Turn, text: str) -> None:
    draft = turn.data.get("draft") or {}
    if not draft.get("items"):
        turn.go(State.idle, draft=None)
        router.process_text(turn, text)
        return
    u = router.understand(turn, text)
    first = draft["items"][0]
    first["text"] = f"{first['text']}，{u.text}".strip("，")
    combined = router.understand(turn, first["text"])
    if combined.intent.label in router.CASE_INTENTS:
        first["intent"] = combined.intent.label
    first["category"], first["urgency"] = combined.category.label, combined.urgency.label
    if not draft.get("where"):
        draft.update(where_from_details(u.details) or where_from_details(combined.details))
    turn.data["draft"] = draft
    if combined.urgency.label == "emergency":
        turn.go(State.idle, draft=None)
        safety.emergency(turn, combined, first["text"])
        return
    advance_report(turn)


def on_where(turn: Turn, text: str) -> None:
    draft = turn.data.get("draft") or {}
    if not draft.get("items"):
        turn.go(State.idle, draft=None)
        router.process_text(turn, text)
        return
    masked = mask_text(text)[:300]
    resident = router.resident_of(turn)
    parsed = router.parse_address(turn, masked, estate=resident.estate if resident else None)
    draft["where"] = masked
    if parsed:
        draft.update({"estate": parsed["estate"], "building": parsed["building"], "unit": parsed["unit"]})
    turn.data["draft"] = draft
    advance_report(turn)


def on_edit(turn: Turn, text: str) -> None:
    """The resident corrects the draft: a place replaces the place, anything else the description."""
    draft = turn.data.get("draft") or {}
    if not draft.get("items"):
        turn.go(State.idle, draft=None)
        router.process_text(turn, text)
        return
    masked = mask_text(text)[:500]
    resident = router.resident_of(turn)
    parsed = router.parse_address(turn, masked, estate=resident.estate if resident else None)
    u = router.understand(turn, masked)
    only_place = parsed is not None and len(re.sub(r"[\W_]+", "", masked)) <= 14 and u.intent.label not in router.CASE_INTENTS
    if parsed or masked.startswith(("地点", "在")):
        draft["where"] = re.sub(r"^(地点|位置)?(是|在)?[:：]?", "", masked) or masked
        if parsed:
            draft.update({"estate": parsed["estate"], "building": parsed["building"], "unit": parsed["unit"]})
    if not only_place and not masked.startswith(("地点", "在")):
        if len(u.parts or []) >= 2:
            draft["items"] = [{"intent": p.intent.label if p.intent.label in router.CASE_INTENTS else "help",
                               "category": p.category.label, "urgency": p.urgency.label, "text": p.text}
                              for p in u.parts]
        else:
            intent = u.intent.label if u.intent.label in router.CASE_INTENTS else draft["items"][0]["intent"]
            draft["items"] = [{"intent": intent, "category": u.category.label, "urgency": u.urgency.label,
                               "text": u.text}]
        if not parsed:
            draft.update(where_from_details(u.details))
    draft["photo_asked"] = True
    draft["what_asked"] = True
    turn.data["draft"] = draft
    advance_report(turn)


def on_confirm(turn: Turn, yes: bool) -> None:
    draft = turn.data.get("draft") or {}
    if turn.state != State.report_confirm or not draft.get("items"):
        router.expired(turn)
        return
    if not yes:
        turn.go(State.report_edit)
        turn.say(texts.ASK_CORRECTION)
        return
    resident = router.resident_of(turn)
    if not router.consented(resident):
        turn.go(State.idle, draft=None)
        turn.say(texts.NEED_CONSENT_FOR_CASE)
        return
    assert resident is not None
    turn.go(State.idle, draft=None)
    open_cases(turn, resident, draft, announce=True)


def open_cases(turn: Turn, resident: Resident | None, draft: dict[str, Any], *, announce: bool) -> list[Case]:
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
            turn.say(texts.CASE_DUPLICATE.format(code=original.code, handler=router.handler_text(turn, original)))
            opened.append(original)
            continue
        opened.append(case)
        if announce:
            turn.say(texts.CASE_OPENED.format(code=case.code, handler=router.handler_text(turn, case),
                                              due=router.due_text(turn, case)))
            if case.grid_id is None:
                turn.say(texts.NO_ADDRESS_DUTY)
        if result.hotspot is not None and announce:
            turn.say(texts.CASE_HOTSPOT)
    return opened


def _title(text: str) -> str:
    first = re.split(r"[。！？!?\n]", text.strip(), maxsplit=1)[0]
    return (first[:30] + "…") if len(first) > 30 else (first or "居民反映")


def on_photo(turn: Turn) -> None:
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
            advance_report(turn)
        return
    if inc.text:
        turn.data.setdefault("pending_attachments", []).append(attachment)
        router.on_text(turn, inc.text)
        return
    turn.data.setdefault("pending_attachments", []).append(attachment)
    turn.say(texts.PHOTO_RECEIVED + texts.PHOTO_WHAT_ABOUT)


def on_location(turn: Turn) -> None:
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
        advance_report(turn)
        return
    if draft and turn.state.startswith("report_"):
        draft.setdefault("attachments", []).append(attachment)
        turn.data["draft"] = draft
        turn.say(texts.LOCATION_RECEIVED)
        return
    turn.data.setdefault("pending_attachments", []).append(attachment)
    turn.say(texts.LOCATION_RECEIVED + texts.LOCATION_WHAT_ABOUT)
