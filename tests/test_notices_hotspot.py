"""未诉先办 (#17 item 3): when five residents of a grid report one water outage, the other residents of their
buildings get ONE notice from the scheduler's tick ("3号楼停水已有人反映…预计…处理完毕", the promised time being the
case's resolve_due_at) and ONE more when it is resolved; reporters, other buildings, residents without consent
and those who opted out of 停水 get none; ticks repeat nothing. Residents opt out by topic with words
(退订停水通知 / 恢复停水通知) through the real dialogue engine."""

from __future__ import annotations

from datetime import timedelta

from sqlmodel import Session, select

from bot.dialogue.engine import DialogueEngine
from bot.scheduler import LoopDeps, tick
from bot.services import Services
from casestore import actions
from casestore.broadcasts import KIND, hotspot_topic, set_opt_out
from casestore.db import session_scope
from casestore.models import Hotspot, Notice, Notification, Resident
from casestore.notices import SHANGHAI
from casestore.notify import RecordingNotifier
from tests.factories import actor, all_text, make_resident, text
from tests.test_loop_support import FU01_FULL, case_by_code, open_, resident, sla

__all__ = ["sla"]

# non-reporters: (telegram user, building, consent, opted-out topic)
NEIGHBOURS = [(7101, 3, True, None), (7102, 3, True, "停水"), (7103, 1, True, "停电"), (7104, 10, True, None),
              (7105, 4, False, None), (7106, 4, True, "all")]


def _outage(engine, policies, sla, clock, who, building: int):  # type: ignore[no-untyped-def]
    return open_(engine, policies, sla, clock, who, category="utilities", title="停水",
                 description=f"{building}号楼第{building}户家里没水了，水龙头不出水", building=building)


def _notices_to(notifier: RecordingNotifier) -> list[tuple[int, str]]:
    return sorted((c, m.text) for c, m in notifier.sent if m.text.startswith("【"))


async def test_a_hotspot_tells_the_rest_of_its_buildings_once_and_again_when_resolved(engine, policies, sla,
                                                                                      clock) -> None:
    for user, building, consent, topic in NEIGHBOURS:
        r = make_resident(engine, policies, user=user, clock=clock, building=building, consent=consent)
        if topic:
            with session_scope(engine) as s:
                row = s.get(Resident, r.id)
                assert row is not None
                set_opt_out(session=s, resident=row, topic=topic, opt_out=True, now=clock.now())
    notifier = RecordingNotifier()
    deps = LoopDeps(engine=engine, policies=policies, sla=sla, clock=clock, notifier=notifier)
    results = []
    for k, building in enumerate([1, 2, 3, 4]):
        results.append(_outage(engine, policies, sla, clock, resident(engine, clock, policies, user=5001 + k,
                                                                       building=building), building))
        clock.advance(minutes=5)
    assert (await tick(deps)).notices == 0  # four reports: no hotspot yet, nobody told
    assert _notices_to(notifier) == []
    fifth = _outage(engine, policies, sla, clock, resident(engine, clock, policies, user=5005, building=3), 3)
    assert fifth.hotspot_raised
    first = await tick(deps)
    assert first.notices == 2
    told = _notices_to(notifier)
    assert [c for c, _ in told] == [7101, 7103]  # not the reporters, 7102 (停水 off), 7104, 7105, 7106
    primary = case_by_code(engine, results[0].case.code)
    assert primary.resolve_due_at is not None
    due = primary.resolve_due_at.astimezone(SHANGHAI)
    by_chat = dict(told)
    assert by_chat[7101] == (f"【停水通知】芙蓉小区3号楼停水已有人反映，社区正在处理，预计{due.month}月{due.day}日 "
                             f"{due:%H:%M}前处理完毕。您不用重复反映；如果您家还有别的情况，直接发消息告诉我。")
    assert by_chat[7103].startswith("【停水通知】芙蓉小区1号楼停水已有人反映")
    # no reporter's words, case code or name reach the neighbours
    for _, body in told:
        assert "水龙头" not in body and primary.code not in body and "王阿姨" not in body
    [[stop]] = [m.buttons for c, m in notifier.sent if c == 7101 and m.text.startswith("【")][0:1]
    assert stop[0].arg == "water"
    # every tick after that repeats nothing (a restart is a tick too)
    for _ in range(3):
        clock.advance(minutes=1)
        assert (await tick(deps)).notices == 0
    assert len(_notices_to(notifier)) == 2
    with Session(engine) as s:
        notices = s.exec(select(Notice).order_by(Notice.id)).all()
        spot = s.exec(select(Hotspot)).one()
    assert {n.hotspot_id for n in notices} == {spot.id} and len(notices) == 4  # buildings 1-4, one each
    assert {n.target for n in notices} == {f"buildings:芙蓉小区:{b}" for b in (1, 2, 3, 4)}
    # resolved: the open cases are done (the others were merged into them), one more notice each
    for r in [*results, fifth]:
        case = case_by_code(engine, r.case.code)
        if case.status in ("new", "assigned", "accepted", "in_progress", "reopened"):
            with session_scope(engine) as s:
                actions.resolve(session=s, sla=sla, code=case.code, actor=actor(s, FU01_FULL), clock=clock,
                                note="管道已修复，恢复供水")
    notifier.sent.clear()
    clock.advance(minutes=1)
    assert (await tick(deps)).notices == 2
    done = "停水已处理完毕。如果您家仍有问题，直接发消息告诉我。"
    assert _notices_to(notifier) == [(7101, f"【停水通知】芙蓉小区3号楼{done}"),
                                     (7103, f"【停水通知】芙蓉小区1号楼{done}")]
    notifier.sent.clear()
    assert (await tick(deps)).notices == 0 and _notices_to(notifier) == []
    with Session(engine) as s:
        rows = s.exec(select(Notification).where(Notification.kind == KIND)).all()
    assert len(rows) == 4 and {r.state for r in rows} == {"sent"}  # recorded per resident, each once
    assert first.sent >= 2


