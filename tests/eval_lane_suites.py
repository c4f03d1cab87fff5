"""Tiny suites for tests/test_embedding_cache.py's lane checks, importable by module name in a spawned process
(a function registered in the test could not cross to a child). Not a test module itself."""

from __future__ import annotations

import os

from evals.core import EvalContext, SuiteResult


def run(ctx: EvalContext) -> SuiteResult:
    return SuiteResult(name="lane", figures={"pid": os.getpid(), "mode": ctx.mode, "quick": ctx.quick},
                       headline={"one": 1.0})
