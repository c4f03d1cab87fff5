"""Who may do what to a case: `can(action, case, actor)`, derived from the state machine and the actor's scope.

Owns: `Actor` (a resolved person: a worker, a resident or an admin, named for the audit trail), `actor_for`
(an account to an Actor), `can` and `require`. Scope: the assignee works their case; the supervisor (网格长) of
the case's community and the street command centre may act on any case there; an admin may act anywhere;
extension requests, closing with a note, merging a duplicate and a staff reopen are decided by a supervisor
or an admin, never by the assignee; an admin may be limited to some grids (`Actor.grid_ids`, the console's
community and grid accounts); a resident sees and rates
only their own cases. A refusal is logged (action, case code, actor); it is not written as a CaseEvent
because a refused attempt is not a change of the case.
Must not: change anything.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlmodel import Session

from casestore.accounts import get_account
from casestore.errors import IllegalTransition, PermissionDenied
from casestore.models import Case, CaseStatus, Worker
from casestore.states import TRANSITIONS
from policies.taxonomy import Role

log = logging.getLogger(__name__)

# actions a resident takes on their own case; everything else is staff work
RESIDENT_ACTIONS = frozenset({"view", "confirm", "reopen", "rate"})
# actions decided above the assignee
SUPERVISOR_ACTIONS = frozenset({"approve_extension", "deny_extension", "close", "merge_duplicate"})
# the button and the state machine use different names for two moves
_MOVE_OF = {"extend": "request_extension", "deny_extension": "approve_extension", "rate": "confirm"}


@dataclass(frozen=True)
class Actor:
    label: str  # for the audit trail: "worker:7", "resident:3", "admin:telegram:123"
    worker: Worker | None = None
    resident_id: int | None = None
    is_admin: bool = False
    # an admin limited to these grids (a console account of one community or grid); None: everywhere
    grid_ids: frozenset[str] | None = None


def actor_for(*, session: Session, channel: str, external_id: int | str, is_admin: bool = False) -> Actor:
    """The person behind an account: an active worker, a resident, an admin, or an unknown caller."""
    account = get_account(session=session, channel=channel, external_id=external_id)
    worker = session.get(Worker, account.worker_id) if account is not None and account.worker_id else None
    if worker is not None and not worker.active:
        worker = None
    resident_id = account.resident_id if account is not None else None
    if is_admin:
        return Actor(f"admin:{channel}:{external_id}", worker, resident_id, is_admin=True)
    if worker is not None:
        return Actor(f"worker:{worker.id}", worker)
    if resident_id is not None:
        return Actor(f"resident:{resident_id}", resident_id=resident_id)
    return Actor(f"{channel}:***{str(external_id)[-3:]}")


def _in_scope(actor: Actor, case: Case, *, assignee_allowed: bool) -> bool:
    if actor.is_admin:
        return actor.grid_ids is None or (case.grid_id is not None and case.grid_id in actor.grid_ids)
    worker = actor.worker
    if worker is None or not worker.active:
        return False
    if assignee_allowed and case.assignee_id is not None and worker.id == case.assignee_id:
        return True
    if worker.role == Role.street_command.value:
        return True
    return worker.role == Role.supervisor.value and worker.community_id is not None \
        and worker.community_id == case.community_id


def _state_allows(action: str, case: Case) -> bool:
    if action == "view":
        return True
    move = TRANSITIONS.get(_MOVE_OF.get(action, action))
    if move is None:
        return False
    # 办结 straight from the task push: resolve accepts implicitly (casestore.actions.resolve)
    if action == "resolve" and case.status == CaseStatus.assigned:
        return True
    return CaseStatus(case.status) in move.sources


def allowed_by_role(action: str, case: Case, actor: Actor) -> bool:
    """The scope half of `can`: may this actor do this kind of thing to this case at all?"""
    if actor.resident_id is not None and actor.worker is None and not actor.is_admin:
        return action in RESIDENT_ACTIONS and case.resident_id == actor.resident_id
    if action in SUPERVISOR_ACTIONS:
        return _in_scope(actor, case, assignee_allowed=False)
    if action == "reopen":  # a resident's own move; above the assignee, staff may reopen too (the console)
        return _in_scope(actor, case, assignee_allowed=False)
    if action in RESIDENT_ACTIONS - {"view"}:
        return False  # staff do not rate or confirm for a resident
    return _in_scope(actor, case, assignee_allowed=True)


def can(action: str, case: Case, actor: Actor) -> bool:
    """Whether `actor` may do `action` to `case` now: their scope allows it and the case's state does."""
    return allowed_by_role(action, case, actor) and _state_allows(action, case)


def require(action: str, case: Case, actor: Actor) -> None:
    """PermissionDenied (logged) or IllegalTransition unless `can(action, case, actor)`."""
    if not allowed_by_role(action, case, actor):
        log.warning("refused: %s tried %s on case %s", actor.label, action, case.code)
        raise PermissionDenied(f"{actor.label} may not {action} case {case.code}")
    if not _state_allows(action, case):
        raise IllegalTransition(f"cannot {action} a case that is {case.status}")
