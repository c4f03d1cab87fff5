"""A grid team's own commands and aids in the worker's chat: /leave and /back, and the 常用语 quick replies.

Owns: what /leave and /back say (the change itself is casestore.staff.set_leave, the one place leave lives, audited,
so the console and a grids.yaml sync see the same state), and which quick-reply buttons a note or a reply to a
resident offers (policies/quick_replies.yaml, by the case's category; a button carries the phrase's index only).
Must not: route cases (casestore.routing reads the leave) or change a case (worker.py sends the chosen phrase on
through the same note and relay steps as typed words).
"""

from __future__ import annotations

from typing import Literal

from bot.dialogue import texts
from bot.dialogue.turn import Turn
from casestore.cases import list_open_cases_for_worker
from casestore.models import Case, Worker
from casestore.notify import Button
from casestore.staff import set_leave

QUICK = "wquick"  # the step button of a quick reply; its arg is the phrase's index
QuickKind = Literal["respond", "relay"]


def on_leave(turn: Turn, worker: Worker) -> None:
    """/leave: new cases pass to the rest of the team (routing skips anyone on leave); the digest pauses."""
    assert worker.id is not None
    if not set_leave(session=turn.session, worker=worker, on_leave=True, actor=f"worker:{worker.id}", now=turn.now):
        turn.say(texts.LEAVE_ALREADY)
        return
    held = len(list_open_cases_for_worker(session=turn.session, worker_id=worker.id))
    turn.say(texts.LEAVE_ON + (texts.LEAVE_HELD.format(n=held) if held else ""))


def on_back(turn: Turn, worker: Worker) -> None:
    """/back: new cases come to this worker again."""
    assert worker.id is not None
    if set_leave(session=turn.session, worker=worker, on_leave=False, actor=f"worker:{worker.id}", now=turn.now):
        turn.say(texts.LEAVE_OFF)
    else:
        turn.say(texts.LEAVE_NOT_ON)


def phrases(turn: Turn, case: Case, kind: QuickKind) -> list[str]:
    return turn.services.policies.quick_replies.phrases(case.category, kind)


def quick_rows(turn: Turn, case: Case, kind: QuickKind) -> list[list[Button]]:
    """The category's quick replies as buttons, two a row (none when quick_replies.yaml has none)."""
    buttons = [Button(p, QUICK, None, str(i)) for i, p in enumerate(phrases(turn, case, kind))]
    return [buttons[i:i + 2] for i in range(0, len(buttons), 2)]


def quick_phrase(turn: Turn, case: Case, kind: QuickKind, arg: str) -> str | None:
    """The phrase a quick-reply button stands for; None for a forged or stale index."""
    options = phrases(turn, case, kind)
    if not arg.isdigit() or len(arg) > 2 or int(arg) >= len(options):
        return None
    return options[int(arg)]
