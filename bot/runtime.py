"""Wires the settings into the services: engine, policies, SLA policy, clock. Built once per process."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

from sqlalchemy.engine import Engine

from bot.settings import Settings
from casestore.clock import Clock, SystemClock
from casestore.db import make_engine, session_scope, upgrade
from casestore.deadlines import SlaPolicy
from casestore.org import sync_org
from policies.loader import load_policies
from policies.models import Policies


def prepare_database(settings: Settings) -> tuple[int, int]:
    """Migrate to head and load the organisation from grids.yaml."""
    upgrade(settings.database_url)
    policies = load_policies(settings.policies_dir)
    engine = make_engine(settings.database_url)
    try:
        with session_scope(engine) as session:
            return sync_org(session=session, grids=policies.grids)
    finally:
        engine.dispose()


@dataclass
class Runtime:
    settings: Settings
    clock: Clock = field(default_factory=SystemClock)

    @cached_property
    def engine(self) -> Engine:
        return make_engine(self.settings.database_url)

    @cached_property
    def policies(self) -> Policies:
        return load_policies(self.settings.policies_dir)

    @cached_property
    def sla(self) -> SlaPolicy:
        return SlaPolicy(self.policies.sla, self.settings.tz)
