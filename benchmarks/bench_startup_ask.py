"""Start-up cost of a newcomer's first command: `quanbot ask "办居住证要带什么"`, run as a real process.

One warm-up run first (it builds the index and the caches under VAR_DIR if they are missing), then `--runs`
timed runs; prints the median wall time and the median CPU time (user + system of the child process).

    .venv/bin/python -m benchmarks.bench_startup_ask [--runs 7] [--question 低保怎么申请]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET_S = 1.5
QUESTION = "办居住证要带什么"


def run_once(command: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one run; a failing run stops the benchmark."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    proc = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed ({proc.returncode}): {proc.stderr[-800:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--question", default=QUESTION)
    args = ap.parse_args()
    command = [str(Path(sys.executable).with_name("quanbot")), "ask", args.question]
    env = dict(os.environ, OPENAI_BASE_URL="", OPENAI_API_KEY="")  # offline: the figure is about start-up
    first_wall, first_cpu = run_once(command, env)
    print(f"warm-up run: {first_wall:.2f} s wall, {first_cpu:.2f} s CPU")
    walls, cpus = zip(*(run_once(command, env) for _ in range(args.runs)), strict=True)
    wall, cpu = statistics.median(walls), statistics.median(cpus)
    print(f"quanbot ask {args.question!r}, {args.runs} warm runs: median {wall:.2f} s wall, {cpu:.2f} s CPU "
          f"(min {min(walls):.2f} / max {max(walls):.2f} s wall)")
    print(f"warm start-up median {wall:.2f} s wall, {cpu:.2f} s CPU (target <= {TARGET_S:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
