"""One turn of a conversation: the context every handler gets, and the replies it builds.

Owns: `Turn` (the services, the open session, the incoming message, the typed conversation data, the reply),
the reply helpers (`say`, `expired`, local times) and the person lookups a turn caches (the resident of this
account). `DialogueServices` is what the dialogue needs of the process's services, as a Protocol, so that the
dialogue never imports the wiring that builds it.
`ModelCalls` holds the model results of one update (classification, knowledge answers, the answer from a
document the resident picked) and the update's `Deadline`. With an LLM configured a turn never waits for a model
inside its transaction: a result it does not have yet raises `ModelNeeded`, the engine rolls the transaction back
(no lock, no connection held), `ModelCalls.run` asks the model, and the turn runs again and finds the result. So
residents never queue behind each other's model calls on SQLite's one write lock or on the connection pool.
Must not: decide anything; handlers do.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol, runtime_checkable

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
from knowledge.llm import Deadline
from knowledge.transcribe import Transcriber
from knowledge.types import Answer, Knowledge
from policies.models import Policies

MAX_MODEL_PASSES = 6  # a turn that still needs a model after this many replays gets the offline answers inline


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
    def knowledge(self) -> Knowledge: ...  # `ask`, and `ask_in` for a clarification's picked document
    @property
    def transcriber(self) -> Transcriber | None: ...  # speech to text for voice messages (None: offline)


@runtime_checkable
class GuessingClassifier(Protocol):
    """A classifier with a cheap offline first reading (bot.understanding.MessageClassifier has one)."""

    def understand_offline(self, text: str) -> Understanding: ...


class ModelNeeded(BaseException):
    """A turn needs a model result it does not have yet; the engine rolls back, runs it, and replays the turn.

    A BaseException so that no handler's `except Exception` can swallow it."""

    def __init__(self, kind: str, text: str, doc_id: str = "") -> None:
        super().__init__(kind)
        self.kind = kind  # "understand" | "ask" | "ask_in"
        self.text = text
        self.doc_id = doc_id  # "ask_in": the document the resident picked


class ModelCalls:
    """The model calls of one update, made outside any transaction and kept by their input.

    `defer`: the models may be slow (an LLM is configured), so a result not yet known raises ModelNeeded instead
    of being computed inside the transaction. The deadline starts when the update does: classification and
    answer together get `settings.llm_timeout_s`, then the offline path answers. A question the offline model
    reads as a clear inquiry is sent to the knowledge base while the LLM classifies it, so a question costs one
    model latency, not two (the answer is dropped if the LLM reads the message otherwise)."""

    def __init__(self, services: DialogueServices, *, deadline: Deadline | None = None,
                 defer: bool | None = None) -> None:
        self.services = services
        self.deadline = deadline or Deadline(services.settings.llm_timeout_s)
        self.defer = services.settings.llm_enabled if defer is None else defer
        self.passes = 0
        self.understood: dict[str, Understanding] = {}
        self.answers: dict[str, Answer] = {}
        self.answers_in: dict[tuple[str, str], Answer] = {}  # (question, picked document)
        self._early: dict[str, Future[Answer]] = {}  # questions sent ahead while their message was classified

    # ---------------- inside the transaction (the Turn's calls)
    def understand(self, text: str) -> Understanding:
        if text not in self.understood:
            if self._deferring():
                raise ModelNeeded("understand", text)
            with self._inline_deadline().applied():
                self.understood[text] = self.services.classifier.understand(text)
        return self.understood[text]

    def ask(self, question: str) -> Answer:
        if question not in self.answers:
            if question in self._early or self._deferring():  # an answer sent ahead is awaited outside, too
                raise ModelNeeded("ask", question)
            with self._inline_deadline().applied():
                self.answers[question] = self.services.knowledge.ask(question)
        return self.answers[question]

    def ask_in(self, question: str, doc_id: str) -> Answer:
        key = (question, doc_id)
        if key not in self.answers_in:
            if self._deferring():
                raise ModelNeeded("ask_in", question, doc_id)
            with self._inline_deadline().applied():
                self.answers_in[key] = self.services.knowledge.ask_in(question, doc_id)
        return self.answers_in[key]

    def _deferring(self) -> bool:
        # with the deadline passed no model is asked any more: the offline answers come inline, without a replay
        return self.defer and not self.deadline.expired

    def _inline_deadline(self) -> Deadline:
        # a call inside the transaction: with no LLM configured the models are fast; with one (deadline passed,
        # or MAX_MODEL_PASSES reached) it must not reach the LLM at all: no time left, the offline path at once
        return Deadline(0.0) if self.defer else self.deadline

    # ---------------- between passes (the engine's call, no transaction open)
    def run(self, need: ModelNeeded) -> None:
        """Ask the model for what the turn needed; after MAX_MODEL_PASSES the deadline is spent (offline inline)."""
        self.passes += 1
        with self.deadline.applied():
            if need.kind == "understand":
                self._send_ahead(need.text)
                self.understood[need.text] = self.services.classifier.understand(need.text)
            elif need.kind == "ask_in":
                self.answers_in[(need.text, need.doc_id)] = self.services.knowledge.ask_in(need.text, need.doc_id)
            else:
                early = self._early.pop(need.text, None)
                self.answers[need.text] = early.result() if early is not None else \
                    self.services.knowledge.ask(need.text)
        if self.passes >= MAX_MODEL_PASSES:
            self.deadline = Deadline(0.0)

    def _send_ahead(self, text: str) -> None:
        classifier = self.services.classifier
        if not isinstance(classifier, GuessingClassifier):
            return
        guess = classifier.understand_offline(text)
        question = guess.text  # what the answer path asks: the understanding's masked text
        # an unsure offline guess of a question is sent ahead too ("暖气不热打什么电话"): a wasted answer costs one
        # model call, a late one makes the resident wait for two in a row
        if guess.intent.label != "inquiry" or question in self.answers or question in self._early:
            return
        future: Future[Answer] = Future()

        def ask() -> None:
            with self.deadline.applied():
                try:
                    future.set_result(self.services.knowledge.ask(question))
                except BaseException as exc:  # noqa: BLE001 - handed to whoever waits for the answer
                    future.set_exception(exc)

        self._early[question] = future
        threading.Thread(target=ask, name="turn-ask-ahead", daemon=True).start()


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
    models: ModelCalls | None = None  # the update's model results and deadline (None: call the services inline)
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

    # ---------------- models
    @property
    def deadline(self) -> Deadline | None:
        """When this update's model calls must be done (classification and answer together)."""
        return self.models.deadline if self.models is not None else None

    def understand(self, text: str) -> Understanding:
        """The classifier's reading of `text`; with an LLM, computed outside the transaction (see ModelCalls)."""
        if self.models is not None:
            return self.models.understand(text)
        return self.services.classifier.understand(text)

    def ask(self, question: str) -> Answer:
        """The knowledge base's answer to `question` (masked); with an LLM, outside the transaction too."""
        if self.models is not None:
            return self.models.ask(question)
        return self.services.knowledge.ask(question)

    def ask_in(self, question: str, doc_id: str) -> Answer:
        """The answer from the one document the resident picked among a clarification's candidates."""
        if self.models is not None:
            return self.models.ask_in(question, doc_id)
        return self.services.knowledge.ask_in(question, doc_id)
