"""知识库: the documents of KNOWLEDGE_DIR (upload, replace, delete, then incremental ingestion as a background
job), the quarantined passages, hit testing and the review queue of missed questions.

Owns: the 知识库 pages and `/api/knowledge/*`, and the `ingest` job. File checks and writes are knowledge.library's;
ingestion is the services' KnowledgeRuntime's; a review item's fix is bot.curation's (the functions `quanbot review`
uses). Scope: every console account may read the document list and the quarantine and run hit tests (the
knowledge base is the street's, one for all); only street accounts change documents. The review queue records
the resident, not their community, so it is street-only as well.
Every change is audited (`knowledge_upload` / `knowledge_replace` / `knowledge_delete`, the review item's own
`review_resolve` / `review_dismiss`) with the console account as actor.
Must not: ingest in the request (it queues a job) or write a file itself.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, File, Form, Query, Request, UploadFile
from fastapi.responses import JSONResponse, RedirectResponse, Response
from pydantic import BaseModel, Field
from sqlmodel import Session

from bot.curation import (
    CurationError,
    CurationPaths,
    dismiss,
    resolve_with_faq,
    resolve_with_lexicon,
    resolve_with_scope,
)
from bot.web.jobs import JobContext, job_runner
from bot.web.render import page
from bot.web.routes.jobs import JobPublic, job_public
from bot.web.security import DbDep, RowId, Staff, StaffDep
from casestore.audit import record_audit
from casestore.errors import DomainError, PermissionDenied
from casestore.jobs import enqueue_job, list_jobs
from casestore.models import JobState, ReviewItem
from casestore.review import list_items
from knowledge.ingest import list_quarantined
from knowledge.library import (
    SUFFIX_LABELS,
    LibraryError,
    LibraryFile,
    delete_document,
    list_files,
    replace_document,
    save_document,
)
from policies.masking import mask_text

NAV = ("/knowledge", "知识库")

api = APIRouter(tags=["知识库"])
pages = APIRouter()

STATUS_OF_ERROR = {"bad_name": 400, "bad_type": 415, "too_large": 413, "empty": 400, "unreadable": 422,
                   "exists": 409, "missing": 404}
REVIEW_KIND_LABELS = {"not_found": "没找到", "not_useful": "被评“没用”", "handoff_after_answer": "答后转人工",
                      "clarify_unpicked": "澄清未选"}
MODE_LABELS = {"faq": "常见问题", "offline": "离线摘录", "llm": "大模型", "offline_fallback": "离线摘录（大模型失败）",
               "clarify": "澄清"}
MAX_QUESTION = 500


# ---------------- the ingest job ----------------
@job_runner("ingest")
def run_ingest(ctx: JobContext) -> dict[str, Any]:
    """Incremental ingestion of KNOWLEDGE_DIR through the process's knowledge runtime (its retriever refreshes)."""
    def progress(done: int, total: int, name: str) -> None:
        ctx.progress(done / total if total else 1.0, f"入库 {done}/{total}" + (f"：{name}" if name else ""))

    ctx.progress(0.0, "正在读取文档…")
    report = ctx.services.knowledge_runtime.ingest(progress=progress)
    return {"added": report.added, "updated": report.updated, "unchanged": len(report.unchanged),
            "removed": report.removed, "failed": [{"name": n, "reason": r} for n, r in report.failed],
            "quarantined": len(report.quarantined), "chunks_written": report.chunks_written,
            "seconds": round(report.seconds, 2)}


# ---------------- models ----------------
class DocumentRow(BaseModel):
    doc_id: str
    name: str
    title: str
    type: str
    size: int
    chunks: int
    quarantined: int
    indexed: bool
    modified_at: datetime
    ingested_at: datetime | None


class QuarantinedRow(BaseModel):
    doc_id: str
    title: str
    section: str
    line: int
    reasons: list[str]
    text: str


class ChangeResult(BaseModel):
    document: str
    job: JobPublic


class HitChunk(BaseModel):
    doc_id: str
    title: str
    section: str
    score: float
    dense: float
    bm25: float
    lexical: float
    text: str


class CitationRow(BaseModel):
    doc_id: str
    title: str
    section: str
    score: float


