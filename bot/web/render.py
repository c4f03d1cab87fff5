"""The console's Jinja2 templates and their filters: local times, percentages, minutes.

Owns: `templates`, `page(...)` (renders a page with the signed-in person, the scope, the CSRF token and the
nav). Jinja2 autoescapes every value, so a resident's words or a case title render as text, never as markup.
Must not: compute figures.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from bot.web.security import Staff

TEMPLATES_DIR = Path(__file__).parent / "templates"
templates = Jinja2Templates(directory=str(TEMPLATES_DIR))



def _local(value: datetime | None, fmt: str = "%m-%d %H:%M", tz: str = "Asia/Shanghai") -> str:
    if value is None:
        return "—"
    return value.astimezone(ZoneInfo(tz)).strftime(fmt)


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:.0f}%"


def _num(value: float | None, fmt: str = "{:.0f}") -> str:
    return "—" if value is None else fmt.format(value)


templates.env.filters["local"] = _local
templates.env.filters["pct"] = _pct
templates.env.filters["num"] = _num


def page(request: Request, name: str, staff: Staff | None, *, status_code: int = 200,
         **context: Any) -> HTMLResponse:
    """Render `name` with the common context (who, scope, CSRF token, nav, current path)."""
    base = {"staff": staff, "scope": staff.scope if staff else None, "csrf": staff.csrf_token if staff else "",
            "nav": getattr(request.app.state, "nav", []), "path": request.url.path,
            "demo": getattr(request.app.state, "demo", False),
            "demo_note": getattr(getattr(request.app.state.services, "clock", None), "demo_note", "")}
    return templates.TemplateResponse(request, name, {**base, **context}, status_code=status_code)
