"""The whole closed loop through Telegram with the REAL dialogue engine: the real python-telegram-bot client
polls the Bot API test server (tests/servers/botapi.py) on 127.0.0.1; a resident and a grid worker are
scripted by raw updates and by pressing the signed buttons the server recorded.

Resident 555777: /start, consent, address by buttons, a cited policy answer, a report without a place
(asked where), confirmation, the case code with a local due time, the rating, and a gas emergency.
Worker 900100 (芙蓉社区第一网格专职网格员, grids.yaml): the task push, 接单, 办结 with a note, skip photo.
Pushes (Notification rows) are delivered by the channel right after the update that queued them (and by the
scheduler's sweep for anything that missed). `quanbot run` itself (bot.cli.run.serve: migrate, warm the models,
channel + scheduler) is run once against the test server.
"""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from sqlalchemy import select
from sqlalchemy.engine import Engine

from bot.channels.inbox import Inbox
from bot.dialogue import texts
from bot.services import Services
from bot.settings import Settings
from casestore.clock import FakeClock
from casestore.db import make_engine, session_scope
from casestore.dispatch import count_replies
from casestore.models import Case, CaseStatus, Notification, NotificationState
from policies.models import Policies
from tests.factories import AI_CACHE, FU01_FULL_TIME, SharedAI, make_resident, resident_of
from tests.servers.botapi import DEFAULT_TOKEN, BotApiServer
from tests.servers.tg_factories import make_callback_update, make_command_update, make_text_update
from tests.test_telegram_e2e import Running, start, tg, tg_settings  # noqa: F401 - fixtures

RESIDENT = 555777
WORKER = FU01_FULL_TIME  # 900100, covers 芙蓉小区 buildings 1-6
MESSAGE_METHODS = ("sendMessage", "sendPhoto", "editMessageText")
CASE_CODE = re.compile(r"JN\d{8}-\d{4}")


@pytest.fixture
def fast_settings(tg_settings: Settings) -> Settings:  # noqa: F811
    """Telegram's 1 message/s per chat is honoured by the adapter (tested in test_telegram_e2e); a scripted
    conversation of ~60 messages need not wait for it."""
    return tg_settings.model_copy(update={"telegram_rate_per_chat": 50.0})


# ---------------------------------------------------------------- helpers on what the server recorded
def _text_of(params: dict[str, Any]) -> str:
    return str(params.get("text") or params.get("caption") or "")


def _labels(params: dict[str, Any]) -> dict[str, str]:
    """label -> callback_data of an inline keyboard the bot sent."""
    markup = params.get("reply_markup") or {}
    return {b["text"]: b["callback_data"] for row in markup.get("inline_keyboard", []) for b in row
            if "callback_data" in b}


class Chat:
    """One person talking to the bot: each step pushes an update, waits until the channel has finished it
    (its inbox row is done and every reply row of the outbox is sent) and returns the calls sent to this chat."""

    def __init__(self, server: BotApiServer, engine: Engine, user_id: int, name: str):
        self.tg, self.engine, self.user_id, self.name = server, engine, user_id, name

    async def _turn(self, update: dict[str, Any], timeout: float = 10.0) -> list[dict[str, Any]]:
        mark = len(self.tg.sent)
        uid = self.tg.push_update(update)
        inbox = Inbox(self.engine)
        deadline = time.monotonic() + timeout
        while True:
            entry = await asyncio.to_thread(inbox.get, update_id=uid)
            if entry is not None and entry.state == "done" and not await asyncio.to_thread(
                    count_replies, engine=self.engine, channel="telegram", update_id=uid, unsent=True):
                break
            if time.monotonic() > deadline:
                raise AssertionError(f"update {uid} not handled in {timeout}s; state={entry and entry.state}; "
                                     f"sent={[_text_of(c['params'])[:40] for c in self.tg.sent[mark:]]}")
            await asyncio.sleep(0.02)
        return [c for c in self.tg.sent[mark:]
                if c["method"] in MESSAGE_METHODS and c["params"].get("chat_id") == self.user_id]

    async def send(self, body: str) -> list[dict[str, Any]]:
        return await self._turn(make_text_update(body, user_id=self.user_id, first_name=self.name))

    async def command(self, cmd: str) -> list[dict[str, Any]]:
        return await self._turn(make_command_update(cmd, user_id=self.user_id, first_name=self.name))

    async def press(self, calls: list[dict[str, Any]], label: str) -> list[dict[str, Any]]:
        """Press the button `label` on the last of `calls` that carries it, with its signed callback_data."""
        for call in reversed(calls):
            data = _labels(call["params"]).get(label)
            if data is not None:
                update = make_callback_update(data, user_id=self.user_id, first_name=self.name,
                                              message_id=call["result"]["message_id"],
                                              message_text=_text_of(call["params"]),
                                              reply_markup=call["params"]["reply_markup"])
                return await self._turn(update)
        raise AssertionError(f"no button {label!r} in {[list(_labels(c['params'])) for c in calls]}")