class HitTest(BaseModel):
    question: str
    answerable: bool
    decision: str  # 回答 / 澄清 / 没找到
    evidence: dict[str, float | bool | None]
    expansions: list[str]
    chunks: list[HitChunk]
    answer: str
    answer_more: str
    answered: bool
    mode: str
    mode_label: str
    citations: list[CitationRow]
    clarify: list[CitationRow]


class HitQuestion(BaseModel):
    question: str = Field(min_length=1, max_length=MAX_QUESTION)


class ReviewRow(BaseModel):
    id: int
    kind: str
    kind_label: str
    question: str
    next_message: str | None
    answer_mode: str
    retrieved: list[dict[str, Any]]
    created_at: datetime


class FaqFix(BaseModel):
    doc: str = Field(max_length=200)
    section: str = Field(max_length=200)
    answer: str = Field(max_length=4000)


class ScopeFix(BaseModel):
    in_scope: bool
    doc: str | None = Field(default=None, max_length=200)


class LexiconFix(BaseModel):
    term: str = Field(max_length=100)
    means: list[str] = Field(max_length=10)
    doc: str | None = Field(default=None, max_length=200)


class ReviewDone(BaseModel):
    id: int
    status: str
    resolution: str | None
    resolved_doc: str | None
    note: str


# ---------------- reading ----------------
def _root(request: Request) -> Path:
    return Path(request.app.state.services.settings.knowledge_dir)


def _require_street(staff: Staff, what: str) -> None:
    if not staff.scope.is_street:
        raise PermissionDenied(f"{what}: street only", f"只有街道账号可以{what}。")


def _ingested_at(session: Session) -> dict[str, datetime]:
    """When a console ingest job last wrote each document (documents ingested from the terminal have none)."""
    seen: dict[str, datetime] = {}
    for job in list_jobs(session=session, kind="ingest", limit=200):
        if job.state != JobState.done.value or job.finished_at is None:
            continue
        for doc_id in [*job.result.get("added", []), *job.result.get("updated", [])]:
            seen.setdefault(str(doc_id), job.finished_at)
    return seen


def _documents(request: Request, session: Session) -> tuple[list[DocumentRow], list[QuarantinedRow]]:
    services = request.app.state.services
    root = _root(request)
    _, store = services.knowledge_runtime.components()
    counts: dict[str, int] = {}
    titles: dict[str, str] = {}
    for chunk in store.all_chunks():
        doc_id = str(chunk.metadata.get("doc_id", ""))
        counts[doc_id] = counts.get(doc_id, 0) + 1
        titles.setdefault(doc_id, str(chunk.metadata.get("title", "")))
    held = list_quarantined(store, root) if root.is_dir() else []
    manifest = store.list_manifest()
    ingested = _ingested_at(session)
    quarantined = [QuarantinedRow(doc_id=q.doc_id, title=q.title, section=q.section, line=q.line,
                                  reasons=[r.label for r in q.reasons], text=mask_text(q.text)[:300]) for q in held]
    rows = []
    for f in list_files(root):
        rows.append(DocumentRow(
            doc_id=f.doc_id, name=f.name, title=titles.get(f.doc_id) or next(
                (q.title for q in held if q.doc_id == f.doc_id), "") or f.doc_id,
            type=f.suffix.lstrip(".").upper(), size=f.size, chunks=counts.get(f.doc_id, 0),
            quarantined=sum(1 for q in held if q.doc_id == f.doc_id), indexed=f.doc_id in manifest,
            modified_at=f.modified_at, ingested_at=ingested.get(f.doc_id)))
    return rows, quarantined


def _queue_ingest(request: Request, staff: Staff, session: Session, action: str, changed: LibraryFile) -> JobPublic:
    now = request.app.state.services.clock.now()
    job = enqueue_job(session=session, kind="ingest", params={"reason": action, "doc": changed.doc_id},
                      actor=staff.actor, now=now)
    record_audit(session=session, actor=staff.actor, action=f"knowledge_{action}",
                 subject=f"knowledge:{changed.doc_id}", now=now,
                 data={"name": changed.name, "size": changed.size, "job": job.id})
    return job_public(job)


