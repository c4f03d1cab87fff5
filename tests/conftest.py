"""Shared fixtures: every test gets a fresh database, a fresh Chroma directory and empty API keys,
and a test that tries to reach the internet fails."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import text
from sqlalchemy.engine import Engine

from bot.dialogue.engine import DialogueEngine
from bot.services import Services
from bot.settings import Settings
from casestore.clock import FakeClock
from casestore.db import make_engine, session_scope, upgrade
from casestore.org import sync_org
from policies.loader import load_policies
from policies.models import Policies
from tests.factories import SharedAI, shared_ai

SHANGHAI = ZoneInfo("Asia/Shanghai")
_LOOPBACK = ("127.", "::1", "localhost", "0.0.0.0")
_ENV_KEYS = ("OPENAI_BASE_URL", "OPENAI_API_KEY", "TELEGRAM_TOKEN", "WEBHOOK_URL", "WEBHOOK_SECRET",
             "DATABASE_URL", "CHROMA_URL", "CHROMA_DIR", "EMBEDDING_BACKEND", "ADMIN_TELEGRAM_IDS")

_real_connect = socket.socket.connect


def _guarded_connect(self: socket.socket, address: object) -> object:
    host = address[0] if isinstance(address, tuple) else str(address)
    if self.family in (socket.AF_INET, socket.AF_INET6) and not str(host).startswith(_LOOPBACK):
        raise RuntimeError(f"test tried to reach the network: {address!r}")
    return _real_connect(self, address)  # type: ignore[arg-type]


@pytest.fixture(autouse=True)
def _isolation(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    for key in _ENV_KEYS:
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("ANONYMIZED_TELEMETRY", "False")
    monkeypatch.setattr(socket.socket, "connect", _guarded_connect)
    yield


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Offline settings on a fresh SQLite file and a fresh Chroma directory."""
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        database_url=f"sqlite:///{tmp_path / 'quanbot.db'}",
        var_dir=tmp_path / "var",
        chroma_dir=tmp_path / "chroma",
    )


@pytest.fixture(scope="session")
def policies() -> Policies:
    return load_policies()


@pytest.fixture
def engine(settings: Settings, policies: Policies) -> Iterator[Engine]:
    """A migrated SQLite case store with the sample street loaded."""
    upgrade(settings.database_url)
    eng = make_engine(settings.database_url)
    with session_scope(eng) as session:
        sync_org(session=session, grids=policies.grids)
    yield eng
    eng.dispose()


@pytest.fixture
def clock() -> FakeClock:
    # a Friday afternoon in Jinan
    return FakeClock(datetime(2026, 11, 20, 14, 0, tzinfo=SHANGHAI))


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh schema on the real PostgreSQL server named by TEST_DATABASE_URL."""
    base = os.environ.get("TEST_DATABASE_URL")
    if not base:
        pytest.skip("TEST_DATABASE_URL is not set: PostgreSQL tests run in CI (.ci/run sets it)")
    schema = f"qb_{uuid.uuid4().hex[:10]}"
    admin = make_engine(base)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in base else "?"
    url = f"{base}{sep}options=-csearch_path%3D{schema}"
    try:
        yield url
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture
def pg_engine(pg_url: str, policies: Policies) -> Iterator[Engine]:
    upgrade(pg_url)
    eng = make_engine(pg_url)
    with session_scope(eng) as session:
        sync_org(session=session, grids=policies.grids)
    yield eng
    eng.dispose()


@pytest.fixture
def docs(tmp_path: Path) -> Path:
    """A knowledge directory with the two sample documents of tests.factories."""
    from tests.factories import write_sample_docs

    return write_sample_docs(tmp_path / "docs")


@pytest.fixture(scope="session")
def ai(tmp_path_factory: pytest.TempPathFactory) -> SharedAI:
    """The real classifier and knowledge service, built once per test process (tests.factories.shared_ai)."""
    return shared_ai(tmp_path_factory.mktemp("ai"))


@pytest.fixture
def dlg(settings: Settings, engine: Engine, policies: Policies, clock: FakeClock, ai: SharedAI) -> DialogueEngine:
    """The dialogue engine over this test's database and the shared classifier and knowledge service."""
    return Services(settings, clock=clock, engine=engine, policies=policies, classifier=ai.classifier,
                    knowledge=ai.knowledge).dialogue
