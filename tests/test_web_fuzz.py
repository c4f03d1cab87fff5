"""The console's API fuzzed against its own OpenAPI document (#16): schemathesis generates valid and invalid
requests for every operation of the live /api/openapi.json (whatever areas exist when it runs), sent with a
street-scope bearer token to a real uvicorn on 127.0.0.1 over a store seeded with cases. Asserts: no 500, and
the responses conform to the declared schema and content type. Bounded: a few examples per operation within
a total budget of about 60 s, no shrinking. Paths the console writes to (documents, FAQ, lexicon, policies)
are copies under tmp_path, so a fuzzed upload or review never touches the repository."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from sqlalchemy.engine import Engine

from benchmarks.console_pages import NOW, seed_cases, street_token
from bot.services import Services
from bot.settings import PROJECT_ROOT, Settings
from casestore.clock import FakeClock
from policies.models import Policies
from tests.web_support import console_server

schemathesis = pytest.importorskip("schemathesis")
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.generation import GenerationMode  # noqa: E402
from schemathesis.specs.openapi.checks import content_type_conformance, response_schema_conformance  # noqa: E402

BUDGET_S = 60.0
MAX_EXAMPLES = 12


@pytest.fixture
def live(tmp_path: Path, settings: Settings, engine: Engine, policies: Policies) -> Iterator[tuple[str, str]]:
    shutil.copytree(PROJECT_ROOT / "knowledge" / "docs", tmp_path / "docs")
    shutil.copytree(PROJECT_ROOT / "policies", tmp_path / "policies")
    shutil.copy(PROJECT_ROOT / "knowledge" / "faq.yaml", tmp_path / "faq.yaml")
    shutil.copy(PROJECT_ROOT / "knowledge" / "scope_examples.jsonl", tmp_path / "scope_examples.jsonl")
    own = settings.model_copy(update={"knowledge_dir": tmp_path / "docs", "policies_dir": tmp_path / "policies",
                                      "faq_path": tmp_path / "faq.yaml",
                                      "scope_examples": tmp_path / "scope_examples.jsonl"})
    seed_cases(engine, n=300, now=NOW)
    token = street_token(engine, NOW)
    services = Services(own, clock=FakeClock(NOW), engine=engine, policies=policies)
    with console_server(services) as base:
        yield base, token


def _fuzzer(strategy: Any, base: str, headers: dict[str, str], checks: list[Any], examples: int) -> Any:
    @settings(max_examples=examples, deadline=None, database=None, phases=[Phase.explicit, Phase.generate],
              suppress_health_check=list(HealthCheck), derandomize=True)
    @given(case=strategy)
    def run(case: Any) -> None:
        # the first hit test loads the knowledge base (index and model): seconds, not a hang
        response = case.call(base_url=base, headers=headers, timeout=120)
        case.validate_response(response, checks=checks)

    return run


def test_no_api_operation_answers_500_or_breaks_its_schema(live: tuple[str, str]) -> None:
    base, token = live
    doc = httpx.get(f"{base}/api/openapi.json").json()
    schema = schemathesis.openapi.from_dict(doc)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert operations, "the API declares no operation"
    headers = {"Authorization": f"Bearer {token}"}
    per_op = max(3, min(MAX_EXAMPLES, int(BUDGET_S / (len(operations) * 2 * 0.15))))
    failures: list[str] = []
    started = time.monotonic()
    for op in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            checks: list[Any] = [not_a_server_error]
            if mode is GenerationMode.POSITIVE:
                checks += [response_schema_conformance, content_type_conformance]

            run = _fuzzer(op.as_strategy(generation_mode=mode), base, headers, checks, per_op)
            try:
                run()
            except Unsatisfiable:  # nothing of this operation can be made invalid (no parameters, no body)
                continue
            except Exception as exc:  # noqa: BLE001 - every operation's failure is collected, then reported together
                failures.append(f"{op.method.upper()} {op.path} [{mode.value}]: {str(exc)[:1500]}")
    elapsed = time.monotonic() - started
    print(f"fuzzed {len(operations)} operations x 2 modes, {per_op} examples each, in {elapsed:.0f} s")
    assert not failures, "\n\n".join(failures)
