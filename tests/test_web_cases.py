"""工单 in the console: the board's filters, scope and paging, a case's detail (masked, Chinese), every action with
its audit event and CSRF, the scope rule on SQLite and PostgreSQL, and the browser: filter, approve an extension
(the worker's push is delivered), a `<script>` title shown as text. Served by a real uvicorn on 127.0.0.1."""

from __future__ import annotations

import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from bot.services import Services
from bot.settings import Settings
from bot.web.routes.cases import CaseDetail, CasePublic
from casestore import actions
from casestore.board import Risk, list_board, mask_public, risk_of
from casestore.cases import get_case
from casestore.clock import FakeClock
from casestore.db import session_scope
from casestore.deadlines import SlaPolicy
from casestore.models import Case, CaseEvent, Notification
from casestore.notify import RecordingNotifier
from policies.models import Policies
from tests.factories import actor, pushes
from tests.test_loop_support import FU01_FULL, FU02_FULL, open_, resident, sla
from tests.web_support import browser_login, chromium, console_server, login, make_admin

__all__ = ["chromium", "sla"]
STREET, FURONG, QUSHUI = "street_chief", "fu_admin", "qs_admin"
ADMIN_ACTOR = f"admin:web:{STREET}"


@dataclass
class Street:
    overdue: str  # furong FU01, past its resolution due
    due_soon: str  # furong FU01, an unanswered emergency, response due within minutes
    normal: str  # furong FU02, answered, resolution due tomorrow
    qushui: str  # another community's case


def make_street(engine: Engine, policies: Policies, sla: SlaPolicy, clock: FakeClock) -> Street:
    """Four cases across two communities, one of each SLA risk."""
    who = resident(engine, clock, policies)
    overdue = open_(engine, policies, sla, clock, who, title="楼道灯不亮",
                    description="3号楼2单元301室门口楼道灯坏了，电话13812345678").case.code
    clock.advance(hours=30)
    due_soon = open_(engine, policies, sla, clock, who, category="environment", urgency="emergency",
                     title="垃圾桶满了没人清", description="1号楼北侧垃圾桶已经满出来两天", building=1,
                     location_text="芙蓉小区1号楼").case.code
    normal = open_(engine, policies, sla, clock, who, category="public_facilities", title="健身器材坏了",
                   description="8号楼旁边的单杠松动", building=8, location_text="芙蓉小区8号楼").case.code
    qushui = open_(engine, policies, sla, clock, None, category="utilities", title="曲水花园停水",
                   description="曲水花园3号楼从早上开始停水", estate="曲水花园", building=3,
                   location_text="曲水花园3号楼").case.code
    with session_scope(engine) as s:
        actions.respond(session=s, sla=sla, code=normal, actor=actor(s, FU02_FULL), clock=clock, note="已电话联系")
    return Street(overdue=overdue, due_soon=due_soon, normal=normal, qushui=qushui)


def ask_extension(engine: Engine, sla: SlaPolicy, clock: FakeClock, code: str, reason: str = "需要等配件到货",
                  user: int = FU01_FULL) -> None:
    """The assignee (telegram account `user`) asks for 24 more hours."""
    with session_scope(engine) as s:
        c = get_case(session=s, code=code)
        assert c.resolve_due_at is not None
        actions.request_extension(session=s, sla=sla, code=code, actor=actor(s, user), clock=clock,
                                  until=c.resolve_due_at + timedelta(hours=24), reason=reason)


