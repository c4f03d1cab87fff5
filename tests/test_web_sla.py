"""SLA 风险 in the console (/sla, /sla/fragment, /api/sla): what breaches within 2 hours, what is overdue, open
cases by escalation level (the real sweep escalates them), each worker's open load and on-time rate, and the
pending extension requests with 批准/驳回 that post to the case's own action. A community admin never sees another
community's cases, workers or extension requests. Served by a real uvicorn on 127.0.0.1."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session

from bot.services import Services
from bot.settings import Settings
from casestore import actions
from casestore.cases import get_case
from casestore.clock import FakeClock
from casestore.db import session_scope
from casestore.deadlines import SlaPolicy
from casestore.models import Worker
from casestore.permissions import Actor
from casestore.sweep import sweep
from policies.models import Policies
from tests.factories import actor
from tests.test_loop_support import FU02_FULL, open_, resident, sla
from tests.web_support import console_server, login, make_admin

__all__ = ["sla"]
STREET, FURONG, QUSHUI = "sla_street", "sla_furong", "sla_qushui"


@dataclass
class Risks:
    overdue_fu: str  # 芙蓉 FU01, past its resolution due, escalated by the sweep, an extension asked
    overdue_qs: str  # 曲水, past its due, an extension asked by its own worker
    due_soon: str  # 芙蓉 FU01, an unanswered emergency, response due within the hour
    normal: str  # 芙蓉 FU02, answered, nothing due soon


def _assignee_actor(s: Session, code: str) -> Actor:
    case = get_case(session=s, code=code)
    worker = s.get(Worker, case.assignee_id)
    assert worker is not None and worker.id is not None
    return Actor(f"worker:{worker.id}", worker)


@pytest.fixture
def risks(engine: Engine, policies: Policies, sla: SlaPolicy, clock: FakeClock) -> Risks:
    who = resident(engine, clock, policies)
    overdue_fu = open_(engine, policies, sla, clock, who, title="楼道灯不亮",
                       description="3号楼2单元楼道灯坏了，电话13812345678").case.code
    overdue_qs = open_(engine, policies, sla, clock, None, category="utilities", title="曲水花园停水",
                       description="曲水花园3号楼从早上开始停水", estate="曲水花园", building=3,
                       location_text="曲水花园3号楼").case.code
    clock.advance(hours=30)
    sweep(engine=engine, policies=policies, sla=sla, clock=clock)  # the real ladder escalates both
    due_soon = open_(engine, policies, sla, clock, who, category="environment", urgency="emergency",
                     title="垃圾桶满了没人清", description="1号楼北侧垃圾桶满出来两天", building=1,
                     location_text="芙蓉小区1号楼").case.code
    normal = open_(engine, policies, sla, clock, who, category="public_facilities", title="健身器材坏了",
                   description="8号楼旁边的单杠松动", building=8, location_text="芙蓉小区8号楼").case.code
    with session_scope(engine) as s:
        actions.respond(session=s, sla=sla, code=normal, actor=actor(s, FU02_FULL), clock=clock, note="已电话联系")
        for code, reason in ((overdue_fu, "需要等灯具配件到货"), (overdue_qs, "自来水公司明天检修")):
            c = get_case(session=s, code=code)
            assert c.resolve_due_at is not None
            actions.request_extension(session=s, sla=sla, code=code, actor=_assignee_actor(s, code), clock=clock,
                                      until=c.resolve_due_at + timedelta(days=2), reason=reason)
    return Risks(overdue_fu=overdue_fu, overdue_qs=overdue_qs, due_soon=due_soon, normal=normal)


@pytest.fixture
def base(settings: Settings, engine: Engine, policies: Policies, clock: FakeClock, risks: Risks) -> Iterator[str]:
    services = Services(settings, clock=clock, engine=engine, policies=policies)
    for name, scope in ((STREET, "street"), (FURONG, "community:furong"), (QUSHUI, "community:qushui")):
        make_admin(engine, name, scope=scope)
    with console_server(services) as url:
        yield url


def _codes(risk_list: dict) -> list[str]:  # type: ignore[type-arg]
    return [c["code"] for c in risk_list["items"]]


def test_the_street_sees_every_risk_in_its_place(base: str, risks: Risks, engine: Engine) -> None:
    sla_view = login(base, STREET).get("/api/sla").json()
    assert sla_view["scope"] and set(_codes(sla_view["overdue"])) == {risks.overdue_fu, risks.overdue_qs}
    assert sla_view["overdue"]["total"] == 2
    assert _codes(sla_view["due_soon"]) == [risks.due_soon]  # the answered FU02 case is in neither list
    assert risks.normal not in _codes(sla_view["overdue"]) + _codes(sla_view["due_soon"])
    levels = {e["level"]: e for e in sla_view["escalations"]}
    assert levels[1]["name"] == "网格长/社区书记" and levels[2]["name"] == "街道指挥中心"
    with Session(engine) as s:
        reached = [get_case(session=s, code=c).escalation_level for c in (risks.overdue_fu, risks.overdue_qs)]
    assert min(reached) >= 1
    assert sum(e["cases"] for e in sla_view["escalations"]) == 2
    assert [levels[n]["cases"] for n in (1, 2)] == [reached.count(1), reached.count(2)]
    pending = {p["code"]: p for p in sla_view["pending_extensions"]}
    assert set(pending) == {risks.overdue_fu, risks.overdue_qs}
    assert pending[risks.overdue_fu]["reason"] == "需要等灯具配件到货"
    workers = {w["worker_id"]: w for w in sla_view["workers"]}
    with Session(engine) as s:
        fu01 = get_case(session=s, code=risks.overdue_fu).assignee_id
    assert fu01 is not None and workers[fu01]["open"] == 2 and workers[fu01]["overdue"] == 1  # lamp + emergency
    assert workers[fu01]["grid_name"] != "—" and "王" not in str(sla_view["overdue"])  # no resident's name


def test_a_community_admin_sees_only_their_community(base: str, risks: Risks, engine: Engine) -> None:
    furong = login(base, FURONG)
    view = furong.get("/api/sla").json()
    assert _codes(view["overdue"]) == [risks.overdue_fu] and view["overdue"]["total"] == 1
    assert [p["code"] for p in view["pending_extensions"]] == [risks.overdue_fu]
    assert sum(e["cases"] for e in view["escalations"]) == 1
    with Session(engine) as s:
        qs_worker = get_case(session=s, code=risks.overdue_qs).assignee_id
    assert qs_worker not in {w["worker_id"] for w in view["workers"]}
    page = furong.get("/sla")
    assert page.status_code == 200 and risks.overdue_fu in page.text
    assert risks.overdue_qs not in page.text and "曲水花园停水" not in page.text and "自来水公司" not in page.text
    fragment = furong.get("/sla/fragment").text
    assert risks.overdue_fu in fragment and risks.overdue_qs not in fragment
    qushui = login(base, QUSHUI).get("/api/sla").json()
    assert _codes(qushui["overdue"]) == [risks.overdue_qs] and qushui["due_soon"]["items"] == []


def test_approve_from_the_sla_page_moves_the_deadline_and_leaves_the_list(base: str, risks: Risks,
                                                                          engine: Engine) -> None:
    client = login(base, FURONG)
    page = client.get("/sla").text
    extensions = page[page.index('id="sla-extensions"'):]
    row = re.search(rf'<tr data-code="{risks.overdue_fu}">.*?</tr>', extensions, re.S)
    assert row and 'action="/cases/' + risks.overdue_fu + '/extension"' in row.group(0)
    with Session(engine) as s:
        before = get_case(session=s, code=risks.overdue_fu).resolve_due_at
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert csrf
    # another community's request cannot be decided from here
    other = client.post(f"/cases/{risks.overdue_qs}/extension",
                        data={"csrf_token": csrf.group(1), "decision": "approve", "next": "/sla"})
    assert other.status_code == 403
    done = client.post(f"/cases/{risks.overdue_fu}/extension",
                       data={"csrf_token": csrf.group(1), "decision": "approve", "next": "/sla"})
    assert done.status_code == 303 and done.headers["location"].startswith("/sla")
    with Session(engine) as s:
        after = get_case(session=s, code=risks.overdue_fu).resolve_due_at
        qs_due = get_case(session=s, code=risks.overdue_qs).resolve_due_at
    assert before is not None and after is not None and after - before == timedelta(days=2)
    view = client.get("/api/sla").json()
    # decided, so no longer waiting; still overdue, since nobody has answered the resident yet
    assert view["pending_extensions"] == [] and _codes(view["overdue"]) == [risks.overdue_fu]
    street = login(base, STREET).get("/api/sla").json()
    assert [p["code"] for p in street["pending_extensions"]] == [risks.overdue_qs] and qs_due is not None


def test_sla_needs_a_signed_in_account(base: str) -> None:
    import httpx

    anonymous = httpx.get(f"{base}/api/sla", timeout=10)
    assert anonymous.status_code == 401
    page = httpx.get(f"{base}/sla", timeout=10, follow_redirects=False)
    assert page.status_code in (302, 303) and "/login" in page.headers["location"]


def test_the_load_table_lists_only_the_scopes_own_workers(base: str, risks: Risks) -> None:
    """曲水's admin sees 曲水's workers (its grid worker holds the 停水 case), never 芙蓉's."""
    view = login(base, QUSHUI).get("/api/sla").json()
    assert view["workers"] and all("曲水" in w["grid_name"] for w in view["workers"]), view["workers"]
    assert sum(w["open"] for w in view["workers"]) == 1
