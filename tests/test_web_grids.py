"""网格与热点 in the console (#16 item 5): the map SVG from grids.yaml, hotspots with their cases, 「发通知」 to one
building from the page (exactly its consenting, not-opted-out residents get it; a repeated submit sends nothing
twice), a hotspot's notice through the API, and scope (a community admin sees only their grids, 403 elsewhere)."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pytest
from sqlalchemy.engine import Engine

from bot.services import Services
from bot.settings import Settings
from casestore.audit import list_audit
from casestore.broadcasts import KIND, set_opt_out
from casestore.clock import FakeClock
from casestore.db import session_scope
from casestore.dispatch import list_notifications
from casestore.intake import open_case
from casestore.models import Resident
from casestore.notify import RecordingNotifier
from policies.models import Policies
from tests.factories import make_resident, pushes
from tests.test_loop_support import report, sla
from tests.web_support import browser_login, chromium, console_server, login, make_admin

__all__ = ["chromium", "sla"]

# (telegram user, estate, building, consent) of residents who did not report anything
QUIET = [
    (610001, "芙蓉小区", 3, True),
    (610002, "芙蓉小区", 3, True),  # opted out of 停水
    (610003, "芙蓉小区", 3, False),  # never consented
    (610004, "芙蓉小区", 4, True),
    (610005, "芙蓉东苑", 3, True),  # building 3 of another estate
    (610006, "芙蓉小区", 7, True),  # FU02
    (610007, "曲水花园", 3, True),  # the other community
]
REPORTERS = [(620000 + b, b) for b in (1, 2, 3, 4, 5)]  # one outage report from each of 芙蓉小区 1-5号楼 (FU01)


@dataclass
class World:
    base: str
    ids: dict[int, int]  # telegram user -> resident id
    codes: list[str]


@pytest.fixture
def world(settings: Settings, engine: Engine, policies: Policies, clock: FakeClock, sla) -> Iterator[World]:  # type: ignore[no-untyped-def]
    ids: dict[int, int] = {}
    for user, estate, building, consent in QUIET:
        r = make_resident(engine, policies, user=user, clock=clock, estate=estate, building=building, consent=consent)
        ids[user] = r.id  # type: ignore[assignment]
    codes = []
    for user, building in REPORTERS:
        r = make_resident(engine, policies, user=user, clock=clock, building=building)
        ids[user] = r.id  # type: ignore[assignment]
        with session_scope(engine) as s:
            codes.append(open_case(session=s, policies=policies, sla=sla, clock=clock, resident=r, report=report(
                category="utilities", title="停水了 电话13912345678",
                description=f"{building}号楼家里没水了，水龙头不出水", building=building,
                location_text=f"芙蓉小区{building}号楼")).case.code)
        clock.advance(minutes=3)
    with session_scope(engine) as s:
        opted = s.get(Resident, ids[610002])
        assert opted is not None
        set_opt_out(session=s, resident=opted, topic="water", opt_out=True, now=clock.now())
    _deliver(engine, clock)  # the task pushes and the hotspot alert go out first
    make_admin(engine, "street")
    make_admin(engine, "furong", scope="community:furong")
    make_admin(engine, "qushui", scope="community:qushui")
    make_admin(engine, "fu01", scope="grid:FU01")
    with console_server(Services(settings, clock=clock, engine=engine, policies=policies)) as base:
        yield World(base, ids, codes)


def _deliver(engine: Engine, clock: FakeClock) -> RecordingNotifier:
    """`pushes` in a thread of its own: Playwright's sync API keeps an event loop running in this one."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(pushes, engine, clock).result()


def _recipients(engine: Engine) -> set[str]:
    with session_scope(engine) as s:
        return {n.recipient for n in list_notifications(session=s, kind=KIND)}


def _buildings(policies: Policies, communities: set[str] | None = None) -> int:
    return sum(e.buildings for c in policies.grids.communities for e in c.estates
               if communities is None or c.id in communities)


