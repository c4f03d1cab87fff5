"""Issue #15, addresses: a floor or a room is never a building; estates are known by their grids.yaml aliases,
a name that only looks like an estate is confirmed by the resident before any grid is bound; and the reply to a
mediation request names the same position the case is routed (and pushed) to.

Dialogue tests go through the real engine (classifier, knowledge, RecordingNotifier), as in
tests/test_dialogue_staff_complaint.py."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from bot.dialogue import texts
from bot.dialogue.engine import DialogueEngine
from bot.dialogue.places import parse_address, read_address
from bot.understanding.details import DetailsExtractor
from casestore.db import session_scope
from casestore.models import Case
from policies.loader import load_policies
from tests.factories import (
    FURONG_MEDIATOR,
    RESIDENT_ID,
    all_text,
    buttons_of,
    command,
    find_button,
    make_resident,
    press,
    pushes,
    report_through,
    resident_of,
    text,
    worker_of,
)

GRIDS = load_policies().grids
EXTRACT = DetailsExtractor.from_grids(GRIDS)


# ====================================================================== 1. floors and rooms are not buildings
@pytest.mark.parametrize("typed,building,floor", [
    ("俺住曲水花园东门那个楼 三楼", None, 3), ("曲水花园3楼", None, 3), ("曲水花园3层", None, 3),
    ("芙蓉小区 十二楼", None, 12), ("曲水花园5号楼三楼", 5, 3), ("曲水花园5号楼3楼301", 5, 3),
    ("曲水花园三号楼", 3, None), ("曲水花园3栋", 3, None), ("曲水花园3#", 3, None), ("曲水花园3#楼", 3, None),
])
def test_a_floor_is_not_a_building(typed: str, building: int | None, floor: int | None) -> None:
    d = EXTRACT.extract(typed)
    assert (d.building, d.floor) == (building, floor)
    read = read_address(GRIDS, typed)
    assert (read.building, read.floor) == (building, floor)
    if building is None:  # only a floor: nothing to bind, whatever the estate
        assert parse_address(GRIDS, typed) is None


@pytest.mark.parametrize("typed,room", [("曲水花园301", "301"), ("曲水花园3单元301室", "301"), ("曲水花园301号", "301"),
                                        ("芙蓉小区1201户", "1201")])
def test_a_room_is_not_a_building(typed: str, room: str) -> None:
    read = read_address(GRIDS, typed)
    assert read.building is None and read.room == room
    assert parse_address(GRIDS, typed) is None
    assert EXTRACT.extract(typed).building is None


_CN = ["一", "二", "三", "四", "五", "六", "七", "八", "九", "十", "十一", "十二", "十五", "二十"]


def _numeral(n: int, chinese: bool) -> str:
    return _CN[n - 1] if chinese and n <= 12 else str(n)


@st.composite
def _addresses(draw: st.DrawFn) -> tuple[str, int | None, int | None, str | None]:
    """An address as residents type it: estate, maybe a building, maybe a unit, maybe a floor, maybe a room."""
    estate = draw(st.sampled_from(["曲水花园", "芙蓉小区", "曲水亭小区", "芙蓉东苑", "曲水亭", ""]))
    building = draw(st.none() | st.integers(1, 18))
    unit = draw(st.none() | st.integers(1, 3))
    floor = draw(st.none() | st.integers(1, 33))
    room = draw(st.none() | st.integers(1, 33).flatmap(
        lambda f: st.integers(1, 4).map(lambda r: f"{f}{r:02d}")))
    lead = draw(st.sampled_from(["", "俺住", "住在", "我家是"]))
    sep = draw(st.sampled_from(["", " ", "，"]))
    parts = [lead + estate]
    if building is not None:
        marker = draw(st.sampled_from(["号楼", "栋", "#", "#楼", "号楼"]))
        parts.append(_numeral(building, draw(st.booleans())) + marker)
    else:
        parts.append(draw(st.sampled_from(["", "东门那个楼", "那个楼", "后面那栋楼"])))
    if unit is not None:
        parts.append(_numeral(unit, draw(st.booleans())) + "单元")
    if floor is not None:
        parts.append(_numeral(floor, draw(st.booleans())) + draw(st.sampled_from(["楼", "层", "楼"])))
    if room is not None:
        parts.append(room + draw(st.sampled_from(["", "室", "户", "号"])))
    return sep.join(p for p in parts if p), building, floor, room


@settings(max_examples=300, deadline=None)
@given(_addresses())
def test_a_floor_or_room_number_never_becomes_the_building(case: tuple[str, int | None, int | None, str | None],
                                                          ) -> None:
    typed, building, floor, _room = case
    d = EXTRACT.extract(typed)
    read = read_address(GRIDS, typed)
    parsed = parse_address(GRIDS, typed)
    for got in (d.building, read.building, parsed.building if parsed else None):
        assert got == building or got is None, (typed, got)
        if building is None:
            assert got is None, (typed, got)
    if floor is not None and building is None:
        assert read.floor == floor
    if building is None:
        assert parsed is None, typed


# ====================================================================== 2. aliases and fuzzy names
def test_aliases_come_from_grids_yaml() -> None:
    aliases = GRIDS.estate_aliases()
    assert aliases["曲水亭"] == "曲水亭小区"
    assert all(estate in GRIDS.estate_names() for estate in aliases.values())


@pytest.mark.parametrize("typed,estate", [("曲水亭5号楼", "曲水亭小区"), ("曲水亭那边5号楼", "曲水亭小区"),
                                          ("芙蓉街小区3号楼", "芙蓉小区"), ("曲水花园小区12号楼", "曲水花园")])
def test_an_alias_is_an_exact_match(typed: str, estate: str) -> None:
    parsed = parse_address(GRIDS, typed)
    assert parsed is not None and parsed.estate == estate
    assert EXTRACT.extract(typed).estate == estate


def test_alias_validation_rejects_an_alias_naming_two_estates() -> None:
    data = load_policies().grids.model_dump()
    data["communities"][0]["estates"][0]["aliases"] = ["曲水亭"]
    with pytest.raises(ValueError, match="曲水亭"):
        type(GRIDS).model_validate(data)


@pytest.mark.parametrize("typed,estate", [("曲水小区5号楼2单元", "曲水亭小区"), ("俺住曲水花圆3号楼", "曲水花园"),
                                          ("芙蓉东园2号楼", "芙蓉东苑")])
def test_a_fuzzy_name_is_only_a_suggestion(typed: str, estate: str) -> None:
    assert parse_address(GRIDS, typed) is None  # never bound without the resident's yes
    assert EXTRACT.extract(typed).estate is None
    assert EXTRACT.closest_estate(typed) == estate


@pytest.mark.parametrize("typed", ["阳光小区5号楼", "5号楼", "楼道灯坏了", "俺们小区门口", "幸福家园3栋"])
def test_no_suggestion_for_a_name_that_is_not_like_any_estate(typed: str) -> None:
    assert EXTRACT.closest_estate(typed) is None


# ---------------------------------------------------------------------- the dialogue
def _bound(engine) -> tuple[str | None, int | None, str | None]:  # type: ignore[no-untyped-def]
    with session_scope(engine) as s:
        r = resident_of(s, RESIDENT_ID)
        assert r is not None
        return r.estate, r.building, r.grid_id


def _asking_address(dlg: DialogueEngine, engine, policies, clock) -> None:  # type: ignore[no-untyped-def]
    make_resident(engine, policies, clock=clock, estate=None, building=None)
    dlg.handle(command("address"))


def test_only_a_floor_asks_for_the_building(dlg, engine, policies, clock) -> None:  # type: ignore[no-untyped-def]
    _asking_address(dlg, engine, policies, clock)
    r = dlg.handle(text("俺住曲水花园东门那个楼 三楼"))
    said = all_text(r)
    assert "几号楼" in said and "曲水花园" in said
    assert len([b for b in buttons_of(r) if b.label.endswith("号楼")]) == 16  # 曲水花园's buildings
    assert _bound(engine) == (None, None, None)  # not 3号楼, not QU01
    r = dlg.handle(text("8号楼"))
    assert "曲水社区第二网格" in all_text(r)
    assert _bound(engine) == ("曲水花园", 8, "QU02")


def test_only_a_floor_then_the_building_button(dlg, engine, policies, clock) -> None:  # type: ignore[no-untyped-def]
    _asking_address(dlg, engine, policies, clock)
    r = dlg.handle(text("曲水花园 3楼"))
    r = dlg.handle(press(find_button(r, "14号楼")))
    r = dlg.handle(press(find_button(r, "1单元")))
    assert _bound(engine) == ("曲水花园", 14, "QU03")


def test_an_alias_binds_at_once(dlg, engine, policies, clock) -> None:  # type: ignore[no-untyped-def]
    _asking_address(dlg, engine, policies, clock)
    r = dlg.handle(text("曲水亭5号楼"))
    assert "曲水社区第五网格" in all_text(r)
    assert _bound(engine) == ("曲水亭小区", 5, "QU05")


def test_a_fuzzy_name_is_confirmed_before_binding(dlg, engine, policies, clock) -> None:  # type: ignore[no-untyped-def]
    _asking_address(dlg, engine, policies, clock)
    r = dlg.handle(text("曲水小区5号楼2单元"))
    said = all_text(r)
    assert "您说的是曲水亭小区吗" in said
    assert [b.label for b in buttons_of(r)] == [texts.BTN_YES_ESTATE, texts.BTN_NOT_ESTATE, texts.BTN_PICK_ESTATE]
    assert _bound(engine) == (None, None, None)
    r = dlg.handle(press(find_button(r, texts.BTN_YES_ESTATE)))
    assert "曲水社区第五网格" in all_text(r)
    assert _bound(engine) == ("曲水亭小区", 5, "QU05")


def test_a_fuzzy_name_said_no_binds_nothing(dlg, engine, policies, clock) -> None:  # type: ignore[no-untyped-def]
    _asking_address(dlg, engine, policies, clock)
    r = dlg.handle(text("曲水小区5号楼2单元"))
    yes = find_button(r, texts.BTN_YES_ESTATE)
    r = dlg.handle(press(find_button(r, texts.BTN_NOT_ESTATE)))
    assert "芙蓉社区" in [b.label for b in buttons_of(r)]  # the community picker
    assert _bound(engine) == (None, None, None)
    dlg.handle(press(yes))  # a stale yes after the no binds nothing
    assert _bound(engine) == (None, None, None)


def test_a_fuzzy_name_without_a_building_asks_for_it(dlg, engine, policies, clock) -> None:  # type: ignore[no-untyped-def]
    _asking_address(dlg, engine, policies, clock)
    r = dlg.handle(text("俺住曲水花圆"))
    r = dlg.handle(press(find_button(r, texts.BTN_YES_ESTATE)))
    assert _bound(engine) == (None, None, None)
    r = dlg.handle(press(find_button(r, "2号楼")))
    dlg.handle(press(find_button(r, "3单元")))
    assert _bound(engine) == ("曲水花园", 2, "QU01")


def test_the_pick_estate_button_shows_the_communities(dlg, engine, policies, clock) -> None:  # type: ignore[no-untyped-def]
    _asking_address(dlg, engine, policies, clock)
    r = dlg.handle(text("曲水小区5号楼"))
    r = dlg.handle(press(find_button(r, texts.BTN_PICK_ESTATE)))
    assert {"芙蓉社区", "曲水社区"} <= {b.label for b in buttons_of(r)}
    assert _bound(engine) == (None, None, None)


# ====================================================================== 3. the reply names the routed position
def _report(dlg: DialogueEngine, message: str) -> str:
    return "\n".join(report_through(dlg, message))


def test_a_mediation_reply_names_the_mediator_the_case_is_pushed_to(
        dlg, engine, clock, policies) -> None:  # type: ignore[no-untyped-def]
    make_resident(engine, policies, clock=clock)  # 芙蓉小区3号楼: grid FU01
    said = _report(dlg, "楼上那家天天半夜剁馅子…恁给调解调解吧")
    with session_scope(engine) as s:
        r = resident_of(s, RESIDENT_ID)
        assert r is not None
        (case,) = s.execute(select(Case).where(Case.resident_id == r.id)).scalars().all()
        mediator = worker_of(s, FURONG_MEDIATOR)
        assert case.assignee_id == mediator.id
        position = mediator.name
        code = case.code
    assert position == "芙蓉社区人民调解员"  # routing.yaml: dispute → the community's mediator
    assert position in said
    assert "第一网格人民调解员" not in said
    sent = pushes(engine, clock)
    assert any(code in t for t in sent.texts_to(FURONG_MEDIATOR))  # the push goes to the one the reply names