def said(calls: list[dict[str, Any]]) -> str:
    return "\n".join(_text_of(c["params"]) for c in calls)


def case_by_code(engine: Engine, code: str) -> Case:
    with session_scope(engine) as s:
        return s.execute(select(Case).where(Case.code == code)).scalars().one()


def pushes_to(server: BotApiServer, chat_id: int, since: int) -> list[dict[str, Any]]:
    return [c for c in server.sent[since:] if c["method"] in MESSAGE_METHODS and c["params"].get("chat_id") == chat_id]


# ---------------------------------------------------------------- the whole loop
@pytest.fixture(params=["sqlite", "postgresql"])
def loop_engine(request: pytest.FixtureRequest, engine: Engine) -> Engine:
    """The loop on both case stores: the PostgreSQL run once caught an inbox that took every update for a
    duplicate there (it is skipped without TEST_DATABASE_URL, as every PostgreSQL test is)."""
    return engine if request.param == "sqlite" else request.getfixturevalue("pg_engine")


async def test_resident_and_worker_through_the_whole_loop(tg: BotApiServer, fast_settings: Settings,  # noqa: F811
                                                          loop_engine: Engine, policies: Policies, clock: FakeClock,
                                                          ai: SharedAI):
    engine = loop_engine
    services = Services(fast_settings, clock=clock, engine=engine, policies=policies, classifier=ai.classifier,
                        knowledge=ai.knowledge)
    running: Running = await start(fast_settings, services.dialogue.handle, engine, clock)

    async def pushed(chat_id: int, needle: str, label: str | None = None) -> dict:
        """The channel delivers queued pushes right after the update that caused them: wait for one."""
        return await tg.async_wait_for(
            lambda c: c["method"] in ("sendMessage", "sendPhoto") and c["params"].get("chat_id") == chat_id
            and needle in _text_of(c["params"]) and (label is None or label in _labels(c["params"])), timeout=15)

    resident = Chat(tg, engine, RESIDENT, "王大爷")
    worker = Chat(tg, engine, WORKER, "李网格")
    try:
        # 1. first contact: welcome, privacy, consent by the signed button
        r = await resident.command("/start")
        assert _text_of(r[0]["params"]) == texts.WELCOME and texts.PRIVACY in said(r)
        assert list(_labels(r[-1]["params"])) == [texts.BTN_AGREE, texts.BTN_DISAGREE]
        r = await resident.press(r, texts.BTN_AGREE)
        assert texts.CONSENT_THANKS in said(r)

        # 2. the address by buttons: community, estate, building, unit
        r = await resident.press(r, "芙蓉社区")
        r = await resident.press(r, "芙蓉小区")
        r = await resident.press(r, "3号楼")
        r = await resident.press(r, "2单元")
        assert "芙蓉小区3号楼2单元" in said(r) and "芙蓉社区第一网格" in said(r)
        with session_scope(engine) as s:
            row = resident_of(s, RESIDENT)
            assert row.consent_at is not None and (row.estate, row.building, row.unit, row.grid_id) == (
                "芙蓉小区", 3, 2, "FU01")

        # 3. a policy question: a cited answer with feedback buttons, and no case
        r = await resident.send("办居住证要带什么")
        assert "来源" in said(r) and "《居住证办理指南》" in said(r)
        assert list(_labels(r[-1]["params"])) == [texts.BTN_MORE, texts.BTN_USEFUL, texts.BTN_NOT_USEFUL,
                                                  texts.BTN_HUMAN]  # a long answer: 3 points first, 详细 for the rest
        assert "parse_mode" not in r[-1]["params"]  # plain text: the answer arrives exactly as written
        first = said(r)
        r = await resident.press(r, texts.BTN_MORE)
        assert said(r) and said(r) not in first and "来源" in said(r)

        # 4. a report whose place the home address cannot imply (a street lamp): asked where, then confirmed
        r = await resident.send("路灯坏了，晚上黑")
        assert said(r) == texts.ASK_WHERE
        r = await resident.send("芙蓉小区5号楼门口")
        assert texts.ASK_PHOTO in said(r)
        r = await resident.press(r, texts.BTN_SKIP)
        assert said(r).startswith("我帮您登记") and "芙蓉小区5号楼门口" in said(r) and "路灯坏了" in said(r)
        with session_scope(engine) as s:
            assert s.execute(select(Case)).scalars().all() == []  # nothing before 对
        r = await resident.press(r, texts.BTN_YES)
        codes = CASE_CODE.findall(said(r))
        assert len(codes) == 1, said(r)
        code = codes[0]
        assert "预计 11月20日 15:00 前响应" in said(r)  # Friday 14:00 Shanghai + 1 service hour, shown locally
        case = case_by_code(engine, code)
        assert (case.status, case.grid_id, case.location_text, case.category) == (
            CaseStatus.assigned, "FU01", "芙蓉小区5号楼门口", "public_facilities")

        # 5. the task push reaches the worker with signed task buttons; 接单, 办结, a note, skip the photo
        push = await pushed(WORKER, code, texts.BTN_ACCEPT)
        assert len([c for c in pushes_to(tg, WORKER, 0) if code in _text_of(c["params"])]) == 1  # paged once
        assert {texts.BTN_ACCEPT, texts.BTN_RESPOND, texts.BTN_TRANSFER} <= set(_labels(push["params"]))
        assert running.channel.signer.decode(_labels(push["params"])[texts.BTN_ACCEPT]).case_code == code  # type: ignore[union-attr]

        w = await worker.press([push], texts.BTN_ACCEPT)
        assert texts.ACCEPTED.format(code=code) in said(w)
        assert case_by_code(engine, code).status == CaseStatus.accepted
        w = await worker.press(w, texts.BTN_RESOLVE)
        assert texts.ASK_RESOLVE_NOTE.format(code=code) in said(w)
        w = await worker.send("已更换路灯灯泡，晚上亮了")
        assert texts.ASK_RESOLVE_PHOTO in said(w)
        assert case_by_code(engine, code).status == CaseStatus.accepted  # not resolved before the last step
        w = await worker.press(w, texts.BTN_SKIP)
        assert texts.RESOLVED.format(code=code) in said(w)
        resolved = case_by_code(engine, code)
        assert resolved.status == CaseStatus.resolved and resolved.resolved_at is not None

        # 6. the resident is asked to rate; ⭐5 closes the case with satisfaction 5
        asks = [await pushed(RESIDENT, code, "⭐5")]
        r = await resident.press(asks, "⭐5")
        assert texts.RATE_THANKS in said(r)
        closed = case_by_code(engine, code)
        assert (closed.status, closed.satisfaction) == (CaseStatus.closed, 5)
        r = await resident.press(asks, "⭐5")  # the same button again: stale, nothing changes
        assert texts.BUTTON_EXPIRED in said(r) and case_by_code(engine, code).satisfaction == 5

        # 7. an emergency: guidance first, the case opened and the worker paged on the very next delivery
        r = await resident.send("楼道里一股煤气味，好像漏气了")
        first = _text_of(r[0]["params"])
        assert first == texts.EMERGENCY_GAS and "119" in first
        assert all(not _labels(c["params"]) for c in r)  # no confirmation round-trip
        (urgent_code,) = [c for c in CASE_CODE.findall(said(r)) if c != code]
        urgent = case_by_code(engine, urgent_code)
        assert (urgent.urgency, urgent.status, urgent.grid_id) == ("emergency", CaseStatus.assigned, "FU01")
        with session_scope(engine) as s:  # the page was recorded in the same transaction as the case
            queued = s.execute(select(Notification).where(Notification.case_id == urgent.id,
                                                          Notification.chat_id == WORKER)).scalars().all()
            assert queued
        # no clock advance and no sweep: the channel pages the worker right after the update
        page = await pushed(WORKER, urgent_code, texts.BTN_ACCEPT)
        assert "紧急" in _text_of(page["params"])
    finally:
        await running.stop()
        services.close()
    assert running.channel.stats.errors == 0 and running.channel.stats.refused_buttons == 0
    assert not tg.rejected


