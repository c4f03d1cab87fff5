"""benchmarks/bench_llm_load.py, bounded for `make test`: 12 residents at once (questions and reports, known and
new), a slow LLM (1 s a call) and a hanging one (LLM_TIMEOUT_S 2 s), on SQLite and PostgreSQL.

The targets are the benchmark's: p95 of the first message <= min(2 x latency, LLM_TIMEOUT_S) + 0.5 s (slow) or
LLM_TIMEOUT_S + 1 s (hang), no 系统开小差 and no "database is locked", and every known reporter's case opened."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from benchmarks.bench_llm_load import measure, table
from tests.factories import SharedAI

RESIDENTS = 12


@pytest.mark.parametrize("db", ["sqlite", "postgres"])
@pytest.mark.parametrize("mode", ["slow", "hang"])
def test_residents_at_once_against_a_slow_or_hanging_llm(ai: SharedAI, tmp_path: Path, db: str, mode: str) -> None:
    postgres = ""
    if db == "postgres":
        postgres = os.environ.get("TEST_DATABASE_URL", "")
        if not postgres:
            pytest.skip("TEST_DATABASE_URL is not set: PostgreSQL tests run in CI (.ci/run sets it)")
    run = measure(ai, residents=RESIDENTS, mode=mode, latency_s=1.0, timeout_s=2.0, limit=80, postgres=postgres,
                  tmp=tmp_path)
    shown = table([run]) + f"\nslowest: {run.slowest}\narrivals: {run.arrivals}"
    assert len(run.first) == RESIDENTS, shown
    assert run.system_errors == 0 and run.locked == 0, shown
    assert run.p(0.95) <= run.target_s, shown
    assert run.cases == RESIDENTS // 4, shown  # the known reporters: every fourth resident
    if mode == "hang":  # every call fell back once, and no answer sent ahead was asked for a second time
        assert run.fallbacks == run.llm_requests >= RESIDENTS, shown
