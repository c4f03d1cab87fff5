"""The 微心愿 wall through the real dialogue engine (the `dlg` fixture): a resident's wish is confirmed and published,
masked, to the grid's and community's volunteers and party members; one of them claims it (a second press is told
已被认领), reports progress and 已完成; the resident confirms 心愿达成. Urgent wishes carry a deadline and tell
the volunteer lead once when nobody claimed them; 结对帮扶 wishes get check-ins from the scheduler's tick as the
fake clock moves. `casestore.stats.wish_figures` counts what happened, and `quanbot stats --json` shows it.
"""

from __future__ import annotations

import asyncio
import json
import re
from datetime import timedelta

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import col, select
from typer.testing import CliRunner

from bot.dialogue import texts
from bot.scheduler import LoopDeps, tick
from bot.settings import Settings
from casestore import wishes
from casestore.audit import list_audit
from casestore.clock import FakeClock
from casestore.db import session_scope
from casestore.deadlines import SlaPolicy
from casestore.models import Case, CaseEvent, CaseStatus, Notification, Wish, WishStatus
from casestore.notify import Button, RecordingNotifier
from casestore.stats import SHANGHAI, overview, wish_figures
from policies.masking import find_personal_data
from policies.models import Policies
from tests.factories import (
    OTHER_RESIDENT_ID,
    RESIDENT_ID,
    all_text,
    button,
    make_resident,
    press,
    pushes,
    report_through,
    text,
)

FU01_LEAD = 900103
FU01_VOLUNTEER = 900170
FU01_PARTY = 900171
FURONG_VOLUNTEER = 900172  # the community's own: no grid
FURONG_PARTY = 900173
WALL_FU01 = {FU01_LEAD, FU01_VOLUNTEER, FU01_PARTY, FURONG_VOLUNTEER, FURONG_PARTY}
FU02_LEAD = 900107  # another grid's volunteer
QUSHUI_LEAD = 900131  # another community's volunteer
CODE = re.compile(r"JN\d{8}-\d{4}")


def _wish_of(engine: Engine) -> Wish:
    with session_scope(engine) as s:
        return s.exec(select(Wish)).one()


def _card(sent: RecordingNotifier, chat: int) -> Button:
    """The 认领心愿 button of the wall card pushed to `chat`."""
    cards = [m for c, m in sent.sent if c == chat and m.text.startswith("🌟 微心愿")]
    assert len(cards) == 1, [m.text for c, m in sent.sent if c == chat]
    assert cards[0].buttons[0][0].label == texts.BTN_WISH_CLAIM
    return cards[0].buttons[0][0]


def _wish(dlg, engine: Engine, policies: Policies, clock: FakeClock, words: str) -> tuple[str, RecordingNotifier]:
    """A consented resident of 芙蓉小区3号楼2单元 (FU01) tells the wish, confirms it; the pushes are delivered."""
    make_resident(engine, policies, clock=clock)
    said = report_through(dlg, words)
    assert texts.WISH_CONFIRM_NOTE in "\n".join(said)  # told before 对 that it goes out masked
    codes = CODE.findall(said[-1])
    assert len(codes) == 1 and "心愿墙" in said[-1], said
    return codes[0], pushes(engine, clock)


@pytest.mark.parametrize("words", ["想请志愿者帮忙给老人理个发", "希望有人陪俺去医院复查", "孩子暑假没人辅导作业"])
def test_typical_wishes_are_understood_as_wishes(ai, words: str):
    u = ai.classifier.understand(words)
    assert u.intent.label == "wish" and not u.low_confidence, (u.labels(), u.intent.confidence)