def deliver(engine: Engine, clock: FakeClock) -> RecordingNotifier:
    """`pushes` on its own thread: Playwright's sync API keeps an event loop running on this one."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(pushes, engine, clock).result()


def events_of(engine: Engine, code: str, action: str) -> list[CaseEvent]:
    with Session(engine) as s:
        c = get_case(session=s, code=code)
        stmt = select(CaseEvent).where(CaseEvent.case_id == c.id, CaseEvent.action == action)
        return list(s.exec(stmt.order_by(col(CaseEvent.id))))


@pytest.fixture
def services(settings: Settings, engine: Engine, policies: Policies, clock: FakeClock) -> Services:
    return Services(settings, clock=clock, engine=engine, policies=policies)


@pytest.fixture
def street(engine: Engine, policies: Policies, sla: SlaPolicy, clock: FakeClock) -> Street:
    return make_street(engine, policies, sla, clock)


@pytest.fixture
def base(services: Services, street: Street) -> Iterator[str]:
    for name, scope in ((STREET, "street"), (FURONG, "community:furong"), (QUSHUI, "community:qushui")):
        make_admin(services.engine, name, scope=scope)
    with console_server(services) as url:
        yield url


# ---------------------------------------------------------------- casestore.board
def test_risk_classes_agree_between_python_and_sql(engine: Engine, street: Street, clock: FakeClock) -> None:
    now = clock.now()
    with Session(engine) as s:
        for risk in Risk:
            listed = {c.code for c in list_board(session=s, now=now, grid_ids=None, risk=risk).cases}
            every = list_board(session=s, now=now, grid_ids=None, limit=200).cases
            assert listed == {c.code for c in every if risk_of(c, now) is risk}, risk
        assert {c.code for c in list_board(session=s, now=now, grid_ids=None, risk=Risk.overdue).cases} \
            == {street.overdue}
        assert street.due_soon in {c.code for c in list_board(session=s, now=now, grid_ids=None,
                                                               risk=Risk.due_soon).cases}
        assert list_board(session=s, now=now, grid_ids=frozenset()).total == 0  # an empty scope sees nothing


def test_console_masking_hides_phones_ids_and_rooms() -> None:
    masked = mask_public("3号楼2单元301室，3-2-502，身份证370102199001011234，电话13812345678，工单JN20261120-0001")
    assert "301" not in masked and "502" not in masked and "13812345678" not in masked
    assert "370102199001011234" not in masked and "JN20261120-0001" in masked and "3号楼2单元" in masked


# ---------------------------------------------------------------- the board API
def test_board_filters_order_and_paging(base: str, street: Street) -> None:
    client = login(base, STREET)
    everything = client.get("/api/cases").json()
    assert everything["total"] == 4 and everything["items"][0]["status_name"]
    overdue = client.get("/api/cases", params={"risk": "overdue"}).json()
    assert [c["code"] for c in overdue["items"]] == [street.overdue]
    assert overdue["items"][0]["risk_name"] == "已超时" and overdue["items"][0]["category_name"] == "房屋楼道"
    soon = client.get("/api/cases", params={"risk": "due_soon", "category": "environment"}).json()
    assert [c["code"] for c in soon["items"]] == [street.due_soon]
    assert soon["items"][0]["risk_name"] == "2 小时内到期"
    normal = client.get("/api/cases", params={"risk": "normal", "grid": "FU02"}).json()
    assert [c["code"] for c in normal["items"]] == [street.normal]
    emergency = client.get("/api/cases", params={"urgency": "emergency"}).json()["items"]
    assert [c["code"] for c in emergency] == [street.due_soon] and emergency[0]["urgency_name"] == "紧急"
    urgent_first = client.get("/api/cases", params={"order": "urgent"}).json()["items"]
    assert urgent_first[0]["code"] == street.overdue
    newest = client.get("/api/cases", params={"order": "newest"}).json()["items"]
    assert newest[-1]["code"] == street.overdue
    clamped = client.get("/api/cases", params={"limit": 100000, "offset": -3}).json()
    assert clamped["limit"] == 200 and clamped["offset"] == 0
    one = client.get("/api/cases", params={"limit": 1, "offset": 1}).json()
    assert one["limit"] == 1 and len(one["items"]) == 1 and one["items"][0]["code"] == newest[1]["code"]
    bad = client.get("/api/cases", params={"status": "teleported"})
    assert bad.status_code == 422 and "status" in bad.json()["detail"]


def test_a_community_admin_sees_only_their_community(base: str, street: Street) -> None:
    client = login(base, FURONG)
    codes = {c["code"] for c in client.get("/api/cases", params={"limit": 200}).json()["items"]}
    assert codes == {street.overdue, street.due_soon, street.normal}
    # asking for the other community's grid by name gives nothing, not its cases
    assert client.get("/api/cases", params={"grid": "QS01"}).json()["total"] == 0
    assert street.qushui not in client.get("/cases").text
    api = client.get(f"/api/cases/{street.qushui}")
    assert api.status_code == 403 and api.json()["detail"] == "这个工单不在您的数据范围内。"
    pg = client.get(f"/cases/{street.qushui}")
    assert pg.status_code == 403 and "无权访问" in pg.text and "曲水花园停水" not in pg.text
    act = client.post(f"/api/cases/{street.qushui}/close", json={"note": "越权结案"})
    assert act.status_code == 403
    assert events_of_base_case_closed(base, street.qushui) is False
    other = login(base, QUSHUI)
    assert {c["code"] for c in other.get("/api/cases").json()["items"]} == {street.qushui}


def events_of_base_case_closed(base: str, code: str) -> bool:
    """Whether the street admin sees `code` closed (through the API, as a third party would)."""
    return bool(login(base, STREET).get(f"/api/cases/{code}").json()["case"]["status"] == "closed")


def test_unknown_or_forged_codes_get_a_chinese_404(base: str) -> None:
    client = login(base, STREET)
    for code in ("JN20990101-9999", "<script>", "x" * 300, "%00"):
        api = client.get(f"/api/cases/{code}")
        assert api.status_code == 404 and "没有找到这个工单" in api.json()["detail"], code
    pg = client.get("/cases/JN20990101-9999")
    assert pg.status_code == 404 and "没有找到这个工单" in pg.text
    act = client.post("/api/cases/JN20990101-9999/close", json={"note": "结案"})
    assert act.status_code == 404 and "没有找到" in act.json()["detail"]


def test_detail_is_masked_in_chinese_and_never_names_a_resident(base: str, street: Street,
                                                               engine: Engine) -> None:
    with session_scope(engine) as s:
        c = get_case(session=s, code=street.overdue)
        c.attachments = [{"type": "photo", "file_id": "AgACAgUAAxk-secret-file"}]
        s.add(c)
    client = login(base, STREET)
    detail = client.get(f"/api/cases/{street.overdue}")
    assert detail.status_code == 200
    body = detail.text
    data = detail.json()
    assert "13812345678" not in body and "301" not in body and "resident:" not in body
    assert "AgACAgUAAxk" not in body  # the channel's file id is not shown either
    assert "138****5678" in data["description"]
    assert [e["action_name"] for e in data["events"]][:2] == ["受理登记", "分派"]
    assert data["events"][0]["actor"] == "居民" and data["events"][1]["actor"] == "系统"
    assert data["attachments"] == [{"kind": "photo", "label": "照片", "by": "居民"}]
    assert data["case"]["risk_name"] == "已超时" and data["case"]["assignee"] == "芙蓉社区第一网格专职网格员"
    page = client.get(f"/cases/{street.overdue}")
    assert page.status_code == 200 and "处理记录" in page.text and "138****5678" in page.text
    assert "13812345678" not in page.text and "resident:" not in page.text
    local = re.search(r"<th>登记时间</th><td>([^<]+)</td>", page.text)
    assert local and local.group(1) == "11-20 14:00"  # Asia/Shanghai, not UTC (06:00)


# ---------------------------------------------------------------- actions: audit, CSRF, errors
def test_every_action_writes_its_audit_event(base: str, street: Street, engine: Engine, sla: SlaPolicy,
                                             clock: FakeClock) -> None:
    client = login(base, STREET)
    workers = client.get(f"/api/cases/{street.overdue}/workers").json()
    target = next(w for w in workers if "第二网格专职" in w["label"] or w["place"] == "芙蓉社区第二网格")
    moved = client.post(f"/api/cases/{street.overdue}/reassign", json={"worker_id": target["id"], "reason": "就近处理"})
    assert moved.status_code == 200, moved.text
    assert moved.json()["message"] == "已转派。"
    [transfer] = events_of(engine, street.overdue, "transfer")
    assert transfer.actor == ADMIN_ACTOR and transfer.note == "就近处理"

    ask_extension(engine, sla, clock, street.normal, user=FU02_FULL)
    denied = client.post(f"/api/cases/{street.normal}/extension", json={"approve": False})
    assert denied.status_code == 200 and "驳回" in denied.json()["message"]
    assert [e.data.get("extension") for e in events_of(engine, street.normal, "note")
            if e.actor == ADMIN_ACTOR] == ["denied"]
    again = client.post(f"/api/cases/{street.normal}/extension", json={"approve": True})
    assert again.status_code == 409 and again.json()["detail"] == "这个工单没有待审批的延期申请。"

    merged = client.post(f"/api/cases/{street.due_soon}/merge", json={"into": street.normal})
    assert merged.status_code == 200, merged.text
    [merge] = events_of(engine, street.due_soon, "merge_duplicate")
    assert merge.actor == ADMIN_ACTOR and merge.data["duplicate_of"] == street.normal
    assert client.get(f"/api/cases/{street.due_soon}").json()["case"]["duplicate_of"] == street.normal
    itself = client.post(f"/api/cases/{street.normal}/merge", json={"into": street.normal})
    assert itself.status_code == 400 and itself.json()["detail"] == "不能把工单合并到它自己。"

    closed = client.post(f"/api/cases/{street.normal}/close", json={"note": "现场核实已修复"})
    assert closed.status_code == 200 and closed.json()["case"]["status_name"] == "已结案"
    [close] = events_of(engine, street.normal, "close")
    assert close.actor == ADMIN_ACTOR and close.note == "现场核实已修复"
    empty = client.post(f"/api/cases/{street.overdue}/close", json={"note": ""})
    assert empty.status_code == 422 and "note" in empty.json()["detail"]

    reopened = client.post(f"/api/cases/{street.normal}/reopen", json={"reason": "居民来电说又坏了"})
    assert reopened.status_code == 200 and reopened.json()["case"]["status"] == "assigned"
    [reopen] = events_of(engine, street.normal, "reopen")
    assert reopen.actor == ADMIN_ACTOR and reopen.note == "居民来电说又坏了"
    with Session(engine) as s:
        task = s.exec(select(Notification).where(Notification.kind == "task",
                                                 Notification.case_id == get_case(session=s, code=street.normal).id)
                       .order_by(col(Notification.id).desc())).first()
        assert task is not None and "重" in task.payload.get("text", "")  # the reopened task push went out
    merged_again = client.post(f"/api/cases/{street.due_soon}/reopen", json={"reason": "想重新办"})
    assert merged_again.status_code == 409 and street.normal in merged_again.json()["detail"]


def test_the_resident_hears_when_the_console_closes_or_merges(base: str, street: Street, engine: Engine,
                                                             clock: FakeClock) -> None:
    """Closing and merging from the console push to the resident through the worker buttons' path (a
    progress Notification, recorded with the case's event, delivered by the dispatcher), the note masked."""
    before = deliver(engine, clock)  # the pushes of opening the cases, out of the way
    assert before.sent
    client = login(base, STREET)
    merged = client.post(f"/api/cases/{street.due_soon}/merge", json={"into": street.normal})
    assert merged.status_code == 200, merged.text
    closed = client.post(f"/api/cases/{street.overdue}/close",
                         json={"note": "已更换灯泡，如有问题请拨打13812345678联系"})
    assert closed.status_code == 200, closed.text
    heard = deliver(engine, clock).texts_to(5001)  # tests.test_loop_support.resident's account
    merge_text = next(t for t in heard if street.due_soon in t)
    assert "合并办理" in merge_text and street.normal in merge_text
    close_text = next(t for t in heard if street.overdue in t)
    assert "已由工作人员办结" in close_text and "已更换灯泡" in close_text
    assert "13812345678" not in close_text and "138****5678" in close_text
    assert len(heard) == 2  # one push for each change, no more
    with Session(engine) as s:
        for code, kind, action in ((street.overdue, "progress_closed", "close"),
                                   (street.due_soon, "progress_merged", "merge_duplicate")):
            c = get_case(session=s, code=code)
            [push] = s.exec(select(Notification).where(Notification.case_id == c.id, Notification.kind == kind))
            [event] = s.exec(select(CaseEvent).where(CaseEvent.case_id == c.id, CaseEvent.action == action))
            assert push.state == "sent" and push.recipient.startswith("resident:") and event.actor == ADMIN_ACTOR
    # the other community's case was not touched, and its (absent) resident heard nothing
    assert not [t for t in heard if street.qushui in t]


