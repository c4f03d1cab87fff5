"""Location pins (#17 item 4): grids.yaml's sample coordinates are consistent (each building lies in its own grid's
area), a pin is matched to the nearest building within pin_radius_m or else to the grid polygon holding it, and
through the real dialogue engine a pin at the where-slot is confirmed with 是这里 / 不是 and routes the case to
that building's grid; an emergency's pin moves it to the right grid without asking."""

from __future__ import annotations

import math

import pytest
from sqlalchemy import select

from bot.dialogue import texts
from bot.dialogue.pins import ACTION, BTN_NO, BTN_YES
from casestore.db import session_scope
from casestore.models import Case
from policies.geo import distance_m, match_pin
from policies.loader import load_policies
from policies.models import Grids
from tests.factories import (
    RESIDENT_ID,
    all_text,
    button,
    buttons_of,
    find_button,
    location,
    make_resident,
    press,
    pushes,
    text,
)

FU01_FULL_TIME, QU01_FULL_TIME = 900100, 900128


def _cases(engine) -> list[Case]:  # type: ignore[no-untyped-def]
    with session_scope(engine) as s:
        rows = list(s.execute(select(Case).order_by(Case.id)).scalars())
        s.expunge_all()
        return rows


def _point(grids: Grids, estate: str, number: int) -> tuple[float, float]:
    return next(e for c in grids.communities for e in c.estates if e.name == estate).building_locations[number]


def test_every_sample_building_is_located_inside_its_own_grid(policies) -> None:
    grids = policies.grids
    located = 0
    for community in grids.communities:
        for estate in community.estates:
            assert set(estate.building_locations) == set(range(1, estate.buildings + 1)), estate.name
            for number, (lat, lng) in estate.building_locations.items():
                assert 36.6 < lat < 36.7 and 116.9 < lng < 117.1  # around Jinan's old town
                match = match_pin(grids, lat, lng)
                assert match is not None and match.kind == "building"
                assert (match.estate, match.building) == (estate.name, number)
                assert match.grid_id == grids.grid_for(estate.name, number)
                located += 1
    assert located == 18 + 12 + 16 + 14
    assert all(len(g.area) >= 3 for c in grids.communities for g in c.grids)


def test_nearest_building_within_the_radius_else_the_grid_polygon_else_nothing(policies) -> None:
    grids = policies.grids
    lat, lng = _point(grids, "芙蓉小区", 3)
    near = match_pin(grids, lat + 0.0001, lng + 0.0001)  # ~14 m away
    assert near is not None and (near.kind, near.estate, near.building, near.grid_id) == ("building", "芙蓉小区", 3,
                                                                                            "FU01")
    assert near.place == "芙蓉小区3号楼" and 10 < near.distance_m < 20
    # 45 m north of building 1, outside the 30 m radius but inside FU01's area (the street outside the estate)
    north_lat, north_lng = _point(grids, "芙蓉小区", 1)
    far = match_pin(grids, north_lat + 0.0004, north_lng)
    assert far is not None and far.kind == "grid" and far.grid_id == "FU01"
    assert (far.estate, far.building) == ("芙蓉小区", 1) and far.distance_m > grids.pin_radius_m
    assert far.place == "芙蓉社区第一网格（芙蓉小区一带）"
    # between 芙蓉东苑's rows: the courtyard of FU05 (5-8号楼), ~33 m from each row
    row_mid = (_point(grids, "芙蓉东苑", 6)[0] + _point(grids, "芙蓉东苑", 10)[0]) / 2 + 0.00001
    yard = match_pin(grids, row_mid, _point(grids, "芙蓉东苑", 6)[1])
    assert yard is not None and yard.kind == "grid" and yard.grid_id == "FU05"
    # 1 km away, the sea, and nonsense
    assert match_pin(grids, lat + 0.01, lng) is None
    assert match_pin(grids, 0.0, 0.0) is None
    assert match_pin(grids, math.nan, lng) is None and match_pin(grids, 91.0, 200.0) is None
    # the radius is policy: widened, the first pin is a building again
    wide = Grids.model_validate({**grids.model_dump(), "pin_radius_m": 60})
    widened = match_pin(wide, north_lat + 0.0004, north_lng)
    assert widened is not None and widened.kind == "building"