def test_a_wish_is_published_masked_to_the_grids_and_communitys_volunteers_and_party_members(
        dlg, engine: Engine, policies: Policies, clock: FakeClock):
    words = "我是张秀兰，想请志愿者上门给老人理个发，住3号楼2单元301，电话13812345678"
    code, sent = _wish(dlg, engine, policies, clock, words)
    reached = {c for c, m in sent.sent if m.text.startswith("🌟 微心愿")}
    assert reached == WALL_FU01  # not FU02's or 曲水's volunteers, not the grid workers
    card = next(m.text for c, m in sent.sent if c == FU01_VOLUNTEER)
    assert "理个发" in card and "芙蓉小区" in card
    for secret in ("张秀兰", "301", "3号楼", "2单元", "5678", "1381"):
        assert secret not in card, (secret, card)
    assert not find_personal_data(card)
    wish = _wish_of(engine)
    assert (wish.status, wish.grid_id, wish.community_id, wish.kind) == (WishStatus.open, "FU01", "furong", "regular")
    assert wish.due_at == clock.now() + timedelta(days=policies.taxonomy.wishes.regular_due_days)
    with session_scope(engine) as s:
        assert [e.subject for e in list_audit(session=s, action="wish_publish")] == [f"wish:{wish.id}"]
        assert s.exec(select(Case)).one().code == code


def test_claim_progress_done_and_the_resident_confirms_it_came_true(dlg, engine: Engine, policies: Policies,
                                                                     clock: FakeClock):
    code, sent = _wish(dlg, engine, policies, clock, "想请志愿者帮忙给老人理个发")
    clock.advance(timedelta(minutes=30))
    won = dlg.handle(press(_card(sent, FU01_VOLUNTEER), user=FU01_VOLUNTEER))
    assert all_text(won).startswith("认领成功") and code in all_text(won)
    lost = dlg.handle(press(_card(sent, FU01_PARTY), user=FU01_PARTY))
    assert all_text(lost) == wishes.ALREADY_CLAIMED and "已被认领" in all_text(lost)
    again = dlg.handle(press(_card(sent, FU01_VOLUNTEER), user=FU01_VOLUNTEER))
    assert "已经认领" in all_text(again)
    told = pushes(engine, clock)
    assert any("已由芙蓉社区第一网格志愿者认领" in t for t in told.texts_to(RESIDENT_ID))

    # only the claimer reports progress; a note goes to the resident and onto the case
    assert all_text(dlg.handle(button("wprog", code, user=FU01_PARTY))) == wishes.NOT_CLAIMER
    ask = dlg.handle(button("wprog", code, user=FU01_VOLUNTEER))
    assert all_text(ask) == texts.ASK_WISH_PROGRESS.format(code=code)
    assert all_text(dlg.handle(text("  ", user=FU01_VOLUNTEER))) == texts.WISH_NOTE_EMPTY
    note = dlg.handle(text("周六上午9点上门理发，有事打13912345678", user=FU01_VOLUNTEER))
    assert all_text(note) == texts.WISH_PROGRESS_SENT.format(code=code)
    progress = [t for t in pushes(engine, clock).texts_to(RESIDENT_ID) if "新进展" in t]
    assert len(progress) == 1 and "周六上午9点上门理发" in progress[0] and "13912345678" not in progress[0]

    done = dlg.handle(button("wdone", code, user=FU01_VOLUNTEER))
    assert all_text(done) == texts.WISH_DONE_SENT.format(code=code)
    ask_resident = [m for c, m in pushes(engine, clock).sent if c == RESIDENT_ID]
    assert [b.label for b in ask_resident[-1].buttons[0]] == ["心愿达成", "还没有"]
    ok = ask_resident[-1].buttons[0][0]
    # another resident's press of the same button finds nothing of theirs
    make_resident(engine, policies, clock=clock, user=OTHER_RESIDENT_ID)
    assert all_text(dlg.handle(press(ok, user=OTHER_RESIDENT_ID))) == wishes.NOT_YOURS
    assert all_text(dlg.handle(press(ok))) == texts.WISH_FULFILLED.format(code=code)
    assert "确认过" in all_text(dlg.handle(press(ok)))  # pressed twice: nothing changes
    assert any("已经达成" in t for t in pushes(engine, clock).texts_to(FU01_VOLUNTEER))

    wish = _wish_of(engine)
    assert wish.status == WishStatus.fulfilled and wish.claimed_at == wish.created_at + timedelta(minutes=30)
    with session_scope(engine) as s:
        case = s.exec(select(Case)).one()
        assert (case.status, case.close_reason) == (CaseStatus.closed, "wish_fulfilled")
        actions = [e.action for e in s.exec(select(CaseEvent).order_by(col(CaseEvent.id)))]
        assert actions == ["created", "assign", "respond", "note", "resolve", "confirm"]
        audited = [e.action for e in list_audit(session=s, subject=f"wish:{wish.id}")]
        assert audited == ["wish_publish", "wish_claim", "wish_progress", "wish_done", "wish_fulfilled"]
        figures = wish_figures(session=s, now=clock.now())
    assert (figures.collected, figures.claimed, figures.fulfilled, figures.open_now) == (1, 1, 1, 0)
    assert figures.median_claim_min == 30.0 and figures.p90_claim_min == 30.0


