"""A location pin while the report asks where (#17 item 4): the pin is placed on grids.yaml (policies.geo: the
nearest building within pin_radius_m, else the grid whose area holds it) and confirmed with the resident, with
是这里 / 不是 buttons. 是这里 puts that place on the draft, so the case goes to that building's grid; 不是 asks for
the address in words. A pin we cannot place, or one sent at another moment, is left to bot.dialogue.report (and an
emergency waiting for its place to bot.dialogue.safety, which takes the pin without asking).

Owns: `on_location`, the `pin` button, and their replies. Must not: route (casestore does, from the building).
"""

from __future__ import annotations

from bot.dialogue.drafts import Place
from bot.dialogue.report import advance
from bot.dialogue.state import State
from bot.dialogue.turn import Turn
from casestore.notify import Button
from policies.geo import match_pin

ACTION = "pin"
BTN_YES, BTN_NO = "是这里", "不是"
ASK = "收到定位。您说的地方是在{place}附近吗？"
NOT_THERE = "好的，请直接告诉我具体地址，比如：芙蓉小区3号楼2单元，或者附近的路口、店铺。"
STALE = "这个按钮已失效。需要反映问题，请直接告诉我。"


def pin_arg(lat: float, lng: float) -> str:
    """The 是这里 button's argument: the pin itself (ASCII, ~19 bytes), placed again when it is pressed."""
    return f"y{lat:.5f},{lng:.5f}"


def _pin(arg: str) -> tuple[float, float] | None:
    try:
        lat, lng = (float(x) for x in arg[1:].split(","))
    except ValueError:
        return None
    return lat, lng


def on_location(turn: Turn) -> bool:
    """A pin while the report waits for its place: asked 是这里吗 when we can place it; False otherwise."""
    inc = turn.incoming
    if inc.location is None or turn.data.draft is None or turn.state != State.report_where:
        return False
    lat, lng = inc.location
    match = match_pin(turn.services.policies.grids, lat, lng)
    if match is None:
        return False
    turn.say(ASK.format(place=match.place), [[Button(BTN_YES, ACTION, None, pin_arg(lat, lng)),
                                               Button(BTN_NO, ACTION, None, "n")]])
    return True


def on_button(turn: Turn, arg: str) -> None:
    """是这里 (the place goes on the draft, the report moves on) or 不是 (the address is asked in words)."""
    draft = turn.data.draft
    if draft is None or turn.state != State.report_where:
        turn.say(STALE)
        return
    if arg == "n":
        turn.say(NOT_THERE)
        return
    pin = _pin(arg) if arg.startswith("y") else None
    match = match_pin(turn.services.policies.grids, *pin) if pin else None
    if pin is None or match is None:
        turn.say(STALE)
        return
    lat, lng = pin
    draft.attachments.append({"type": "location", "lat": round(lat, 6), "lng": round(lng, 6)})
    draft.set_place(Place(where=match.where(lat, lng), estate=match.estate, building=match.building))
    advance(turn)
