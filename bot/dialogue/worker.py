"""The grid worker's side: task buttons (接单/已联系/办结/转派/申请延期), multi-step notes, /tasks.

Owns: the steps of each action and their state (which case, which action, what was chosen so far).
Permission checks and the state machine belong to casestore.actions: this module calls it and shows the
refusal (`PermissionDenied.user_message`) or "该按钮已过期" for a button that no longer fits the case.
Must not: change a case any other way than through casestore.actions.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from bot.dialogue import texts
from bot.dialogue.engine import Turn
from bot.dialogue.state import State
from casestore.cases import get_case, list_open_cases_for_worker
from casestore.errors import ConcurrentUpdate, DomainError, IllegalTransition, NotFound, PermissionDenied
from casestore.models import Case, CaseStatus, Worker
from casestore.notices import URGENCY_ZH, role_name
from casestore.notify import Button
from policies.masking import mask_text

log = logging.getLogger(__name__)

NOTE_MAX = 500
EXTENSION_HOURS = (24, 48, 72)
# who a case may be handed to: positions, resolved to a person by casestore routing
TRANSFER_ROLES = ("full_time", "deputy", "mediator", "property_manager", "volunteer_lead", "supervisor")
_CASE_ACTIONS = {"accept", "respond", "resolve", "transfer", "extend", "approve_extension", "deny_extension",
                 "view"}


def handle(turn: Turn, worker: Worker, *, is_admin: bool = False) -> None:
    inc = turn.incoming
    if inc.kind == "unsupported":
        turn.say(texts.UNSUPPORTED)
    elif inc.kind == "button":
        _on_button(turn, worker)
    elif inc.kind == "command":
        cmd = inc.command or ""
        if cmd == "tasks":
            _tasks(turn, worker)
        elif cmd in ("help", "start"):
            if cmd == "start":
                turn.say(texts.WORKER_HELLO.format(name=worker.name))
            turn.say(texts.HELP_WORKER + ("\n\n" + texts.HELP_ADMIN if is_admin else ""))
        elif cmd == "cancel":
            turn.go(State.idle, task=None)
            turn.say(texts.WORKER_CANCELLED)
        else:
            turn.say(texts.UNKNOWN_COMMAND)
    elif inc.kind == "photo":
        _on_photo(turn, worker)
    elif inc.kind == "location":
        turn.say(texts.WORKER_UNKNOWN)
    else:
        _on_text(turn, worker, inc.text)


# ---------------------------------------------------------------- helpers
def _case(turn: Turn, code: str | None) -> Case | None:
    if not code:
        return None
    try:
        return get_case(session=turn.session, code=code)
    except NotFound:
        return None


def _follow_up(code: str) -> list[list[Button]]:
    return [[Button(texts.BTN_RESPOND, "respond", code), Button(texts.BTN_RESOLVE, "resolve", code)],
            [Button(texts.BTN_TRANSFER, "transfer", code), Button(texts.BTN_EXTEND, "extend", code)]]


def _note_buttons() -> list[list[Button]]:
    return [[Button(texts.BTN_DEFAULT_NOTE, "wnote"), Button(texts.BTN_CANCEL, "wcancel")]]


def _act(turn: Turn, worker: Worker, case: Case, action: str, **kwargs: Any) -> Case | None:
    """Run one casestore action; a refusal is told to the worker and nothing changes (the savepoint rolls back)."""
    from casestore import actions

    svc = turn.services
    common: dict[str, Any] = {"session": turn.session, "code": case.code, "telegram_id": turn.incoming.user_id,
                              "admin_ids": svc.settings.admin_telegram_ids, "clock": svc.clock}
    if action != "accept":
        common["sla"] = svc.sla
    if action == "transfer":
        common["policies"] = svc.policies
    try:
        with turn.session.begin_nested():
            return getattr(actions, action)(**common, **kwargs)  # type: ignore[no-any-return]
    except PermissionDenied as exc:
        turn.say(exc.user_message)
    except (IllegalTransition, ConcurrentUpdate):
        turn.say(texts.BUTTON_EXPIRED)
    except DomainError as exc:
        turn.say(exc.user_message)
    turn.session.refresh(case)
    return None


def _precheck(turn: Turn, worker: Worker, case: Case, action: str) -> bool:
    """Refuse a step before asking for a note: the button must be this worker's and fit the case now."""
    from casestore.permissions import authorize
    from casestore.states import TRANSITIONS

    try:
        authorize(session=turn.session, case=case, telegram_id=turn.incoming.user_id,
                  admin_ids=turn.services.settings.admin_telegram_ids, action=action)
    except PermissionDenied as exc:
        turn.say(exc.user_message)
        return False
    move = TRANSITIONS.get("request_extension" if action == "extend" else action)
    # 办结 straight from the task push is allowed: casestore.actions.resolve accepts implicitly
    implicit = action == "resolve" and case.status == CaseStatus.assigned
    if move is not None and CaseStatus(case.status) not in move.sources and not implicit:
        turn.say(texts.BUTTON_EXPIRED)
        return False
    return True


