"""Addresses as residents type them: "芙蓉小区3号楼2单元", "5号楼", "三单元".

Owns: reading an estate, building and unit from text (estate names come from grids.yaml), and writing a
resident's or a report's place back as text. Must not: bind anything (casestore.residents does).
"""

from __future__ import annotations

import re
from typing import Any

from bot.dialogue.drafts import Place
from casestore.models import Resident
from policies.models import Grids

ADDRESS_WORDS = re.compile(r"小区|花园|东苑|号楼|栋|幢|单元|楼")
_CN_NUM = {"一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7, "八": 8, "九": 9, "十": 10}
_BUILDING = re.compile(r"(\d{1,3}|[一二两三四五六七八九十]{1,3})\s*(?:号楼|号|栋|幢|楼)")
_UNIT = re.compile(r"(\d{1,2}|[一二两三四五六七八九十]{1,3})\s*单元")


def cn_int(token: str) -> int | None:
    """1-99 written in digits or in Chinese numerals (三, 十二, 二十, 二十三)."""
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


def parse_address(grids: Grids, text: str, *, estate: str | None = None) -> Place | None:
    """Estate, building and unit typed as "芙蓉小区3号楼2单元"; `estate` fills in when only the number is typed."""
    found = next((n for n in grids.estate_names() if n in text), None) or estate
    b = _BUILDING.search(text)
    building = cn_int(b.group(1)) if b else None
    if building is None and estate and text.strip().isdigit():
        building = int(text.strip())
    u = _UNIT.search(text)
    unit = cn_int(u.group(1)) if u else None
    if found is None or building is None:
        return None
    return Place(where=text, estate=found, building=building, unit=unit)


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


def place_from_details(details: Any) -> Place | None:
    """The place the classifier read from the message (estate, building, unit, room, "楼道"…), or None."""
    if details is None:
        return None
    bits = [details.estate or "", f"{details.building}号楼" if details.building else "",
            f"{details.unit}单元" if details.unit else "", str(details.room or ""), str(details.place or "")]
    where = "".join(bits)
    if not where:
        return None
    return Place(where=where, estate=details.estate, building=details.building, unit=details.unit)