def test_form_actions_need_the_csrf_token_and_say_why_in_chinese(base: str, street: Street,
                                                                engine: Engine) -> None:
    client = login(base, STREET)
    token = client.headers.pop("X-CSRF-Token")
    refused = client.post(f"/cases/{street.overdue}/close", data={"note": "没有令牌"})
    assert refused.status_code == 403 and "CSRF" in refused.text
    assert events_of(engine, street.overdue, "close") == []
    done = client.post(f"/cases/{street.overdue}/close", data={"note": "已处理", "csrf_token": token})
    assert done.status_code == 303 and done.headers["location"] == f"/cases/{street.overdue}?done=close"
    assert client.get(done.headers["location"]).text.count("已结案") >= 1
    assert [e.actor for e in events_of(engine, street.overdue, "close")] == [ADMIN_ACTOR]
    # a refused action re-renders the case with the reason, and nothing changes
    again = client.post(f"/cases/{street.overdue}/close", data={"note": "再结一次", "csrf_token": token})
    assert again.status_code == 409 and "当前的状态不能进行该操作" in again.text
    no_note = client.post(f"/cases/{street.normal}/close", data={"note": "  ", "csrf_token": token})
    assert no_note.status_code == 400 and "请填写结案说明" in no_note.text
    wrong = client.post(f"/cases/{street.normal}/merge", data={"into": "JN20990101-0001", "csrf_token": token})
    assert wrong.status_code == 400 and "没有找到要并入的原工单" in wrong.text
    foreign = login(base, FURONG)
    away = foreign.post(f"/cases/{street.qushui}/close", data={"note": "越权"})
    assert away.status_code == 403 and "不在您的数据范围内" in away.text
    assert events_of(engine, street.qushui, "close") == []


