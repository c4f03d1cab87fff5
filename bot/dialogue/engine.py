"""The channel-independent dialogue engine: one `Incoming` in, one `Reply` out, state in the database.

Owns: the boundary (input normalisation, one transaction per pass — a pass that needs a model is rolled back,
the model asked outside any transaction, and the pass replayed (bot.dialogue.turn.ModelCalls) —, the
conversation row and its typed data, exception catching with a correlation id) and the choice of side by who
is talking: an admin command, a worker's account, or a resident. Each side is a table of handlers (admin.py,
worker.py, resident.py).
Must not: know any channel, or hold business rules (casestore/ and policies/ do).
Synchronous on purpose: channels call it in a worker thread and run `dispatch_pending` afterwards.
"""

from __future__ import annotations

import logging
import traceback
import uuid
from dataclasses import replace

from bot.dialogue import admin, notice_optout, resident, texts, voice, worker
from bot.dialogue.drafts import DialogueData
from bot.dialogue.state import get_conversation, update_conversation
from bot.dialogue.turn import DialogueServices, ModelCalls, ModelNeeded, Turn
from bot.dialogue.types import Incoming, Reply
from casestore.accounts import get_account, get_worker_by_account, touch_account
from casestore.db import session_scope
from policies.hygiene import fix_surrogates
from policies.masking import mask_text

log = logging.getLogger(__name__)

MAX_TEXT = 1000  # characters the engine works with; longer input is truncated politely


class DialogueEngine:
    """`handle(incoming) -> Reply`; every state lives in the Conversation table, none in this object."""

    def __init__(self, services: DialogueServices) -> None:
        self.services = services

    def handle(self, incoming: Incoming) -> Reply:
        cid = uuid.uuid4().hex[:8]
        try:
            incoming, notes = _normalise(incoming)
            # speech to text before any transaction, like the model calls: a slow endpoint holds no lock
            incoming = voice.transcribe(incoming, self.services.transcriber)
            now = self.services.clock.now()
            models = ModelCalls(self.services)  # this update's deadline and model results
            while True:
                try:
                    with session_scope(self.services.engine) as session:
                        conv = get_conversation(session=session, channel=incoming.channel, user_id=incoming.user_id,
                                                now=now)
                        turn = Turn(services=self.services, session=session, incoming=incoming, conv=conv, now=now,
                                    cid=cid, state=conv.state, data=DialogueData.load(conv.data),
                                    is_admin=incoming.user_id in self.services.settings.admin_telegram_ids,
                                    models=models)
                        for note in notes:
                            turn.say(note)
                        self._route(turn)
                        update_conversation(session=session, conv=conv, state=turn.state, data=turn.data.dump(),
                                            now=now)
                    break
                except ModelNeeded as need:  # rolled back: the model is asked with no transaction or lock held
                    models.run(need)
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
        inc = turn.incoming
        if turn.is_admin and admin.handles(inc):
            admin.handle(turn)
            return
        if inc.kind == "command" and inc.command in admin.ADMIN_ONLY:
            turn.say(texts.NOT_ADMIN)
            return
        person = get_worker_by_account(session=turn.session, channel=turn.channel, external_id=turn.external_id)
        if person is not None and person.active:
            worker.handle(turn, person)
        elif not notice_optout.take(turn):  # 「不再接收此类通知」 under a notice, 退订通知, 恢复通知
            resident.handle(turn)
        # written last: a write takes SQLite's lock, which must not be held while a handler waits for the LLM
        account = get_account(session=turn.session, channel=turn.channel, external_id=turn.external_id)
        if account is not None:
            touch_account(session=turn.session, account=account, now=turn.now)


def _normalise(incoming: Incoming) -> tuple[Incoming, list[str]]:
    """Strip and truncate text; a command's name is lower-cased and a bot suffix (/start@quanbot) dropped.
    An unpaired surrogate (which no database or log can encode) becomes U+FFFD, so the message is still handled."""
    notes: list[str] = []
    text = fix_surrogates(incoming.text or "").replace("\x00", "").strip()
    if len(text) > MAX_TEXT:
        text = text[:MAX_TEXT]
        notes.append(texts.TOO_LONG.format(limit=MAX_TEXT))
    command = incoming.command
    if command:
        command = fix_surrogates(command).lstrip("/").split("@", 1)[0].strip().lower()
    args = fix_surrogates(incoming.args or "").strip()[:MAX_TEXT]
    return replace(incoming, text=text, command=command, args=args,
                   display_name=fix_surrogates(incoming.display_name or "")), notes