def test_send_a_notice_to_one_building_from_the_page(chromium, world: World, engine: Engine, policies: Policies,
                                                     clock: FakeClock) -> None:
    pg = browser_login(chromium, world.base, "street")
    pg.click("nav >> text=网格与热点")
    pg.wait_for_url(f"{world.base}/grids")
    # the map: every building of grids.yaml, drawn as SVG by the server
    assert pg.locator("svg#gridmap a.building").count() == _buildings(policies)
    assert pg.locator("svg#gridmap a.building.hot").count() == 5  # the reporters' buildings
    # the later four reports were merged into the first (closed as duplicates): one open case, in 1号楼
    assert pg.locator('svg#gridmap a[data-building="芙蓉小区:1"]').get_attribute("data-open") == "1"
    assert pg.locator('svg#gridmap a[data-building="芙蓉小区:3"]').get_attribute("data-open") == "0"
    # the hotspot and its cases, titles masked, local times
    hotspot = pg.locator(".hotspot").first
    assert f"「{policies.taxonomy.name_of('utilities')}」5 件" in hotspot.inner_text()
    for code in world.codes:
        assert code in hotspot.inner_text()
    assert "13912345678" not in pg.content() and "139****5678" in hotspot.inner_text()
    # a building links to its cases, then to the notice form with that building ticked
    pg.locator('svg#gridmap a[data-building="芙蓉小区:3"]').click()
    pg.wait_for_url("**/grids/building?**")
    assert world.codes[2] in pg.inner_text("main")
    pg.click("text=给这栋楼发通知")
    pg.wait_for_url("**/grids/notify?**")
    assert pg.locator('input[name=building][value="芙蓉小区:3"]').is_checked()
    assert pg.locator("input[name=building]:checked").count() == 1
    pg.select_option("select[name=topic]", label="停水")
    pg.fill("textarea[name=text]", "明天9:00-12:00 3号楼停水检修，请提前储水。")
    pg.click("#send-notice")
    pg.wait_for_url("**/grids/notices/**")
    assert "已排队：2 位居民" in pg.inner_text("main")
    # exactly building 3's consenting residents who did not opt out: the quiet one and the reporter
    want = {f"resident:{world.ids[610001]}", f"resident:{world.ids[620003]}"}
    assert _recipients(engine) == want
    # the same form again (back, submit): nothing is queued twice
    pg.go_back()
    pg.wait_for_url("**/grids/notify?**")
    pg.click("#send-notice")
    pg.wait_for_url("**/grids/notices/**")
    assert "没有重复发送" in pg.inner_text("main")
    assert _recipients(engine) == want
    sent = _deliver(engine, clock)
    assert sorted(c for c, _ in sent.sent) == [610001, 620003]
    assert all(m.text.startswith("【停水通知】") for _, m in sent.sent)
    # the delivery states follow (the htmx fragment)
    pg.reload()
    assert pg.locator('#notice-states [data-state="sent"]').inner_text() == "2"
    with session_scope(engine) as s:
        [event] = list_audit(session=s, action="notice")
    assert event.actor == "admin:web:street" and event.data["queued"] == 2 and event.data["opted_out"] == 1
    pg.context.close()


def test_a_hotspot_notice_skips_its_reporters_and_shows_the_states(world: World, engine: Engine) -> None:
    client = login(world.base, "furong")
    [spot] = client.get("/api/grids/hotspots").json()
    assert [c["code"] for c in spot["cases"]] == world.codes and spot["scope"] == "grid:FU01"
    assert spot["buildings"] == [f"芙蓉小区:{b}" for b in (1, 2, 3, 4, 5)]
    body = {"key": "hotspot-notice-0001", "topic": "停水", "text": "芙蓉小区停水已有人反映，正在抢修，预计18:00恢复。",
            "buildings": spot["buildings"], "hotspot_id": spot["id"]}
    sent = client.post("/api/grids/notices", json=body)
    assert sent.status_code == 200, sent.text
    out = sent.json()
    assert out["created"] and out["notice"]["recipients"] == 2 and out["notice"]["states"]["pending"] == 2
    assert _recipients(engine) == {f"resident:{world.ids[610001]}", f"resident:{world.ids[610004]}"}
    again = client.post("/api/grids/notices", json=body).json()
    assert not again["created"] and again["added"] == 0 and again["notice"]["id"] == out["notice"]["id"]
    listed = client.get("/api/grids/notices").json()
    assert [n["id"] for n in listed] == [out["notice"]["id"]]
    bad = client.post("/api/grids/notices", json={**body, "key": "hotspot-notice-0002", "topic": "停气"})
    assert bad.status_code == 400 and "通知类型不对" in bad.json()["detail"]
    both = client.post("/api/grids/notices", json={**body, "key": "hotspot-notice-0003", "grid": "FU01"})
    assert both.status_code == 400 and "只选择一种" in both.json()["detail"]
    figures = client.get("/api/grids").json()
    assert {g["key"] for g in figures["grids"]} <= {"FU01", "FU02", "FU03", "FU04", "FU05", "FU06"}
    [row] = figures["heatmap"]["rows"]
    assert row["id"] == "furong" and row["total"] == 1  # merged duplicates are left out (casestore.stats)
    assert [k["id"] for k in figures["heatmap"]["categories"]] == ["utilities"]


