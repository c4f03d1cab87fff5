"""Personal data rules: find and mask mainland phone numbers and resident ID numbers.

Used before anything is logged, sent to an LLM or shown to someone who is not the data's owner, so it must hold
for what residents type: any digits (half- or full-width) with spaces, dots, dashes or brackets between them or
spaced out one by one; mobiles with +86 / 0086 / 86 in front; landlines with or without an area code; 18-digit
IDs (GB 11643-1999 check digit, X allowed) and 15-digit old IDs (area + YYMMDD + 3).
It must equally leave alone the numbers the product runs on: case codes (JN20261120-0001), dates, times, money,
building and room numbers, counts. A bare 7-8 digit local number is the only ambiguous form, so it alone is
checked against its context (see `_local_allowed`).

How: a number as typed is a *run* of digit groups joined by at most three separator characters. A run is cut
into numbers on group boundaries only (a number never starts or ends inside a group of digits typed together),
choosing the cut that covers the most digits, so "88886666 13812345678" is two numbers and "1 3 9 0 0 0 0 1 1 1 1"
one. Must not: import anything of ours.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import date

_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_CHECK = "10X98765432"
# GB 2260 province-level codes: the first two digits of every resident ID number
_PROVINCES = frozenset({11, 12, 13, 14, 15, 21, 22, 23, 31, 32, 33, 34, 35, 36, 37, 41, 42, 43, 44, 45, 46,
                        50, 51, 52, 53, 54, 61, 62, 63, 64, 65, 71, 81, 82, 83, 91})

# one character in, one character out, so positions in the folded text are positions in the original
_SEPARATOR_FOLD = {
    "－": "-", "﹣": "-", "‐": "-", "‑": "-", "‒": "-", "–": "-", "—": "-", "―": "-", "−": "-",
    "　": " ", "\u00a0": " ", "\u2007": " ", "\u2009": " ", "\u202f": " ", "\t": " ",
    "．": ".", "·": ".", "・": ".", "•": ".",
    "（": "(", "）": ")", "＋": "+", "Ｘ": "X", "ｘ": "x",
}


class _Fold(dict[int, str]):
    """str.translate table: every decimal digit of any script to ASCII, separators to one spelling, cached."""

    def __missing__(self, code: int) -> str:
        ch = chr(code)
        if code < 128:
            out = ch
        elif ch in _SEPARATOR_FOLD:
            out = _SEPARATOR_FOLD[ch]
        elif ch.isdecimal():
            out = str(unicodedata.decimal(ch))
        else:
            out = ch
        self[code] = out
        return out


_FOLD = _Fold()

_SEPARATORS = "".join(sorted({" ", ".", "-", "(", ")"} | {k for k, v in _SEPARATOR_FOLD.items() if v in " .-()"}))
_SEP = "[" + re.escape(_SEPARATORS) + "]"
# a run, found in the text as typed (\d is any decimal digit): digit groups joined by 1-3 separators and an
# optional final X (the ID check digit); up to two of "(" / "+" before it belong to it too (_LEAD)
_RUN = re.compile(r"\d(?:" + _SEP + r"{1,3}\d|\d)*(?:" + _SEP + r"{0,3}[XxＸｘ](?![A-Za-z]))?")
_LEAD = "(+（＋"
_GROUP = re.compile(r"[0-9]+X?|X")  # in the folded, upper-cased run
_MASK_PIECE = 4  # at most this many digits show on either side of a mask's stars (138****5678, ****66)
_MIN_DIGITS = 7
_MAX_SPAN_DIGITS = 18  # an ID number; 0086 + a 12-digit landline is 16

# Context that makes a bare 7-8 digit number a quantity or a reference, not a phone. Kept here, as data.
_UNITS_AFTER = re.compile(
    r"\s*(?:元|块|圆|角|毛|万|亿|千|百|个|只|人|位|名|户|间|套|栋|幢|楼|层|号|室|单元|平|方|亩|米|公里|千米|吨|斤|"
    r"公斤|克|升|度|瓦|伏|次|遍|回|天|日|月|年|周|小时|时|分|秒|岁|件|条|张|台|辆|份|笔|项|倍|%|‰|"
    r"[kKmMgG]|[Rr][Mm][Bb]|[Yy]uan)")
_BEFORE = re.compile(r"(?:[¥￥$€£]|RMB|人民币|第|单号|编号|工单|订单|运单|票号|批次|序号|学号|工号|车次|航班|"
                     r"No\.?|NO\.?|#|[Ii][Dd])\s*[:：]?\s*$")
_TECH_BEFORE = frozenset("=#_@/\\&")  # key=value, #123, paths: log and URL contexts, not residents' phones


@dataclass(frozen=True)
class PersonalData:
    kind: str  # "id_number" | "id_number_invalid" | "mobile" | "landline"
    raw: str
    start: int
    end: int

    @property
    def number(self) -> str:
        """The number itself, as it would be dialled or filed: 13812345678, 053188886666, 88886666, …X."""
        return _canonical(self.kind, _digits(self.raw))


def normalise_digits(text: str) -> str:
    """`text` with every digit as ASCII and separators spelled one way; same length, same positions."""
    return text.translate(_FOLD)


def _digits(raw: str) -> str:
    return re.sub(r"[^0-9X]", "", normalise_digits(raw).upper())


def id_check_ok(number: str) -> bool:
    """GB 11643 check digit of an 18-character resident ID number."""
    n = _digits(number)
    if not re.fullmatch(r"[0-9]{17}[0-9X]", n):
        return False
    total = sum(int(d) * w for d, w in zip(n[:17], _WEIGHTS, strict=True))
    return _CHECK[total % 11] == n[17]


def _is_date(year: int, month: int, day: int) -> bool:
    try:
        date(year, month, day)
    except ValueError:
        return False
    return True


def _is_ymd(digits: str) -> bool:
    """YYYYMMDD between 1900 and 2099."""
    return digits[:2] in ("19", "20") and _is_date(int(digits[:4]), int(digits[4:6]), int(digits[6:8]))


# how an 18-digit ID is typed in groups; a number with a wrong check digit counts only when typed like one
_ID_SHAPES = frozenset({(18,), (6, 8, 4), (6, 4, 4, 4), (3, 3, 4, 4, 4), (6, 12), (4, 4, 4, 4, 2), (1,) * 18})


def _id_kind(d: str, sizes: tuple[int, ...]) -> str | None:
    if len(d) == 18 and d[0] != "0" and d[:17].isdigit() and _is_ymd(d[6:14]):
        if id_check_ok(d):
            return "id_number"
        # a wrong check digit is still masked when the rest looks real: it may be a mistyped real one
        return "id_number_invalid" if int(d[:2]) in _PROVINCES and sizes in _ID_SHAPES else None
    if len(d) == 15 and d.isdigit() and int(d[:2]) in _PROVINCES:
        yy, mm, dd = int(d[6:8]), int(d[8:10]), int(d[10:12])
        if _is_date(1900 + yy, mm, dd) or _is_date(2000 + yy, mm, dd):  # YYMMDD: 000229 is a real birthday
            return "id_number"
    return None


def _mobile(d: str) -> str | None:
    """The 11-digit mobile in `d` (with +86 / 0086 / 86 or a dialled 0 in front), else None."""
    for prefix in ("", "86", "0", "0086"):
        k = len(prefix)
        if len(d) == 11 + k and d.startswith(prefix) and d[k] == "1" and d[k + 1] in "3456789" and d.isdigit():
            return d[k:]
    return None


def _landline(d: str, *, plus: bool) -> str | None:
    """The landline with its area code (0…, 10-12 digits) in `d`, also after +86 / 0086; else None."""
    if d.startswith("0086"):
        d = d[4:]
    elif plus and d.startswith("86"):
        d = d[2:]
    elif not d.startswith("0"):
        return None
    n = d if d.startswith("0") else "0" + d
    return n if 10 <= len(n) <= 12 and n[1] != "0" and n.isdigit() else None


def _local_allowed(text: str, start: int, end: int, groups: list[str], after: str, *, run: tuple[int, int]) -> bool:
    """Is the bare 7-8 digit number at text[start:end] a phone? Only in a phone's shape, and not a date, a range,
    a sum with decimals, or a number in the context of a quantity, a reference or a technical key. `after` is the
    rest of the run, folded."""
    d = "".join(groups)
    sizes = tuple(len(g) for g in groups)
    if not (len(groups) == 1 or sizes in ((4, 4), (3, 4), (4, 3)) or set(sizes) == {1}):
        return False
    if d[0] in "01" or (len(d) == 8 and _is_ymd(d)):
        return False
    if sizes == (4, 4) and (all(g[:2] in ("19", "20") for g in groups) or all(g.endswith("00") for g in groups)):
        return False  # 2020-2026, 3000-5000: ranges of years or of round sums
    if _DECIMALS.match(after):
        return False  # 2345678.50
    prev = text[start - 1] if start else ""
    if (prev.isascii() and prev.isalpha()) or prev in _TECH_BEFORE:
        return False
    if end < len(text) and text[end].isascii() and text[end].isalpha():
        return False
    # the context of a quantity or a reference belongs to the whole run ("3500 4000 5000元")
    run_start, run_end = run
    return not (_BEFORE.search(text, max(0, run_start - 8), run_start) or _UNITS_AFTER.match(text, run_end))


_DECIMALS = re.compile(r"\.[0-9]{1,2}(?![0-9])")


def _split_run(text: str, m: re.Match[str]) -> list[PersonalData]:
    """The numbers in one run, cut on group boundaries so as to cover the most digits (then: fewest numbers)."""
    base = m.start()
    while base > max(0, m.start() - 2) and text[base - 1] in _LEAD:
        base -= 1
    folded = normalise_digits(text[base:m.end()]).upper()
    run = (base, m.end())
    groups = [(g.start(), g.end(), g.group(0)) for g in _GROUP.finditer(folded)]
    n = len(groups)
    lead = folded[:groups[0][0]]
    plus = "+" in lead
    # "(0531)…" and "(+86)…" are masked with their bracket; the "(" of "（13812345678）" is the sentence's
    first = 0
    if "(" in lead:
        closed = n > 1 and ")" in folded[groups[0][1]:groups[1][0]]
        first = lead.rindex("(") + (0 if closed else 1)
    # the digits a mask leaves ("138****5678 0531****66") are not the start or end of a number, so masking twice
    # changes nothing
    lo = 1 if base and text[base - 1] == "*" and len(groups[0][2]) <= _MASK_PIECE else 0
    hi = n - 1 if text[m.end():m.end() + 1] == "*" and len(groups[-1][2]) <= _MASK_PIECE else n
    # best[i] = ((digits covered, -numbers) from group i on, (last group, kind) of the number starting at i)
    best: list[tuple[tuple[int, int], tuple[int, str] | None]] = [((0, 0), None)] * (n + 1)
    for i in range(hi - 1, lo - 1, -1):
        best[i] = (best[i + 1][0], None)
        d, singles = "", True
        for j in range(i, hi):
            d += groups[j][2]
            size, singles = len(d), singles and len(groups[j][2]) == 1
            if size > _MAX_SPAN_DIGITS:
                break
            if size < _MIN_DIGITS:
                continue
            kind = _id_kind(d, tuple(len(g[2]) for g in groups[i:j + 1])) if size in (15, 18) else None
            if kind is None and d[-1] != "X":
                if size in (11, 12, 13, 15) and _mobile(d) is not None:
                    kind = "mobile"
                elif (size >= 10 and _landline(d, plus=plus and i == 0) is not None) or (
                        size <= 8 and (j - i <= 1 or singles)
                        and _local_allowed(text, base + groups[i][0], base + groups[j][1],
                                           [g[2] for g in groups[i:j + 1]], folded[groups[j][1]:], run=run)):
                    kind = "landline"
            if kind is None:
                continue
            covered, count = best[j + 1][0]
            if (covered + size, count - 1) > best[i][0]:
                best[i] = ((covered + size, count - 1), (j, kind))
    found: list[PersonalData] = []
    i = 0
    while i < n:
        choice = best[i][1]
        if choice is None:
            i += 1
            continue
        j, kind = choice
        start, end = base + (first if i == 0 else groups[i][0]), base + groups[j][1]
        found.append(PersonalData(kind, text[start:end], start, end))
        i = j + 1
    return found


def find_personal_data(text: str) -> list[PersonalData]:
    """Every phone number and ID number in `text`, left to right, without overlaps; `raw` is as typed."""
    if not text:
        return []
    found: list[PersonalData] = []
    for m in _RUN.finditer(text):
        if m.end() - m.start() >= _MIN_DIGITS:  # a cheap bound: a run holds at most this many digits
            found.extend(_split_run(text, m))
    return found


def _canonical(kind: str, digits: str) -> str:
    if kind == "mobile":
        return _mobile(digits) or digits[-11:]
    if kind == "landline":
        if len(digits) <= 8:
            return digits
        return _landline(digits, plus=True) or digits
    return digits


def mask_value(kind: str, raw: str) -> str:
    """The masked form of one number: 138****5678, 0531****66, ****66, 110***********002X."""
    number = _canonical(kind, _digits(raw))
    if kind.startswith("id_number"):
        return number[:3] + "*" * (len(number) - 7) + number[-4:] if len(number) >= 12 else "*" * len(number)
    if kind == "mobile":
        return number[:3] + "****" + number[-4:]
    if len(number) <= 8:
        return "****" + number[-2:]
    area = 3 if number[1] in "12" else 4
    return number[:area] + "****" + number[-2:]


def mask_text(text: str) -> str:
    """`text` with every phone number and ID number masked (138****5678, 370***********1234)."""
    if not text:
        return text
    out, last = [], 0
    for item in find_personal_data(text):
        out.append(text[last:item.start])
        out.append(mask_value(item.kind, item.raw))
        last = item.end
    out.append(text[last:])
    return "".join(out)


def contains_unmasked(text: str) -> bool:
    """True if `text` still holds a full phone or ID number (used by tests and the safety eval)."""
    return bool(find_personal_data(text))
