"""The grid worker's side: task buttons (接单/已联系/办结/转派/申请延期), multi-step notes, /tasks, a typed code,
and reaching the resident through the bot (回复居民, 请居民留电话, 查看电话: casestore.relay, no numbers shared).
A supervisor's /tasks also lists the extension requests they may decide, with 批准/驳回.

Owns: the steps of each action as a typed `WorkerTask` (which case, which action, what was chosen so far) and
the tables from button action and state to handler. Whether a worker may act, and whether the case's state
allows it, is `casestore.permissions.can`; the change itself is the casestore action function, called directly.
A refusal is shown (`PermissionDenied.user_message`), a step that no longer fits the case gets 该按钮已过期.
Must not: change a case any other way than through casestore.actions.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from bot.dialogue import texts, wishes
from bot.dialogue.drafts import WorkerTask
from bot.dialogue.myid import show_id
from bot.dialogue.state import State
from bot.dialogue.team import QUICK, QuickKind, on_back, on_leave, quick_phrase, quick_rows
from bot.dialogue.turn import Turn
from bot.dialogue.words import is_skip
from casestore import actions, relay
from casestore.cases import get_case, list_open_cases_for_worker
from casestore.errors import ConcurrentUpdate, DomainError, IllegalTransition, NotFound, PermissionDenied
from casestore.models import Case, CaseStatus, Worker
from casestore.notices import role_name
from casestore.notify import Button
from casestore.permissions import Actor, actor_for, allowed_by_role, can
from policies.masking import mask_text

log = logging.getLogger(__name__)

NOTE_MAX = 500
_FAR_FUTURE = datetime.max.replace(tzinfo=UTC)  # sorts cases without a deadline last


def handle(turn: Turn, worker: Worker) -> None:
    inc = turn.incoming
    if inc.kind == "unsupported":
        turn.say(texts.UNSUPPORTED)
    elif inc.kind == "button":
        _on_button(turn, worker)
    elif inc.kind == "command":
        COMMANDS.get(inc.command or "", _unknown_command)(turn, worker)
    elif inc.kind == "photo":
        _on_photo(turn, worker)
    elif inc.kind == "location":
        turn.say(texts.WORKER_UNKNOWN)
    elif inc.kind == "voice":
        turn.say(texts.VOICE_WORKER)
    else:
        _on_text(turn, worker, inc.text)


# ---------------------------------------------------------------- helpers
def _actor(turn: Turn) -> Actor:
    return actor_for(session=turn.session, channel=turn.channel, external_id=turn.external_id,
                     is_admin=turn.is_admin)


def _case(turn: Turn, code: str | None) -> Case | None:
    if not code:
        return None
    try:
        return get_case(session=turn.session, code=code)
    except NotFound:
        return None


def _follow_up(case: Case) -> list[list[Button]]:
    code = case.code
    rows = [[Button(texts.BTN_RESPOND, "respond", code), Button(texts.BTN_RESOLVE, "resolve", code)],
            [Button(texts.BTN_TRANSFER, "transfer", code), Button(texts.BTN_EXTEND, "extend", code)]]
    return [*rows, _reach_row(code)] if case.resident_id is not None else rows


def _reach_row(code: str) -> list[Button]:
    return [Button(texts.BTN_RELAY, "relay", code), Button(texts.BTN_ASK_PHONE, "ask_phone", code)]


def _note_buttons() -> list[list[Button]]:
    return [[Button(texts.BTN_DEFAULT_NOTE, "wnote"), Button(texts.BTN_CANCEL, "wcancel")]]


def _act(turn: Turn, case: Case, change: Callable[[], Case]) -> Case | None:
    """Run one casestore action; a refusal is told to the worker and nothing changes (the savepoint rolls back)."""
    try:
        with turn.session.begin_nested():
            return change()
    except PermissionDenied as exc:
        turn.say(exc.user_message)
    except (IllegalTransition, ConcurrentUpdate):
        turn.say(texts.BUTTON_EXPIRED)
    except DomainError as exc:
        turn.say(exc.user_message)
    turn.session.refresh(case)
    return None


def _allowed(turn: Turn, case: Case, action: str) -> bool:
    """Refuse a step before asking for a note: the worker's scope and the case's state must allow it."""
    actor = _actor(turn)
    if not allowed_by_role(action, case, actor):
        turn.say(PermissionDenied.user_message)
        return False
    if not can(action, case, actor):
        turn.say(texts.BUTTON_EXPIRED)
        return False
    return True


def _idle(turn: Turn) -> None:
    turn.go(State.idle)
    turn.data.task = None


# ---------------------------------------------------------------- commands
def _tasks(turn: Turn, worker: Worker) -> None:
    assert worker.id is not None
    cases = list_open_cases_for_worker(session=turn.session, worker_id=worker.id)
    pending = actions.list_pending_extensions(session=turn.session, actor=_actor(turn))
    if not cases and not pending:
        turn.say(texts.TASKS_EMPTY)
        return
    if cases:
        cases.sort(key=lambda c: _due_of(c) or _FAR_FUTURE)
        turn.say(texts.TASKS_HEADER)
        for case in cases[:20]:
            turn.say(_task_text(turn, case), _task_buttons(case))
    if pending:
        turn.say(texts.PENDING_HEADER)
        for item in pending:
            turn.say(_pending_text(turn, item),
                     [[Button(texts.BTN_APPROVE, "approve_extension", item.case.code),
                       Button(texts.BTN_DENY, "deny_extension", item.case.code)]])


def _pending_text(turn: Turn, item: actions.PendingExtension) -> str:
    kind, _, ident = item.requested_by.partition(":")
    who = turn.session.get(Worker, int(ident)) if kind == "worker" and ident.isdigit() else None
    return texts.PENDING_ITEM.format(code=item.case.code, title=item.case.title,
                                     who=who.name if who is not None else item.requested_by,
                                     due=turn.local(item.case.resolve_due_at), until=turn.local(item.until),
                                     reason=item.reason or "—")


def _start(turn: Turn, worker: Worker) -> None:
    turn.say(texts.WORKER_HELLO.format(name=worker.name))
    _help(turn, worker)


def _help(turn: Turn, worker: Worker) -> None:
    turn.say(texts.HELP_WORKER + ("\n\n" + texts.HELP_ADMIN if turn.is_admin else ""))


def _cancel(turn: Turn, worker: Worker) -> None:
    _idle(turn)
    turn.say(texts.WORKER_CANCELLED)


def _unknown_command(turn: Turn, worker: Worker) -> None:
    turn.say(texts.UNKNOWN_COMMAND)


COMMANDS: dict[str, Callable[[Turn, Worker], None]] = {
    "tasks": _tasks, "start": _start, "help": _help, "cancel": _cancel, "myid": show_id,
    "leave": on_leave, "back": on_back,
    "wishes": wishes.show_wall,
}


# ---------------------------------------------------------------- buttons on a case
def _view(turn: Turn, case: Case) -> None:
    try:
        shown = actions.view(session=turn.session, code=case.code, actor=_actor(turn))
    except PermissionDenied as exc:
        turn.say(exc.user_message)
        return
    turn.say(_task_text(turn, shown), _task_buttons(shown) if shown.assignee_id == _worker_id(turn) else None)


def _worker_id(turn: Turn) -> int | None:
    actor = _actor(turn)
    return actor.worker.id if actor.worker is not None else None


def _accept(turn: Turn, case: Case) -> None:
    if _allowed(turn, case, "accept") and _act(turn, case, lambda: actions.accept(
            session=turn.session, code=case.code, actor=_actor(turn), clock=turn.services.clock)):
        _idle(turn)
        turn.say(texts.ACCEPTED.format(code=case.code), _follow_up(case))


def _ask_note(turn: Turn, case: Case, action: str) -> None:
    # relaying is a note on the case: whoever may add one (assignee, supervisor, street, admin) may relay
    if not _allowed(turn, case, "note" if action in ("relay", "ask_phone") else action):
        return
    turn.go(State.worker_note)
    if action == "respond":
        turn.data.task = WorkerTask(action="respond", case=case.code)
        quick = quick_rows(turn, case, "respond")
        turn.say(texts.ASK_RESPOND_NOTE.format(code=case.code) + (texts.QUICK_HINT if quick else ""),
                 [*quick, *_note_buttons()])
    elif action == "resolve":
        turn.data.task = WorkerTask(action="resolve", case=case.code)
        turn.say(texts.ASK_RESOLVE_NOTE.format(code=case.code),
                 [[Button(texts.BTN_RESOLVE_NOW, "wnote"), Button(texts.BTN_CANCEL, "wcancel")]])
    elif action == "transfer":
        turn.data.task = WorkerTask(action="transfer", case=case.code, step="to")
        turn.say(texts.ASK_TRANSFER_TO.format(code=case.code), _transfer_rows(turn))
    elif action == "relay":
        turn.data.task = WorkerTask(action="relay", case=case.code)
        quick = quick_rows(turn, case, "relay")
        turn.say(texts.ASK_RELAY_TEXT.format(code=case.code) + (texts.QUICK_HINT if quick else ""),
                 [*quick, [Button(texts.BTN_CANCEL, "wcancel")]])
    elif action == "ask_phone":
        turn.data.task = WorkerTask(action="ask_phone", case=case.code, step="reason")
        turn.say(texts.ASK_PHONE_REASON.format(code=case.code), _note_buttons())
    else:
        turn.data.task = WorkerTask(action="extend", case=case.code, step="hours")
        hours = turn.services.policies.routing.extension_hours
        turn.say(texts.ASK_EXTEND_HOURS.format(code=case.code),
                 [[Button(f"{h}小时", "wext", None, str(h)) for h in hours], [Button(texts.BTN_CANCEL, "wcancel")]])


def _decide_extension(turn: Turn, case: Case, approve: bool) -> None:
    if _act(turn, case, lambda: actions.decide_extension(session=turn.session, sla=turn.services.sla, code=case.code,
                                                        actor=_actor(turn), clock=turn.services.clock,
                                                        approve=approve)):
        turn.say((texts.EXTEND_APPROVED if approve else texts.EXTEND_DENIED).format(code=case.code))


def _show_phone(turn: Turn, case: Case) -> None:
    """The call-back phone the resident left, to the case's assignee only (casestore.relay.reveal_phone)."""
    try:
        with turn.session.begin_nested():
            phone = relay.reveal_phone(session=turn.session, code=case.code, actor=_actor(turn), now=turn.now)
    except PermissionDenied as exc:
        turn.say(exc.user_message)
        return
    if phone is None:
        turn.say(texts.NO_PHONE.format(code=case.code), [_reach_row(case.code)])
    else:
        turn.say(texts.SHOW_PHONE.format(code=case.code, phone=phone))


