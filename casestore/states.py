"""The case state machine, in one place. Every other module asks this one whether a move is legal."""

from __future__ import annotations

from dataclasses import dataclass

from casestore.errors import IllegalTransition
from casestore.models import CaseStatus as S

OPEN = frozenset({S.new, S.assigned, S.accepted, S.in_progress, S.reopened})


@dataclass(frozen=True)
class Move:
    sources: frozenset[S]
    target: S | None  # None: the status stays as it is (the event is still recorded)


TRANSITIONS: dict[str, Move] = {
    "assign": Move(frozenset({S.new, S.reopened}), S.assigned),
    "accept": Move(frozenset({S.assigned}), S.accepted),
    "respond": Move(frozenset({S.assigned, S.accepted, S.in_progress}), S.in_progress),
    "start": Move(frozenset({S.accepted}), S.in_progress),
    "resolve": Move(frozenset({S.accepted, S.in_progress}), S.resolved),
    "confirm": Move(frozenset({S.resolved}), S.closed),
    "auto_close": Move(frozenset({S.resolved}), S.closed),
    "reopen": Move(frozenset({S.resolved, S.closed}), S.reopened),
    "transfer": Move(frozenset({S.assigned, S.accepted, S.in_progress, S.reopened}), S.assigned),
    "escalate": Move(OPEN, None),
    "request_extension": Move(frozenset({S.assigned, S.accepted, S.in_progress}), None),
    "approve_extension": Move(frozenset({S.assigned, S.accepted, S.in_progress}), None),
    # at intake (new) or later from the console, while the report is still open
    "merge_duplicate": Move(OPEN, S.closed),
    # staff close a case with a note (the console): open or waiting for the resident's rating
    "close": Move(OPEN | {S.resolved}, S.closed),
    "withdraw": Move(OPEN, S.closed),
    "note": Move(OPEN | {S.resolved}, None),
    # a report joins a hotspot (未诉先办) whatever its status: a merged duplicate is closed and still counts
    "link_hotspot": Move(frozenset(S), None),
}


def next_status(current: str, action: str) -> S:
    """The status after `action`, or IllegalTransition naming the state and the action."""
    move = TRANSITIONS.get(action)
    if move is None:
        raise IllegalTransition(f"unknown action {action!r}")
    status = S(current)
    if status not in move.sources:
        raise IllegalTransition(f"cannot {action} a case that is {status.value}")
    return move.target or status
