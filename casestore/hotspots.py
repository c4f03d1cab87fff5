"""Hotspots (未诉先办): many reports of one category in one place within a short window are one incident.

Rule (sla.yaml `hotspots`, default 5 in 30m): when a new report makes `count` reports of its category in
its grid (checked first) or in its community within `window`, a Hotspot row is opened, all those cases get
its `cluster_id`, and the community supervisor gets ONE alert (notification kind "hotspot") with the count
and the case codes. A later report of that category in that scope joins the hotspot (cluster_id, count,
codes) without a second alert while the hotspot is active, i.e. while its last report is less than
`window` old (a sliding window: a long outage stays one incident). Duplicate-merged reports count: five
residents reporting one outage is exactly the signal.
Must not: route or page the assignee (intake does); it only clusters and alerts.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlmodel import Session, col

from casestore import notices
from casestore.cases import PlannedAction, apply_action, apply_actions_bulk
from casestore.dispatch import record_notification
from casestore.models import Case, Grid, Hotspot
from casestore.routing import supervisor_for
from policies.models import Policies


def _scopes(case: Case) -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    if case.grid_id:
        out.append((f"grid:{case.grid_id}", col(Case.grid_id) == case.grid_id))
    if case.community_id:
        out.append((f"community:{case.community_id}", col(Case.community_id) == case.community_id))
    return out


def _scope_name(session: Session, policies: Policies, scope: str) -> str:
    kind, _, ident = scope.partition(":")
    if kind == "grid":
        grid = session.get(Grid, ident)
        return grid.name if grid else ident
    return next((c.name for c in policies.grids.communities if c.id == ident), ident)


def check_hotspot(*, session: Session, policies: Policies, case: Case, now: datetime) -> tuple[Hotspot | None, bool]:
    """Join or raise a hotspot for the just-created `case`; returns (hotspot, raised_now)."""
    rule = policies.sla.hotspots
    since = now - rule.window_delta
    scopes = _scopes(case)
    if not scopes:
        return None, False
    active = session.execute(
        select(Hotspot)
        .where(col(Hotspot.scope).in_([s for s, _ in scopes]), col(Hotspot.category) == case.category,
               col(Hotspot.last_report_at) >= since)
        .order_by(col(Hotspot.opened_at).desc()).limit(1)).scalars().first()
    if active is not None:
        active.report_count += 1
        active.case_codes = [*active.case_codes, case.code]
        active.last_report_at = now
        session.add(active)
        session.flush()
        apply_action(session=session, case=case, action="link_hotspot", actor="system", now=now,
                     changes={"cluster_id": active.id}, data={"hotspot": active.id})
        return active, False
    for scope, condition in scopes:
        rows = session.execute(
            select(col(Case.id), col(Case.code), col(Case.version), col(Case.status))
            .where(condition, col(Case.category) == case.category, col(Case.created_at) >= since,
                   col(Case.created_at) <= now, col(Case.cluster_id).is_(None))
            .order_by(col(Case.created_at), col(Case.id))).all()
        if len(rows) < rule.count:
            continue
        hotspot = Hotspot(scope=scope, category=case.category, opened_at=now, last_report_at=now,
                          report_count=len(rows), case_codes=[r.code for r in rows])
        session.add(hotspot)
        session.flush()
        assert hotspot.id is not None
        # version-guarded, one audit event per case; `case` itself is brought up to date after
        apply_actions_bulk(session=session, actor="system", now=now, actions=[
            PlannedAction(case_id=r.id, code=r.code, version=r.version, status=r.status, action="link_hotspot",
                          changes={"cluster_id": hotspot.id}, data={"hotspot": hotspot.id}) for r in rows])
        session.refresh(case)
        supervisor = supervisor_for(session=session, community_id=case.community_id)
        if supervisor is not None:
            message = notices.hotspot_alert(
                hotspot, category_name=policies.taxonomy.name_of(case.category),
                scope_name=_scope_name(session, policies, scope), window_text=rule.window.replace("m", " 分钟")
                .replace("h", " 小时").replace("d", " 天"))
            record_notification(session=session, case_id=case.id, kind="hotspot", level=0,
                                recipient=f"worker:{supervisor.id}",
                                message=message, now=now)
        return hotspot, True
    return None, False


def list_hotspots(*, session: Session, since: datetime | None = None) -> list[Hotspot]:
    stmt = select(Hotspot)
    if since is not None:
        stmt = stmt.where(col(Hotspot.opened_at) >= since)
    return list(session.execute(stmt.order_by(col(Hotspot.opened_at))).scalars())
