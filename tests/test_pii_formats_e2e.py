"""The outsider's finding, end to end: phone and ID numbers in the formats residents type, reported through the
real dialogue engine during an LLM outage, reach no worker's push, no case row, no LLM prompt and no log line.

Before policies/masking.py held for these formats, each of them appeared raw in all four places."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator

import pytest
from sqlalchemy import select

from bot.dialogue.engine import DialogueEngine
from bot.services import Services
from bot.understanding import MessageClassifier
from casestore.db import session_scope
from casestore.models import Case, CaseEvent
from knowledge.llm import OpenAICompatLLM
from policies.masking import contains_unmasked
from tests.factories import SharedAI, all_text, make_resident, pushes, shared_ai, text
from tests.servers.openai_compat import OpenAICompatServer

# (as typed, the digits that must not appear anywhere, what the owner's worker sees instead)
FORMATS = [
    ("0531 8888 6666", "053188886666", "0531****66"),
    ("88886666", "88886666", "****66"),
    ("010 6234 5678", "01062345678", "010****78"),
    ("110105491231002", "110105491231002", "110********1002"),
    ("138.1234.5678", "13812345678", "138****5678"),
    ("1 3 9 0 0 0 0 1 1 1 1", "13900001111", "139****1111"),
    ("008613912345679", "13912345679", "139****5679"),
]


@pytest.fixture(scope="module")
def ai(tmp_path_factory: pytest.TempPathFactory) -> SharedAI:
    return shared_ai(tmp_path_factory.mktemp("ai"))


@pytest.fixture
def outage() -> Iterator[OpenAICompatServer]:
    """An LLM endpoint that answers every call with HTTP 500."""
    with OpenAICompatServer() as server:
        for _ in range(50):
            server.queue_error(500)
        yield server


def _digits(s: str) -> str:
    return re.sub(r"[^0-9]", "", s)


@pytest.mark.parametrize("raw,number,masked", FORMATS)
def test_a_number_as_residents_type_it_reaches_no_push_row_prompt_or_log(
        raw: str, number: str, masked: str, settings, engine, policies, clock, ai,  # type: ignore[no-untyped-def]
        outage: OpenAICompatServer, caplog: pytest.LogCaptureFixture) -> None:
    llm = OpenAICompatLLM(base_url=outage.base_url, api_key="test", model="m", timeout_s=2.0)
    classifier = MessageClassifier(model_dir=settings.var_dir / "models", models=ai.classifier.models, llm=llm,
                                   policies=policies)
    dlg: DialogueEngine = Services(settings, clock=clock, engine=engine, policies=policies, classifier=classifier,
                                   knowledge=ai.knowledge).dialogue
    make_resident(engine, policies, clock=clock)
    caplog.set_level(logging.INFO)
    said = [all_text(dlg.handle(text(f"俺家楼道灯坏了好几天了，联系电话{raw}，晚上黑咕隆咚的")))]
    for answer in ("跳过", "对"):
        said.append(all_text(dlg.handle(text(answer))))

    with session_scope(engine) as session:
        cases: list[Case] = list(session.execute(select(Case)).scalars())
        events: list[CaseEvent] = list(session.execute(select(CaseEvent)).scalars())
        rows = [f"{c.title}\n{c.description}\n{c.location_text}" for c in cases] + [str(e.data) for e in events]
    assert cases, said
    sent = [m.text for _, m in pushes(engine, clock).sent]
    assert sent and masked in "\n".join(sent)
    prompts = outage.prompts_text()
    assert outage.chat_requests(), "the LLM was not asked: the outage path was not exercised"
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert any("LLM" in w for w in warnings), warnings
    for where, texts_ in (("push", sent), ("case rows", rows), ("LLM prompt", [prompts]),
                          ("log", [r.getMessage() for r in caplog.records])):
        for t in texts_:
            assert number not in _digits(t), f"{raw!r} reached the {where}: {t[:300]!r}"
            assert not contains_unmasked(t), f"{where}: {t[:300]!r}"
