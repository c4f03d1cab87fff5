"""A resident's report as a form: the slots what → where → photo, then confirm, then one case per problem.

Owns: `ReportForm` in Rasa's manner: `REQUIRED_SLOTS` in order, `missing_slot` (the first slot still empty),
one `validate_<slot>` per slot that fills it from a message, and the confirmation and edits. A slot is asked
at most once; the resident can always leave it: skip it (跳过), ask for a person (the router), or tell us
something else (it is handled as a new message). Photos and shared locations join the draft.
Must not: route, set deadlines or merge duplicates (casestore does) or phrase replies inline (texts.py does).
"""

from __future__ import annotations

import re

from bot.dialogue import texts
from bot.dialogue.consent import ask_consent
from bot.dialogue.drafts import Place, ReportDraft, ReportItem
from bot.dialogue.filing import open_cases
from bot.dialogue.places import home_of, parse_address, place_from_details
from bot.dialogue.safety import emergency
from bot.dialogue.state import State
from bot.dialogue.turn import Turn
from bot.dialogue.words import MIN_ACTIONABLE, content_chars
from bot.understanding.types import Understanding
from casestore.notify import Button
from policies.masking import mask_text

REQUIRED_SLOTS = ("what", "where", "photo")
_SLOT_STATE = {"what": State.report_what, "where": State.report_where, "photo": State.report_photo}


# ====================================================================== building the draft
def _items(turn: Turn, u: Understanding, *, intent: str | None = None,
           default_intent: str | None = None) -> list[ReportItem]:
    """One item per problem the message names (two problems → two cases)."""
    taxonomy = turn.services.policies.taxonomy
    parts = [p for p in u.parts if p is not None] if len(u.parts) >= 2 else [u]
    fallback = default_intent or (u.intent.label if taxonomy.opens_case(u.intent.label) else "help")
    return [ReportItem(intent=intent or (p.intent.label if taxonomy.opens_case(p.intent.label) else fallback),
                       category=p.category.label, urgency=p.urgency.label, text=p.text,
                       target=p.target, target_roles=list(p.target_roles)) for p in parts]


def start_report(turn: Turn, u: Understanding, *, intent: str | None = None) -> None:
    if not turn.consented():
        turn.data.pending = u.text
        turn.say(texts.NEED_CONSENT_FOR_CASE)
        ask_consent(turn)
        return
    draft = ReportDraft(items=_items(turn, u, intent=intent), attachments=list(turn.data.pending_attachments))
    turn.data.pending_attachments = []
    place = place_from_details(u.details, home=home_of(turn.resident()))
    if place is not None:
        draft.set_place(place)
    if turn.data.unbound_where:  # the address could not be read twice: the typed words are the place
        draft.where, draft.where_asked, draft.address_unconfirmed = turn.data.unbound_where, True, True
        turn.data.unbound_where = None
    turn.data.draft = draft
    advance(turn)


# ====================================================================== the form
def _needs_place(turn: Turn, draft: ReportDraft) -> bool:
    return any(turn.services.policies.taxonomy.needs_place(i.category) for i in draft.items)


def _fill_from_home(turn: Turn, draft: ReportDraft) -> None:
    """A problem at home needs no question: the bound address is the place ("楼道" becomes 3号楼2单元楼道)."""
    home = home_of(turn.resident())
    if home is None or _needs_place(turn, draft) or draft.where_asked:
        return
    if draft.where and draft.building is None and not draft.estate:
        draft.set_place(Place(where=(home.where or "") + draft.where, estate=home.estate, building=home.building,
                              unit=home.unit))
    elif not draft.where:
        draft.set_place(home)
        draft.where_is_home = True


def missing_slot(turn: Turn, draft: ReportDraft) -> str | None:
    """The first required slot that is empty and not yet asked, or None when the draft can be confirmed."""
    _fill_from_home(turn, draft)
    for slot in REQUIRED_SLOTS:
        if slot == "what" and content_chars(draft.items[0].text) < MIN_ACTIONABLE and not draft.what_asked:
            return slot
        if slot == "where" and not draft.where and not draft.where_asked:
            return slot
        if slot == "photo" and not draft.photo_asked and not any(a.get("type") == "photo" for a in draft.attachments):
            return slot
    return None