def test_the_topic_comes_from_the_reports_words() -> None:
    assert hotspot_topic(["停水", "家里没水了"]) == "water"
    assert hotspot_topic(["电梯坏了", "电梯停在三楼"]) == "elevator"  # not 停电 for 电梯
    assert hotspot_topic(["整栋楼停电了"]) == "power"
    assert hotspot_topic(["楼道灯不亮"]) == "other"


def test_opt_out_by_topic_in_words(settings, engine, policies, clock) -> None:
    make_resident(engine, policies, user=7201, clock=clock)
    dlg = DialogueEngine(Services(settings, clock=clock, engine=engine, policies=policies))

    def say(words: str) -> str:
        return all_text(dlg.handle(text(words, user=7201)))

    def topics() -> list[str]:
        with Session(engine) as s:
            [r] = s.exec(select(Resident)).all()
            return sorted(r.notice_opt_out)

    assert say("退订停水通知") == "好的，以后不再给您发「停水」类通知，其他通知照常。想恢复，发送「恢复停水通知」即可。"
    assert topics() == ["water"]
    assert "已经退订了「停水」" in say("退订停水通知。")
    assert "「电梯维保」" in say("不再接收电梯类通知") and topics() == ["elevator", "water"]
    assert say("恢复停水通知") == "好的，已恢复接收「停水」类通知。" and topics() == ["elevator"]
    assert say("恢复停水通知") == "您没有退订「停水」类通知，会照常发给您。"
    say("退订通知")
    with session_scope(engine) as s:
        [r] = s.exec(select(Resident)).all()
        set_opt_out(session=s, resident=r, topic="all", opt_out=True, now=clock.now())
    assert "已经退订了「疫苗接种」" in say("退订疫苗接种通知")  # everything is off already
    assert "已恢复接收「疫苗接种」" in say("恢复疫苗通知")
    assert topics() == ["elevator", "other", "power", "water"]  # all but 疫苗接种
    assert say("恢复通知") == "好的，已恢复接收社区通知。" and topics() == []
    clock.advance(timedelta(minutes=1))
    # the words only work whole: a report that mentions 停水 and 通知 is still a report
    assert "退订" not in say("退订停水通知发了吗，我们楼停水了")
