"""Who may act on a case: its assignee, the supervisor of the case's community, or an admin.

Owns: `authorize`, which names the actor for the audit trail ("worker:7", "admin:12345") or raises
PermissionDenied. A refusal is logged (action, case code, worker id or a masked telegram id); it is not
written as a CaseEvent because the caller's transaction rolls back on the error, and a refused attempt is
not a change of the case.
Must not: decide whether the action itself is legal (the state machine does).
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from dataclasses import dataclass

from sqlmodel import Session

from casestore.errors import PermissionDenied
from casestore.models import Case, Worker
from casestore.org import get_worker_by_telegram
from policies.taxonomy import Role

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Actor:
    label: str  # for CaseEvent.actor
    worker: Worker | None
    as_assignee: bool = False
    as_supervisor: bool = False
    as_admin: bool = False


def _mask_tg(telegram_id: int | None) -> str:
    s = str(telegram_id or "")
    return f"tg:***{s[-3:]}" if s else "tg:none"


def authorize(*, session: Session, case: Case, telegram_id: int | None, admin_ids: Collection[int], action: str,
              assignee_allowed: bool = True) -> Actor:
    """The actor if `telegram_id` may do `action` on `case`; PermissionDenied (logged) otherwise."""
    worker = get_worker_by_telegram(session=session, telegram_id=telegram_id) if telegram_id is not None else None
    if worker is not None and worker.active:
        if assignee_allowed and case.assignee_id is not None and worker.id == case.assignee_id:
            return Actor(f"worker:{worker.id}", worker, as_assignee=True)
        if worker.role == Role.supervisor.value and worker.community_id is not None \
                and worker.community_id == case.community_id:
            return Actor(f"worker:{worker.id}", worker, as_supervisor=True)
    if telegram_id is not None and telegram_id in set(admin_ids):
        return Actor(f"admin:{telegram_id}", worker, as_admin=True)
    who = f"worker:{worker.id}" if worker is not None else _mask_tg(telegram_id)
    log.warning("refused: %s tried %s on case %s", who, action, case.code)
    raise PermissionDenied(f"{who} may not {action} case {case.code}")
