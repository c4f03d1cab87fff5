"""人员 (#16 item 8): workers and roles in scope, registering by name (the console's /register_worker), leave,
deputy, deactivate, channel accounts; masked ids, scope, audit, and what a grids.yaml sync does to each change.
Served by a real uvicorn on 127.0.0.1 over a migrated SQLite store (the sync itself is tested on PostgreSQL in
tests/test_register_worker_upgrade.py)."""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from bot.services import Services
from bot.settings import Settings
from casestore.accounts import get_or_create_resident, list_accounts
from casestore.admins import issue_token
from casestore.audit import list_audit
from casestore.clock import FakeClock
from casestore.db import session_scope
from casestore.models import Account, Worker
from casestore.org import FILE_VALUES_ACTION, sync_org
from casestore.staff import staff_record
from policies.models import Grids, Policies
from tests.web_support import console_server, login, make_admin


@pytest.fixture
def services(settings: Settings, engine: Engine, policies: Policies, clock: FakeClock) -> Services:
    return Services(settings, clock=clock, engine=engine, policies=policies)


@pytest.fixture
def base(services: Services) -> Iterator[str]:
    make_admin(services.engine, "street_chief")
    make_admin(services.engine, "fu_admin", scope="community:furong")
    make_admin(services.engine, "fu01_lead", scope="grid:FU01")
    with console_server(services) as url:
        yield url


def _worker(engine: Engine, name: str) -> Worker:
    with Session(engine) as session:
        return session.exec(select(Worker).where(Worker.name == name)).one()


def _other_community(policies: Policies) -> tuple[str, str]:
    """A community that is not 芙蓉 and one of its grids."""
    other = next(c for c in policies.grids.communities if c.id != "furong")
    return other.id, other.grids[0].id


def test_street_sees_everyone_with_chinese_roles_origin_and_masked_ids(base: str, policies: Policies) -> None:
    client = login(base, "street_chief")
    people = client.get("/api/people").json()["people"]
    names = {p["name"] for p in people}
    assert policies.grids.street_command.name in names
    supervisor = next(p for p in people if p["name"] == "芙蓉社区网格长（社区书记）")
    assert supervisor["role_name"] == "网格长" and supervisor["origin"] == "file"
    assert supervisor["accounts"] == [{"id": supervisor["accounts"][0]["id"], "channel": "telegram",
                                       "channel_name": "电报", "external_id_masked": "***124",
                                       "from_grids_yaml": True}]
    page = client.get("/people")
    assert page.status_code == 200 and "网格长" in page.text and "grids.yaml" in page.text
    # no raw Telegram id of anyone reaches the page or the API
    raw = {str(e.telegram_id) for c in policies.grids.communities for g in c.grids
           for e in [g.workers.full_time, *g.workers.part_time, *g.workers.volunteer] if e.telegram_id}
    assert raw and not [r for r in raw if r in page.text or r in client.get("/api/people").text]


def test_register_by_name_in_a_form_is_audited_and_survives_the_next_sync(base: str, services: Services,
                                                                         policies: Policies) -> None:
    client = login(base, "fu_admin")
    done = client.post("/people", data={"name": "李娜", "grid_id": "FU01", "role": "volunteer", "telegram_id": ""})
    assert done.status_code == 303 and re.fullmatch(r"/people/\d+\?done=registered", done.headers["location"])
    detail = client.get(done.headers["location"])
    assert "已登记" in detail.text and "运行中登记" in detail.text and "志愿者" in detail.text
    with_id = client.post("/api/people", json={"name": "王强", "grid_id": "FU01", "role": "part_time",
                                               "telegram_id": "777000111"})
    assert with_id.status_code == 201, with_id.text
    assert with_id.json()["accounts"][0]["external_id_masked"] == "***111"
    assert "777000111" not in with_id.text
    with session_scope(services.engine) as session:
        events = list_audit(session=session, action="register_worker")
        assert {e.actor for e in events} == {"admin:web:fu_admin"}
        sync_org(session=session, grids=policies.grids)  # what `quanbot db upgrade` and every start do
    li, wang = _worker(services.engine, "李娜"), _worker(services.engine, "王强")
    assert (li.grid_id, li.role, li.active) == ("FU01", "volunteer", True)
    with Session(services.engine) as session:
        assert [a.external_id for a in list_accounts(session=session, worker_id=wang.id)] == ["777000111"]
    people = {p["name"]: p for p in client.get("/api/people").json()["people"]}
    assert people["李娜"]["origin"] == "registered" and people["王强"]["origin"] == "registered"


