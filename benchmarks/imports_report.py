"""How the code is layered, measured on the source: module sizes, import cycles and function-local imports.

    python -m benchmarks.imports_report            # the summary the closing note quotes
    python -m benchmarks.imports_report --verbose  # plus every function-local import of our own code

tests/test_architecture.py asserts on the same functions. Imports under `if TYPE_CHECKING:` are left out:
they never run, so they cannot form a cycle at import time.
"""

from __future__ import annotations

import argparse
import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("bot", "casestore", "knowledge", "policies", "evals")


def modules(root: Path = ROOT) -> dict[str, Path]:
    """Our modules by dotted name (migrations are Alembic scripts, not modules of the product)."""
    out: dict[str, Path] = {}
    for package in PACKAGES:
        for path in (root / package).rglob("*.py"):
            rel = path.relative_to(root)
            if "migrations" in rel.parts:
                continue
            name = ".".join(rel.with_suffix("").parts)
            out[name.removesuffix(".__init__")] = path
    return out


def _resolve(name: str, known: dict[str, Path]) -> str | None:
    while name and name not in known:
        name = name.rpartition(".")[0]
    return name or None


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or \
        (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(tree: ast.AST, *, local: bool) -> Iterator[tuple[ast.Import | ast.ImportFrom, bool]]:
    """Every import statement with whether it sits inside a function; TYPE_CHECKING blocks skipped."""
    def walk(node: ast.AST, in_function: bool) -> Iterator[tuple[ast.Import | ast.ImportFrom, bool]]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                continue
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                yield child, in_function
            inner = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            yield from walk(child, inner)
    for item in walk(tree, False):
        if local or not item[1]:
            yield item


def _targets(node: ast.Import | ast.ImportFrom, module: str, known: dict[str, Path]) -> set[str]:
    if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
    else:
        base = node.module or ""
        if node.level:  # relative import: from the module's package (a package's own __init__ is its package)
            package = module.split(".") if known[module].name == "__init__.py" else module.split(".")[:-1]
            parts = package[: len(package) - node.level + 1]
            base = ".".join([*parts, base] if base else parts)
        names = [f"{base}.{a.name}" for a in node.names] + [base]
    return {t for n in names if n.split(".")[0] in PACKAGES and (t := _resolve(n, known)) is not None}


def import_graph(*, include_local: bool = True, root: Path = ROOT) -> dict[str, set[str]]:
    known = modules(root)
    graph: dict[str, set[str]] = {m: set() for m in known}
    for module, path in known.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node, _ in _imports(tree, local=include_local):
            graph[module] |= _targets(node, module, known) - {module}
    return graph


def local_imports(root: Path = ROOT) -> list[tuple[str, str]]:
    """(module, imported module) for every import of our own code made inside a function."""
    known = modules(root)
    out: list[tuple[str, str]] = []
    for module, path in known.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node, in_function in _imports(tree, local=True):
            if in_function:
                out += [(module, t) for t in sorted(_targets(node, module, known))]
    return out


def count_local_imports(root: Path = ROOT) -> int:
    """Function-local import statements of any module (ours or third-party)."""
    total = 0
    for path in modules(root).values():
        total += sum(1 for _, in_function in _imports(ast.parse(path.read_text(encoding="utf-8")), local=True)
                     if in_function)
    return total


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """The import cycles: strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    out: list[list[str]] = []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    out.append(sorted(component))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args()
    known = modules()
    sizes = sorted(((len(p.read_text(encoding="utf-8").splitlines()), m) for m, p in known.items()), reverse=True)
    cycles = strongly_connected(import_graph(include_local=True))
    ours = local_imports()
    print(f"modules: {len(known)}, lines: {sum(n for n, _ in sizes)}")
    print(f"largest: {', '.join(f'{m} {n}' for n, m in sizes[:8])}")
    dialogue = [(n, m) for n, m in sizes if m.startswith("bot.dialogue")]
    shown = ", ".join(f"{m.rsplit('.', 1)[-1]} {n}" for n, m in sorted(dialogue, reverse=True))
    print(f"bot.dialogue: {shown}")
    print(f"import cycles: {len(cycles)}" + "".join(f"\n  {len(c)}: {', '.join(c)}" for c in cycles))
    print(f"function-local imports: {count_local_imports()} statements, {len(ours)} of them of our own modules")
    if args.verbose:
        for module, target in ours:
            print(f"  {module} -> {target}")


if __name__ == "__main__":
    main()