CASE_BUTTONS: dict[str, Callable[[Turn, Case], None]] = {
    "view": _view,
    "accept": _accept,
    "respond": lambda turn, case: _ask_note(turn, case, "respond"),
    "resolve": lambda turn, case: _ask_note(turn, case, "resolve"),
    "transfer": lambda turn, case: _ask_note(turn, case, "transfer"),
    "extend": lambda turn, case: _ask_note(turn, case, "extend"),
    "relay": lambda turn, case: _ask_note(turn, case, "relay"),
    "ask_phone": lambda turn, case: _ask_note(turn, case, "ask_phone"),
    "show_phone": _show_phone,
    "approve_extension": lambda turn, case: _decide_extension(turn, case, True),
    "deny_extension": lambda turn, case: _decide_extension(turn, case, False),
}


def _on_button(turn: Turn, worker: Worker) -> None:
    btn = turn.incoming.button
    if btn is None:
        turn.expired()
        return
    if btn.action in STEP_BUTTONS:
        STEP_BUTTONS[btn.action](turn, btn.arg or "")
        return
    if btn.action in wishes.WORKER_BUTTONS:  # 认领心愿 / 汇报进展 / 已完成: the 微心愿 wall
        wishes.WORKER_BUTTONS[btn.action](turn, worker)
        return
    handler = CASE_BUTTONS.get(btn.action)
    case = _case(turn, btn.case_code)
    if handler is None or case is None:
        turn.expired()
        return
    handler(turn, case)


