"""Start-up of the commands a newcomer runs first, as real processes: `quanbot ask` to its answer, `quanbot chat`
to its prompt (through a pseudo-terminal, as a person sees it), and `quanbot --help`.

One warm-up run of each first (it builds the index and the model caches under VAR_DIR when they are missing),
then `--runs` timed runs; prints the median wall and CPU seconds (user + system) of each. For chat the clock
stops when the prompt appears; the run also checks that no progress bar is drawn after the prompt and that
jieba's "Building prefix dict" notes never reach the terminal, then sends "/start" and times the first reply.
The database is a fresh SQLite file in a temporary directory (migrated by the warm-up); VAR_DIR and CHROMA_DIR
are the project's var/ (or --var-dir), so the caches a newcomer has already built are the ones measured.

    .venv/bin/python -m benchmarks.bench_startup [--runs 5] [--only ask,chat,help] [--source DIR]

`--source DIR` runs the code in DIR instead of the installed package (for a before/after comparison:
`git archive <commit> | tar -x -C DIR`).
"""

from __future__ import annotations

import argparse
import fcntl
import os
import pty
import resource
import select
import statistics
import struct
import subprocess
import sys
import tempfile
import termios
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
QUANBOT = [str(Path(sys.executable).with_name("quanbot"))]
# the same app from a source tree (PYTHONPATH), whatever its bot/cli looks like
FROM_SOURCE = [sys.executable, "-c", "import sys; sys.argv[0] = 'quanbot'; from bot.cli import app; app()"]
QUESTION = "办居住证要带什么"
PROMPT = "您：".encode()
REPLY = "泉小智：".encode()
TARGETS = {"ask": 1.5, "chat": 3.0}  # seconds, warm, median wall
NOISE = (b"Building prefix dict", b"Loading model from cache", b"Prefix dict has been built")
CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclass
class Run:
    wall: float
    cpu: float
    reply: float | None = None  # chat: seconds from sending /start to the reply
    answer: float | None = None  # chat: seconds from sending the question to its answer
    problems: tuple[str, ...] = ()  # what a person should not have seen on the terminal


def _env(var_dir: Path, tmp: Path, source: Path | None) -> dict[str, str]:
    env = dict(os.environ, DATABASE_URL=f"sqlite:///{tmp / 'q.db'}", VAR_DIR=str(var_dir),
               CHROMA_DIR=str(var_dir / "chroma"), OPENAI_BASE_URL="", OPENAI_API_KEY="", TELEGRAM_TOKEN="",
               COLUMNS="120", LINES="40")
    if source is not None:
        env["PYTHONPATH"] = str(source)
    return env


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_plain(cmd: list[str], argv: list[str], env: dict[str, str], cwd: Path) -> Run:
    """A command that exits by itself: wall and CPU of the whole process."""
    cpu_before = _children_cpu()
    started = time.perf_counter()
    proc = subprocess.run([*cmd, *argv], cwd=cwd, env=env, capture_output=True, check=False)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"quanbot {' '.join(argv)} failed ({proc.returncode}): {proc.stderr.decode()[-800:]}")
    noisy = any(n in proc.stderr or n in proc.stdout for n in NOISE)
    return Run(wall, _children_cpu() - cpu_before, problems=("jieba's notes on the terminal",) if noisy else ())


def _cpu_of(pid: int) -> float:
    """User + system seconds of a live process (all its threads), from /proc."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def _read_until(fd: int, marker: bytes, seen: bytearray, timeout: float, *, start: int = 0) -> int:
    """Read the terminal into `seen` until `marker` appears at or after `start`; returns where it is."""
    deadline = time.monotonic() + timeout
    while seen.find(marker, start) < 0:
        left = deadline - time.monotonic()
        if left <= 0:
            raise SystemExit(f"no {marker.decode()!r} within {timeout:.0f} s; the terminal showed:\n"
                             f"{seen.decode(errors='replace')[-1500:]}")
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            try:
                chunk = os.read(fd, 65536)
            except OSError:  # the child closed the terminal
                chunk = b""
            if not chunk:
                raise SystemExit(f"quanbot chat exited before {marker.decode()!r}:\n{seen.decode(errors='replace')}")
            seen += chunk
    return seen.find(marker, start)


def _exchange(fd: int, line: str, seen: bytearray, timeout: float) -> float:
    """Send one line and wait for the bot's reply and the next prompt; returns the seconds it took."""
    sent = time.perf_counter()
    os.write(fd, line.encode() + b"\n")
    reply = _read_until(fd, REPLY, seen, timeout, start=len(seen))
    _read_until(fd, PROMPT, seen, timeout, start=reply)
    return time.perf_counter() - sent


