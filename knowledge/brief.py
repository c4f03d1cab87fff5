"""A short answer an elderly resident can read on a phone: a few whole sentences up front, the rest on request.

Residents complained that answers ran to five or six bullets and were cut mid-sentence ("超过12…"). `brief`
takes the answer's points (sentences or bullets, in reading order, without bullet marks) and returns `Brief`:
`text`, at most `max_points` whole points and about `max_chars` characters, led by the point that gives the
kind of fact asked for (knowledge.asks decides what gives a fee, a phone number, a time or a place), and `more`,
every other point in reading order. A point is never cut inside a sentence; only a single sentence longer than
twice the budget is split, after a clause mark (，；、), and its rest goes to `more`.
`sanitise` drops editorial marks ("（示意）", "示意：") and any sentence that talks about the assistant itself.
Owns: `Brief`, `brief`, `sanitise`. Must not: retrieve, choose sentences by relevance or add citations (the
caller composes the "来源：" line).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from knowledge.asks import ASKS, Ask, gives
from knowledge.chunking import split_sentences

BULLET = "• "
CLAUSE_MARKS = "，；、,;"
# the kinds by knowledge.asks name, and by the English names callers use in code
_ALIASES = {"fee": "费用", "phone": "电话", "time": "时间", "place": "地点"}
_EDITORIAL = re.compile(r"[（(]\s*示意\s*[）)]|示意\s*[:：]\s*")
_SELF = re.compile(r"quanbot|泉小智", re.IGNORECASE)
_TRAILING_ELLIPSIS = re.compile(r"\s*(?:…+|\.{3,}|。{3,})\s*$")
_LEADING_MARK = re.compile(r"^\s*(?:[•·●▪\-*]\s+|•)")


@dataclass
class Brief:
    text: str  # what the resident reads first
    more: str  # the rest, in reading order ("" when nothing is left)


def sanitise(point: str) -> str:
    """`point` without editorial marks, self-references, a stray bullet mark or trailing "…" ("" if none is left)."""
    text = _EDITORIAL.sub("", point)
    if _SELF.search(text):
        text = "".join(s for s in split_sentences(text) if not _SELF.search(s))
    text = " ".join(text.split())  # one point is one line
    text = _LEADING_MARK.sub("", text)
    return _TRAILING_ELLIPSIS.sub("", text).strip()


def brief(points: list[str], *, wanted: Sequence[str] = (), max_points: int = 3, max_chars: int = 120) -> Brief:
    """The first few whole points (the asked fact first), and the rest, each as one line."""
    if max_points < 1 or max_chars < 1:
        raise ValueError("max_points and max_chars must be positive")
    kinds = _kinds(wanted)
    items = list(dict.fromkeys(p for p in (sanitise(p) for p in points) if p))
    if not items:
        return Brief("", "")
    leads = _leads(items, kinds)
    order = leads + [i for i in range(len(items)) if i not in leads]
    first = items[order[0]]
    head, rest = _split(first, max_chars, _fact_end(first, kinds)) if len(first) > 2 * max_chars else (first, "")
    chosen = [order[0]]
    used = len(head)
    if not rest:
        for i in order[1:]:
            if len(chosen) >= max_points or used + len(items[i]) > max_chars:
                break
            chosen.append(i)
            used += len(items[i])
    # the lead(s) first, then the other chosen points as they read
    shown = [i for i in chosen if i in leads] + sorted(i for i in chosen if i not in leads)
    text_points = [head if i == order[0] else items[i] for i in shown]
    more_points = [rest if i == order[0] else items[i]
                   for i in range(len(items)) if i not in chosen or (i == order[0] and rest)]
    return Brief(_lines(text_points), _lines(more_points))


def _kinds(wanted: Sequence[str]) -> list[Ask]:
    by_name = {a.name: a for a in ASKS}
    names = [_ALIASES.get(w, w) for w in wanted]
    unknown = [w for w, n in zip(wanted, names, strict=True) if n not in by_name]
    if unknown:
        raise ValueError(f"unknown kinds of fact: {unknown}; known: {sorted(by_name)} or {sorted(_ALIASES)}")
    return [by_name[n] for n in dict.fromkeys(names)]


def _leads(items: list[str], kinds: list[Ask]) -> list[int]:
    """For each kind asked, the first point in reading order that gives it; in reading order."""
    found = {next((i for i, p in enumerate(items) if gives([k], p)), -1) for k in kinds}
    return sorted(found - {-1})


def _fact_end(text: str, kinds: list[Ask]) -> int:
    """Where the first asked fact in `text` ends (0 if none): a split must not leave it in the rest."""
    lowered = text.lower()
    if len(lowered) != len(text):  # lower() changed the length: positions would not map back
        return len(text)
    ends = [m.end() for k in kinds if (m := k.answer.search(lowered))]
    return min(ends) if ends else 0


def _split(sentence: str, budget: int, reach: int) -> tuple[str, str]:
    """`sentence` cut after the last clause mark within `budget` characters (and past `reach`), else after the
    first one beyond; kept whole when it has no clause mark that leaves something after it."""
    cuts = [i + 1 for i, ch in enumerate(sentence[:-1]) if ch in CLAUSE_MARKS and i + 1 >= reach]
    cuts = [c for c in cuts if sentence[c:].strip()]
    if not cuts:
        return sentence, ""
    within = [c for c in cuts if c <= budget]
    cut = within[-1] if within else cuts[0]
    return sentence[:cut].rstrip(), sentence[cut:].lstrip()


def _lines(points: list[str]) -> str:
    if len(points) == 1:
        return points[0]
    return "\n".join(f"{BULLET}{p}" for p in points)
