"""One turn of a conversation: the context every handler gets, and the replies it builds.

Owns: `Turn` (the services, the open session, the incoming message, the typed conversation data, the reply),
the reply helpers (`say`, `expired`, local times) and the person lookups a turn caches (the resident of this
account). `DialogueServices` is what the dialogue needs of the process's services, as a Protocol, so that the
dialogue never imports the wiring that builds it.
Must not: decide anything; handlers do.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from sqlalchemy.engine import Engine
from sqlmodel import Session

from bot.dialogue import texts
from bot.dialogue.drafts import DialogueData
from bot.dialogue.state import State
from bot.dialogue.types import Incoming, Reply
from bot.settings import Settings
from bot.understanding.types import Classifier, Understanding
from casestore.accounts import get_resident_by_account
from casestore.clock import Clock
from casestore.deadlines import SlaPolicy
from casestore.models import Conversation, Resident
from casestore.notify import Button
from knowledge.types import Knowledge
from policies.models import Policies


class DialogueServices(Protocol):
    """The long-lived parts a turn uses (bot.services.Services provides them)."""

    @property
    def settings(self) -> Settings: ...
    @property
    def policies(self) -> Policies: ...
    @property
    def sla(self) -> SlaPolicy: ...
    @property
    def clock(self) -> Clock: ...
    @property
    def engine(self) -> Engine: ...
    @property
    def classifier(self) -> Classifier: ...
    @property
    def knowledge(self) -> Knowledge: ...


_NO_RESIDENT = object()


@dataclass
class Turn:
    """Everything one handler step needs: the services, the open session and the conversation."""

    services: DialogueServices
    session: Session
    incoming: Incoming
    conv: Conversation
    now: datetime
    cid: str
    state: str = State.start.value
    data: DialogueData = field(default_factory=DialogueData)
    reply: Reply = field(default_factory=Reply)
    is_admin: bool = False
    queued: list[str] = field(default_factory=list)  # texts to handle again as if just typed (see requeue)
    _resident: object = _NO_RESIDENT

    # ---------------- replies
    def say(self, text: str, buttons: list[list[Button]] | None = None) -> None:
        self.reply.say(text, buttons)

    def expired(self) -> None:
        """The button or step no longer fits the conversation (pressed twice, or superseded)."""
        self.say(texts.BUTTON_EXPIRED)

    def go(self, state: State | str) -> None:
        self.state = str(state)

    def requeue(self, text: str) -> None:
        """Handle `text` again from the idle state after this handler returns (a slot the resident left by
        telling us something else, or a message kept until consent and address were given)."""
        self.queued.append(text)

    def local(self, ts: datetime | None, fmt: str = "%m月%d日 %H:%M") -> str:
        if ts is None:
            return ""
        shown = ts.astimezone(self.services.settings.tz).strftime(fmt)
        return shown.lstrip("0").replace("月0", "月")  # "11月02日" reads oddly

    # ---------------- who is talking
    @property
    def channel(self) -> str:
        return self.incoming.channel

    @property
    def external_id(self) -> str:
        return str(self.incoming.user_id)

    def resident(self) -> Resident | None:
        """The resident of this account (cached for the turn; `remember_resident` after creating one)."""
        if self._resident is _NO_RESIDENT:
            self._resident = get_resident_by_account(session=self.session, channel=self.channel,
                                                     external_id=self.external_id)
        return self._resident if isinstance(self._resident, Resident) else None

    def remember_resident(self, resident: Resident) -> None:
        self._resident = resident

    def consented(self) -> bool:
        resident = self.resident()
        return resident is not None and resident.consent_at is not None

    def understand(self, text: str) -> Understanding:
        return self.services.classifier.understand(text)