def test_bad_registrations_get_chinese_messages_and_change_nothing(base: str, services: Services,
                                                                    policies: Policies) -> None:
    client = login(base, "fu_admin")
    with Session(services.engine) as session:
        before = len(list(session.exec(select(Worker))))
    empty = client.post("/people", data={"name": "  ", "grid_id": "FU01", "role": "volunteer"})
    assert empty.status_code == 400 and "请填写姓名" in empty.text
    bad_id = client.post("/people", data={"name": "赵六", "grid_id": "FU01", "role": "volunteer",
                                          "telegram_id": "abc"})
    assert bad_id.status_code == 400 and "应为数字" in bad_id.text
    _community, other_grid = _other_community(policies)
    elsewhere = client.post("/people", data={"name": "赵六", "grid_id": other_grid, "role": "volunteer"})
    assert elsewhere.status_code == 403 and "不在您的管理范围" in elsewhere.text
    street_role = client.post("/api/people", json={"name": "赵六", "grid_id": "FU01", "role": "street_command"})
    assert street_role.status_code == 403
    with session_scope(services.engine) as session:
        resident = get_or_create_resident(session=session, channel="telegram", external_id="555001",
                                          now=services.clock.now())
        assert resident.id
    resident_account = client.post("/api/people", json={"name": "赵六", "grid_id": "FU01", "role": "volunteer",
                                                        "telegram_id": "555001"})
    assert resident_account.status_code == 400 and "居民账号" in resident_account.json()["detail"]
    with Session(services.engine) as session:
        assert len(list(session.exec(select(Worker)))) == before


def test_scope_a_community_and_a_grid_see_only_their_own(base: str, services: Services, policies: Policies) -> None:
    _community, other_grid = _other_community(policies)
    fu = login(base, "fu_admin")
    people = fu.get("/api/people").json()["people"]
    assert people and all(p["community_id"] == "furong" for p in people)
    assert "芙蓉社区网格长（社区书记）" in {p["name"] for p in people}
    with Session(services.engine) as session:
        outsider = session.exec(select(Worker).where(Worker.grid_id == other_grid)).first()
        assert outsider is not None
    assert fu.get(f"/api/people/{outsider.id}").status_code == 403
    assert fu.get(f"/people/{outsider.id}").status_code == 403
    assert fu.post(f"/api/people/{outsider.id}/leave", json={"on_leave": True}).status_code == 403
    assert fu.post(f"/people/{outsider.id}/active", data={"value": "0"}).status_code == 403
    assert _worker(services.engine, outsider.name).active  # nothing changed
    grid = login(base, "fu01_lead")
    mine = grid.get("/api/people").json()["people"]
    assert mine and {p["grid_id"] for p in mine} == {"FU01"}  # not the community's desk, not FU02
    assert grid.get("/api/people/999999").status_code == 404


def _fu01_full_time_says(policies: Policies, **fields: bool) -> Grids:
    """grids.yaml as if its FU01 full-time entry had been edited to `fields`."""
    data = policies.grids.model_dump()
    entry = data["communities"][0]["grids"][0]["workers"]["full_time"]
    assert entry["name"] == "芙蓉社区第一网格专职网格员"
    entry.update(fields)
    return Grids.model_validate(data)


