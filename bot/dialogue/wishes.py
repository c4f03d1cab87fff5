"""The 微心愿 wall in the conversation: a volunteer's or party member's 认领心愿 / 汇报进展 / 已完成 buttons and the
/wishes list, and the resident's 心愿达成 / 还没有.

Owns: the steps (the progress note waits in state `wish_note`, the wish's case code in `data.wish_note`) and what
each person is told. Who may claim, the one claim that wins, and every change with its audit event are
`casestore.wishes`; each call runs in a savepoint, so a refusal changes nothing.
Must not: change a wish or a case any other way than through casestore.wishes.
"""

from __future__ import annotations

from collections.abc import Callable

from bot.dialogue import texts
from bot.dialogue.state import State
from bot.dialogue.turn import Turn
from casestore import wishes
from casestore.errors import DomainError
from casestore.models import Wish, WishStatus, Worker
from casestore.notify import Button


def _run(turn: Turn, change: Callable[[], object]) -> object | None:
    """One casestore.wishes call in a savepoint; a refusal is told in Chinese and nothing changes."""
    try:
        with turn.session.begin_nested():
            return change()
    except DomainError as exc:
        turn.say(exc.user_message)
    return None


def _code(turn: Turn) -> str | None:
    btn = turn.incoming.button
    return btn.case_code if btn is not None and btn.case_code else None


# ---------------------------------------------------------------- volunteers and party members
def on_claim(turn: Turn, worker: Worker) -> None:
    code = _code(turn)
    if code is None:
        turn.expired()
        return
    svc = turn.services
    result = _run(turn, lambda: wishes.claim_wish(session=turn.session, policies=svc.policies, code=code,
                                                  worker=worker, clock=svc.clock))
    if not isinstance(result, wishes.ClaimResult):
        return
    if result.won:
        turn.say(texts.WISH_CLAIMED.format(code=code, text=result.wish.text), wishes.claimer_buttons(code))
    else:
        turn.say(result.message)


def on_progress(turn: Turn, worker: Worker) -> None:
    code = _code(turn)
    if code is None:
        turn.expired()
        return
    found = _run(turn, lambda: wishes.get_wish(session=turn.session, code=code))
    if not isinstance(found, tuple):
        return
    wish: Wish = found[0]
    if wish.claimed_by != worker.id:
        turn.say(wishes.NOT_CLAIMER)
    elif wish.status not in (WishStatus.claimed, WishStatus.done):
        turn.say(wishes.WISH_CLOSED)
    else:
        turn.data.wish_note = code
        turn.go(State.wish_note)
        turn.say(texts.ASK_WISH_PROGRESS.format(code=code), [[Button(texts.BTN_CANCEL, "wcancel")]])


def on_note(turn: Turn, worker: Worker, text: str) -> None:
    """The progress note typed after 汇报进展."""
    code = turn.data.wish_note
    if not text.strip():
        turn.say(texts.WISH_NOTE_EMPTY, [[Button(texts.BTN_CANCEL, "wcancel")]])
        return
    turn.go(State.idle)
    turn.data.wish_note = None
    if code is None:
        turn.expired()
        return
    if _run(turn, lambda: wishes.report_progress(session=turn.session, code=code, worker=worker, note=text,
                                                 clock=turn.services.clock)) is not None:
        turn.say(texts.WISH_PROGRESS_SENT.format(code=code), wishes.claimer_buttons(code))


def on_done(turn: Turn, worker: Worker) -> None:
    code = _code(turn)
    if code is None:
        turn.expired()
        return
    if _run(turn, lambda: wishes.report_done(session=turn.session, code=code, worker=worker,
                                             clock=turn.services.clock)) is not None:
        turn.say(texts.WISH_DONE_SENT.format(code=code))


def show_wall(turn: Turn, worker: Worker) -> None:
    """/wishes: the open wishes this person may claim and the ones they hold, each with its button."""
    listed = wishes.list_wall(session=turn.session, worker=worker)
    if not listed:
        turn.say(texts.WISH_WALL_EMPTY)
        return
    turn.say(texts.WISH_WALL_HEADER)
    for wish, case in listed:
        line = texts.WISH_WALL_ITEM.format(code=case.code, kind=wishes.KIND_ZH.get(wish.kind, wish.kind),
                                           status=wishes.STATUS_ZH.get(WishStatus(wish.status), wish.status),
                                           text=wish.text)
        buttons = (wishes.claimer_buttons(case.code) if wish.claimed_by == worker.id
                   else [[Button(texts.BTN_WISH_CLAIM, "wclaim", case.code)]])
        turn.say(line, buttons)


WORKER_BUTTONS: dict[str, Callable[[Turn, Worker], None]] = {
    "wclaim": on_claim, "wprog": on_progress, "wdone": on_done,
}


# ---------------------------------------------------------------- the resident
def _resident_id(turn: Turn) -> int | None:
    resident = turn.resident()
    return resident.id if resident is not None else None


def on_fulfilled(turn: Turn, arg: str) -> None:
    code, rid = _code(turn), _resident_id(turn)
    if code is None or rid is None:
        turn.expired()
        return
    if _run(turn, lambda: wishes.confirm_fulfilled(session=turn.session, code=code, resident_id=rid,
                                                   clock=turn.services.clock)) is not None:
        turn.say(texts.WISH_FULFILLED.format(code=code))


def on_not_yet(turn: Turn, arg: str) -> None:
    code, rid = _code(turn), _resident_id(turn)
    if code is None or rid is None:
        turn.expired()
        return
    if _run(turn, lambda: wishes.not_yet(session=turn.session, code=code, resident_id=rid,
                                         clock=turn.services.clock)) is not None:
        turn.say(texts.WISH_NOT_YET.format(code=code))


def published_text(turn: Turn, code: str) -> str | None:
    """What the resident is told when their wish went on the wall (None: the case is no wish)."""
    try:
        wish, _ = wishes.get_wish(session=turn.session, code=code)
    except DomainError:
        return None
    if wish.kind == "pairing":
        extra = texts.WISH_PAIRING
    else:
        extra = texts.WISH_DUE.format(when=turn.local(wish.due_at)) if wish.due_at else ""
    return texts.WISH_PUBLISHED.format(code=code, kind=wishes.KIND_ZH.get(wish.kind, wish.kind), due=extra)