def test_a_community_admin_sees_only_their_grids_and_cannot_notify_elsewhere(world: World, engine: Engine,
                                                                             policies: Policies) -> None:
    qushui = login(world.base, "qushui")
    drawn = qushui.get("/api/grids/buildings").json()
    assert len(drawn) == _buildings(policies, {"qushui"})
    assert {b["estate"] for b in drawn} == {e.name for c in policies.grids.communities if c.id == "qushui"
                                              for e in c.estates}
    page = qushui.get("/grids").text
    assert "芙蓉小区" not in page and world.codes[0] not in page  # no furong building, hotspot or case
    assert qushui.get("/api/grids/hotspots").json() == []
    refused = qushui.post("/api/grids/notices", json={"key": "cross-community-01", "topic": "停水", "text": "停水",
                                                      "buildings": ["芙蓉小区:3"]})
    assert refused.status_code == 403 and "没有权限" in refused.json()["detail"]
    assert qushui.get("/grids/building", params={"estate": "芙蓉小区", "n": 3}).status_code == 403
    form = qushui.post("/grids/notify", data={"key": "cross-community-02", "topic": "water", "text": "停水",
                                              "building": "芙蓉小区:3"})
    assert form.status_code == 403
    assert _recipients(engine) == set()
    ok = qushui.post("/api/grids/notices", json={"key": "own-community-01", "topic": "电梯维保", "text": "电梯年检",
                                                 "buildings": ["曲水花园:3"]})
    assert ok.status_code == 200 and _recipients(engine) == {f"resident:{world.ids[610007]}"}
    # and the furong notice is not theirs to read
    furong = login(world.base, "furong")
    mine = furong.post("/api/grids/notices", json={"key": "furong-notice-01", "topic": "停电", "text": "停电",
                                                   "estate": "芙蓉东苑"}).json()
    assert qushui.get(f"/api/grids/notices/{mine['notice']['id']}").status_code == 403
    assert [n["id"] for n in qushui.get("/api/grids/notices").json()] == [ok.json()["notice"]["id"]]
    # a grid leader: their grid's buildings only, not the next grid's nor the whole estate
    fu01 = login(world.base, "fu01")
    assert {b["grid_id"] for b in fu01.get("/api/grids/buildings").json()} == {"FU01"}
    for target in ({"buildings": ["芙蓉小区:7"]}, {"estate": "芙蓉小区"}, {"community": "furong"}):
        r = fu01.post("/api/grids/notices", json={"key": f"fu01-{len(str(target))}-x", "topic": "停水",
                                                  "text": "停水", **target})
        assert r.status_code == 403, target
    assert fu01.post("/api/grids/notices", json={"key": "fu01-own-grid", "topic": "停水", "text": "停水",
                                                 "grid": "FU01"}).status_code == 200


def test_bad_input_on_the_pages_is_a_chinese_message(world: World) -> None:
    client = login(world.base, "street")
    assert client.get("/grids/building", params={"estate": "芙蓉小区", "n": 99}).status_code == 404
    assert client.get("/grids/notices/999").status_code == 404
    assert client.get("/api/grids", params={"window": "year"}).status_code == 422
    empty = client.post("/grids/notify", data={"key": "form-empty-0001", "topic": "water", "text": "停水"})
    assert empty.status_code == 400 and "请至少选择一栋楼" in empty.text
    for window in ("today", "week", "all"):
        assert client.get("/grids", params={"window": window}).status_code == 200