# ---------------------------------------------------------------- buttons
def _on_button(turn: Turn, worker: Worker) -> None:
    btn = turn.incoming.button
    if btn is None:
        turn.say(texts.BUTTON_EXPIRED)
        return
    action = btn.action
    if action == "wcancel":
        turn.go(State.idle, task=None)
        turn.say(texts.WORKER_CANCELLED)
        return
    if action in ("wnote", "wphoto_skip", "wxfer", "wext"):
        _on_step_button(turn, worker, action, btn.arg or "")
        return
    if action not in _CASE_ACTIONS:
        turn.say(texts.BUTTON_EXPIRED)
        return
    case = _case(turn, btn.case_code)
    if case is None:
        turn.say(texts.BUTTON_EXPIRED)
        return
    code = case.code
    if action == "view":
        _show_case(turn, case)
    elif action == "accept":
        if _precheck(turn, worker, case, "accept") and _act(turn, worker, case, "accept"):
            turn.go(State.idle, task=None)
            turn.say(texts.ACCEPTED.format(code=code), _follow_up(code))
    elif action in ("respond", "resolve"):
        if _precheck(turn, worker, case, action):
            turn.go(State.worker_note, task={"action": action, "case": code})
            if action == "respond":
                turn.say(texts.ASK_RESPOND_NOTE.format(code=code), _note_buttons())
            else:
                turn.say(texts.ASK_RESOLVE_NOTE.format(code=code),
                         [[Button(texts.BTN_RESOLVE_NOW, "wnote"), Button(texts.BTN_CANCEL, "wcancel")]])
    elif action == "transfer":
        if _precheck(turn, worker, case, "transfer"):
            turn.go(State.worker_note, task={"action": "transfer", "case": code, "step": "to"})
            rows = [[Button(role_name(r), "wxfer", None, r) for r in TRANSFER_ROLES[i:i + 3]]
                    for i in range(0, len(TRANSFER_ROLES), 3)]
            turn.say(texts.ASK_TRANSFER_TO.format(code=code), rows + [[Button(texts.BTN_CANCEL, "wcancel")]])
    elif action == "extend":
        if _precheck(turn, worker, case, "extend"):
            turn.go(State.worker_note, task={"action": "extend", "case": code, "step": "hours"})
            turn.say(texts.ASK_EXTEND_HOURS.format(code=code),
                     [[Button(f"{h}小时", "wext", None, str(h)) for h in EXTENSION_HOURS],
                      [Button(texts.BTN_CANCEL, "wcancel")]])
    elif action in ("approve_extension", "deny_extension") and _act(
            turn, worker, case, "decide_extension", approve=action == "approve_extension"):
        turn.say((texts.EXTEND_APPROVED if action == "approve_extension" else texts.EXTEND_DENIED).format(code=code))


def _on_step_button(turn: Turn, worker: Worker, action: str, arg: str) -> None:
    task = dict(turn.data.get("task") or {})
    if turn.state not in (State.worker_note, State.worker_photo) or not task:
        turn.say(texts.BUTTON_EXPIRED)
        return
    if action == "wnote" and turn.state == State.worker_note and task.get("step") in (None, "reason"):
        if task.get("action") == "resolve":  # 办结 + 直接办结: two taps
            _finish_resolve(turn, worker, {**task, "note": texts.DEFAULT_RESOLVE_NOTE}, photo=None)
        else:
            _with_note(turn, worker, task, None)
    elif action == "wphoto_skip" and turn.state == State.worker_photo:
        _finish_resolve(turn, worker, task, photo=None)
    elif action == "wxfer" and task.get("action") == "transfer" and task.get("step") == "to" and arg in TRANSFER_ROLES:
        task.update(step="reason", to_role=arg)
        turn.go(State.worker_note, task=task)
        turn.say(texts.ASK_TRANSFER_REASON, _note_buttons())
    elif action == "wext" and task.get("action") == "extend" and arg.isdigit() and int(arg) in EXTENSION_HOURS:
        case = _case(turn, task.get("case"))
        turn.go(State.idle, task=None)
        base = (case.resolve_due_at or turn.now) if case is not None else turn.now
        if case is not None and _act(turn, worker, case, "request_extension", until=base + timedelta(hours=int(arg)),
                                     reason=texts.EXTEND_REASON_DEFAULT):
            turn.say(texts.EXTEND_REQUESTED.format(code=case.code, hours=arg))
    else:
        turn.say(texts.BUTTON_EXPIRED)