def _ask(turn: Turn, slot: str, draft: ReportDraft) -> None:
    setattr(draft, f"{slot}_asked", True)
    turn.go(_SLOT_STATE[slot])
    if slot == "what":
        turn.say(texts.ASK_WHAT)
    elif slot == "where":
        turn.say(texts.ASK_WHERE, [[Button(texts.BTN_SKIP, "slot_skip", None, "where")]])
    else:
        turn.say(texts.ASK_PHOTO, [[Button(texts.BTN_SKIP, "photo_skip")]])


def advance(turn: Turn) -> None:
    """Ask for the first missing slot, else show the draft for confirmation."""
    draft = turn.data.draft
    if draft is None or not draft.items:
        turn.data.draft = None
        turn.go(State.idle)
        turn.expired()
        return
    slot = missing_slot(turn, draft)
    if slot is not None:
        _ask(turn, slot, draft)
        return
    turn.go(State.report_confirm)
    turn.say(_confirm_text(turn, draft), [[Button(texts.BTN_YES, "confirm", None, "yes"),
                                           Button(texts.BTN_NO, "confirm", None, "no")]])


def _label(turn: Turn, item: ReportItem) -> str:
    tax = turn.services.policies.taxonomy
    if item.intent != "help":
        return f"{tax.name_of(item.intent)}·{tax.name_of(item.category)}"
    return tax.name_of(item.category)


def _confirm_text(turn: Turn, draft: ReportDraft) -> str:
    where = draft.where or texts.WHERE_UNKNOWN
    if len(draft.items) == 1:
        item = draft.items[0]
        shown = texts.CONFIRM_ONE.format(category=_label(turn, item), where=where, text=item.text)
        return _with_wish_note(shown, draft)
    lines = "\n".join(texts.CONFIRM_ITEM.format(i=i + 1, category=_label(turn, it), text=it.text)
                      for i, it in enumerate(draft.items))
    return _with_wish_note(texts.CONFIRM_MANY.format(n=len(draft.items), items=lines, where=where), draft)


def _with_wish_note(shown: str, draft: ReportDraft) -> str:
    """A wish is published on the 心愿墙: the resident hears, before confirming, that it goes out masked."""
    return f"{shown}\n{texts.WISH_CONFIRM_NOTE}" if any(i.intent == "wish" for i in draft.items) else shown


# ====================================================================== one validator per slot
def validate_what(turn: Turn, text: str) -> None:
    """The problem told more precisely: it joins the first item, which is understood again."""
    draft = turn.data.draft
    if draft is None or not draft.items:
        turn.go(State.idle)
        turn.requeue(text)
        return
    u = turn.understand(text)
    first = draft.items[0]
    first.text = f"{first.text}，{u.text}".strip("，")
    combined = turn.understand(first.text)
    if turn.services.policies.taxonomy.opens_case(combined.intent.label):
        first.intent = combined.intent.label
    first.category, first.urgency = combined.category.label, combined.urgency.label
    if not draft.where:
        home = home_of(turn.resident())
        place = place_from_details(u.details, home=home) or place_from_details(combined.details, home=home)
        if place is not None:
            draft.set_place(place)
    if combined.urgency.label == "emergency":
        turn.data.draft = None
        emergency(turn, combined, first.text)
        return
    advance(turn)


def validate_where(turn: Turn, text: str) -> None:
    """Any words are a place ("小区东门", "5号楼2单元"); a parsed address also finds the grid."""
    draft = turn.data.draft
    if draft is None or not draft.items:
        turn.go(State.idle)
        turn.requeue(text)
        return
    masked = mask_text(text)[:300]
    resident = turn.resident()
    parsed = parse_address(turn.services.policies.grids, masked, estate=resident.estate if resident else None)
    draft.set_place(parsed or Place(where=masked))
    advance(turn)


