"""README's hand-off and reopen-in-words transcript (issue #15, done when) stays true: its resident input is played
through the real engine (a consented resident of 芙蓉小区3号楼2单元, the worker's 接单 / 办结 / 已更换灯泡 / 跳过 in
between, on the fake clock), and every line the bot says in the README is said, with case codes and dates as the
run gives them."""

from __future__ import annotations

import re
from pathlib import Path

from sqlalchemy import select

from casestore.db import session_scope
from casestore.models import Case
from casestore.notify import Button
from tests.factories import FU01_FULL_TIME, RESIDENT_ID, make_resident, press, pushes, text

ROOT = Path(__file__).resolve().parent.parent
HEADING = "Asking for a person in the middle of a report"
_CODE = re.compile(r"JN\d{8}-\d{4}")
_WHEN = re.compile(r"\d{1,2}月\d{1,2}日 \d{2}:\d{2}")


def _transcript() -> list[str]:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    block = readme[readme.index(HEADING):]
    block = block[block.index("```text\n") + len("```text\n"):]
    return block[: block.index("```")].splitlines()


def _said(lines: list[str]) -> tuple[list[str], list[str]]:
    """The resident's inputs and the bot's messages (their text lines, without the numbered buttons)."""
    inputs, messages = [], []
    for line in lines:
        if line.startswith("您："):
            inputs.append(line.removeprefix("您："))
        elif line.startswith("泉小智："):
            messages.append(line.removeprefix("泉小智："))
        elif line.strip() in ("…", "") or re.match(r"^\[\d+\]", line):
            continue
        else:
            messages[-1] += "\n" + line
    return inputs, messages


def _normal(s: str) -> str:
    return _WHEN.sub("<when>", _CODE.sub("<code>", s))


def test_readme_shows_a_handoff_and_a_reopen_in_words() -> None:
    inputs, messages = _said(_transcript())
    assert "俺要找真人说话" in inputs and any("没修好" in i for i in inputs)
    assert any("已为您转给" in m for m in messages) and any("已重新交给网格员办理" in m for m in messages)


def test_every_line_of_the_readme_handoff_transcript_is_what_the_engine_says(dlg, engine, clock, policies) -> None:  # type: ignore[no-untyped-def]
    inputs, messages = _said(_transcript())
    make_resident(engine, policies, clock=clock)  # 芙蓉小区3号楼2单元, consented
    heard: list[str] = []
    for typed in inputs[:2]:  # 楼道灯坏了, 俺要找真人说话
        heard += [m.text for m in dlg.handle(text(typed)).messages]
    with session_scope(engine) as s:
        (code,) = s.execute(select(Case.code)).scalars().all()
    w = FU01_FULL_TIME
    dlg.handle(press(Button("接单", "accept", code), user=w))
    dlg.handle(press(Button("办结", "resolve", code), user=w))
    dlg.handle(text("已更换灯泡", user=w))
    dlg.handle(text("跳过", user=w))
    heard += pushes(engine, clock).texts_to(RESIDENT_ID)  # what the resident's window shows when it opens
    for typed in inputs[2:]:
        heard += [m.text for m in dlg.handle(text(typed)).messages]
    said = [_normal(h) for h in heard]
    for message in messages:
        assert _normal(message) in said, f"README says {message!r}; the engine said {heard}"
