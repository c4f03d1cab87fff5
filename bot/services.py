"""The services a channel needs, built once per process from Settings and created lazily on first use.

Owns: wiring (database engine, policies, SLA policy, clock, classifier, knowledge service, the dialogue
engine). Tests and the terminal pass ready-made parts (a FakeClock, a classifier built once per session).
Must not: hold business rules or read the environment (Settings already did).
"""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING, Any

from sqlalchemy.engine import Engine

from bot.settings import Settings
from casestore.clock import Clock, SystemClock
from casestore.db import make_engine
from casestore.deadlines import SlaPolicy
from policies.loader import load_policies
from policies.models import Policies

if TYPE_CHECKING:
    from bot.dialogue.engine import DialogueEngine


class Services:
    """A lazy container: each part is built the first time it is asked for, then kept."""

    def __init__(
        self,
        settings: Settings,
        *,
        clock: Clock | None = None,
        engine: Engine | None = None,
        policies: Policies | None = None,
        classifier: Any | None = None,
        knowledge: Any | None = None,
    ) -> None:
        self.settings = settings
        self.clock: Clock = clock or SystemClock()
        # given parts override the lazy builders (cached_property reads the instance dict first)
        for name, value in (("engine", engine), ("policies", policies), ("classifier", classifier),
                            ("knowledge", knowledge)):
            if value is not None:
                self.__dict__[name] = value

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
    def classifier(self) -> Any:
        """`MessageClassifier` (bot.understanding): `understand(text) -> Understanding`."""
        from bot.understanding import load_classifier

        return load_classifier(self.settings)

    @cached_property
    def knowledge(self) -> Any:
        """The knowledge service: `ask(question) -> Answer` with citations."""
        from knowledge.service import build_knowledge_service

        return build_knowledge_service(self.settings)

    @cached_property
    def dialogue(self) -> DialogueEngine:
        from bot.dialogue.engine import DialogueEngine

        return DialogueEngine(self)

    def close(self) -> None:
        if "engine" in self.__dict__:
            self.engine.dispose()