# ---------------------------------------------------------------- steps of a task
def _task(turn: Turn) -> WorkerTask | None:
    task = turn.data.task
    if task is None or turn.state not in (State.worker_note, State.worker_photo):
        turn.expired()
        return None
    return task


def _on_wcancel(turn: Turn, arg: str) -> None:
    _idle(turn)
    turn.say(texts.WORKER_CANCELLED)


def _on_wnote(turn: Turn, arg: str) -> None:
    task = _task(turn)
    if task is None:
        return
    if turn.state != State.worker_note or task.step not in ("note", "reason"):
        turn.expired()
    elif task.action == "relay":  # 不用说明 does not fit a message: it needs words
        turn.say(texts.RELAY_NEEDS_TEXT, [[Button(texts.BTN_CANCEL, "wcancel")]])
    elif task.action == "resolve":  # 办结 + 直接办结: two taps
        task.note = texts.DEFAULT_RESOLVE_NOTE
        _finish_resolve(turn, task, photo=None)
    else:
        _with_note(turn, task, None)


def _on_wphoto_skip(turn: Turn, arg: str) -> None:
    task = _task(turn)
    if task is None:
        return
    if turn.state != State.worker_photo:
        turn.expired()
        return
    _finish_resolve(turn, task, photo=None)


def _on_wxfer(turn: Turn, arg: str) -> None:
    task = _task(turn)
    if task is None:
        return
    if task.action != "transfer" or task.step != "to" or arg not in turn.services.policies.routing.transfer_roles:
        turn.expired()
        return
    task.step, task.to_role = "reason", arg
    if task.note:  # the reason was typed before the position was chosen
        _with_note(turn, task, task.note)
        return
    turn.say(texts.ASK_TRANSFER_REASON, _note_buttons())


