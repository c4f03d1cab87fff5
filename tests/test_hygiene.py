"""Text hygiene: control, ANSI and bidi characters never reach a stored case or a worker's screen, and an
unpaired surrogate gets a normal answer and a case (policies.hygiene, casestore intake, filing.title_of,
the engine's input normalisation)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from bot.dialogue import texts
from bot.dialogue.engine import DialogueEngine
from bot.dialogue.filing import title_of
from casestore.db import session_scope
from casestore.deadlines import SlaPolicy
from casestore.intake import Report, open_case
from casestore.models import Case
from policies.hygiene import clean_text, escape_controls, fix_surrogates
from tests.conftest import SHANGHAI
from tests.factories import SharedAI, make_resident, pushes, report_through, shared_ai

FORGED = "\r\n2026-12-01 09:30:00 INFO bot.scheduler: sweep: 0 due, 0 reminders"
NASTY = ["\x1b[31m", "\x1b[2J", "\x1b]0;pwned\x07", "\x9b1m", "\r", "\x00", "\x08", "\x7f", "\x85", "\u202e",
         "\u2066", "\u2028", "\x1b(B", "\x1bP1;2|x\x1b\\"]
UNSAFE = set("\x1b\r\x00\x08\x7f\x85\x9b\u202e\u2066\u2028") | {chr(c) for c in range(0x20) if c != 0x0A}


def _clean(s: str) -> bool:
    return not (set(s) & UNSAFE) and "[31m" not in s and "pwned" not in s


# ---------------------------------------------------------------- the rule
@pytest.mark.parametrize("junk", NASTY)
def test_clean_text_removes_escapes_controls_and_bidi(junk: str) -> None:
    cleaned = clean_text(f"楼道灯{junk}坏了", multiline=True)
    assert _clean(cleaned) and cleaned.startswith("楼道灯") and cleaned.endswith("坏了")


def test_line_breaks_are_kept_in_multiline_text_and_become_a_space_in_one_line() -> None:
    assert clean_text("第一行\r\n第二行\r第三行\u2028第四行\t完", multiline=True) == "第一行\n第二行\n第三行\n第四行 完"
    assert clean_text("芙蓉小区\r\n3号楼\t2单元") == "芙蓉小区 3号楼 2单元"


def test_clean_text_keeps_what_residents_type() -> None:
    kept = "俺家楼道灯坏了！！😊👨‍👩‍👧 １３８ ＡＢＣ (3号楼) \\n 不是换行"
    assert clean_text(kept, multiline=True) == kept and clean_text(kept) == kept


def test_surrogates_become_the_replacement_character() -> None:
    assert fix_surrogates("灯坏了\ud800") == "灯坏了\ufffd"
    assert clean_text("a\udfffb") == "a\ufffdb"
    assert fix_surrogates("😊") == "😊"


@given(st.text(alphabet=st.characters(codec=None), max_size=80))
@settings(max_examples=300, deadline=500)
def test_cleaned_text_is_safe_and_escaped_text_is_one_line(s: str) -> None:
    cleaned = clean_text(s)
    assert _clean(cleaned) and "\n" not in cleaned
    cleaned.encode("utf-8")  # no unpaired surrogate left
    assert clean_text(cleaned) == cleaned
    escaped = escape_controls(s)
    assert len(escaped.splitlines()) <= 1 and not (set(escaped) & UNSAFE)
    escaped.encode("utf-8")


# ---------------------------------------------------------------- where it is applied
def test_title_of_is_one_clean_line() -> None:
    assert title_of(f"楼道灯坏了{FORGED}") == "楼道灯坏了"
    assert title_of("\x1b[31m楼道灯\u202e坏了\x1b[0m") == "楼道灯坏了"
    assert title_of("\x1b[2J\r\n") == "居民反映"


def test_intake_stores_clean_title_description_and_location(engine, policies, clock) -> None:  # type: ignore[no-untyped-def]
    resident = make_resident(engine, policies, clock=clock)
    with session_scope(engine) as session:
        report = Report(intent="complaint", category="building", urgency="normal",
                        title="楼道灯\x1b[31m坏了\r伪造", description=f"楼道灯坏了{FORGED}\x1b]0;pwned\x07\u202e",
                        location_text="芙蓉小区\r\n3号楼\x00", estate="芙蓉小区", building=3, unit=2)
        result = open_case(session=session, policies=policies, sla=SlaPolicy(policies.sla, SHANGHAI), clock=clock,
                           resident=resident, report=report)
        case = result.case
        assert case.title == "楼道灯坏了 伪造"
        assert case.description == "楼道灯坏了\n2026-12-01 09:30:00 INFO bot.scheduler: sweep: 0 due, 0 reminders"
        assert case.location_text == "芙蓉小区 3号楼"
    [push] = pushes(engine, clock).sent
    assert "楼道灯坏了 伪造" in push[1].text and _clean(push[1].text.replace("\n", ""))


# ---------------------------------------------------------------- through the engine
@pytest.fixture(scope="module")
def ai(tmp_path_factory: pytest.TempPathFactory) -> SharedAI:
    return shared_ai(tmp_path_factory.mktemp("ai"))


def _report(dlg: DialogueEngine, message: str) -> list[str]:
    return report_through(dlg, message)


def _cases(engine) -> list[Case]:  # type: ignore[no-untyped-def]
    with session_scope(engine) as session:
        return list(session.execute(select(Case).order_by(Case.code)).scalars())


def test_a_lone_surrogate_gets_a_normal_answer_and_a_case(dlg, engine, policies, clock) -> None:  # type: ignore[no-untyped-def]
    make_resident(engine, policies, clock=clock)
    said = _report(dlg, "俺家楼道灯坏了好几天了\ud800晚上黑咕隆咚的")
    assert not any(texts.SYSTEM_ERROR.split("{")[0] in s for s in said), said
    [case] = _cases(engine)
    assert "\ud800" not in case.description and "\ufffd" in case.description
    assert all("\ud800" not in s for s in said)


def test_a_report_with_escapes_and_a_forged_log_line_is_stored_clean(dlg, engine, policies, clock) -> None:  # type: ignore[no-untyped-def]
    make_resident(engine, policies, clock=clock)
    _report(dlg, f"\x1b[31m俺家楼道灯坏了\u202e好几天了{FORGED}")
    [case] = _cases(engine)
    assert _clean(case.title) and _clean(case.description.replace("\n", ""))
    assert case.title == "俺家楼道灯坏了好几天了"