# ---------------------------------------------------------------- text and photos
def _on_text(turn: Turn, worker: Worker, text: str) -> None:
    task = dict(turn.data.get("task") or {})
    if turn.state == State.worker_note and task and task.get("step") in (None, "reason") and text:
        _with_note(turn, worker, task, text)
        return
    if turn.state == State.worker_photo and task and text in ("跳过", "没有", "不用"):
        _finish_resolve(turn, worker, task, photo=None)
        return
    if not text:
        turn.say(texts.EMPTY_INPUT)
        return
    turn.say(texts.WORKER_UNKNOWN)


def _on_photo(turn: Turn, worker: Worker) -> None:
    task = dict(turn.data.get("task") or {})
    if turn.state == State.worker_photo and task:
        _finish_resolve(turn, worker, task, photo=turn.incoming.photo_file_id)
        return
    if turn.state == State.worker_note and task.get("action") == "resolve":
        caption = mask_text(turn.incoming.text)[:NOTE_MAX] if turn.incoming.text else texts.DEFAULT_RESOLVE_NOTE
        _finish_resolve(turn, worker, {**task, "note": caption}, photo=turn.incoming.photo_file_id)
        return
    turn.say(texts.WORKER_PHOTO_UNEXPECTED)


def _with_note(turn: Turn, worker: Worker, task: dict[str, Any], text: str | None) -> None:
    note = mask_text(text)[:NOTE_MAX] if text else None
    case = _case(turn, task.get("case"))
    if case is None:
        turn.go(State.idle, task=None)
        turn.say(texts.BUTTON_EXPIRED)
        return
    action = task.get("action")
    if action == "respond":
        turn.go(State.idle, task=None)
        if _act(turn, worker, case, "respond", note=note or texts.DEFAULT_RESPOND_NOTE):
            turn.say(texts.RESPONDED.format(code=case.code),
                     [[Button(texts.BTN_RESOLVE, "resolve", case.code), Button(texts.BTN_EXTEND, "extend", case.code)]])
    elif action == "resolve":
        task["note"] = note or texts.DEFAULT_RESOLVE_NOTE
        turn.go(State.worker_photo, task=task)
        turn.say(texts.ASK_RESOLVE_PHOTO, [[Button(texts.BTN_SKIP, "wphoto_skip"), Button(texts.BTN_CANCEL, "wcancel")]])
    elif action == "transfer":
        turn.go(State.idle, task=None)
        moved = _act(turn, worker, case, "transfer", to_role=task.get("to_role"),
                     reason=note or texts.DEFAULT_TRANSFER_REASON)
        if moved:
            turn.say(texts.TRANSFERRED.format(code=case.code, handler=role_name(moved.assignee_role)))
    else:
        turn.go(State.idle, task=None)
        turn.say(texts.BUTTON_EXPIRED)


def _finish_resolve(turn: Turn, worker: Worker, task: dict[str, Any], *, photo: str | None) -> None:
    case = _case(turn, task.get("case"))
    turn.go(State.idle, task=None)
    if case is None:
        turn.say(texts.BUTTON_EXPIRED)
        return
    if _act(turn, worker, case, "resolve", note=task.get("note") or texts.DEFAULT_RESOLVE_NOTE, photo=photo):
        turn.say(texts.RESOLVED.format(code=case.code))


# ---------------------------------------------------------------- lists
def _due_of(case: Case) -> Any:
    if case.first_response_at is None and case.response_due_at is not None:
        return case.response_due_at
    return case.resolve_due_at or case.response_due_at


def _task_text(turn: Turn, case: Case) -> str:
    tax = turn.services.policies.taxonomy
    if case.first_response_at is None and case.response_due_at is not None:
        due = texts.TASK_DUE_RESPONSE.format(when=turn.local(case.response_due_at))
    else:
        due = texts.TASK_DUE_RESOLVE.format(when=turn.local(case.resolve_due_at))
    return texts.TASK_ITEM.format(code=case.code, category=tax.name_of(case.category),
                                  urgency=URGENCY_ZH.get(case.urgency, case.urgency), title=case.title,
                                  where=case.location_text or "—", status=texts.STATUS_NAMES.get(case.status, case.status),
                                  due=due)


def _task_buttons(case: Case) -> list[list[Button]]:
    if case.status == CaseStatus.assigned:
        return [[Button(texts.BTN_ACCEPT, "accept", case.code), Button(texts.BTN_RESPOND, "respond", case.code)],
                [Button(texts.BTN_TRANSFER, "transfer", case.code)]]
    return _follow_up(case.code)


def _tasks(turn: Turn, worker: Worker) -> None:
    assert worker.id is not None
    cases = list_open_cases_for_worker(session=turn.session, worker_id=worker.id)
    if not cases:
        turn.say(texts.TASKS_EMPTY)
        return
    far = turn.now.replace(year=turn.now.year + 50)
    cases.sort(key=lambda c: _due_of(c) or far)
    turn.say(texts.TASKS_HEADER)
    for case in cases[:20]:
        turn.say(_task_text(turn, case), _task_buttons(case))


def _show_case(turn: Turn, case: Case) -> None:
    turn.say(_task_text(turn, case))