def _read_upload(request: Request, upload: UploadFile) -> tuple[str, bytes, int]:
    """The upload's name, its first max+1 bytes (never more in memory) and its size."""
    limit = request.app.state.services.settings.web_max_upload_mb * 1024 * 1024
    data = upload.file.read(limit + 1)
    size = upload.size if upload.size is not None else len(data)
    return upload.filename or "", data, size


def _change(request: Request, staff: Staff, session: Session, action: str, upload: UploadFile | None,
            doc_id: str | None = None) -> ChangeResult:
    _require_street(staff, "修改知识库文档")
    root = _root(request)
    limit = request.app.state.services.settings.web_max_upload_mb * 1024 * 1024
    if action == "delete":
        assert doc_id is not None
        changed = delete_document(root, doc_id)
    else:
        if upload is None:
            raise LibraryError("empty", "请选择要上传的文件。")
        name, data, size = _read_upload(request, upload)
        if action == "upload":
            root.mkdir(parents=True, exist_ok=True)
            changed = save_document(root, name, data, max_bytes=limit, size=size)
        else:
            assert doc_id is not None
            changed = replace_document(root, doc_id, name, data, max_bytes=limit, size=size)
    return ChangeResult(document=changed.doc_id, job=_queue_ingest(request, staff, session, action, changed))


def _library_error(exc: LibraryError) -> JSONResponse:
    return JSONResponse({"detail": str(exc)}, status_code=STATUS_OF_ERROR.get(exc.code, 400))


def hit_test(request: Request, question: str) -> HitTest:
    """What the knowledge service retrieves for `question`, its decision and the answer a resident would get."""
    service = request.app.state.services.knowledge_runtime.service()
    question = question.strip()[:MAX_QUESTION]
    result = service.retriever.search(question, k=8)
    answer = service.ask(question)
    decision = "回答" if answer.answered else ("澄清" if answer.mode == "clarify" else "没找到")
    evidence: dict[str, float | bool | None] = {}
    if result.evidence is not None:
        evidence = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in asdict(result.evidence).items()}
    chunks = [HitChunk(doc_id=h.doc_id, title=str(h.chunk.metadata.get("title", "")),
                       section=str(h.chunk.metadata.get("section", "")), score=round(h.score, 5),
                       dense=round(h.dense, 4), bm25=round(h.bm25, 3), lexical=round(h.lexical, 3),
                       text=mask_text(h.chunk.text)[:400]) for h in result.hits]

    def rows(items: list[Any]) -> list[CitationRow]:
        return [CitationRow(doc_id=c.doc_id, title=c.title, section=c.section, score=round(c.score, 4)) for c in items]

    return HitTest(question=question, answerable=result.answerable, decision=decision, evidence=evidence,
                   expansions=list(result.expansions), chunks=chunks, answer=answer.text, answer_more=answer.more,
                   answered=answer.answered, mode=answer.mode, mode_label=MODE_LABELS.get(answer.mode, answer.mode),
                   citations=rows(answer.citations), clarify=rows(answer.clarify))


def _review_rows(session: Session, limit: int = 100) -> list[ReviewRow]:
    return [ReviewRow(id=i.id or 0, kind=i.kind, kind_label=REVIEW_KIND_LABELS.get(i.kind, i.kind), question=i.question,
                      next_message=i.next_message, answer_mode=i.answer_mode, retrieved=list(i.retrieved),
                      created_at=i.created_at) for i in list_items(session=session, limit=limit)]


def _fix(request: Request, staff: Staff, session: Session, item_id: int, how: str, **options: Any) -> ReviewDone:
    _require_street(staff, "处理待审问题")
    services = request.app.state.services
    now = services.clock.now()
    try:
        if how == "dismiss":
            item = dismiss(session=session, item_id=item_id, by=staff.actor, now=now)
        else:
            fixes: dict[str, Callable[..., ReviewItem]] = {
                "faq": resolve_with_faq, "scope": resolve_with_scope, "lexicon": resolve_with_lexicon}
            fix = fixes[how]
            item = fix(session=session, item_id=item_id, paths=CurationPaths.of(services.settings), by=staff.actor,
                       now=now, **options)
    except CurationError as exc:
        raise DomainError(f"curation: {exc}", str(exc)) from None
    notes = {"faq": "已加入常见问题", "scope": "已加为范围示例", "lexicon": "已加入词表", "dismiss": "已忽略"}
    note = notes[how] + ("；机器人重启后生效" if how != "dismiss" else "")
    return ReviewDone(id=item_id, status=item.status, resolution=item.resolution, resolved_doc=item.resolved_doc,
                      note=note)


