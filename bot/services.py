"""The services a process needs, built once from Settings, each on first use, and owned here.

Owns: wiring and lifetimes (database engine, policies, SLA policy, clock, classifier, the knowledge runtime, the
dialogue engine). Nothing else keeps a process-wide copy of these: a command that never answers a question
never loads the embedding model. Tests and the terminal pass ready-made parts (a FakeClock, a classifier
built once per test session).
Must not: hold business rules or read the environment (Settings already did).
The classifier (scikit-learn) and the knowledge runtime (Chroma, the embedding model) are imported inside
their builders on purpose: importing them costs over a second, which a command that needs neither must not pay.
"""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING

from sqlalchemy.engine import Engine

from bot.dialogue.engine import DialogueEngine
from bot.settings import Settings
from bot.understanding.types import Classifier
from casestore.clock import Clock, SystemClock
from casestore.db import make_engine
from casestore.deadlines import SlaPolicy
from knowledge.transcribe import Transcriber, transcriber_from_settings
from knowledge.types import Knowledge
from policies.loader import load_policies
from policies.models import Policies

if TYPE_CHECKING:
    from knowledge.service import KnowledgeRuntime


class Services:
    """A lazy container: each part is built the first time it is asked for, then kept."""

    def __init__(
        self,
        settings: Settings,
        *,
        clock: Clock | None = None,
        engine: Engine | None = None,
        policies: Policies | None = None,
        classifier: Classifier | None = None,
        knowledge: Knowledge | None = None,
        knowledge_runtime: KnowledgeRuntime | None = None,
        transcriber: Transcriber | None = None,
    ) -> None:
        self.settings = settings
        self._clock: Clock = clock or SystemClock()
        # given parts override the lazy builders (cached_property reads the instance dict first)
        given = {"engine": engine, "policies": policies, "classifier": classifier, "knowledge": knowledge,
                 "knowledge_runtime": knowledge_runtime, "transcriber": transcriber}
        for name, value in given.items():
            if value is not None:
                self.__dict__[name] = value

    @property
    def clock(self) -> Clock:
        return self._clock

    @cached_property
    def engine(self) -> Engine:
        """The database engine."""
        return make_engine(self.settings.database_url)

    @cached_property
    def policies(self) -> Policies:
        return load_policies(self.settings.policies_dir)

    @cached_property
    def sla(self) -> SlaPolicy:
        return SlaPolicy(self.policies.sla, self.settings.tz)

    @cached_property
    def classifier(self) -> Classifier:
        """The message classifier (trained and cached under var_dir/models on first use)."""
        from bot.understanding.service import load_classifier  # lazy: scikit-learn (see the module docstring)

        return load_classifier(self.settings, policies=self.policies)

    @cached_property
    def knowledge_runtime(self) -> KnowledgeRuntime:
        """The knowledge base's heavy parts (embedding model, Chroma, BM25), loaded when first asked for."""
        from knowledge.service import KnowledgeRuntime  # lazy: Chroma and the model (see the module docstring)

        return KnowledgeRuntime(self.settings)

    @cached_property
    def knowledge(self) -> Knowledge:
        """Cited answers: `ask(question) -> Answer`."""
        return self.knowledge_runtime.service()

    @cached_property
    def transcriber(self) -> Transcriber | None:
        """Speech to text for voice messages (TRANSCRIPTION_BASE_URL), or None: voice goes to a person as it is."""
        return transcriber_from_settings(self.settings)

    @cached_property
    def dialogue(self) -> DialogueEngine:
        return DialogueEngine(self)

    def close(self) -> None:
        if "engine" in self.__dict__:
            self.engine.dispose()
