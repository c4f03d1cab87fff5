"""The layering the README promises, checked on the source: no import cycles among our modules, no
function-local import of our own code outside the few lazy-loading edges, and each package importing only
the packages below it (tests/test_evals_boundary.py checks that the product never imports evals).

Run the same checks by hand with `python -m benchmarks.imports_report` (it also prints module sizes).
"""

from __future__ import annotations

from benchmarks.imports_report import PACKAGES, import_graph, local_imports, strongly_connected

# where loading on first use is the point: the wiring (heavy models only when a command needs them) and the
# CLI's command functions (each loads what its command needs)
LAZY_EDGES = ("bot.services", "bot.cli")


def test_no_import_cycles_among_our_modules() -> None:
    cycles = strongly_connected(import_graph(include_local=True))
    assert cycles == [], f"import cycles: {cycles}"


def test_no_function_local_import_of_our_own_code_outside_the_lazy_edges() -> None:
    offenders = [(module, target) for module, target in local_imports()
                 if target.split(".")[0] in PACKAGES and not module.startswith(LAZY_EDGES)]
    assert offenders == [], f"function-local imports of our own modules: {offenders}"



def test_policies_import_nothing_of_ours_and_casestore_knows_no_channel() -> None:
    graph = import_graph(include_local=True)
    for module, targets in graph.items():
        if module.startswith("policies"):
            assert all(t.startswith("policies") for t in targets), (module, targets)
        if module.startswith("casestore"):
            assert not any(t.startswith(("bot", "knowledge", "evals")) for t in targets), (module, targets)
        if module.startswith("knowledge"):
            assert not any(t.startswith(("bot", "evals")) for t in targets), (module, targets)