def test_a_community_admin_may_not_reassign_to_another_communitys_worker(base: str, street: Street,
                                                                        engine: Engine) -> None:
    client = login(base, FURONG)
    options = client.get(f"/api/cases/{street.overdue}/workers").json()
    assert options and all("曲水" not in w["place"] for w in options)
    street_client = login(base, STREET)
    qushui_worker = next(w for w in street_client.get(f"/api/cases/{street.qushui}/workers").json()
                         if w["place"].startswith("曲水"))
    refused = client.post(f"/api/cases/{street.overdue}/reassign",
                          json={"worker_id": qushui_worker["id"], "reason": "试试"})
    assert refused.status_code == 400 and refused.json()["detail"] == "请选择您数据范围内的人员。"
    assert events_of(engine, street.overdue, "transfer") == []


# ---------------------------------------------------------------- PostgreSQL
def test_scope_rule_on_postgresql(pg_engine: Engine, settings: Settings, policies: Policies, clock: FakeClock,
                                  sla: SlaPolicy) -> None:
    street = make_street(pg_engine, policies, sla, clock)
    services = Services(settings, clock=clock, engine=pg_engine, policies=policies)
    make_admin(pg_engine, FURONG, scope="community:furong")
    with console_server(services) as url:
        client = login(url, FURONG)
        codes = {c["code"] for c in client.get("/api/cases", params={"limit": 200}).json()["items"]}
        assert street.qushui not in codes and street.overdue in codes
        assert client.get(f"/api/cases/{street.qushui}").status_code == 403
        assert client.get(f"/cases/{street.qushui}").status_code == 403
        overdue = client.get("/api/cases", params={"risk": "overdue", "order": "urgent"}).json()
        assert [c["code"] for c in overdue["items"]] == [street.overdue]
        closed = client.post(f"/api/cases/{street.overdue}/close", json={"note": "已处理"})
        assert closed.status_code == 200
    assert [e.actor for e in events_of(pg_engine, street.overdue, "close")] == [f"admin:web:{FURONG}"]


