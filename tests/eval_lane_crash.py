"""A suite whose process dies mid-run (tests/test_embedding_cache.py: a dead lane must fail the gate)."""

from __future__ import annotations

import os

from evals.core import EvalContext, SuiteResult


def run(ctx: EvalContext) -> SuiteResult:
    os._exit(3)