def test_distance_is_the_great_circle() -> None:
    assert distance_m((36.665, 117.018), (36.665, 117.018)) == 0
    assert distance_m((36.0, 117.0), (37.0, 117.0)) == pytest.approx(111_195, rel=1e-3)  # one degree of latitude


def test_grids_yaml_refuses_a_building_it_does_not_have_and_a_two_corner_area(policies) -> None:
    raw = load_policies().grids.model_dump()
    raw["communities"][0]["estates"][0]["building_locations"][99] = [36.66, 117.01]
    with pytest.raises(ValueError, match="building 99"):
        Grids.model_validate(raw)
    raw = load_policies().grids.model_dump()
    raw["communities"][0]["grids"][0]["area"] = [[36.66, 117.01], [36.67, 117.02]]
    with pytest.raises(ValueError, match="3 corners"):
        Grids.model_validate(raw)


# ---------------------------------------------------------------- through the dialogue engine
def test_a_pin_at_the_where_slot_is_confirmed_and_routes_the_case_to_that_grid(dlg, engine, clock, policies) -> None:
    make_resident(engine, policies, clock=clock, estate=None, building=None)  # consented, no address
    assert texts.ASK_WHERE in all_text(dlg.handle(text("路灯坏了")))
    lat, lng = _point(policies.grids, "曲水花园", 5)
    r = dlg.handle(location(lat + 0.00005, lng - 0.00005))
    assert all_text(r) == "收到定位。您说的地方是在曲水花园5号楼附近吗？"
    assert [b.label for b in buttons_of(r)] == [BTN_YES, BTN_NO]
    r = dlg.handle(press(find_button(r, BTN_YES)))
    assert "照片" in all_text(r)
    r = dlg.handle(press(find_button(r, texts.BTN_SKIP)))
    assert "曲水花园5号楼附近（定位" in all_text(r)
    dlg.handle(press(find_button(r, texts.BTN_YES)))
    [case] = _cases(engine)
    assert case.grid_id == "QU01" and case.location_text.startswith("曲水花园5号楼附近（定位 ")  # type: ignore[union-attr]
    assert [a["type"] for a in case.attachments] == ["location"]
    assert any(case.code in t for t in pushes(engine, clock).texts_to(QU01_FULL_TIME))


def test_not_there_asks_in_words_and_a_pin_we_cannot_place_is_kept_as_before(dlg, engine, clock, policies) -> None:
    make_resident(engine, policies, clock=clock, estate=None, building=None)
    dlg.handle(text("路灯坏了"))
    lat, lng = _point(policies.grids, "芙蓉小区", 3)
    r = dlg.handle(location(lat, lng))
    stale_yes = find_button(r, BTN_YES)
    r = dlg.handle(press(find_button(r, BTN_NO)))
    assert "请直接告诉我具体地址" in all_text(r) and _cases(engine) == []
    r = dlg.handle(text("芙蓉小区5号楼门口"))
    assert "照片" in all_text(r)
    # 是这里 pressed after the place was given in words: refused, nothing changes
    assert "已失效" in all_text(dlg.handle(press(stale_yes)))
    # a forged / broken argument says the same and changes nothing
    assert "已失效" in all_text(dlg.handle(button(ACTION, None, "ynot,a,pin")))
    # somewhere we do not serve: the old behaviour, the coordinates as the place
    other = RESIDENT_ID + 1
    make_resident(engine, policies, user=other, clock=clock, estate=None, building=None)
    dlg.handle(text("路灯坏了", user=other))
    r = dlg.handle(location(36.0, 116.0, user=other))
    assert "是这里" not in [b.label for b in buttons_of(r)] and "照片" in all_text(r)


def test_an_emergency_pin_goes_straight_to_that_grid(dlg, engine, clock, policies) -> None:
    r = dlg.handle(text("着火了 厨房着火了"))  # a stranger: no address, the case opens at once without a place
    [case] = _cases(engine)
    assert case.grid_id is None
    pushes(engine, clock)
    lat, lng = _point(policies.grids, "曲水花园", 5)
    r = dlg.handle(location(lat, lng))
    said = all_text(r)
    assert case.code in said and "曲水花园5号楼附近" in said and "是这里" not in said  # no question in an emergency
    [moved] = _cases(engine)
    assert moved.grid_id == "QU01" and "曲水花园5号楼附近（定位" in (moved.location_text or "")
    assert any(case.code in t for t in pushes(engine, clock).texts_to(QU01_FULL_TIME))
