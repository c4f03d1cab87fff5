"""`make bench`: run every benchmark and print one table of the figures that have a target.

Each benchmark prints its own detail; the lines that carry a target ("target …") are collected into the
closing table, so the gaps are visible at a glance. PostgreSQL rows appear when TEST_DATABASE_URL is set.

    .venv/bin/python -m benchmarks.run_all [--quick]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

from rich.console import Console
from rich.table import Table

BENCHES: list[tuple[str, list[str], list[str]]] = [
    # (module, full arguments, --quick arguments)
    ("bench_understanding", [], []),
    ("bench_knowledge", [], []),
    ("bench_knowledge", ["--backend", "distilled"], ["--backend", "distilled"]),
    ("bench_sweep", ["--sizes", "10000,100000,1000000", "--runs", "3"], ["--sizes", "10000", "--runs", "2"]),
    ("bench_telegram", ["--handler", "engine"], ["--handler", "engine", "--residents", "60"]),
    ("bench_memory", [], []),
    ("bench_startup", ["--runs", "5"], ["--runs", "3"]),
    ("bench_llm_load", [], ["--residents", "20", "--timeout", "4"]),
    ("console_pages", [], ["--cases", "20000", "--requests", "10"]),
]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smaller sizes (minutes, not tens of minutes)")
    args = ap.parse_args()
    console = Console()
    rows: list[tuple[str, str]] = []
    for module, full, quick in BENCHES:
        argv = quick if args.quick else full
        console.rule(f"benchmarks.{module} {' '.join(argv)}")
        started = time.monotonic()
        proc = subprocess.run([sys.executable, "-m", f"benchmarks.{module}", *argv], capture_output=True, text=True,
                              check=False)
        console.print(proc.stdout.rstrip(), markup=False, highlight=False)
        if proc.returncode != 0:
            console.print(f"[red]{module} failed ({proc.returncode}):[/red] {proc.stderr[-800:]}")
            rows.append((module, f"FAILED (exit {proc.returncode})"))
            continue
        for line in proc.stdout.splitlines():
            if "target" in line.lower():
                rows.append((module, line.strip()))
        console.print(f"[dim]({time.monotonic() - started:.0f} s)[/dim]")
    table = Table(title="quanbot benchmarks: figures against their targets")
    table.add_column("benchmark")
    table.add_column("figure (target)")
    for module, line in rows:
        table.add_row(module.removeprefix("bench_"), line)
    console.print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
