"""Details in a resident's message: building / unit / floor / room, estate, place, time, and masked personal
data; and the split of a run-on message into its separate problems.

Owns: `DetailsExtractor`, built once per street from the estate names and aliases of grids.yaml (`from_grids`),
and the one reading of building, unit, floor and room (三楼 / 3楼 / 3层 is a floor and 301 / 301室 a room, never a
building: only 3号楼, 3栋, 三号楼, 3# name one). `closest_estate` suggests the estate a name only looks like.
Must not: guess, or know any estate by name: a field is None when the message does not say it, the estates are
the ones the extractor was given, and a suggestion is never an `estate` (the resident confirms it first).
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Mapping
from difflib import SequenceMatcher

from bot.understanding.types import Details
from policies.masking import find_personal_data, mask_value
from policies.models import Grids

_CN_DIGITS = {"零": 0, "〇": 0, "一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7, "八": 8,
              "九": 9}
_NUM = r"(\d{1,3}|[零〇一二两三四五六七八九十百]{1,4})"


def cn_number(token: str) -> int | None:
    """'12' → 12, '三' → 3, '十二' → 12, '二十三' → 23, '一百零二' → 102."""
    if token.isdigit():
        return int(token)
    total, current = 0, 0
    for ch in token:
        if ch in _CN_DIGITS:
            current = _CN_DIGITS[ch]
        elif ch == "十":
            total += (current or 1) * 10
            current = 0
        elif ch == "百":
            total += (current or 1) * 100
            current = 0
        else:
            return None
    return total + current


# 3-2-1201 / 3－2－1201 : building-unit-room
_TRIPLE = re.compile(r"(?<![\d-])(\d{1,3})-(\d{1,2})-(\d{3,4})(?![\d-])")
_BUILDING = re.compile(r"(?<!\d)" + _NUM + r"\s*(?:号楼|号樓|栋|棟|幢|#楼?|号院楼)")
# "5号2单元": a bare 号 names the building only right before the unit (alone it may be a date or a room)
_BUILDING_BEFORE_UNIT = re.compile(
    r"(?<![\d月])(\d{1,2}|[一二两三四五六七八九十]{1,3})\s*号\s*(?=" + _NUM + r"\s*单元)")
_UNIT = re.compile(_NUM + r"\s*单元")
# 三楼, 3楼, 十二层: a number right before 楼/层 (no 号, 栋 or # between) is the floor, not the building
_FLOOR = re.compile(r"(?<![\d号#])" + _NUM + r"\s*(?:楼|樓|层|層)")
_ROOM = re.compile(r"(?:单元|号楼|栋|#|楼|层)\s*-?\s*(\d{3,4})(?:室|号|户)?|(?<!\d)(\d{3,4})\s*(?:室|户|号(?!楼))|"
                   r"(?<![\d-])(\d{1,2})(?:号楼|栋)?-(\d{3,4})(?![\d-])")
# an estate name's generic ending: a fuzzy match must share characters of what comes before it
_GENERIC_END = re.compile(r"(小区|花园|家园|新村|社区)$")
FUZZY_MIN_RATIO = 0.7
_PLACE = re.compile(
    r"(?:(?:小区|菜市场|市场|超市|学校|幼儿园|医院|公园|广场|社区|卫生站|公交站|地铁站|银行|药店|饭店|商场|单元)"
    r"(?:东|西|南|北|正|后|侧)?(?:大)?门口?|"
    r"(?:东|西|南|北|正|后)门口?|地下车库|地下室|车库|停车场|楼道里?|楼梯间?|楼顶|天台|楼下|楼前|楼后|"
    r"广场|花园|公园|菜市场|路口|十字路口|公交站|垃圾站|垃圾桶(?:旁|边)?|健身(?:区|器材)|绿化带|花坛|车棚|"
    r"游乐场|电梯里?|门卫室|小区(?:里|院里|门口))")
_TIME = re.compile(
    r"从\S{1,8}?(?:到现在|开始|起)|"
    r"(?:今天|昨天|前天|今|昨|前)?(?:早上|上午|中午|下午|晚上|夜里|半夜|凌晨|晚|早)?"
    r"(?:\d{1,2}|[一二两三四五六七八九十]{1,3})\s*(?:点|时)(?:半|多|左右|\d{1,2}分?)?|"
    r"(?:\d+|[一二两三四五六七八九十半几好]{1,3})\s*(?:个)?(?:天|小时|钟头|分钟|个月|月|周|星期|礼拜|年)(?:了|多了|多)|"
    r"好几天|好几个月|这几天|昨晚|昨天|今早|今天|前天|刚才|刚刚|半夜|凌晨|一整天|一晚上|一直")


def _norm(text: str) -> str:
    # full-width digits, dashes and '#' become ASCII so one set of patterns serves both
    return unicodedata.normalize("NFKC", text).replace("—", "-").replace("–", "-")


class DetailsExtractor:
    """Reads the details of messages sent about one street's estates."""

    def __init__(self, estates: Iterable[str], aliases: Mapping[str, str] | None = None) -> None:
        # longest first, so 曲水亭小区 is tried before 曲水花园 before a bare 曲水亭; ties keep the given order
        self.estates: tuple[str, ...] = tuple(sorted(dict.fromkeys(estates), key=len, reverse=True))
        # every form that names an estate exactly: its name, or an alias that names a known estate
        forms = {name: name for name in self.estates}
        forms.update({a: e for a, e in (aliases or {}).items() if e in forms and a not in forms})
        self._forms: tuple[tuple[str, str], ...] = tuple(sorted(forms.items(), key=lambda f: len(f[0]), reverse=True))
        # a short form ("曲水亭", "芙蓉东苑") names an estate when it is the only one that starts that way
        shorts = {name: re.sub(r"(小区|花园|家园)$", "", name) for name in self.estates}
        self._short_forms: tuple[tuple[str, str], ...] = tuple(
            (short, name) for name, short in shorts.items()
            if len(short) >= 3 and sum(1 for n in self.estates if n.startswith(short)) == 1)

    @classmethod
    def from_grids(cls, grids: Grids) -> DetailsExtractor:
        """The extractor for the estates and aliases of grids.yaml."""
        return cls(grids.estate_names(), grids.estate_aliases())

    def find_estate(self, text: str) -> str | None:
        """The estate `text` names, in full, by an alias or by its short form; None if it names none or is
        ambiguous."""
        for form, name in self._forms:
            if form in text:
                return name
        for short, name in self._short_forms:
            if short in text:
                return name
        return None

    def closest_estate(self, text: str) -> str | None:
        """The estate `text` names or most looks like ("曲水小区" → 曲水亭小区, "曲水花圆" → 曲水花园), to be
        confirmed by the resident; None when nothing is close or two estates are equally close."""
        s = _norm(text or "")
        exact = self.find_estate(s)
        if exact is not None:
            return exact
        best: dict[str, float] = {}
        for form, name in self._forms:
            stem = Counter(_GENERIC_END.sub("", form) or form)
            need = min(2, sum(stem.values()))
            for size in {len(form) - 1, len(form), len(form) + 1}:
                for i in range(max(0, len(s) - size + 1)):
                    window = s[i:i + size]
                    if sum((Counter(window) & stem).values()) < need:
                        continue
                    ratio = SequenceMatcher(None, window, form).ratio()
                    if ratio >= FUZZY_MIN_RATIO and ratio > best.get(name, 0.0):
                        best[name] = ratio
        if not best:
            return None
        ranked = sorted(best.items(), key=lambda kv: kv[1], reverse=True)
        if len(ranked) > 1 and ranked[0][1] - ranked[1][1] < 0.05:
            return None  # 曲水? 芙蓉? the resident picks instead
        return ranked[0][0]

    def extract(self, text: str) -> Details:
        """Building/unit/room, estate, place, time and masked phones/ID numbers mentioned in `text`."""
        raw = text or ""
        personal = find_personal_data(raw)
        phones = [mask_value(p.kind, p.raw) for p in personal if p.kind in ("mobile", "landline")]
        ids = [mask_value(p.kind, p.raw) for p in personal if p.kind.startswith("id_number")]
        # numbers that are phones or IDs must not be read as rooms or buildings
        scrubbed = raw
        for p in sorted(personal, key=lambda p: p.start, reverse=True):
            scrubbed = scrubbed[:p.start] + " " * (p.end - p.start) + scrubbed[p.end:]
        s = _norm(scrubbed)

        building = unit = floor = None
        room: str | None = None
        m = _TRIPLE.search(s)
        if m:
            building, unit, room = int(m.group(1)), int(m.group(2)), m.group(3)
        if building is None and (m := _BUILDING.search(s) or _BUILDING_BEFORE_UNIT.search(s)):
            building = cn_number(m.group(1))
        if unit is None and (m := _UNIT.search(s)):
            unit = cn_number(m.group(1))
        if m := _FLOOR.search(s):
            floor = cn_number(m.group(1))
        if room is None and (m := _ROOM.search(s)):
            if m.group(4):
                room = m.group(4)
                building = building if building is not None else int(m.group(3))
            else:
                room = m.group(1) or m.group(2)

        estate = self.find_estate(s)
        place_m = _PLACE.search(s)
        times: list[str] = []
        for tm in _TIME.finditer(s):
            frag = tm.group(0).strip()
            if frag and frag not in times and not any(frag in t for t in times):
                times.append(frag)
        return Details(building=building, unit=unit, room=room, floor=floor, estate=estate,
                       place=place_m.group(0) if place_m else None,
                       time_text="，".join(times[:3]) if times else None, phones=phones, id_numbers=ids)


# ---------- splitting a run-on message into separate problems ----------
_CONNECTOR = re.compile(
    r"[；;]"
    r"|(?:[，,。！!？?\s]+)(?=还有|另外|此外|再就是|再有就是|再有|顺便(?:说|问|反映)?|以及|第二|二是|其次)"
    r"|(?:^|[，,。\s])(?:还有|另外|此外|再就是|再有就是|再有|顺便说一下|顺便反映|顺便)(?:[，,：:\s]*)")
_LEADING = re.compile(
    r"^(?:还有|另外|此外|再就是|再有就是|再有|顺便说一下|顺便反映|顺便|以及|第二|二是|其次)[，,：:\s]*")


def split_candidates(text: str) -> list[str]:
    """Clauses a run-on message may hold as separate problems (split only at explicit connectors)."""
    pieces = [p.strip(" ，,。；;！!") for p in _CONNECTOR.split(text or "") if p and p.strip(" ，,。；;！!")]
    pieces = [_LEADING.sub("", p) for p in pieces]
    return [p for p in pieces if len(p) >= 4]
