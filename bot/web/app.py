"""Build the console app: `create_app(services)`.

Owns: the FastAPI app (OpenAPI at /api/openapi.json), the areas it mounts (each `routes/<area>.py` gives an `api`
router, mounted under /api, a `pages` router and its nav entry), static files, security headers, the Chinese
error pages and JSON errors, and the job runner's lifetime.
Must not: hold an area's logic.
"""

from __future__ import annotations

import importlib
import logging
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint

from bot.web.jobs import JobWorker
from bot.web.render import page
from bot.web.security import LoginRequired
from casestore.errors import ConcurrentUpdate, DomainError, IllegalTransition, NotFound, PermissionDenied

if TYPE_CHECKING:
    from bot.services import Services

log = logging.getLogger(__name__)
STATIC_DIR = Path(__file__).parent / "static"
# the areas, in nav order; each is bot/web/routes/<name>.py
AREAS = ("auth", "overview", "cases", "sla", "grids", "knowledge", "evals", "people", "jobs")
CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
       "connect-src 'self'; frame-ancestors 'none'; base-uri 'self'; form-action 'self'")
_STATUS_OF: list[tuple[type[DomainError], int]] = [
    (PermissionDenied, 403), (NotFound, 404), (IllegalTransition, 409), (ConcurrentUpdate, 409)]


def _wants_json(request: Request) -> bool:
    return request.url.path.startswith("/api/") or request.headers.get("hx-request") == "true"


def _error(request: Request, status: int, message: str) -> Response:
    if _wants_json(request):
        return JSONResponse({"detail": message}, status_code=status)
    return page(request, "error.html", None, status_code=status, status=status, message=message)


class _SecurityHeaders(BaseHTTPMiddleware):
    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        response = await call_next(request)
        response.headers.setdefault("Content-Security-Policy", CSP)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        if request.url.path.startswith("/api/") or "text/html" in response.headers.get("content-type", ""):
            response.headers.setdefault("Cache-Control", "no-store")
        return response


def create_app(services: Services, *, run_jobs: bool = True, demo: bool = False) -> FastAPI:
    """The console over `services` (its engine, policies, clock, knowledge); `run_jobs` starts the job runner."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        worker = JobWorker(services) if run_jobs else None
        if worker is not None:
            worker.start()
        try:
            yield
        finally:
            if worker is not None:
                worker.stop()
                worker.join(timeout=10)

    app = FastAPI(title="quanbot 指挥中心控制台 API", version="1", lifespan=lifespan,
                  openapi_url="/api/openapi.json", docs_url="/api/docs", redoc_url=None,
                  description="网格化治理闭环的只读与操作接口。用 `quanbot admin token --username U` 申请令牌，"
                              "以 `Authorization: Bearer <令牌>` 调用；数据范围与该账号相同。")
    app.state.services = services
    app.state.demo = demo
    app.add_middleware(_SecurityHeaders)
    app.mount("/static", StaticFiles(directory=str(STATIC_DIR)), name="static")
    nav: list[tuple[str, str]] = []
    for name in AREAS:
        module: Any = importlib.import_module(f"bot.web.routes.{name}")
        if getattr(module, "api", None) is not None:
            app.include_router(module.api, prefix="/api")
        if getattr(module, "pages", None) is not None:
            app.include_router(module.pages, include_in_schema=False)
        if getattr(module, "NAV", None):
            nav.append(module.NAV)
    app.state.nav = nav

    @app.exception_handler(LoginRequired)
    async def _login(request: Request, _exc: LoginRequired) -> Response:
        if _wants_json(request):
            return JSONResponse({"detail": "请先登录，或在请求头带上 API 令牌（Authorization: Bearer …）。"},
                                status_code=401)
        return RedirectResponse(f"/login?next={request.url.path}", status_code=303)

    @app.exception_handler(DomainError)
    async def _domain(request: Request, exc: DomainError) -> Response:
        status = next((code for kind, code in _STATUS_OF if isinstance(exc, kind)), 400)
        return _error(request, status, exc.user_message)

    @app.exception_handler(HTTPException)
    async def _http(request: Request, exc: HTTPException) -> Response:
        message = exc.detail if isinstance(exc.detail, str) else "请求没有成功。"
        if exc.status_code == 404 and message == "Not Found":
            message = "没有这个页面。"
        elif exc.status_code == 405:
            message = "不支持这种请求方式。"
        response = _error(request, exc.status_code, message)
        for key, value in (exc.headers or {}).items():
            response.headers[key] = value
        return response

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> Response:
        fields = "、".join(sorted({str(e.get("loc", ["?"])[-1]) for e in exc.errors()})) or "请求"
        return _error(request, 422, f"请求的内容不对：请检查 {fields}。")

    @app.exception_handler(Exception)
    async def _crash(request: Request, exc: Exception) -> Response:
        ref = uuid.uuid4().hex[:8]
        log.error("console %s %s failed [ref %s]", request.method, request.url.path, ref, exc_info=exc)
        return _error(request, 500, f"服务器出错了（编号 {ref}），请稍后再试；多次出现请联系管理员。")

    @app.get("/favicon.ico", include_in_schema=False)
    async def _favicon() -> Response:
        return Response(status_code=204)

    return app


__all__ = ["create_app"]