def test_a_console_leave_survives_the_sync_until_grids_yaml_changes_that_entry(base: str, services: Services,
                                                                               policies: Policies) -> None:
    """The rule (casestore.org.file_wins): a change made in the console wins over grids.yaml until the file changes
    that field of that entry itself; then the file wins, and the page said so beforehand."""
    client = login(base, "fu_admin")
    worker = _worker(services.engine, "芙蓉社区第一网格专职网格员")
    done = client.post(f"/people/{worker.id}/leave", data={"value": "1"})
    assert done.status_code == 303
    detail = client.get(done.headers["location"])
    assert "已设为请假" in detail.text and "同步会恢复" not in detail.text, detail.text[-3000:]
    listed = next(p for p in client.get("/api/people").json()["people"] if p["id"] == worker.id)
    assert listed["on_leave"] and listed["sync_reverts"] == []
    with session_scope(services.engine) as session:
        [event] = list_audit(session=session, subject=f"worker:{worker.id}", action="set_leave")
        assert event.actor == "admin:web:fu_admin" and event.data == {"on_leave": True, "before": False}
    for _ in range(2):  # db upgrade, then a restart: the file still says on_leave false, unchanged
        with session_scope(services.engine) as session:
            sync_org(session=session, grids=policies.grids)
        assert _worker(services.engine, worker.name).on_leave
    # the file is edited: this entry now says on leave too; the console then ends the leave; the file (unchanged
    # since) does not put it back
    on_leave_in_file = _fu01_full_time_says(policies, on_leave=True)
    with session_scope(services.engine) as session:
        sync_org(session=session, grids=on_leave_in_file)
    assert client.post(f"/api/people/{worker.id}/leave", json={"on_leave": False}).json()["on_leave"] is False
    with session_scope(services.engine) as session:
        sync_org(session=session, grids=on_leave_in_file)
    assert not _worker(services.engine, worker.name).on_leave
    # back on leave in the console, then the file's entry changes to not on leave: the file wins, as shown before
    assert client.post(f"/api/people/{worker.id}/leave", json={"on_leave": True}).json()["on_leave"] is True
    with session_scope(services.engine) as session:
        record = staff_record(session=session, grids=policies.grids, worker=session.get(Worker, worker.id))
        assert record.reverts == [("请假", True, False)]
        sync_org(session=session, grids=policies.grids)
    assert not _worker(services.engine, worker.name).on_leave
    with session_scope(services.engine) as session:  # the file's values are recorded when they change only
        recorded = list_audit(session=session, subject=f"worker:{worker.id}", action=FILE_VALUES_ACTION)
    assert [e.data["on_leave"] for e in recorded] == [False, True, False]


def test_a_deputy_cleared_in_the_console_stays_cleared(base: str, services: Services, policies: Policies) -> None:
    """Making a registered worker FU01's deputy clears the file's deputy; the sync does not give FU01 two."""
    client = login(base, "street_chief")
    with Session(services.engine) as session:
        filed = session.exec(select(Worker).where(Worker.grid_id == "FU01", Worker.is_deputy == True)).all()  # noqa: E712
    assert filed, "the sample grids.yaml gives FU01 a deputy"
    created = client.post("/api/people", json={"name": "孙婷", "grid_id": "FU01", "role": "part_time"}).json()
    assert client.post(f"/api/people/{created['id']}/deputy", json={"deputy": True}).json()["is_deputy"] is True
    with session_scope(services.engine) as session:
        sync_org(session=session, grids=policies.grids)
    with Session(services.engine) as session:
        deputies = session.exec(select(Worker).where(Worker.grid_id == "FU01", Worker.is_deputy == True)).all()  # noqa: E712
    assert [w.id for w in deputies] == [created["id"]]


