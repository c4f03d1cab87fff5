"""The resident's home address: community → estate → building → unit buttons, or typed in one go.

Owns: the address slot. A typed address is parsed against grids.yaml (names and aliases); a problem typed where
the address was asked is kept and handled once the address is known; after two addresses that cannot be read the
bot stops asking and carries on (a kept problem becomes a case with 地址待确认, which routing sends to the duty
desk). A floor or a room ("三楼", "301") is not a building: the bot asks for the building instead. A name that
only looks like an estate ("曲水小区") is asked back ("您说的是曲水亭小区吗？" 是/不是/选小区): no address is bound
to a grid without an exact name or alias, or the resident's yes.
Must not: store anything except through casestore.residents.
"""

from __future__ import annotations

from bot.dialogue import texts
from bot.dialogue.drafts import AddressPick
from bot.dialogue.places import ADDRESS_WORDS, AddressReading, place_text, read_address
from bot.dialogue.state import State
from bot.dialogue.turn import Turn
from bot.dialogue.words import NO, YES, content_chars
from casestore.models import Grid
from casestore.notify import Button
from casestore.residents import bind_address
from policies.models import Community, Estate

MAX_FAILURES = 2  # typed addresses that could not be read before the bot stops asking


def _community(turn: Turn, community_id: str | None) -> Community | None:
    return next((c for c in turn.services.policies.grids.communities if c.id == community_id), None)


def _estate(turn: Turn, name: str | None) -> tuple[Community, Estate] | None:
    for c in turn.services.policies.grids.communities:
        for e in c.estates:
            if e.name == name:
                return c, e
    return None


def _building_rows(estate: Estate) -> list[list[Button]]:
    buttons = [Button(f"{n}号楼", "addr", None, f"b.{n}") for n in range(1, estate.buildings + 1)]
    return [buttons[i:i + 6] for i in range(0, len(buttons), 6)]


def ask_building(turn: Turn, estate: str, *, lead: str) -> None:
    """The estate is known but not the building: its building buttons (typing "5号楼" works too)."""
    found = _estate(turn, estate)
    if found is None:
        ask_community(turn)
        return
    community, spec = found
    failures = turn.data.addr.failures if turn.data.addr else 0
    turn.go(State.address)
    turn.data.addr = AddressPick(community=community.id, estate=spec.name, failures=failures)
    turn.say(lead, _building_rows(spec))


def ask_which_estate(turn: Turn, reading: AddressReading) -> None:
    """A typed name only looks like an estate: ask before binding anything; the rest of the address is kept."""
    failures = turn.data.addr.failures if turn.data.addr else 0
    turn.go(State.address)
    turn.data.addr = AddressPick(suggested=reading.suggestion, building=reading.building, unit=reading.unit,
                                 failures=failures)
    turn.say(texts.ADDRESS_CONFIRM_ESTATE.format(estate=reading.suggestion),
             [[Button(texts.BTN_YES_ESTATE, "addr", None, "y"), Button(texts.BTN_NOT_ESTATE, "addr", None, "n"),
               Button(texts.BTN_PICK_ESTATE, "addr", None, "pick")]])


def _on_suggestion(turn: Turn, pick: AddressPick, yes: bool) -> None:
    if pick.suggested is None:
        turn.expired()
        return
    if not yes:
        ask_community(turn, lead=texts.ADDRESS_NOT_THAT_ESTATE)
    elif pick.building is not None:
        bind(turn, pick.suggested, pick.building, pick.unit)
    else:
        ask_building(turn, pick.suggested, lead=texts.ADDRESS_ASK_BUILDING.format(estate=pick.suggested))


def ask_community(turn: Turn, *, lead: str = texts.ADDRESS_PICK_COMMUNITY) -> None:
    rows = [[Button(c.name, "addr", None, f"c.{c.id}") for c in turn.services.policies.grids.communities],
            [Button(texts.ADDRESS_SKIP, "addr", None, "skip")]]
    turn.go(State.address)
    turn.data.addr = AddressPick(failures=turn.data.addr.failures if turn.data.addr else 0)
    turn.say(lead, rows)


def after_consent(turn: Turn) -> None:
    """The resident has just agreed: ask the address if there is none, else carry on."""
    resident = turn.resident()
    if resident is not None and resident.grid_id is None:
        ask_community(turn)
    else:
        continue_pending(turn)


def continue_pending(turn: Turn) -> None:
    """After consent and address: carry on with what the resident said first."""
    pending, turn.data.pending = turn.data.pending, None
    turn.go(State.idle)
    turn.data.addr = None
    if pending:
        turn.requeue(pending)


def skip(turn: Turn) -> None:
    turn.data.addr = None
    turn.go(State.idle)
    turn.say(texts.ADDRESS_SKIPPED)
    continue_pending(turn)


def on_button(turn: Turn, arg: str) -> None:
    if turn.state != State.address:
        turn.expired()
        return
    pick = turn.data.addr or AddressPick()
    kind, _, value = arg.partition(".")
    if kind == "skip":
        skip(turn)
        return
    if kind in ("y", "n"):
        _on_suggestion(turn, pick, kind == "y")
        return
    if kind == "pick":
        ask_community(turn)
        return
    if kind == "c":
        community = _community(turn, value)
        if community is None:
            turn.expired()
            return
        turn.data.addr = AddressPick(community=community.id, failures=pick.failures)
        turn.say(texts.ADDRESS_PICK_ESTATE,
                 [[Button(e.name, "addr", None, f"e.{i}") for i, e in enumerate(community.estates)]])
        return
    community = _community(turn, pick.community)
    if community is None:
        turn.expired()
        return
    if kind == "e" and value.isdigit() and int(value) < len(community.estates):
        estate = community.estates[int(value)]
        turn.data.addr = AddressPick(community=community.id, estate=estate.name, failures=pick.failures)
        turn.say(texts.ADDRESS_PICK_BUILDING, _building_rows(estate))
        return
    estate_spec = next((e for e in community.estates if e.name == pick.estate), None)
    if estate_spec is None:
        turn.expired()
        return
    if kind == "b" and value.isdigit() and 1 <= int(value) <= estate_spec.buildings:
        pick.building = int(value)
        turn.data.addr = pick
        turn.say(texts.ADDRESS_PICK_UNIT, [[Button(f"{n}单元", "addr", None, f"u.{n}")
                                            for n in range(1, estate_spec.units_per_building + 1)]])
        return
    if kind == "u" and value.isdigit() and pick.building:
        bind(turn, estate_spec.name, pick.building, int(value))
        return
    turn.expired()


