"""End to end: a resident complains about their own grid worker. The case goes to the community's 网格长, and
none of the grid's workers is told (no task push, no copy), through the real classifier and dialogue."""

from __future__ import annotations

from sqlalchemy import select

from bot.dialogue.engine import DialogueEngine
from casestore.db import session_scope
from casestore.models import Case
from tests.factories import (
    FU01_FULL_TIME,
    RESIDENT_ID,
    all_text,
    make_resident,
    pushes,
    report_through,
    resident_of,
    text,
    worker_of,
)

FURONG_SUPERVISOR = 900124  # 芙蓉社区网格长（社区书记） (grids.yaml)
FU01_WORKERS = (FU01_FULL_TIME, 900101, 900102, 900103)  # full-time, deputy, part-time, volunteer lead


def _report(dlg: DialogueEngine, message: str) -> str:
    return "\n".join(report_through(dlg, message))


def test_a_complaint_about_the_grid_worker_goes_to_the_supervisor_and_the_grid_hears_nothing(
        dlg, engine, clock, policies) -> None:  # type: ignore[no-untyped-def]
    make_resident(engine, policies, clock=clock)  # 芙蓉小区3号楼: grid FU01
    said = _report(dlg, "俺要投诉俺们网格员 打了三回电话都不接 态度还不好")
    with session_scope(engine) as s:
        r = resident_of(s, RESIDENT_ID)
        assert r is not None
        (case,) = s.execute(select(Case).where(Case.resident_id == r.id)).scalars().all()
        supervisor = worker_of(s, FURONG_SUPERVISOR)
        assert (case.intent, case.grid_id) == ("complaint", "FU01")
        assert (case.assignee_id, case.assignee_role) == (supervisor.id, "supervisor")
        assert case.cc_roles == []
        code = case.code
    assert code in said and "网格长" in said  # the resident hears who handles it: the position, not a name
    sent = pushes(engine, clock)
    assert any(code in t for t in sent.texts_to(FURONG_SUPERVISOR))
    for worker in FU01_WORKERS:
        assert sent.texts_to(worker) == [], worker


def test_a_danger_from_the_grid_worker_is_an_emergency_that_still_goes_above_the_grid(
        dlg, engine, clock, policies) -> None:  # type: ignore[no-untyped-def]
    make_resident(engine, policies, clock=clock)
    said = all_text(dlg.handle(text("俺们网格员喝醉了在楼道里砸东西 还要打人 快来人")))
    assert "110" in said  # the safety steps come first, as for any emergency
    with session_scope(engine) as s:
        r = resident_of(s, RESIDENT_ID)
        assert r is not None
        (case,) = s.execute(select(Case).where(Case.resident_id == r.id)).scalars().all()
        assert case.urgency == "emergency" and case.complaint_target == "staff"
        assert case.assignee_role in ("supervisor", "street_command")
        code = case.code
    sent = pushes(engine, clock)
    for worker in FU01_WORKERS:
        assert not any(code in t for t in sent.texts_to(worker)), worker