# ---------------------------------------------------------------- the browser
def test_browser_filters_the_board_and_approves_an_extension_the_worker_hears(
        base: str, street: Street, engine: Engine, sla: SlaPolicy, clock: FakeClock, chromium: object) -> None:
    ask_extension(engine, sla, clock, street.overdue, reason="等物业配件，周一到货")
    deliver(engine, clock)  # deliver what is already queued (task pushes, the supervisor's request)
    pg = browser_login(chromium, base, FURONG)
    pg.goto(f"{base}/cases")
    assert pg.locator("#board tbody tr").count() == 3
    pg.select_option("select[name=risk]", "overdue")  # htmx refreshes #board and pushes the URL
    pg.wait_for_url(re.compile(r".*risk=overdue.*"))
    pg.wait_for_function("document.querySelectorAll('#board tbody tr').length === 1")
    assert pg.locator("#board tbody tr").first.get_attribute("data-code") == street.overdue
    pg.reload()  # the filtered board is bookmarkable
    assert pg.locator("select[name=risk]").input_value() == "overdue"
    assert pg.locator("#board tbody tr").count() == 1
    pg.click(f"#board a[href='/cases/{street.overdue}']")
    pg.wait_for_url(f"{base}/cases/{street.overdue}")
    assert "等物业配件，周一到货" in pg.locator("#pending-extension").inner_text()
    pg.click("#pending-extension button[value=approve]")
    pg.wait_for_url(re.compile(r".*done=approve"))
    assert "已批准延期" in pg.locator("[role=status]").inner_text()
    assert pg.locator("#pending-extension").count() == 0
    pg.context.close()
    [approved] = events_of(engine, street.overdue, "approve_extension")
    assert approved.actor == f"admin:web:{FURONG}"
    with Session(engine) as s:
        c = get_case(session=s, code=street.overdue)
        [decision] = s.exec(select(Notification).where(Notification.case_id == c.id,
                                                       Notification.kind == "extension_decision")).all()
        assert decision.recipient == f"worker:{c.assignee_id}" and "延期已批准" in decision.payload["text"]
    delivered = deliver(engine, clock)
    assert any("延期已批准" in t for t in delivered.texts_to(FU01_FULL)), delivered.sent


