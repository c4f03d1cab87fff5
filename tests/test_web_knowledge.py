"""知识库 in the console: uploads checked and written by knowledge.library, incremental ingestion as a background
job claimed by the console's own runner, the knowledge service finding the new document, hit testing, the
quarantine list and the review queue's fixes (the functions `quanbot review` uses), each audited. A real uvicorn
on 127.0.0.1, the tests' hash embedder on a temporary Chroma directory, Chromium for the two browser checks."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from bot.services import Services
from bot.settings import PROJECT_ROOT, Settings
from casestore.clock import FakeClock
from casestore.db import session_scope
from casestore.models import AuditEvent, ReviewItem
from casestore.review import record_miss
from knowledge.segmenter import Segmenter
from knowledge.service import KnowledgeRuntime
from policies.models import Policies
from tests.embedders import HASH_THRESHOLDS, HashEmbedder
from tests.web_support import browser_login, chromium, console_server, login, make_admin

__all__ = ["chromium"]

SORTING = """---
title: 垃圾分类投放指南
source: 示例
---
# 垃圾分类投放指南

## 投放时间

厨余垃圾每天早上7点到9点、晚上6点到8点在小区东门投放点定时投放，过时不收。
"""


@pytest.fixture(scope="module")
def segmenter(tmp_path_factory: pytest.TempPathFactory) -> Segmenter:
    return Segmenter(tmp_path_factory.mktemp("models"))


@pytest.fixture
def settings(tmp_path: Path, docs: Path) -> Settings:
    """The conftest settings with the sample documents, a private FAQ, scope file and policies copy, a 1 MB limit."""
    policies_dir = tmp_path / "policies"
    shutil.copytree(PROJECT_ROOT / "policies", policies_dir, ignore=shutil.ignore_patterns("__pycache__", "*.py"))
    return Settings(_env_file=None,  # type: ignore[call-arg]
                    database_url=f"sqlite:///{tmp_path / 'quanbot.db'}", var_dir=tmp_path / "var",
                    chroma_dir=tmp_path / "chroma", knowledge_dir=docs, faq_path=tmp_path / "faq.yaml",
                    scope_examples=tmp_path / "scope.jsonl", policies_dir=policies_dir, web_max_upload_mb=1)


@pytest.fixture
def services(settings: Settings, engine: Engine, policies: Policies, clock: FakeClock,
             segmenter: Segmenter) -> Services:
    runtime = KnowledgeRuntime(settings, embedder=HashEmbedder(), thresholds=HASH_THRESHOLDS, segmenter=segmenter,
                               faq_path=settings.faq_path)
    return Services(settings, clock=clock, engine=engine, policies=policies, knowledge_runtime=runtime)


@pytest.fixture
def base(services: Services) -> Iterator[str]:
    make_admin(services.engine, "street_chief")
    make_admin(services.engine, "fu_admin", scope="community:furong")
    with console_server(services, run_jobs=True) as url:
        yield url


def wait_job(client: httpx.Client, job_id: int, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(f"/api/jobs/{job_id}").json()
        if job["state"] in ("done", "failed"):
            return job  # type: ignore[no-any-return]
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} did not finish: {job}")


def _audits(engine: Engine, action: str) -> list[AuditEvent]:
    with Session(engine) as session:
        return list(session.exec(select(AuditEvent).where(AuditEvent.action == action)))


def test_upload_from_the_page_is_ingested_by_a_job_and_ask_finds_it(
        base: str, services: Services, docs: Path, chromium: Any, tmp_path: Path) -> None:
    upload = tmp_path / "up" / "garbage-sorting.md"
    upload.parent.mkdir()
    upload.write_text(SORTING, encoding="utf-8")
    assert not services.knowledge_runtime.service().ask("厨余垃圾几点投放").answered  # not known before
    pg = browser_login(chromium, base, "street_chief")
    pg.goto(f"{base}/knowledge")
    pg.set_input_files("form[action='/knowledge/upload'] input[type=file]", str(upload))
    pg.click("form[action='/knowledge/upload'] button[type=submit]")
    pg.wait_for_selector(".job[data-state=done]", timeout=30_000)  # the progress bar polled until done
    assert pg.locator(".job progress").get_attribute("value") == "100"
    assert "新增 1" in pg.locator(".job").inner_text()
    assert (docs / "garbage-sorting.md").read_text(encoding="utf-8") == SORTING
    pg.goto(f"{base}/knowledge")
    row = pg.locator("tr[data-doc=garbage-sorting]")
    assert "垃圾分类投放指南" in row.inner_text() and "已入库" in row.inner_text()
    answer = services.knowledge_runtime.service().ask("厨余垃圾几点投放")
    assert answer.answered and answer.citations[0].doc_id == "garbage-sorting"
    assert "7点到9点" in answer.text + answer.more
    [event] = _audits(services.engine, "knowledge_upload")
    assert event.actor == "admin:web:street_chief" and event.subject == "knowledge:garbage-sorting"
    pg.context.close()


def test_hit_test_shows_the_chunks_with_scores_and_the_answer(base: str, chromium: Any) -> None:
    pg = browser_login(chromium, base, "fu_admin")  # a community account may test, not change documents
    pg.goto(f"{base}/knowledge/hit-test")
    assert pg.locator("form[action='/knowledge/upload']").count() == 0
    pg.fill("input[name=q]", "办居住证要带什么材料")
    pg.click("form[action='/knowledge/hit-test'] button[type=submit]")
    rows = pg.locator("table.kb-hits tbody tr")
    assert rows.count() >= 2
    assert "居住证办理指南" in rows.nth(0).inner_text()
    assert any("所需材料" in rows.nth(i).inner_text() for i in range(rows.count()))
    cells = rows.nth(0).locator("td.num")
    assert float(cells.nth(1).inner_text()) > 0  # the fused score
    assert pg.locator("#hit-decision").inner_text() == "回答"
    assert "身份证" in pg.locator("#hit-answer").inner_text()
    pg.goto(f"{base}/knowledge/hit-test?q=" + "火星移民签证怎么办")
    assert pg.locator("#hit-decision").inner_text() == "没找到"
    pg.context.close()


@pytest.mark.parametrize(("name", "content", "status", "words"), [
    ("big.md", b"# a\n\n" + "很长的文字。".encode() * 200_000, 413, "超过上传上限"),
    ("tool.exe", b"MZ\x90\x00", 415, "不支持 .exe"),
    ("../escape.md", b"# x\n\nok\n", 400, "不能带路径"),
    ("..\\escape.md", b"# x\n\nok\n", 400, "不能带路径"),
    ("empty.md", b"", 400, "空文件"),
    ("blob.md", bytes(range(256)) * 8, 422, "不是 UTF-8"),
    ("fake.pdf", b"# not a pdf", 422, "不是 .pdf"),
    ("residence-permit.txt", b"another file with the same id", 409, "已有文档"),
])
def test_a_bad_upload_is_refused_in_chinese_and_nothing_is_written(
        base: str, docs: Path, tmp_path: Path, name: str, content: bytes, status: int, words: str) -> None:
    before = sorted(p.name for p in docs.iterdir())
    outside = sorted(p.name for p in tmp_path.iterdir())
    client = login(base, "street_chief")
    response = client.post("/api/knowledge/documents", files={"file": (name, content, "application/octet-stream")})
    assert response.status_code == status, response.text
    assert words in response.json()["detail"]
    assert sorted(p.name for p in docs.iterdir()) == before  # no temporary file left either
    assert sorted(p.name for p in tmp_path.iterdir()) == outside
    assert client.get("/api/jobs", params={"kind": "ingest"}).json() == []


def test_the_upload_form_shows_the_refusal_on_the_page(base: str, docs: Path) -> None:
    client = login(base, "street_chief")
    response = client.post("/knowledge/upload", files={"file": ("notes.exe", b"MZ", "application/octet-stream")})
    assert response.status_code == 415
    assert "不支持 .exe 文件" in response.text and "<h2>文档（2）</h2>" in response.text


def test_replace_delete_quarantine_and_scope(base: str, services: Services, docs: Path) -> None:
    assert sorted(services.knowledge_runtime.ingest().added) == ["heating", "residence-permit"]  # as `quanbot ingest`
    street = login(base, "street_chief")
    community = login(base, "fu_admin")
    refused = community.post("/api/knowledge/documents", files={"file": ("a.md", b"# a\n\nb\n", "text/markdown")})
    assert refused.status_code == 403 and "街道账号" in refused.json()["detail"]
    assert community.delete("/api/knowledge/documents/heating").status_code == 403
    changed = "# 冬季供暖服务指南\n\n## 报修\n\n暖气不热请加微信 heat_fix_2024 联系师傅上门。\n\n室温不低于18℃。\n"
    response = street.put("/api/knowledge/documents/heating",
                          files={"file": ("new.md", changed.encode(), "text/markdown")})
    assert response.status_code == 200, response.text
    job = wait_job(street, response.json()["job"]["id"])
    assert job["state"] == "done" and job["result"]["updated"] == ["heating"] and job["result"]["quarantined"] == 1
    held = street.get("/api/knowledge/quarantined").json()
    assert [(q["doc_id"], q["reasons"]) for q in held] == [("heating", ["要求添加私人联系方式"])]
    assert "要求添加私人联系方式" in street.get("/knowledge").text
    listed = {d["doc_id"]: d for d in street.get("/api/knowledge/documents").json()}
    assert listed["heating"]["quarantined"] == 1 and listed["heating"]["chunks"] >= 1
    assert listed["heating"]["ingested_at"] is not None
    gone = street.delete("/api/knowledge/documents/heating")
    assert gone.status_code == 200
    assert wait_job(street, gone.json()["job"]["id"])["result"]["removed"] == ["heating"]
    assert not (docs / "heating.md").exists()
    assert [d["doc_id"] for d in street.get("/api/knowledge/documents").json()] == ["residence-permit"]
    assert street.get("/api/knowledge/quarantined").json() == []
    assert street.delete("/api/knowledge/documents/heating").status_code == 404
    # a community account sees its own jobs only; the street sees them all
    assert community.get(f"/api/jobs/{job['id']}").status_code == 403
    assert len(street.get("/api/jobs").json()) == 2
    assert [e.subject for e in _audits(services.engine, "knowledge_replace")] == ["knowledge:heating"]
    assert [e.subject for e in _audits(services.engine, "knowledge_delete")] == ["knowledge:heating"]


def test_review_queue_fixes_use_curation_and_are_audited(base: str, services: Services, settings: Settings) -> None:
    now = services.clock.now()
    with session_scope(services.engine) as session:
        first = record_miss(session=session, kind="not_found", question="外地人办居住证要啥", retrieved=[],
                            answer_mode="offline", resident_id=None, now=now).id
        second = record_miss(session=session, kind="not_useful", question="测试一下", retrieved=[],
                             answer_mode="offline", resident_id=None, now=now).id
        third = record_miss(session=session, kind="not_found", question="老年卡怎么办", retrieved=[],
                            answer_mode="offline", resident_id=None, now=now).id
    street = login(base, "street_chief")
    assert login(base, "fu_admin").get("/api/knowledge/review").status_code == 403
    assert {i["id"] for i in street.get("/api/knowledge/review").json()} == {first, second, third}
    missing_doc = street.post(f"/api/knowledge/review/{first}/faq",
                              json={"doc": "no-such-doc", "section": "所需材料", "answer": "带身份证。"})
    assert missing_doc.status_code == 400 and "知识库里没有文档" in missing_doc.json()["detail"]
    done = street.post(f"/api/knowledge/review/{first}/faq",
                       json={"doc": "residence-permit", "section": "所需材料", "answer": "带身份证和居住证明。"})
    assert done.status_code == 200, done.text
    assert done.json()["status"] == "resolved" and done.json()["resolved_doc"] == "residence-permit"
    assert "review-" in settings.faq_path.read_text(encoding="utf-8")
    lexicon = street.post(f"/api/knowledge/review/{third}/lexicon", json={"term": "外地人证", "means": ["居住证"]})
    assert lexicon.status_code == 200, lexicon.text
    assert "外地人证: [居住证]" in (settings.policies_dir / "lexicon.yaml").read_text(encoding="utf-8")
    page = street.post(f"/knowledge/review/{second}/dismiss", data={})
    assert page.status_code == 303
    again = street.post(f"/api/knowledge/review/{second}/dismiss")
    assert again.status_code == 409 and "已经忽略过了" in again.json()["detail"]
    assert street.get("/api/knowledge/review").json() == []
    with Session(services.engine) as session:
        assert session.get(ReviewItem, second).status == "dismissed"  # type: ignore[union-attr]
    actors = {e.actor for e in _audits(services.engine, "review_resolve") + _audits(services.engine, "review_dismiss")}
    assert actors == {"admin:web:street_chief"}