async def test_emergency_page_reaches_the_worker_without_waiting_for_a_sweep(
        tg: BotApiServer, fast_settings: Settings, engine: Engine, policies: Policies, clock: FakeClock,  # noqa: F811
        ai: SharedAI):
    make_resident(engine, policies, user=RESIDENT, clock=clock)  # consented, 芙蓉小区3号楼2单元 (FU01)
    services = Services(fast_settings, clock=clock, engine=engine, policies=policies, classifier=ai.classifier,
                        knowledge=ai.knowledge)
    running = await start(fast_settings, services.dialogue.handle, engine, clock)
    try:
        tg.push_update(make_text_update("楼道里一股煤气味，好像漏气了", user_id=RESIDENT))
        await tg.async_wait_for(lambda c: c["params"].get("chat_id") == RESIDENT
                                and _text_of(c["params"]) == texts.EMERGENCY_GAS)
        with session_scope(engine) as s:  # the page is queued for the grid worker...
            (case,) = s.execute(select(Case)).scalars().all()
            assert case.assignee_id is not None and s.execute(select(Notification).where(
                Notification.case_id == case.id, Notification.chat_id == WORKER)).scalars().all()
        try:  # ...and should leave with the reply, no test or scheduler helping
            await tg.async_wait_for(lambda c: c["params"].get("chat_id") == WORKER
                                    and case.code in _text_of(c["params"]), timeout=3)
            paged = True
        except TimeoutError:
            paged = False
    finally:
        await running.stop()
        services.close()
    assert paged, "the emergency page was queued but not sent within 3 s of the reply"


