"""Evals: how good quanbot is, measured on data sets and held against thresholds.

Owns: the suites (evals/suites/<name>.py, each `run(ctx) -> SuiteResult`: classification, retrieval, answers,
routing, dialogue, safety), their data and held-out test splits (evals/data/), the gated thresholds
(thresholds.yaml), the runner that runs suites by name and compares them with the thresholds and a baseline
(runner.py), the report writer (report.py: report.json + report.html) and the shared fixtures that run the real
product in isolation (fixtures.py).

Evals import the product and run its real code; they must not stub it, train or tune on a test split, or be
imported by the product: only the CLI's eval command (bot/cli/evaluation.py) loads this package, inside its
commands. A suite whose third-party dependency is not installed is reported "unavailable"; an import or
attribute error in our own packages is a failure of the gate.
Deterministic pass/fail checks of behaviour belong in tests/, not here.
"""