def _transfer_rows(turn: Turn) -> list[list[Button]]:
    roles = turn.services.policies.routing.transfer_roles
    rows = [[Button(role_name(r), "wxfer", None, r) for r in roles[i:i + 3]] for i in range(0, len(roles), 3)]
    return [*rows, [Button(texts.BTN_CANCEL, "wcancel")]]


def _typed_transfer(turn: Turn, task: WorkerTask, text: str) -> None:
    """Text while 转派 asks to whom: a position's name ("物业项目经理") is taken as pressed; anything else is the
    reason, kept for when the position is chosen (a typed reason is never refused)."""
    typed = text.strip()
    named = [r for r in turn.services.policies.routing.transfer_roles if role_name(r) and role_name(r) == typed]
    if named:
        _on_wxfer(turn, named[0])
        return
    task.note = text
    turn.say(texts.TRANSFER_REASON_KEPT.format(code=task.case, reason=mask_text(text)[:NOTE_MAX]),
             _transfer_rows(turn))


def _on_wext(turn: Turn, arg: str) -> None:
    task = _task(turn)
    if task is None:
        return
    if task.action != "extend" or task.step != "hours" or not arg.isdigit() \
            or int(arg) not in turn.services.policies.routing.extension_hours:
        turn.expired()
        return
    task.step, task.hours = "reason", int(arg)
    if task.note:  # the reason was typed before the hours were chosen
        _with_note(turn, task, task.note)
        return
    turn.say(texts.ASK_EXTEND_REASON, _note_buttons())


_HOURS_TYPED = re.compile(r"^(?:延期|延长|再给|需要|要)?\s*(\d{1,3})\s*(小时|个小时|h|天)?$", re.IGNORECASE)