def test_leave_deputy_and_deactivate_on_a_registered_worker_survive_the_sync(base: str, services: Services,
                                                                            policies: Policies) -> None:
    client = login(base, "street_chief")
    created = client.post("/api/people", json={"name": "周敏", "grid_id": "FU01", "role": "part_time"}).json()
    wid = created["id"]
    assert client.post(f"/api/people/{wid}/leave", json={"on_leave": True}).json()["on_leave"] is True
    deputy = client.post(f"/api/people/{wid}/deputy", json={"deputy": True}).json()
    assert deputy["is_deputy"] is True and deputy["sync_reverts"] == []
    # the grid has one deputy: the file's part-time deputy of FU01 (if any) is cleared
    with Session(services.engine) as session:
        deputies = session.exec(select(Worker).where(Worker.grid_id == "FU01", Worker.is_deputy == True)).all()  # noqa: E712
        assert [w.id for w in deputies] == [wid]
    assert client.post(f"/api/people/{wid}/active", json={"active": False}).json()["active"] is False
    with session_scope(services.engine) as session:
        sync_org(session=session, grids=policies.grids)
    kept = _worker(services.engine, "周敏")
    assert (kept.on_leave, kept.is_deputy, kept.active) == (True, True, False)
    full_time = _worker(services.engine, "芙蓉社区第一网格专职网格员")
    refused = client.post(f"/api/people/{full_time.id}/deputy", json={"deputy": True})
    assert refused.status_code == 400 and "兼职网格员" in refused.json()["detail"]


def test_link_and_unlink_a_channel_account(base: str, services: Services) -> None:
    client = login(base, "fu_admin")
    worker = _worker(services.engine, "芙蓉社区第一网格专职网格员")
    linked = client.post(f"/people/{worker.id}/accounts", data={"channel": "terminal", "external_id": "900555"})
    assert linked.status_code == 303
    page = client.get(linked.headers["location"])
    assert "已关联渠道账号" in page.text and "终端" in page.text and "***555" in page.text and "900555" not in page.text
    with Session(services.engine) as session:
        account = session.exec(select(Account).where(Account.channel == "terminal",
                                                     Account.external_id == "900555")).one()
        assert account.worker_id == worker.id
    wrong = client.post(f"/people/{worker.id}/accounts", data={"channel": "fax", "external_id": "1"})
    assert wrong.status_code == 400 and "没有这个渠道" in wrong.text
    other = _worker(services.engine, "芙蓉社区值班台")
    taken = client.post(f"/api/people/{other.id}/accounts", json={"channel": "terminal", "external_id": "900555"})
    assert taken.status_code == 400 and "请先在其名下解除关联" in taken.json()["detail"]
    gone = client.post(f"/people/{worker.id}/accounts/{account.id}/unlink")
    assert gone.status_code == 303
    with session_scope(services.engine) as session:
        assert session.get(Account, account.id) is None
        [event] = list_audit(session=session, subject=f"worker:{worker.id}", action="unlink_account")
        assert event.data["external"] == "***555" and event.actor == "admin:web:fu_admin"
    assert client.delete(f"/api/people/{worker.id}/accounts/{account.id}").status_code == 404


def test_forms_need_the_csrf_token_and_the_api_takes_a_bearer_token(base: str, services: Services) -> None:
    client = login(base, "fu_admin")
    client.headers.pop("X-CSRF-Token")
    worker = _worker(services.engine, "芙蓉社区第一网格专职网格员")
    refused = client.post(f"/people/{worker.id}/leave", data={"value": "1"})
    assert refused.status_code == 403 and not _worker(services.engine, worker.name).on_leave
    with session_scope(services.engine) as session:
        token = issue_token(session=session, username="fu_admin", actor="test", now=services.clock.now())
    api = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"})
    assert api.post(f"/api/people/{worker.id}/leave", json={"on_leave": True}).json()["on_leave"] is True
    bad = api.post("/api/people", json={"name": "", "grid_id": "FU01", "role": "nobody"})
    assert bad.status_code == 422 and "请检查" in bad.json()["detail"]
