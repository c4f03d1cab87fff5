"""Every legal and every illegal transition of the case state machine."""

from __future__ import annotations

import pytest

from casestore.errors import IllegalTransition
from casestore.models import CaseStatus as S
from casestore.states import TRANSITIONS, next_status

LEGAL = {
    ("assign", S.new): S.assigned, ("assign", S.reopened): S.assigned,
    ("accept", S.assigned): S.accepted,
    ("respond", S.assigned): S.in_progress, ("respond", S.accepted): S.in_progress,
    ("respond", S.in_progress): S.in_progress,
    ("start", S.accepted): S.in_progress,
    ("resolve", S.accepted): S.resolved, ("resolve", S.in_progress): S.resolved,
    ("confirm", S.resolved): S.closed, ("auto_close", S.resolved): S.closed,
    ("reopen", S.resolved): S.reopened, ("reopen", S.closed): S.reopened,
    ("transfer", S.assigned): S.assigned, ("transfer", S.accepted): S.assigned,
    ("transfer", S.in_progress): S.assigned, ("transfer", S.reopened): S.assigned,
    **{("escalate", s): s for s in (S.new, S.assigned, S.accepted, S.in_progress, S.reopened)},
    **{("request_extension", s): s for s in (S.assigned, S.accepted, S.in_progress)},
    **{("approve_extension", s): s for s in (S.assigned, S.accepted, S.in_progress)},
    **{("merge_duplicate", s): S.closed for s in (S.new, S.assigned, S.accepted, S.in_progress, S.reopened)},
    **{("close", s): S.closed for s in (S.new, S.assigned, S.accepted, S.in_progress, S.reopened, S.resolved)},
    **{("withdraw", s): S.closed for s in (S.new, S.assigned, S.accepted, S.in_progress, S.reopened)},
    **{("note", s): s for s in (S.new, S.assigned, S.accepted, S.in_progress, S.reopened, S.resolved)},
    **{("link_hotspot", s): s for s in S},
}

ALL = [(a, s) for a in TRANSITIONS for s in S]


def test_table_covers_every_action() -> None:
    assert {a for a, _ in LEGAL} == set(TRANSITIONS)


@pytest.mark.parametrize(("action", "status"), ALL, ids=[f"{a}-{s.value}" for a, s in ALL])
def test_transition(action: str, status: S) -> None:
    if (action, status) in LEGAL:
        assert next_status(status.value, action) == LEGAL[(action, status)]
    else:
        with pytest.raises(IllegalTransition) as info:
            next_status(status.value, action)
        assert status.value in str(info.value) and action in str(info.value)
        assert info.value.user_message  # a person gets a Chinese sentence, not a traceback


def test_unknown_action() -> None:
    with pytest.raises(IllegalTransition):
        next_status("new", "teleport")
