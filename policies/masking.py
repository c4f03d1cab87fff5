"""Personal data rules: find and mask mainland phone numbers and resident ID numbers.

Used before anything is logged, sent to an LLM or shown to someone who is not the data's owner.
ID numbers are checked with the GB 11643-1999 check digit; full-width digits are accepted.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_FULLWIDTH = str.maketrans("０１２３４５６７８９Ｘｘ－　", "0123456789Xx- ")
_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_CHECK = "10X98765432"

# digits may be separated by spaces or dashes as people type them ("138 1234 5678", "138-1234-5678"),
# half- or full-width ("１３８－１２３４－５６７８"); an area code may sit in brackets ("(0531)88886666")
_SEP = r"[ \-－]"
_ID_RE = re.compile(r"(?<![0-9０-９])([1-9１-９](?:" + _SEP + r"?[0-9０-９]){16}" + _SEP
                    + r"?[0-9０-９XxＸｘ])(?![0-9０-９])")
_MOBILE_RE = re.compile(r"(?<![0-9０-９])((?:[+＋]?[8８][6６]" + _SEP + r"?)?[1１][3-9３-９](?:" + _SEP
                        + r"?[0-9０-９]){9})(?![0-9０-９])")
_LANDLINE_RE = re.compile(r"(?<![0-9０-９])((?:[(（][0０][0-9０-９]{2,3}[)）]|[0０][0-9０-９]{2,3})" + _SEP
                          + r"?[2-9２-９](?:[0-9０-９]){6,7})(?![0-9０-９])")


@dataclass(frozen=True)
class PersonalData:
    kind: str  # "id_number" | "id_number_invalid" | "mobile" | "landline"
    raw: str
    start: int
    end: int


def normalise_digits(text: str) -> str:
    return text.translate(_FULLWIDTH)


def id_check_ok(number: str) -> bool:
    """GB 11643 check digit of an 18-character resident ID number."""
    n = re.sub(r"[ \-]", "", normalise_digits(number)).upper()
    if not re.fullmatch(r"\d{17}[\dX]", n):
        return False
    total = sum(int(d) * w for d, w in zip(n[:17], _WEIGHTS, strict=True))
    return _CHECK[total % 11] == n[17]


def find_personal_data(text: str) -> list[PersonalData]:
    """Every phone number and ID-number-shaped string in `text`, left to right, without overlaps."""
    found: list[PersonalData] = []
    taken: list[tuple[int, int]] = []

    def add(kind: str, m: re.Match[str]) -> None:
        s, e = m.span(1)
        if any(s < te and ts < e for ts, te in taken):
            return
        taken.append((s, e))
        found.append(PersonalData(kind, m.group(1), s, e))

    for m in _ID_RE.finditer(text):
        # an 18-digit string that fails the check digit is still masked: it may be a mistyped real one
        add("id_number" if id_check_ok(m.group(1)) else "id_number_invalid", m)
    for m in _MOBILE_RE.finditer(text):
        add("mobile", m)
    for m in _LANDLINE_RE.finditer(text):
        add("landline", m)
    return sorted(found, key=lambda p: p.start)


def mask_value(kind: str, raw: str) -> str:
    digits = re.sub(r"[^0-9Xx]", "", normalise_digits(raw))
    if kind.startswith("id_number"):
        return digits[:3] + "*" * 11 + digits[-4:] if len(digits) >= 8 else "*" * len(digits)
    if kind == "mobile":
        digits = digits[-11:]
        return digits[:3] + "****" + digits[-4:]
    return digits[:4] + "****" + digits[-2:]


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