def test_only_the_wall_of_its_grid_and_community_may_claim(dlg, engine: Engine, policies: Policies, clock: FakeClock):
    _, sent = _wish(dlg, engine, policies, clock, "想请志愿者帮忙给老人理个发")
    card = _card(sent, FU01_VOLUNTEER)
    for outsider in (FU02_LEAD, QUSHUI_LEAD):
        assert all_text(dlg.handle(press(card, user=outsider))) == wishes.NOT_ON_WALL
    # a resident pressing the volunteers' button (a forwarded or forged press): no claim
    assert all_text(dlg.handle(press(card))) == texts.BUTTON_EXPIRED
    # a button naming no case, or a case that is no wish
    assert all_text(dlg.handle(button("wclaim", None, user=FU01_VOLUNTEER))) == texts.BUTTON_EXPIRED
    assert "没有找到" in all_text(dlg.handle(button("wclaim", "JN20990101-0001", user=FU01_VOLUNTEER)))
    assert _wish_of(engine).status == WishStatus.open
    # the community's own volunteer (of no grid) may claim it
    assert all_text(dlg.handle(press(card, user=FURONG_VOLUNTEER))).startswith("认领成功")


def test_volunteers_see_the_wall_with_wishes(dlg, engine: Engine, policies: Policies, clock: FakeClock):
    from tests.factories import command

    code, _ = _wish(dlg, engine, policies, clock, "想请志愿者帮忙给老人理个发")
    wall = dlg.handle(command("wishes", user=FURONG_PARTY))
    assert code in all_text(wall) and "待认领" in all_text(wall)
    assert texts.WISH_WALL_EMPTY in all_text(dlg.handle(command("wishes", user=QUSHUI_LEAD)))


def _deps(engine: Engine, policies: Policies, clock: FakeClock, notifier: RecordingNotifier) -> LoopDeps:
    return LoopDeps(engine=engine, policies=policies, sla=SlaPolicy(policies.sla, SHANGHAI), clock=clock,
                    notifier=notifier)


def test_an_urgent_wish_has_a_deadline_and_the_lead_hears_once_when_nobody_claims_it(
        dlg, engine: Engine, policies: Policies, clock: FakeClock):
    code, _ = _wish(dlg, engine, policies, clock, "俺家老人明天要去医院复查，想请个志愿者推轮椅")
    wish = _wish_of(engine)
    assert wish.kind == "urgent" and wish.due_at == clock.now() + timedelta(hours=24)
    notifier = RecordingNotifier()
    clock.advance(timedelta(hours=23))
    asyncio.run(tick(_deps(engine, policies, clock, notifier)))
    assert not [t for t in notifier.texts_to(FU01_LEAD) if "还没有人认领" in t]
    clock.advance(timedelta(hours=2))
    asyncio.run(tick(_deps(engine, policies, clock, notifier)))
    asyncio.run(tick(_deps(engine, policies, clock, notifier)))
    alerts = [t for t in notifier.texts_to(FU01_LEAD) if "还没有人认领" in t]
    assert len(alerts) == 1 and code in alerts[0] and "即接即办" in alerts[0]
    assert _wish_of(engine).alerted_at == clock.now() - timedelta(hours=0)  # the tick's time


