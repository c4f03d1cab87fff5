"""The channel-independent dialogue engine: one `Incoming` in, one `Reply` out, state in the database.

Owns: the boundary (input normalisation, one transaction per update, the conversation row, exception
catching with a correlation id) and the choice of handler by who is talking (admin command, worker,
resident). Must not: know any channel, or hold business rules (casestore/ and policies/ do).
Synchronous on purpose: channels call it in a worker thread and run `dispatch_pending` afterwards.
"""

from __future__ import annotations

import copy
import logging
import traceback
import uuid
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlmodel import Session

from bot.dialogue import texts
from bot.dialogue.state import State, get_conversation, update_conversation
from bot.dialogue.types import Incoming, Reply
from casestore.db import session_scope
from casestore.models import Conversation, Worker
from casestore.notify import Button
from casestore.org import get_worker_by_telegram
from policies.masking import mask_text

if TYPE_CHECKING:
    from bot.services import Services

log = logging.getLogger(__name__)

MAX_TEXT = 1000  # characters the engine works with; longer input is truncated politely


@dataclass
class Turn:
    """Everything one handler step needs: the services, the open session and the conversation."""

    services: Services
    session: Session
    incoming: Incoming
    conv: Conversation
    now: datetime
    cid: str
    state: str = State.start.value
    data: dict[str, Any] = field(default_factory=dict)
    reply: Reply = field(default_factory=Reply)

    @property
    def actor_id(self) -> int:
        return self.incoming.user_id

    def say(self, text: str, buttons: list[list[Button]] | None = None) -> None:
        self.reply.say(text, buttons)

    def go(self, state: State | str, **updates: Any) -> None:
        """Move to `state`; keyword values update the state data (None removes a key)."""
        self.state = str(state)
        for key, value in updates.items():
            if value is None:
                self.data.pop(key, None)
            else:
                self.data[key] = value

    def local(self, ts: datetime | None, fmt: str = "%m月%d日 %H:%M") -> str:
        if ts is None:
            return ""
        text = ts.astimezone(self.services.settings.tz).strftime(fmt)
        # "11月02日" reads oddly: drop leading zeros of month and day
        return text.lstrip("0").replace("月0", "月")


class DialogueEngine:
    """`handle(incoming) -> Reply`; every state lives in the Conversation table, none in this object."""

    def __init__(self, services: Services) -> None:
        self.services = services

    def handle(self, incoming: Incoming) -> Reply:
        cid = uuid.uuid4().hex[:8]
        try:
            incoming, notes = _normalise(incoming)
            with session_scope(self.services.engine) as session:
                now = self.services.clock.now()
                conv = get_conversation(session=session, channel=incoming.channel, user_id=incoming.user_id, now=now)
                turn = Turn(services=self.services, session=session, incoming=incoming, conv=conv, now=now,
                            cid=cid, state=conv.state,
                            # a deep copy: nested changes must differ from the loaded value to be saved
                            data=copy.deepcopy(conv.data or {}))
                for note in notes:
                    turn.say(note)
                self._route(turn)
                update_conversation(session=session, conv=conv, state=turn.state, data=turn.data, now=now)
            if not turn.reply.messages:
                turn.say(texts.CHITCHAT)
            return turn.reply
        except Exception as exc:  # noqa: BLE001 - the boundary: a person never sees a traceback
            # the traceback would carry the raw error text: log it masked, without exc_info
            log.error("dialogue error cid=%s channel=%s user=%s kind=%s text=%r error=%s", cid,
                      incoming.channel, incoming.user_id, incoming.kind, mask_text(incoming.text[:200]),
                      mask_text(f"{type(exc).__name__}: {exc}")[:300])
            log.error("dialogue error cid=%s at:\n%s", cid, mask_text("".join(traceback.format_tb(exc.__traceback__))))
            return Reply().say(texts.SYSTEM_ERROR.format(cid=cid))

    def _route(self, turn: Turn) -> None:
        from bot.dialogue import admin, resident, worker

        inc = turn.incoming
        is_admin = inc.user_id in self.services.settings.admin_telegram_ids
        if is_admin and admin.handles(inc):
            admin.handle(turn)
            return
        if inc.kind == "command" and inc.command in admin.ADMIN_ONLY:
            turn.say(texts.NOT_ADMIN)
            return
        person = get_worker_by_telegram(session=turn.session, telegram_id=inc.user_id)
        if person is not None and person.active:
            worker.handle(turn, person, is_admin=is_admin)
            return
        resident.handle(turn, is_admin=is_admin)


def _normalise(incoming: Incoming) -> tuple[Incoming, list[str]]:
    """Strip and truncate text; a command's name is lower-cased and a bot suffix (/start@quanbot) dropped."""
    notes: list[str] = []
    text = (incoming.text or "").replace("\x00", "").strip()
    if len(text) > MAX_TEXT:
        text = text[:MAX_TEXT]
        notes.append(texts.TOO_LONG.format(limit=MAX_TEXT))
    command = incoming.command
    if command:
        command = command.lstrip("/").split("@", 1)[0].strip().lower()
    args = (incoming.args or "").strip()[:MAX_TEXT]
    return replace(incoming, text=text, command=command, args=args), notes


def worker_for_turn(turn: Turn) -> Worker | None:
    return get_worker_by_telegram(session=turn.session, telegram_id=turn.incoming.user_id)
