"""A slow or hanging LLM must cost a resident at most LLM_TIMEOUT_S and cost other residents nothing.

Everything runs against the real OpenAI-compatible test server on 127.0.0.1 (latency and hang modes) and the
real dialogue engine, classifier and knowledge service: no model call holds a database transaction or lock,
residents do not queue behind each other, a turn's classification and answer share one deadline, calls in
flight are limited per endpoint, and no prompt reaches the log at DEBUG.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from sqlalchemy.engine import Engine

from bot.dialogue import texts
from bot.dialogue.turn import MAX_MODEL_PASSES, ModelCalls, ModelNeeded
from bot.services import Services
from bot.settings import Settings
from bot.understanding.service import MessageClassifier
from casestore.clock import FakeClock
from knowledge.answers import KnowledgeService
from knowledge.llm import Deadline, LLMError, OpenAICompatLLM, current_deadline, llm_from_settings
from policies.models import Policies
from tests.factories import SharedAI, all_text, make_resident, text
from tests.servers.openai_compat import OpenAICompatServer

SYSTEM_ERROR = texts.SYSTEM_ERROR.split("，")[0]  # "系统开小差了"
QUESTION = "居住证多久签注一次"  # an inquiry the offline model is sure of, answered from a passage (not the FAQ)
REPORT = "俺家楼道灯坏了好几天了"
MSG = [{"role": "user", "content": "你好"}]


@pytest.fixture
def server() -> Iterator[OpenAICompatServer]:
    with OpenAICompatServer() as s:
        yield s


def sensible(server: OpenAICompatServer, ai: SharedAI) -> None:
    """The server labels like the offline model and answers from passage 1."""
    server.answer_sensibly(lambda content: ai.classifier.understand_offline(content).labels())


def llm_services(settings: Settings, engine: Engine, policies: Policies, clock: FakeClock, ai: SharedAI,
                 server: OpenAICompatServer, *, timeout_s: float, max_concurrency: int = 64) -> Services:
    """Services as `quanbot run` builds them with an LLM configured: one adapter per service, one endpoint."""
    s = settings.model_copy(update={"openai_base_url": server.base_url, "openai_api_key": SecretStr("test"),
                                    "llm_timeout_s": timeout_s, "llm_max_concurrency": max_concurrency})
    classifier = MessageClassifier(model_dir=Path(s.var_dir) / "models", llm=llm_from_settings(s), policies=policies,
                                   models=ai.classifier.models)
    knowledge = KnowledgeService(retriever=ai.knowledge.retriever, faq=ai.knowledge.faq, llm=llm_from_settings(s))
    return Services(s, clock=clock, engine=engine, policies=policies, classifier=classifier, knowledge=knowledge)


def timed(services: Services, user: int, message: str) -> tuple[float, str]:
    started = time.monotonic()
    reply = all_text(services.dialogue.handle(text(message, user=user)))
    return time.monotonic() - started, reply


def crowd(services: Services, messages: dict[int, str]) -> list[tuple[float, str]]:
    """Every resident sends their message at the same moment, each on their own thread."""
    start = threading.Barrier(len(messages))

    def one(item: tuple[int, str]) -> tuple[float, str]:
        start.wait()
        return timed(services, *item)

    with ThreadPoolExecutor(len(messages)) as pool:
        return list(pool.map(one, messages.items()))


# ---------------------------------------------------------------- finding: a hanging LLM on SQLite
def _crowd_with_hanging_llm(engine: Engine, settings: Settings, policies: Policies, clock: FakeClock, ai: SharedAI,
                            server: OpenAICompatServer, caplog: pytest.LogCaptureFixture) -> None:
    timeout_s = 1.5
    services = llm_services(settings, engine, policies, clock, ai, server, timeout_s=timeout_s)
    server.hang()
    messages: dict[int, str] = {}
    for n in range(12):  # half known residents (consented, address bound), half writing for the first time
        user = 710000 + n
        if n % 2 == 0:
            make_resident(engine, policies, user=user, clock=clock)
        messages[user] = QUESTION if n % 4 < 2 else REPORT
    results = crowd(services, messages)
    replies = [reply for _, reply in results]
    assert not [r for r in replies if SYSTEM_ERROR in r], replies
    assert "database is locked" not in caplog.text
    assert all(r.strip() for r in replies)
    slowest = max(seconds for seconds, _ in results)
    # the old engine held the write lock through each model call: 12 residents queued, 1.5-3 s each
    timings = [(round(s, 2), user, m) for (s, _), (user, m) in zip(results, messages.items(), strict=True)]
    assert slowest < timeout_s + 1.0, timings


def test_hanging_llm_twelve_residents_at_once_on_sqlite(engine: Engine, settings: Settings, policies: Policies,
                                                       clock: FakeClock, ai: SharedAI, server: OpenAICompatServer,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    _crowd_with_hanging_llm(engine, settings, policies, clock, ai, server, caplog)


def test_hanging_llm_twelve_residents_at_once_on_postgres(pg_engine: Engine, settings: Settings, policies: Policies,
                                                         clock: FakeClock, ai: SharedAI, server: OpenAICompatServer,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    _crowd_with_hanging_llm(pg_engine, settings, policies, clock, ai, server, caplog)


# ---------------------------------------------------------------- no model call inside a transaction
def test_no_model_call_holds_a_connection_or_the_write_lock(engine: Engine, settings: Settings, policies: Policies,
                                                           clock: FakeClock, ai: SharedAI,
                                                           server: OpenAICompatServer) -> None:
    """While the model works on any call of these flows, and before it answers, the engine's pool gets every
    connection back and another process can take SQLite's write lock: no turn waits for a model while holding
    either. (A turn replayed while a question sent ahead is still in flight may hold them for the milliseconds
    until it needs that answer: the probe waits up to a second, which a turn blocked on this very call never
    reaches.) The flows include the writes that used to come before a model call: a first contact's
    conversation row, consent and address before a kept problem is read again, and a phone number remembered
    before the question is answered."""
    services = llm_services(settings, engine, policies, clock, ai, server, timeout_s=5.0)
    db_path = engine.url.database
    assert db_path
    seen: list[tuple[bool, bool]] = []

    def probe(body: dict[str, Any]) -> Any:
        until = time.monotonic() + 1.0
        while engine.pool.checkedout() and time.monotonic() < until:  # type: ignore[attr-defined]
            time.sleep(0.005)
        released = engine.pool.checkedout() == 0  # type: ignore[attr-defined]
        other = sqlite3.connect(db_path, timeout=1.0)
        try:
            other.execute("BEGIN IMMEDIATE")
            other.execute("ROLLBACK")
            free = True
        except sqlite3.OperationalError:
            free = False
        finally:
            other.close()
        seen.append((released, free))
        return answer(body)

    sensible(server, ai)
    answer = server.default_reply
    server.set_responder(probe)

    newcomer, reporter, known = 720001, 720002, 720003
    first = all_text(services.dialogue.handle(text(QUESTION, user=newcomer)))  # first contact, answered at once
    assert "签注" in first and SYSTEM_ERROR not in first
    said = [all_text(services.dialogue.handle(text(m, user=reporter)))
            for m in (REPORT, "同意", "芙蓉小区3号楼2单元", "跳过", "对")]  # the kept problem is read after the writes
    assert "工单号" in said[-1], said
    make_resident(engine, policies, user=known, clock=clock)
    phoned = all_text(services.dialogue.handle(text(f"我电话13812345678 {QUESTION}", user=known)))
    assert "签注" in phoned
    assert len(seen) >= 5, seen
    assert seen == [(True, True)] * len(seen), seen


def test_each_text_is_sent_to_the_model_once_per_update(engine: Engine, settings: Settings, policies: Policies,
                                                        clock: FakeClock, ai: SharedAI,
                                                        server: OpenAICompatServer) -> None:
    """A turn replayed after a model call finds the result: no message is classified or answered twice."""
    services = llm_services(settings, engine, policies, clock, ai, server, timeout_s=5.0)
    sensible(server, ai)
    make_resident(engine, policies, user=730001, clock=clock)
    reply = all_text(services.dialogue.handle(text(QUESTION, user=730001)))
    assert "签注" in reply
    bodies = [r["body"] for r in server.chat_requests()]
    assert sum(1 for b in bodies if b.get("response_format")) == 1
    assert sum(1 for b in bodies if not b.get("response_format")) == 1


# ---------------------------------------------------------------- finding: one deadline per turn
def test_inquiry_with_a_hanging_llm_waits_one_timeout_not_two(engine: Engine, settings: Settings, policies: Policies,
                                                              clock: FakeClock, ai: SharedAI,
                                                              server: OpenAICompatServer) -> None:
    timeout_s = 1.2
    services = llm_services(settings, engine, policies, clock, ai, server, timeout_s=timeout_s)
    make_resident(engine, policies, user=740001, clock=clock)
    server.hang()
    seconds, reply = timed(services, 740001, QUESTION)
    assert "签注" in reply and SYSTEM_ERROR not in reply  # the offline answer
    assert seconds < timeout_s + 0.5  # the old turn: classification timeout, then the answer's timeout


def test_a_question_costs_one_model_latency_not_two(engine: Engine, settings: Settings, policies: Policies,
                                                    clock: FakeClock, ai: SharedAI,
                                                    server: OpenAICompatServer) -> None:
    """The answer is asked while the LLM classifies (the offline model already reads a clear inquiry)."""
    latency = 1.0
    services = llm_services(settings, engine, policies, clock, ai, server, timeout_s=5.0)
    make_resident(engine, policies, user=750001, clock=clock)
    sensible(server, ai)
    server.set_latency(latency)
    seconds, reply = timed(services, 750001, QUESTION)
    assert "签注" in reply
    classify, answer = sorted(server.chat_requests(), key=lambda r: bool(r["body"].get("response_format")))[::-1]
    assert classify["body"].get("response_format") and not answer["body"].get("response_format")
    assert abs(classify["t"] - answer["t"]) < latency / 2  # both in flight together
    assert seconds < 1.6 * latency


def test_a_report_is_not_sent_to_the_knowledge_base_ahead(engine: Engine, settings: Settings, policies: Policies,
                                                          clock: FakeClock, ai: SharedAI,
                                                          server: OpenAICompatServer) -> None:
    services = llm_services(settings, engine, policies, clock, ai, server, timeout_s=5.0)
    make_resident(engine, policies, user=760001, clock=clock)
    sensible(server, ai)
    reply = all_text(services.dialogue.handle(text(REPORT, user=760001)))
    assert "照片" in reply
    assert [bool(r["body"].get("response_format")) for r in server.chat_requests()] == [True]


def test_a_turn_past_its_deadline_reads_offline_without_a_replay(engine: Engine, settings: Settings,
                                                                policies: Policies, clock: FakeClock, ai: SharedAI,
                                                                server: OpenAICompatServer) -> None:
    services = llm_services(settings, engine, policies, clock, ai, server, timeout_s=5.0)
    live = ModelCalls(services)
    with pytest.raises(ModelNeeded):  # an LLM is configured and there is time: the engine asks it outside
        live.understand(REPORT)
    for _ in range(MAX_MODEL_PASSES):  # a turn that keeps needing models gets no more than this many replays
        live.run(ModelNeeded("understand", f"{REPORT} {_}"))
    spent = ModelCalls(services, deadline=Deadline(0.0))
    for models in (live, spent):
        u = models.understand("楼道里有股怪味")
        answer = models.ask(QUESTION)
        assert u.mode == "llm_fallback" and answer.mode in ("offline_fallback", "faq") and answer.answered
    assert len(server.chat_requests()) == MAX_MODEL_PASSES


def test_deadline_counts_down_on_the_clock_it_is_given() -> None:
    now = [100.0]
    d = Deadline(2.0, clock=lambda: now[0])
    assert d.remaining() == 2.0 and not d.expired
    now[0] += 1.5
    assert d.remaining() == pytest.approx(0.5)
    now[0] += 1.0
    assert d.remaining() == 0.0 and d.expired


def test_the_earlier_applied_deadline_wins() -> None:
    assert current_deadline() is None
    outer, inner = Deadline(1.0), Deadline(30.0)
    with outer.applied() as a:
        assert a is outer
        with inner.applied() as b:
            assert b is outer and current_deadline() is outer
        with Deadline(0.1).applied() as c:
            assert current_deadline() is c
        assert current_deadline() is outer
    assert current_deadline() is None


def test_adapter_call_ends_at_the_applied_deadline(server: OpenAICompatServer) -> None:
    server.hang()
    llm = OpenAICompatLLM(base_url=server.base_url, api_key="test", model="m", timeout_s=10.0)
    started = time.monotonic()
    with Deadline(0.5).applied(), pytest.raises(LLMError):
        llm.complete(MSG)
    assert time.monotonic() - started < 1.0
    started = time.monotonic()
    with pytest.raises(LLMError):
        llm.complete(MSG, timeout_s=0.4)  # the per-call timeout
    assert time.monotonic() - started < 0.9


def test_no_time_left_sends_nothing(server: OpenAICompatServer) -> None:
    llm = OpenAICompatLLM(base_url=server.base_url, api_key="test", model="m")
    with Deadline(0.0).applied(), pytest.raises(LLMError, match="no time left"):
        llm.complete(MSG)
    with pytest.raises(LLMError, match="no time left"):
        llm.complete(MSG, timeout_s=0.01)
    assert server.chat_requests() == []


# ---------------------------------------------------------------- calls in flight, per endpoint
def test_calls_in_flight_are_limited(server: OpenAICompatServer) -> None:
    server.set_latency(0.3)
    llm = OpenAICompatLLM(base_url=server.base_url, api_key="test", model="m", timeout_s=5.0, max_concurrency=2)
    with ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(lambda _: llm.complete(MSG), range(6)))
    assert answers == ["好的。"] * 6
    assert server.peak_in_flight == 2


def test_a_call_waits_for_a_slot_only_within_its_time(server: OpenAICompatServer) -> None:
    server.hang()
    first = OpenAICompatLLM(base_url=server.base_url, api_key="test", model="m", timeout_s=3.0, max_concurrency=1)
    second = OpenAICompatLLM(base_url=server.base_url, api_key="test", model="m", timeout_s=3.0, max_concurrency=1)
    failed: list[LLMError] = []

    def hold() -> None:
        try:
            first.complete(MSG)
        except LLMError as exc:
            failed.append(exc)

    holder = threading.Thread(target=hold, daemon=True)
    holder.start()
    while server.in_flight == 0:
        time.sleep(0.01)
    started = time.monotonic()
    with pytest.raises(LLMError, match="busy"):  # another adapter of the same endpoint shares the limit
        second.complete(MSG, timeout_s=0.4)
    assert 0.2 < time.monotonic() - started < 0.8
    assert len(server.chat_requests()) == 1
    server.stop()
    holder.join(5)
    assert failed  # the held call ended with the server, as "no answer"


def test_residents_beyond_the_limit_fall_back_within_their_deadline(engine: Engine, settings: Settings,
                                                                    policies: Policies, clock: FakeClock,
                                                                    ai: SharedAI, server: OpenAICompatServer,
                                                                    caplog: pytest.LogCaptureFixture) -> None:
    timeout_s = 1.0
    services = llm_services(settings, engine, policies, clock, ai, server, timeout_s=timeout_s, max_concurrency=2)
    server.hang()
    users = {770000 + n: (QUESTION if n % 2 else REPORT) for n in range(8)}
    for user in users:
        make_resident(engine, policies, user=user, clock=clock)
    results = crowd(services, users)
    assert not [r for _, r in results if SYSTEM_ERROR in r]
    assert max(s for s, _ in results) < timeout_s + 1.0
    assert server.peak_in_flight <= 2
    assert "busy" in caplog.text


# ---------------------------------------------------------------- finding: prompts in the DEBUG log
def test_no_prompt_reaches_the_log_at_debug(server: OpenAICompatServer, caplog: pytest.LogCaptureFixture) -> None:
    marker = "张阿姨家的猫叫咪咪"
    caplog.set_level(logging.DEBUG)  # what LOG_LEVEL=DEBUG gives the root logger
    for name in ("openai", "httpx", "httpcore"):  # as a library left them before any adapter was built
        logging.getLogger(name).setLevel(logging.NOTSET)
    llm = OpenAICompatLLM(base_url=server.base_url, api_key="test", model="m")
    assert llm.complete([{"role": "user", "content": marker}]) == "好的。"
    assert marker in server.prompts_text()
    assert marker not in caplog.text
    assert all(logging.getLogger(n).getEffectiveLevel() == logging.WARNING for n in ("openai", "httpx", "httpcore"))


# ---------------------------------------------------------------- SQLite: reports confirmed at the same moment
def test_reports_confirmed_at_the_same_moment_all_open_on_sqlite(engine: Engine, settings: Settings,
                                                                policies: Policies, clock: FakeClock, ai: SharedAI,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    """Opening a case runs in a savepoint; on SQLite that used to begin a deferred transaction whose first write
    failed at once ("database is locked", SQLITE_BUSY_SNAPSHOT) when another case had been opened meanwhile."""
    services = Services(settings, clock=clock, engine=engine, policies=policies, classifier=ai.classifier,
                        knowledge=ai.knowledge)
    users = [780000 + n for n in range(10)]
    for user in users:
        make_resident(engine, policies, user=user, clock=clock)
        assert "照片" in all_text(services.dialogue.handle(text(REPORT, user=user)))
        assert "我帮您登记" in all_text(services.dialogue.handle(text("跳过", user=user)))
    results = crowd(services, dict.fromkeys(users, "对"))
    assert all("工单号" in reply for _, reply in results), [r for _, r in results if "工单号" not in r]
    assert "database is locked" not in caplog.text