def test_a_long_term_wish_is_paired_and_checked_in_on_every_week(dlg, engine: Engine, policies: Policies,
                                                                  clock: FakeClock):
    code, sent = _wish(dlg, engine, policies, clock, "孩子暑假没人辅导作业")
    assert _wish_of(engine).kind == "pairing" and _wish_of(engine).due_at is None
    assert all_text(dlg.handle(press(_card(sent, FU01_PARTY), user=FU01_PARTY))).startswith("认领成功")
    with session_scope(engine) as s:  # the pairing runs on check-ins, not on the case's resolution ladder
        case = s.exec(select(Case)).one()
        assert case.status == CaseStatus.in_progress and case.resolve_due_at is None and case.next_reminder_at is None
    notifier = RecordingNotifier()
    deps = _deps(engine, policies, clock, notifier)
    clock.advance(timedelta(days=6, hours=23))
    asyncio.run(tick(deps))
    assert not [t for t in notifier.texts_to(FU01_PARTY) if "结对帮扶回访" in t]
    for week in (1, 2):
        clock.advance(timedelta(days=7) if week == 2 else timedelta(hours=1))
        asyncio.run(tick(deps))
        asyncio.run(tick(deps))  # a second tick at the same time sends nothing twice
        checkins = [m for c, m in notifier.sent if c == FU01_PARTY and "结对帮扶回访" in m.text]
        assert len(checkins) == week and f"第{week}次" in checkins[-1].text
    progress = dlg.handle(press(checkins[-1].buttons[0][0], user=FU01_PARTY))
    assert all_text(progress) == texts.ASK_WISH_PROGRESS.format(code=code)
    with session_scope(engine) as s:
        assert [e.data["n"] for e in list_audit(session=s, action="wish_checkin")] == [1, 2]


def test_the_resident_can_say_it_has_not_come_true_yet(dlg, engine: Engine, policies: Policies, clock: FakeClock):
    code, sent = _wish(dlg, engine, policies, clock, "想请志愿者帮忙给老人理个发")
    dlg.handle(press(_card(sent, FU01_VOLUNTEER), user=FU01_VOLUNTEER))
    dlg.handle(button("wdone", code, user=FU01_VOLUNTEER))
    asked = [m for c, m in pushes(engine, clock).sent if c == RESIDENT_ID and m.buttons][-1]
    assert all_text(dlg.handle(press(asked.buttons[0][1]))) == texts.WISH_NOT_YET.format(code=code)
    assert _wish_of(engine).status == WishStatus.claimed
    assert any("还没有达成" in t for t in pushes(engine, clock).texts_to(FU01_VOLUNTEER))


def test_two_residents_wishing_the_same_are_two_wishes(dlg, engine: Engine, policies: Policies, clock: FakeClock):
    _wish(dlg, engine, policies, clock, "想请志愿者帮忙给老人理个发")
    make_resident(engine, policies, clock=clock, user=OTHER_RESIDENT_ID)
    said = [all_text(dlg.handle(text("想请志愿者帮忙给老人理个发", user=OTHER_RESIDENT_ID)))]
    for _ in range(3):
        if "跳过" in said[-1]:
            said.append(all_text(dlg.handle(text("跳过", user=OTHER_RESIDENT_ID))))
        elif "我帮您登记" in said[-1]:
            said.append(all_text(dlg.handle(text("对", user=OTHER_RESIDENT_ID))))
    assert "心愿墙" in said[-1] and "合并" not in said[-1]
    with session_scope(engine) as s:
        assert len(s.exec(select(Wish)).all()) == 2
        assert not s.exec(select(Case).where(col(Case.duplicate_of_id).is_not(None))).all()


