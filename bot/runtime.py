"""Start-up work shared by every entry point: migrate the case store and load the organisation.

The long-lived parts (engine, policies, models) are held by bot.services.Services."""

from __future__ import annotations

from bot.settings import Settings
from casestore.db import make_engine, session_scope, upgrade
from casestore.org import sync_org
from policies.loader import load_policies


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