# ---------------------------------------------------------------- `quanbot run`
async def test_quanbot_run_serves_start_and_the_scheduler_then_stops_cleanly(tg: BotApiServer, tmp_path: Path):  # noqa: F811
    from bot.cli.run import serve

    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        database_url=f"sqlite:///{tmp_path / 'run.db'}",  # not migrated: serve() must do it
        var_dir=AI_CACHE,  # the trained model and passage vectors: warmed from the cache, not retrained
        chroma_dir=tmp_path / "chroma",
        telegram_token=SecretStr(DEFAULT_TOKEN),
        telegram_base_url=tg.base_url,
        sweep_interval_s=1,
    )
    stop = asyncio.Event()
    task = asyncio.create_task(serve(settings, scheduler=True, stop=stop))
    try:
        # commands are registered only after the database is migrated and the models are warm
        await tg.async_wait_for("setMyCommands", timeout=60)
        assert not task.done()
        tg.push_update(make_command_update("/start", user_id=RESIDENT))
        await tg.async_wait_for(lambda c: c["params"].get("chat_id") == RESIDENT
                                and _text_of(c["params"]) == texts.WELCOME, timeout=15)
        ask = await tg.async_wait_for(lambda c: c["params"].get("chat_id") == RESIDENT
                                      and texts.BTN_AGREE in _labels(c["params"]))
        # consent, then an emergency: the in-process scheduler delivers the page with no help from the test
        tg.push_update(make_callback_update(_labels(ask["params"])[texts.BTN_AGREE], user_id=RESIDENT,
                                            message_id=ask["result"]["message_id"],
                                            reply_markup=ask["params"]["reply_markup"]))
        await tg.async_wait_for(lambda c: c["params"].get("chat_id") == RESIDENT
                                and _text_of(c["params"]) == texts.CONSENT_THANKS)
        tg.push_update(make_text_update("芙蓉小区3号楼2单元", user_id=RESIDENT))
        await tg.async_wait_for(lambda c: c["params"].get("chat_id") == RESIDENT
                                and "芙蓉社区第一网格" in _text_of(c["params"]))
        tg.push_update(make_text_update("厨房里有很浓的煤气味", user_id=RESIDENT))
        await tg.async_wait_for(lambda c: c["params"].get("chat_id") == RESIDENT
                                and _text_of(c["params"]) == texts.EMERGENCY_GAS)
        page = await tg.async_wait_for(lambda c: c["method"] == "sendMessage" and c["params"].get("chat_id") == WORKER
                                       and "紧急" in _text_of(c["params"]), timeout=10)
        assert texts.BTN_ACCEPT in _labels(page["params"])
        # the tick marks the row sent after the message left; wait for that before stopping, because
        # stopping cancels a tick in flight (see the report: the row would stay `sending`)
        check = make_engine(settings.database_url)
        try:
            deadline = time.monotonic() + 10
            while True:
                with session_scope(check) as s:
                    (case,) = s.execute(select(Case)).scalars().all()
                    rows = s.execute(select(Notification.state).where(Notification.case_id == case.id,
                                                                      Notification.chat_id == WORKER)).all()
                    urgency, grid = case.urgency, case.grid_id
                if rows and all(r[0] == NotificationState.sent for r in rows):
                    break
                assert time.monotonic() < deadline, f"page not marked sent: {rows}"
                await asyncio.sleep(0.05)
            assert (urgency, grid) == ("emergency", "FU01")
        finally:
            check.dispose()
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=15)  # ends cleanly: no exception, no hang
    assert task.exception() is None