def test_stats_and_overview_show_the_wall(dlg, engine: Engine, policies: Policies, clock: FakeClock,
                                          settings: Settings, monkeypatch: pytest.MonkeyPatch):
    _, sent = _wish(dlg, engine, policies, clock, "想请志愿者帮忙给老人理个发")
    clock.advance(timedelta(minutes=12))
    dlg.handle(press(_card(sent, FU01_PARTY), user=FU01_PARTY))
    with session_scope(engine) as s:
        o = overview(session=s, now=clock.now())
        assert o.wishes is not None and (o.wishes.collected, o.wishes.claimed, o.wishes.fulfilled) == (1, 1, 0)
        assert o.wishes.median_claim_min == 12.0
        assert wish_figures(session=s, now=clock.now(), scope={"FU02"}).collected == 0
        assert s.exec(select(Notification).where(col(Notification.kind) == "wish")).all()
    from bot.cli import app

    monkeypatch.setenv("DATABASE_URL", settings.database_url)
    monkeypatch.setenv("VAR_DIR", str(settings.var_dir))
    at = clock.now().astimezone(settings.tz).strftime("%Y-%m-%d %H:%M")
    result = CliRunner().invoke(app, ["stats", "--json", "--at", at])
    assert result.exit_code == 0, result.output
    shown = json.loads(result.output)["overview"]["wishes"]
    assert shown == {"collected": 1, "claimed": 1, "fulfilled": 0, "open_now": 0, "median_claim_min": 12.0,
                     "p90_claim_min": 12.0}


def test_the_console_overview_shows_the_wall(dlg, engine: Engine, policies: Policies, clock: FakeClock,
                                            settings: Settings, ai):
    from bot.services import Services
    from tests.web_support import console_server, login, make_admin

    _, sent = _wish(dlg, engine, policies, clock, "想请志愿者帮忙给老人理个发")
    clock.advance(timedelta(minutes=45))
    dlg.handle(press(_card(sent, FURONG_VOLUNTEER), user=FURONG_VOLUNTEER))
    services = Services(settings, clock=clock, engine=engine, policies=policies, classifier=ai.classifier,
                        knowledge=ai.knowledge)
    make_admin(engine, "street-admin", now=clock.now())
    with console_server(services) as base:
        client = login(base, "street-admin")
        page = client.get("/").text
        tiles = dict(re.findall(r'data-wish-figure="(\w+)">\s*<div class="v">([^<]*)</div>', page))
        assert tiles == {"collected": "1", "claimed": "1", "fulfilled": "0", "open_now": "0",
                         "median_claim_min": "45.0"}, tiles
        assert client.get("/api/overview").json()["wishes"]["median_claim_min"] == 45.0


def test_bad_input_to_the_wall_gets_a_short_chinese_answer(dlg, engine: Engine, policies: Policies,
                                                           clock: FakeClock):
    code, sent = _wish(dlg, engine, policies, clock, "想请志愿者帮忙给老人理个发")
    # 认领 on a case that is no wish (an ordinary report of the same resident)
    report_through(dlg, "楼道灯坏了，晚上黑")
    with session_scope(engine) as s:
        other = s.exec(select(Case).where(col(Case.intent) != "wish")).one().code
    assert all_text(dlg.handle(button("wclaim", other, user=FU01_VOLUNTEER))) == "没有找到这个心愿。"
    assert all_text(dlg.handle(button("wdone", code, user=FU01_VOLUNTEER))) == wishes.NOT_CLAIMER  # not claimed yet
    dlg.handle(press(_card(sent, FU01_VOLUNTEER), user=FU01_VOLUNTEER))
    dlg.handle(button("wprog", code, user=FU01_VOLUNTEER))
    huge = dlg.handle(text("周六上门" + "很" * 5000 + "\x00\ud800", user=FU01_VOLUNTEER))
    assert all_text(huge).endswith(texts.WISH_PROGRESS_SENT.format(code=code))
    with session_scope(engine) as s:
        notes = [e.note for e in s.exec(select(CaseEvent).where(col(CaseEvent.action) == "note"))]
    assert len(notes) == 1 and notes[0] is not None and len(notes[0]) <= wishes.NOTE_MAX
    # the resident presses 还没有 before anyone said 已完成
    assert all_text(dlg.handle(button("wish_no", code))) == "好的，志愿者还在帮您办。"