# ---------------- API ----------------
@api.get("/knowledge/documents", response_model=list[DocumentRow], summary="知识库文档列表")
def documents_api(request: Request, _staff: StaffDep, session: DbDep) -> list[DocumentRow]:
    return _documents(request, session)[0]


@api.post("/knowledge/documents", response_model=ChangeResult, status_code=201, summary="上传文档（随后后台入库）",
          responses={400: {}, 409: {}, 413: {}, 415: {}, 422: {}})
def upload_api(request: Request, staff: StaffDep, session: DbDep,
               file: Annotated[UploadFile, File(description="md/txt/html/pdf/docx")]) -> Any:
    try:
        return _change(request, staff, session, "upload", file)
    except LibraryError as exc:
        return _library_error(exc)


@api.put("/knowledge/documents/{doc_id:path}", response_model=ChangeResult, summary="替换文档（随后后台入库）",
         responses={400: {}, 404: {}, 413: {}, 415: {}, 422: {}})
def replace_api(request: Request, staff: StaffDep, session: DbDep, doc_id: str,
                file: Annotated[UploadFile, File()]) -> Any:
    try:
        return _change(request, staff, session, "replace", file, doc_id)
    except LibraryError as exc:
        return _library_error(exc)


@api.delete("/knowledge/documents/{doc_id:path}", response_model=ChangeResult, summary="删除文档（随后后台入库）",
            responses={404: {}})
def delete_api(request: Request, staff: StaffDep, session: DbDep, doc_id: str) -> Any:
    try:
        return _change(request, staff, session, "delete", None, doc_id)
    except LibraryError as exc:
        return _library_error(exc)


@api.get("/knowledge/quarantined", response_model=list[QuarantinedRow], summary="隔离待审的段落及原因")
def quarantined_api(request: Request, _staff: StaffDep, session: DbDep) -> list[QuarantinedRow]:
    return _documents(request, session)[1]


@api.post("/knowledge/hit-test", response_model=HitTest, summary="命中测试：检索结果、得分、拒答判断与答案")
def hit_test_api(request: Request, _staff: StaffDep, body: HitQuestion) -> HitTest:
    return hit_test(request, body.question)


@api.get("/knowledge/review", response_model=list[ReviewRow], summary="待审问题（知识库没答上的）")
def review_api(staff: StaffDep, session: DbDep,
               limit: Annotated[int, Query(ge=1, le=500)] = 100) -> list[ReviewRow]:
    _require_street(staff, "查看待审问题")
    return _review_rows(session, limit)


@api.post("/knowledge/review/{item_id}/faq", response_model=ReviewDone, summary="待审问题 → 常见问题")
def review_faq_api(request: Request, staff: StaffDep, session: DbDep, item_id: RowId, body: FaqFix) -> ReviewDone:
    return _fix(request, staff, session, item_id, "faq", doc=body.doc, section=body.section, answer=body.answer)


@api.post("/knowledge/review/{item_id}/scope", response_model=ReviewDone, summary="待审问题 → 范围示例")
def review_scope_api(request: Request, staff: StaffDep, session: DbDep, item_id: RowId, body: ScopeFix) -> ReviewDone:
    return _fix(request, staff, session, item_id, "scope", in_scope=body.in_scope, doc=body.doc)


@api.post("/knowledge/review/{item_id}/lexicon", response_model=ReviewDone, summary="待审问题 → 词表")
def review_lexicon_api(request: Request, staff: StaffDep, session: DbDep, item_id: RowId,
                       body: LexiconFix) -> ReviewDone:
    return _fix(request, staff, session, item_id, "lexicon", term=body.term, means=body.means, doc=body.doc)