def test_a_script_title_renders_as_text(services: Services, engine: Engine, policies: Policies, sla: SlaPolicy,
                                        clock: FakeClock, chromium: object) -> None:
    code = open_(engine, policies, sla, clock, None, title="<script>alert(1)</script>",
                 description="<img src=x onerror=alert(2)>").case.code
    make_admin(engine, STREET)
    with console_server(services) as url:
        pg = browser_login(chromium, url, STREET)
        dialogs: list[str] = []
        pg.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        pg.goto(f"{url}/cases")
        assert pg.locator(f"tr[data-code='{code}'] td.wrap").inner_text() == "<script>alert(1)</script>"
        pg.goto(f"{url}/cases/{code}")
        assert pg.locator(".case-title").inner_text() == "<script>alert(1)</script>"
        assert "<img src=x onerror=alert(2)>" in pg.locator(".msg p").first.inner_text()
        pg.wait_for_timeout(200)
        assert dialogs == []
        pg.context.close()


def test_case_public_never_carries_a_raw_field() -> None:
    fields = set(CasePublic.model_fields) | set(CaseDetail.model_fields)
    assert not fields & {"resident_id", "contact_phone", "description_raw", "attachments_raw", "assignee_id"}
    assert Case.model_fields.keys() >= {"resident_id"}  # the table model keeps it; the public one does not
