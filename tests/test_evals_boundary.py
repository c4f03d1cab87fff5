"""The product never imports `evals`: only the CLI's eval command module loads it, inside its commands."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PRODUCT = ("bot", "casestore", "knowledge", "policies")
THE_EDGE = Path("bot/cli/evaluation.py")


def _module_names(node: ast.AST) -> list[str]:
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    if isinstance(node, ast.ImportFrom) and node.level == 0:
        return [node.module or ""]
    return []


def _imports_evals(tree: ast.AST) -> list[int]:
    return [node.lineno for node in ast.walk(tree)  # type: ignore[attr-defined]
            if any(name.split(".")[0] == "evals" for name in _module_names(node))]


def test_no_product_module_but_the_eval_command_imports_evals() -> None:
    offenders = []
    for package in PRODUCT:
        for path in sorted((ROOT / package).rglob("*.py")):
            rel = path.relative_to(ROOT)
            if rel == THE_EDGE:
                continue
            lines = _imports_evals(ast.parse(path.read_text(encoding="utf-8"), filename=str(rel)))
            offenders += [f"{rel}:{n}" for n in lines]
    assert not offenders, f"the product imports evals: {offenders}"


def test_the_eval_command_loads_evals_only_when_it_runs() -> None:
    tree = ast.parse((ROOT / THE_EDGE).read_text(encoding="utf-8"))
    module_level = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom)) and _imports_evals(n)]
    assert _imports_evals(tree) and not module_level, "evals is imported when the CLI loads, not when eval runs"


def test_loading_the_cli_and_the_services_does_not_import_evals() -> None:
    code = ("import sys, bot.cli, bot.services, bot.understanding, knowledge.service; "
            "print(sorted(m for m in sys.modules if m == 'evals' or m.startswith('evals.')))")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          check=True)
    assert done.stdout.strip() == "[]", done.stdout