def _typed_extension(turn: Turn, task: WorkerTask, text: str) -> None:
    """Text while 申请延期 asks how long: hours it offers ("48小时", "2天") are taken as pressed; anything else is
    the reason, kept for when the hours are chosen (a typed reason is never refused)."""
    m = _HOURS_TYPED.match(text.strip())
    offered = turn.services.policies.routing.extension_hours
    if m:
        hours = int(m.group(1)) * (24 if m.group(2) == "天" else 1)
        if hours in offered:
            _on_wext(turn, str(hours))
            return
    else:
        task.note = text
    turn.say(texts.EXTEND_REASON_KEPT.format(code=task.case, reason=mask_text(task.note or "")[:NOTE_MAX])
             if task.note else texts.ASK_EXTEND_HOURS.format(code=task.case),
             [[Button(f"{h}小时", "wext", None, str(h)) for h in offered], [Button(texts.BTN_CANCEL, "wcancel")]])


def _on_wquick(turn: Turn, arg: str) -> None:
    """A 常用语 button: the phrase goes on as if typed (a progress note, or words relayed to the resident)."""
    task = _task(turn)
    if task is None:
        return
    case = _case(turn, task.case)
    kind: QuickKind | None = "respond" if task.action == "respond" else "relay" if task.action == "relay" else None
    phrase = quick_phrase(turn, case, kind, arg) if case is not None and kind is not None else None
    if phrase is None or turn.state != State.worker_note or task.step != "note":
        turn.expired()
        return
    _with_note(turn, task, phrase)


STEP_BUTTONS: dict[str, Callable[[Turn, str], None]] = {
    "wcancel": _on_wcancel, "wnote": _on_wnote, "wphoto_skip": _on_wphoto_skip, "wxfer": _on_wxfer,
    "wext": _on_wext, QUICK: _on_wquick,
}


# ---------------------------------------------------------------- text and photos
def _on_text(turn: Turn, worker: Worker, text: str) -> None:
    if turn.state == State.wish_note:
        wishes.on_note(turn, worker, text)
        return
    task = turn.data.task
    if turn.state == State.worker_note and task is not None and task.step in ("note", "reason") and text:
        _with_note(turn, task, text)
        return
    if turn.state == State.worker_note and task is not None and task.action == "extend" and task.step == "hours" \
            and text:
        _typed_extension(turn, task, text)
        return
    if turn.state == State.worker_note and task is not None and task.action == "transfer" and task.step == "to" \
            and text:
        _typed_transfer(turn, task, text)
        return
    if turn.state == State.worker_photo and task is not None and is_skip(text):
        _finish_resolve(turn, task, photo=None)
        return
    if not text:
        turn.say(texts.RELAY_NEEDS_TEXT if task is not None and task.action == "relay"
                 and turn.state == State.worker_note else texts.EMPTY_INPUT)
        return
    prefix = turn.services.policies.grids.street.case_code_prefix
    case = _case(turn, text.strip().upper()) if text.strip().upper().startswith(prefix) else None
    if case is not None:
        _view(turn, case)
        return
    turn.say(texts.WORKER_UNKNOWN)


def _on_photo(turn: Turn, worker: Worker) -> None:
    task = turn.data.task
    if turn.state == State.worker_photo and task is not None:
        _finish_resolve(turn, task, photo=turn.incoming.photo_file_id)
        return
    if turn.state == State.worker_note and task is not None and task.action == "resolve":
        task.note = mask_text(turn.incoming.text)[:NOTE_MAX] if turn.incoming.text else texts.DEFAULT_RESOLVE_NOTE
        _finish_resolve(turn, task, photo=turn.incoming.photo_file_id)
        return
    turn.say(texts.WORKER_PHOTO_UNEXPECTED)