def skip_slot(turn: Turn, slot: str) -> None:
    """跳过 at a slot: the draft goes on without it."""
    draft = turn.data.draft
    if draft is None or turn.state != _SLOT_STATE.get(slot):
        turn.expired()
        return
    setattr(draft, f"{slot}_asked", True)
    if slot == "where":
        turn.say(texts.SKIPPED_WHERE)
    advance(turn)


def validate_photo(turn: Turn, photo_file_id: str | None) -> None:
    draft = turn.data.draft
    if draft is None:
        turn.expired()
        return
    draft.attachments.append({"type": "photo", "file_id": photo_file_id})
    draft.photo_asked = True
    turn.say(texts.PHOTO_RECEIVED)
    if turn.state == State.report_photo:
        advance(turn)


# ====================================================================== confirm and edit
def on_confirm(turn: Turn, yes: bool) -> None:
    draft = turn.data.draft
    if turn.state != State.report_confirm or draft is None or not draft.items:
        turn.expired()
        return
    if not yes:
        turn.go(State.report_edit)
        turn.say(texts.ASK_CORRECTION)
        return
    resident = turn.resident()
    turn.data.draft = None
    turn.go(State.idle)
    if resident is None or not turn.consented():
        turn.say(texts.NEED_CONSENT_FOR_CASE)
        return
    open_cases(turn, resident, draft, announce=True)


def on_edit(turn: Turn, text: str) -> None:
    """The resident corrects the draft: a place replaces the place, anything else the description."""
    draft = turn.data.draft
    if draft is None or not draft.items:
        turn.go(State.idle)
        turn.requeue(text)
        return
    masked = mask_text(text)[:500]
    resident = turn.resident()
    parsed = parse_address(turn.services.policies.grids, masked, estate=resident.estate if resident else None)
    u = turn.understand(masked)
    taxonomy = turn.services.policies.taxonomy
    says_place = masked.startswith(("地点", "在"))
    only_place = parsed is not None and content_chars(masked) <= 14 and not taxonomy.opens_case(u.intent.label)
    if parsed or says_place:
        corrected = parsed or Place()
        corrected.where = re.sub(r"^(地点|位置)?(是|在)?[:：]?", "", masked) or masked
        draft.set_place(corrected)
    if not only_place and not says_place:
        draft.items = _items(turn, u, default_intent=draft.items[0].intent)
        if not parsed:
            place = place_from_details(u.details, home=home_of(turn.resident()))
            if place is not None:
                draft.set_place(place)
    draft.photo_asked = draft.what_asked = True
    advance(turn)


# ====================================================================== photos and locations
def on_photo(turn: Turn) -> None:
    inc = turn.incoming
    if turn.data.draft is not None and turn.state in (State.report_where, State.report_what, State.report_photo,
                                                      State.report_confirm, State.report_edit):
        validate_photo(turn, inc.photo_file_id)
        return
    turn.data.pending_attachments.append({"type": "photo", "file_id": inc.photo_file_id})
    if inc.text:
        turn.requeue(inc.text)
        return
    turn.say(texts.PHOTO_RECEIVED + texts.PHOTO_WHAT_ABOUT)


def on_location(turn: Turn) -> None:
    inc = turn.incoming
    if inc.location is None:
        turn.say(texts.UNSUPPORTED)
        return
    lat, lng = inc.location
    attachment = {"type": "location", "lat": round(lat, 6), "lng": round(lng, 6)}
    draft = turn.data.draft
    if draft is not None and turn.state == State.report_where:
        draft.attachments.append(attachment)
        draft.where = texts.LOCATION_WHERE.format(lat=lat, lng=lng)
        advance(turn)
        return
    if draft is not None and turn.state.startswith("report_"):
        draft.attachments.append(attachment)
        turn.say(texts.LOCATION_RECEIVED)
        return
    turn.data.pending_attachments.append(attachment)
    turn.say(texts.LOCATION_RECEIVED + texts.LOCATION_WHAT_ABOUT)