def run_chat(cmd: list[str], env: dict[str, str], cwd: Path, *, question: str, timeout: float) -> Run:
    """`quanbot chat` on a pseudo-terminal: seconds (wall, CPU) until its prompt, then "/start" and a question."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    started = time.perf_counter()
    proc = subprocess.Popen([*cmd, "chat"], cwd=cwd, env=env, stdin=slave, stdout=slave, stderr=slave,
                            close_fds=True)
    os.close(slave)
    seen = bytearray()
    try:
        _read_until(master, PROMPT, seen, timeout)
        wall, cpu = time.perf_counter() - started, _cpu_of(proc.pid)
        before_prompt = bytes(seen[: seen.index(PROMPT)])
        after = bytearray()
        reply = _exchange(master, "/start", after, timeout)
        answer = _exchange(master, question, after, timeout)
        os.write(master, b"\x04")  # Ctrl-D: end of input
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
    problems = []
    if any(n in before_prompt + bytes(after) for n in NOISE):
        problems.append("jieba's notes on the terminal")
    if "━".encode() in bytes(after):
        problems.append("a progress bar after the prompt")
    return Run(wall, cpu, reply, answer, tuple(problems))


def _median(values: list[float]) -> float:
    return statistics.median(values)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--only", default="help,ask,chat", help="comma-separated: help, ask, chat")
    ap.add_argument("--var-dir", type=Path, default=ROOT / "var", help="VAR_DIR (default: the project's var/)")
    ap.add_argument("--question", default=QUESTION)
    ap.add_argument("--timeout", type=float, default=900.0, help="seconds to wait for a prompt or an answer")
    ap.add_argument("--source", type=Path, default=None, help="run the code in this source tree instead")
    args = ap.parse_args()
    only = [name.strip() for name in args.only.split(",") if name.strip()]
    with tempfile.TemporaryDirectory(prefix="quanbot-startup-") as tmp_name:
        tmp = Path(tmp_name)
        source = args.source.resolve() if args.source else None
        env = _env(args.var_dir.resolve(), tmp, source)
        cmd = FROM_SOURCE if source else QUANBOT
        commands = {
            "help": lambda: run_plain(cmd, ["--help"], env, tmp),
            "ask": lambda: run_plain(cmd, ["ask", args.question], env, tmp),
            "chat": lambda: run_chat(cmd, env, tmp, question=args.question, timeout=args.timeout),
        }
        print(f"quanbot start-up, warm, median of {args.runs} runs after one warm-up "
              f"(code: {source or 'installed'}, VAR_DIR={args.var_dir}, {os.cpu_count()} CPUs)")
        for name in only:
            commands[name]()  # warm-up: caches, the index, the migrated database
            runs = [commands[name]() for _ in range(args.runs)]
            wall, cpu = _median([r.wall for r in runs]), _median([r.cpu for r in runs])
            what = {"help": "quanbot --help", "ask": f"quanbot ask {args.question!r} (to its answer)",
                    "chat": "quanbot chat (to its prompt)"}[name]
            line = f"{what}: wall {wall:.2f} s, CPU {cpu:.2f} s"
            if name == "chat":
                line += (f"; then /start answered in {_median([r.reply or 0.0 for r in runs]):.2f} s, "
                         f"the question in {_median([r.answer or 0.0 for r in runs]):.2f} s")
            if name in TARGETS:
                target = TARGETS[name]
                line += f"  (target: wall ≤ {target} s: {'MET' if wall <= target else 'NOT MET'})"
            problems = sorted({p for r in runs for p in r.problems})
            if problems:
                line += f"  PROBLEM: {'; '.join(problems)}"
            print(line, flush=True)
            print("   runs (wall/CPU s): " + ", ".join(f"{r.wall:.2f}/{r.cpu:.2f}" for r in runs), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