def _with_note(turn: Turn, task: WorkerTask, text: str | None) -> None:
    note = mask_text(text)[:NOTE_MAX] if text else None
    case = _case(turn, task.case)
    if case is None:
        _idle(turn)
        turn.expired()
        return
    svc, actor = turn.services, _actor(turn)
    if task.action == "relay" and text:
        _idle(turn)
        if _act(turn, case, lambda: relay.send_to_resident(session=turn.session, code=case.code, actor=actor,
                                                          text=text, now=turn.now)):
            turn.say(texts.RELAY_SENT.format(code=case.code))
    elif task.action == "ask_phone":
        _idle(turn)
        if _act(turn, case, lambda: relay.ask_for_phone(session=turn.session, code=case.code, actor=actor,
                                                       reason=note or texts.DEFAULT_PHONE_REASON, now=turn.now)):
            turn.say(texts.PHONE_ASKED.format(code=case.code))
    elif task.action == "respond":
        _idle(turn)
        if _act(turn, case, lambda: actions.respond(session=turn.session, sla=svc.sla, code=case.code, actor=actor,
                                                    clock=svc.clock, note=note or texts.DEFAULT_RESPOND_NOTE)):
            turn.say(texts.RESPONDED.format(code=case.code),
                     [[Button(texts.BTN_RESOLVE, "resolve", case.code), Button(texts.BTN_EXTEND, "extend", case.code)]])
    elif task.action == "resolve":
        task.note = note or texts.DEFAULT_RESOLVE_NOTE
        task.step = "photo"
        turn.go(State.worker_photo)
        turn.say(texts.ASK_RESOLVE_PHOTO,
                 [[Button(texts.BTN_SKIP, "wphoto_skip"), Button(texts.BTN_CANCEL, "wcancel")]])
    elif task.action == "transfer" and task.step == "reason":
        _idle(turn)
        moved = _act(turn, case, lambda: actions.transfer(
            session=turn.session, policies=svc.policies, sla=svc.sla, code=case.code, actor=actor, clock=svc.clock,
            to_role=task.to_role, reason=note or texts.DEFAULT_TRANSFER_REASON))
        if moved:
            turn.say(texts.TRANSFERRED.format(code=case.code, handler=role_name(moved.assignee_role)))
    elif task.action == "extend" and task.step == "reason" and task.hours:
        _idle(turn)
        until = (case.resolve_due_at or turn.now) + timedelta(hours=task.hours)
        if _act(turn, case, lambda: actions.request_extension(
                session=turn.session, sla=svc.sla, code=case.code, actor=actor, clock=svc.clock, until=until,
                reason=note or texts.EXTEND_REASON_DEFAULT)):
            turn.say(texts.EXTEND_REQUESTED.format(code=case.code, hours=task.hours))
    else:
        _idle(turn)
        turn.expired()


def _finish_resolve(turn: Turn, task: WorkerTask, *, photo: str | None) -> None:
    case = _case(turn, task.case)
    _idle(turn)
    if case is None:
        turn.expired()
        return
    svc = turn.services
    if _act(turn, case, lambda: actions.resolve(session=turn.session, sla=svc.sla, code=case.code, actor=_actor(turn),
                                                clock=svc.clock, note=task.note or texts.DEFAULT_RESOLVE_NOTE,
                                                photo=photo)):
        turn.say(texts.RESOLVED.format(code=case.code))


# ---------------------------------------------------------------- lists
def _due_of(case: Case) -> datetime | None:
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
                                  urgency=tax.urgency_name(case.urgency), title=case.title,
                                  where=case.location_text or "—",
                                  status=texts.STATUS_NAMES.get(case.status, case.status), due=due)


def _task_buttons(case: Case) -> list[list[Button]]:
    if case.status == CaseStatus.assigned:
        rows = [[Button(texts.BTN_ACCEPT, "accept", case.code), Button(texts.BTN_RESPOND, "respond", case.code)],
                [Button(texts.BTN_TRANSFER, "transfer", case.code)]]
        return [*rows, _reach_row(case.code)] if case.resident_id is not None else rows
    return _follow_up(case)