def _read(turn: Turn, text: str) -> AddressReading:
    pick = turn.data.addr or AddressPick()
    return read_address(turn.services.policies.grids, text, estate=pick.estate)


def _follow_up(turn: Turn, reading: AddressReading) -> bool:
    """An address that cannot be bound yet: an estate typed without its building (a floor or a room is not
    one), or a name that only looks like an estate. False if neither."""
    pick = turn.data.addr or AddressPick()
    if reading.estate is not None and reading.building is None and reading.estate != pick.estate:
        what = (texts.ADDRESS_IS_FLOOR.format(floor=reading.floor) if reading.floor
                else texts.ADDRESS_IS_ROOM.format(room=reading.room) if reading.room else None)
        lead = (texts.ADDRESS_FLOOR_NOT_BUILDING.format(what=what, estate=reading.estate) if what
                else texts.ADDRESS_ASK_BUILDING.format(estate=reading.estate))
        ask_building(turn, reading.estate, lead=lead)
        return True
    if reading.estate is None and reading.suggestion is not None:
        ask_which_estate(turn, reading)
        return True
    return False


def _looks_like_home(reading: AddressReading, text: str) -> bool:
    named = reading.estate is not None or reading.suggestion is not None
    numbered = any(v is not None for v in (reading.building, reading.unit, reading.floor, reading.room))
    return named and (numbered or "住" in text)


def try_typed(turn: Turn, text: str) -> bool:
    """Bind a typed address ("芙蓉小区3号楼2单元"), or ask what it lacks (the building, or whether a look-alike
    name is that estate); False if it cannot be read."""
    reading = _read(turn, text)
    if reading.estate is not None and reading.building is not None:
        return bind(turn, reading.estate, reading.building, reading.unit)
    # an estate (or a look-alike) with a number or 住 is an address, whatever the classifier makes of it
    if _looks_like_home(reading, text) and _follow_up(turn, reading):
        return True
    return _follow_up(turn, reading)


def bind(turn: Turn, estate: str, building: int, unit: int | None) -> bool:
    resident = turn.resident()
    if resident is None or not turn.consented():
        turn.go(State.idle)
        turn.data.addr = None
        turn.say(texts.ADDRESS_NEEDS_CONSENT)
        return True
    grids = turn.services.policies.grids
    if grids.grid_for(estate, building) is None:
        turn.say(texts.ADDRESS_OUTSIDE.format(estate=estate, building=building))
        return True
    grid_id = bind_address(session=turn.session, resident=resident, grids=grids, estate=estate, building=building,
                           unit=unit, now=turn.now)
    grid = turn.session.get(Grid, grid_id) if grid_id else None
    turn.say(texts.ADDRESS_BOUND.format(address=place_text(resident.estate, resident.building, resident.unit),
                                        grid=grid.name if grid else ""))
    continue_pending(turn)
    return True


def on_text(turn: Turn, text: str) -> bool:
    """The address slot got text. True if it was dealt with here; False if the resident moved on to tell us
    something else (the caller handles it as a new message)."""
    pick = turn.data.addr or AddressPick()
    if pick.suggested is not None and text.strip() in YES | NO:
        _on_suggestion(turn, pick, text.strip() in YES)
        return True
    reading = _read(turn, text)
    if reading.estate is not None and reading.building is not None:
        return bind(turn, reading.estate, reading.building, reading.unit)
    # an estate (or a look-alike) with a number or 住 is an address, whatever the classifier makes of it
    if _looks_like_home(reading, text) and _follow_up(turn, reading):
        return True
    looks_like_address = bool(ADDRESS_WORDS.search(text)) or content_chars(text) <= 6
    u = turn.understand(text)
    if turn.services.policies.taxonomy.opens_case(u.intent.label) and not u.low_confidence \
            and u.category.label != "other":
        # a problem typed where the address was asked: keep it, and ask the address after it
        turn.data.pending = u.text
        ask_community(turn, lead=texts.ADDRESS_KEPT_PROBLEM.format(text=u.text[:60]))
        return True
    if _follow_up(turn, reading):
        return True
    if not looks_like_address:
        turn.data.addr = None
        turn.go(State.idle)
        return False
    pick = turn.data.addr or AddressPick()
    pick.failures += 1
    turn.data.addr = pick
    if pick.failures < MAX_FAILURES:
        turn.say(texts.ADDRESS_NOT_UNDERSTOOD if pick.failures == 1 else texts.ADDRESS_RETRY)
        return True
    give_up(turn, text)
    return True


def give_up(turn: Turn, typed: str) -> None:
    """Stop asking: a kept problem goes on with the typed words as its place (地址待确认)."""
    turn.data.addr = None
    turn.go(State.idle)
    if turn.data.pending:
        turn.data.unbound_where = typed[:100]
        continue_pending(turn)
    else:
        turn.say(texts.ADDRESS_GIVE_UP)
