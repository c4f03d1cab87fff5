"""Addresses as residents type them: "芙蓉小区3号楼2单元", "5号楼", "三单元", "曲水花园3楼301".

Owns: reading an estate, building, unit, floor and room from a typed address (through the one reading in
`bot.understanding.details`, estates and aliases from grids.yaml), and writing a resident's or a report's place
back as text. A floor or a room is never a building, and an estate the text only looks like is a `suggestion`,
never the estate. Must not: bind anything (casestore.residents does), or confirm a suggestion (address.py asks).
"""

from __future__ import annotations

import dataclasses
import re
import unicodedata
from dataclasses import dataclass
from typing import Any

from bot.dialogue.drafts import Place
from bot.understanding.details import DetailsExtractor, cn_number
from casestore.models import Resident
from policies.models import Grids

ADDRESS_WORDS = re.compile(r"小区|花园|东苑|号楼|栋|幢|单元|楼|层")
# typed as the whole address only: "5号" at the end names the building ("12月5号" does not)
_BARE_BUILDING = re.compile(r"(?<![\d月])(\d{1,2}|[一二两三四五六七八九十]{1,3})\s*号$")
# a typed address's bare 3-4 digit number ("曲水花园301") is a room
_BARE_ROOM = re.compile(r"(?<![\d\-])(\d{3,4})(?![\d\-])")


@dataclass(frozen=True)
class AddressReading:
    """What a typed address says. `estate` is named exactly (its name, an alias, its unique short form);
    `suggestion` is the estate a name only looks like, which the resident must confirm."""

    estate: str | None = None
    building: int | None = None
    unit: int | None = None
    floor: int | None = None
    room: str | None = None
    suggestion: str | None = None


def cn_int(token: str) -> int | None:
    """1-99 written in digits or in Chinese numerals (三, 十二, 二十, 二十三)."""
    n = cn_number(token)
    return n if n is not None and 0 < n < 100 else None


def read_address(grids: Grids, text: str, *, estate: str | None = None) -> AddressReading:
    """Estate, building, unit, floor and room of a typed address; `estate` is the one already picked."""
    extractor = DetailsExtractor.from_grids(grids)
    d = extractor.extract(text)
    found = d.estate or estate
    typed = unicodedata.normalize("NFKC", text or "").strip()
    building, room = d.building, d.room
    if building is None and found:
        if estate and re.fullmatch(r"\d{1,2}", typed):  # the estate was picked; "5" is its building
            building = int(typed)
        elif m := _BARE_BUILDING.search(typed):
            building = cn_int(m.group(1))
    if room is None and (m := _BARE_ROOM.search(typed)):
        room = m.group(1)
    suggestion = extractor.closest_estate(typed) if found is None else None
    return AddressReading(estate=found, building=building, unit=d.unit, floor=d.floor, room=room,
                          suggestion=suggestion)


def parse_address(grids: Grids, text: str, *, estate: str | None = None) -> Place | None:
    """Estate, building and unit typed as "芙蓉小区3号楼2单元"; `estate` fills in when only the number is typed.
    None unless the estate is named exactly and a building is given (a floor or a room is not one)."""
    r = read_address(grids, text, estate=estate)
    if r.estate is None or r.building is None:
        return None
    return Place(where=text, estate=r.estate, building=r.building, unit=r.unit)


def place_text(estate: str | None, building: int | None, unit: int | None) -> str:
    if not estate:
        return ""
    return estate + (f"{building}号楼" if building else "") + (f"{unit}单元" if unit else "")


def home_of(resident: Resident | None) -> Place | None:
    """The resident's bound address as a place, or None."""
    if resident is None or not resident.estate:
        return None
    return Place(where=place_text(resident.estate, resident.building, resident.unit), estate=resident.estate,
                 building=resident.building, unit=resident.unit)


def place_from_details(details: Any, *, home: Place | None = None) -> Place | None:
    """The place the classifier read from the message (estate, building, unit, room, "楼道"…), or None. With the
    resident's `home`, a building named without its estate ("3号楼2单元楼道") is their estate's, so the worker's
    push says which estate ("芙蓉小区3号楼2单元楼道")."""
    if details is None:
        return None
    if home is not None and home.estate and not details.estate and details.building:
        details = dataclasses.replace(details, estate=home.estate)
    floor = getattr(details, "floor", None)
    bits = [details.estate or "", f"{details.building}号楼" if details.building else "",
            f"{details.unit}单元" if details.unit else "", f"{floor}楼" if floor else "", str(details.room or ""),
            str(details.place or "")]
    where = "".join(bits)
    if not where:
        return None
    return Place(where=where, estate=details.estate, building=details.building, unit=details.unit)


# ---------------- the other party of a neighbour dispute, where they live relative to the resident ----------------
# first match wins; each names the party by where they live or what they are, never by anything the resident typed
_PARTIES = (
    (re.compile(r"楼上"), "楼上住户"),
    (re.compile(r"楼下"), "楼下住户"),
    (re.compile(r"对门|对面那家|对面邻居"), "对门住户"),
    (re.compile(r"隔壁"), "隔壁住户"),
    (re.compile(r"房东"), "房东"),
    (re.compile(r"租户|租客|房客"), "租户"),
    (re.compile(r"物业"), "物业"),
    (re.compile(r"商户|店铺|饭店|饭馆|餐馆|超市|门头房"), "周边商户"),
    (re.compile(r"老伴|儿子|女儿|儿媳|女婿|婆婆|公公|家里人|家人|兄弟|姐妹"), "家庭成员"),
    (re.compile(r"邻居|那家|那户|一家人"), "邻居"),
)
_SAME_BUILDING = frozenset({"楼上住户", "楼下住户", "对门住户", "隔壁住户"})


def dispute_parties(text: str, home: Place | None) -> str:
    """"反映人：芙蓉小区3号楼2单元住户；对方：楼上住户（同一单元）" for the mediator: who the two sides are, from the
    resident's bound address and a fixed list of parties (no name, room or number of anyone: `text` is only
    matched, never copied)."""
    other = next((name for pattern, name in _PARTIES if pattern.search(text)), None)
    me = f"{home.where}住户" if home is not None and home.where else "居民（住址未登记）"
    if other is None:
        return f"反映人：{me}；对方：居民没有说明，请联系居民了解"
    near = "（同一单元）" if other in _SAME_BUILDING and home is not None and home.unit else \
        "（同一栋楼）" if other in _SAME_BUILDING and home is not None and home.building else ""
    return f"反映人：{me}；对方：{other}{near}"