@api.post("/knowledge/review/{item_id}/dismiss", response_model=ReviewDone, summary="忽略待审问题")
def review_dismiss_api(request: Request, staff: StaffDep, session: DbDep, item_id: RowId) -> ReviewDone:
    return _fix(request, staff, session, item_id, "dismiss")


# ---------------- pages ----------------
def _knowledge_page(request: Request, staff: Staff, session: Session, *, error: str = "", job_id: int | None = None,
                    status_code: int = 200) -> Response:
    documents, quarantined = _documents(request, session)
    settings = request.app.state.services.settings
    return page(request, "knowledge.html", staff, status_code=status_code, documents=documents,
                quarantined=quarantined, error=error, job_id=job_id, max_mb=settings.web_max_upload_mb,
                kinds=SUFFIX_LABELS, tab="documents")


@pages.get("/knowledge")
def knowledge_page(request: Request, staff: StaffDep, session: DbDep,
                   job: Annotated[int | None, Query(ge=1)] = None) -> Response:
    return _knowledge_page(request, staff, session, job_id=job)


def _page_change(request: Request, staff: Staff, session: Session, action: str, upload: UploadFile | None,
                 doc_id: str | None = None) -> Response:
    try:
        done = _change(request, staff, session, action, upload, doc_id)
    except LibraryError as exc:
        return _knowledge_page(request, staff, session, error=str(exc),
                               status_code=STATUS_OF_ERROR.get(exc.code, 400))
    return RedirectResponse(f"/knowledge?job={done.job.id}", status_code=303)


@pages.post("/knowledge/upload")
def upload_page(request: Request, staff: StaffDep, session: DbDep,
                file: Annotated[UploadFile | None, File()] = None) -> Response:
    return _page_change(request, staff, session, "upload", file)


@pages.post("/knowledge/documents/{doc_id:path}/replace")
def replace_page(request: Request, staff: StaffDep, session: DbDep, doc_id: str,
                 file: Annotated[UploadFile | None, File()] = None) -> Response:
    return _page_change(request, staff, session, "replace", file, doc_id)


@pages.post("/knowledge/documents/{doc_id:path}/delete")
def delete_page(request: Request, staff: StaffDep, session: DbDep, doc_id: str) -> Response:
    return _page_change(request, staff, session, "delete", None, doc_id)


@pages.get("/knowledge/hit-test")
def hit_test_page(request: Request, staff: StaffDep,
                  q: Annotated[str, Query(max_length=MAX_QUESTION)] = "") -> Response:
    result = hit_test(request, q) if q.strip() else None
    return page(request, "knowledge_hit.html", staff, q=q, result=result, tab="hit")


@pages.get("/knowledge/review")
def review_page(request: Request, staff: StaffDep, session: DbDep,
                done: Annotated[str, Query(max_length=200)] = "") -> Response:
    items = _review_rows(session) if staff.scope.is_street else []
    docs = [f.doc_id for f in list_files(_root(request))]
    return page(request, "knowledge_review.html", staff, items=items, docs=docs, done=done, tab="review")


@pages.post("/knowledge/review/{item_id}/{how}")
def review_action_page(request: Request, staff: StaffDep, session: DbDep, item_id: RowId, how: str,
                       doc: Annotated[str, Form(max_length=200)] = "",
                       section: Annotated[str, Form(max_length=200)] = "",
                       answer: Annotated[str, Form(max_length=4000)] = "",
                       scope: Annotated[str, Form(max_length=10)] = "",
                       term: Annotated[str, Form(max_length=100)] = "",
                       means: Annotated[str, Form(max_length=500)] = "") -> Response:
    options: dict[str, Any]
    if how == "faq":
        options = {"doc": doc, "section": section, "answer": answer}
    elif how == "scope":
        options = {"in_scope": scope == "in", "doc": doc or None}
    elif how == "lexicon":
        options = {"term": term, "means": means.replace("，", ",").replace("、", ",").split(","),
                   "doc": doc or None}
    elif how == "dismiss":
        options = {}
    else:
        raise DomainError(f"unknown review action {how}", "不支持这种处理方式。")
    result = _fix(request, staff, session, item_id, how, **options)
    return RedirectResponse(f"/knowledge/review?done={quote(f'第 {item_id} 条{result.note}')}", status_code=303)
