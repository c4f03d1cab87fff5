"""A 未诉先办 notice to many residents (#17 item 3): queued in one transaction, drained at Telegram's limit, killed
with SIGKILL mid-drain and restarted, then counted at the Bot API test server: duplicates and losses.

    .venv/bin/python -m benchmarks.notify_5000 [--residents 5000] [--kills 1] [--db URL]

Steps: seed N consenting residents of 芙蓉小区3号楼 (bulk insert) → `casestore.broadcasts.send_notice` to that
building (timed: the "queued" figure, which must be <= 2 s for 5,000) → `drain` subprocesses (the product's
`dispatch_pending` through `make_notifier`: the Telegram notifier and its ChatRateLimiter at
TELEGRAM_RATE_OVERALL = 30/s) against tests/servers/botapi.py, the first `--kills` of them SIGKILLed at a random
moment → every chat's messages counted. Claims are small (`--chunk`) with a short lease (`--lease`), so a killed
drain's claim is sent again after seconds; a message Telegram accepted just before the kill and before its row
was marked is sent twice (the dispatcher's one at-least-once window): it is counted as a duplicate, not hidden.

`drain` is also what tests/test_notices_crash.py kills. Prints one JSON object of figures.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pydantic import SecretStr
from sqlalchemy import func, insert, select
from sqlmodel import col

ROOT = Path(__file__).resolve().parent.parent
TELEGRAM_BASE = 7_000_000  # residents' Telegram ids: 7000000 + i
ESTATE, BUILDING = "芙蓉小区", 3


def seed(url: str, n: int) -> None:
    """N consenting residents of 芙蓉小区3号楼 with a Telegram account each (bulk insert, no dialogue)."""
    from casestore.db import make_engine, session_scope, upgrade
    from casestore.models import Account, Resident
    from casestore.org import sync_org
    from policies.loader import load_policies

    upgrade(url)
    engine = make_engine(url)
    grids = load_policies().grids
    now = datetime.now(UTC)
    with session_scope(engine) as session:
        sync_org(session=session, grids=grids, now=now)
    with engine.begin() as conn:  # ids from the database (its sequence stays right on PostgreSQL)
        conn.execute(insert(Resident), [
            {"display_name": f"bench-{i}", "community_id": "furong", "estate": ESTATE, "building": BUILDING,
             "unit": 1 + i % 3, "grid_id": "FU01", "consent_at": now, "created_at": now, "notice_opt_out": []}
            for i in range(n)])
        rows = conn.execute(select(col(Resident.id), col(Resident.display_name))
                            .where(col(Resident.display_name).like("bench-%"))).all()
        ids = {name: rid for rid, name in rows}
        conn.execute(insert(Account), [
            {"channel": "telegram", "external_id": str(TELEGRAM_BASE + i), "resident_id": ids[f"bench-{i}"],
             "created_at": now, "last_seen_at": now} for i in range(n)])
    engine.dispose()


def queue(url: str, key: str = "bench-water") -> tuple[float, int]:
    """send_notice to 芙蓉小区3号楼; (seconds, deliveries queued)."""
    from casestore.broadcasts import building_target, send_notice
    from casestore.db import make_engine, session_scope
    from policies.loader import load_policies

    engine = make_engine(url)
    grids = load_policies().grids
    t0 = time.perf_counter()
    with session_scope(engine) as session:
        target = building_target(grids, [(ESTATE, BUILDING)])
        result = send_notice(session=session, key=key, topic="停水", target=target,
                             text="明天9:00-12:00 3号楼停水检修，请提前储水。", actor="admin:bench",
                             now=datetime.now(UTC))
        queued = result.queued
    seconds = time.perf_counter() - t0
    engine.dispose()
    return seconds, queued


def in_flight(url: str) -> set[int]:
    """The chats of the notice deliveries claimed and not marked (a killed drain's claim)."""
    from casestore.broadcasts import KIND
    from casestore.db import make_engine
    from casestore.models import Notification

    engine = make_engine(url)
    with engine.connect() as conn:
        chats = conn.execute(select(col(Notification.chat_id)).where(
            col(Notification.kind) == KIND, col(Notification.state) == "sending")).scalars().all()
    engine.dispose()
    return {int(c) for c in chats if c is not None}


def unsent(url: str) -> int:
    """Notice deliveries not yet sent or failed (pending, or claimed and not marked)."""
    from casestore.broadcasts import KIND
    from casestore.db import make_engine
    from casestore.models import Notification

    engine = make_engine(url)
    with engine.connect() as conn:
        n = conn.execute(select(func.count()).select_from(Notification).where(
            col(Notification.kind) == KIND, col(Notification.state).in_(["pending", "sending"]))).scalar_one()
    engine.dispose()
    return int(n)


async def _drain(url: str, base_url: str, token: str, chunk: int, lease_s: float, rate: float) -> int:
    from bot.channels.notifiers import make_notifier
    from bot.settings import Settings
    from casestore.clock import SystemClock
    from casestore.db import make_engine
    from casestore.dispatch import dispatch_pending

    settings = Settings(database_url=url, telegram_token=SecretStr(token), telegram_base_url=base_url,
                        telegram_rate_overall=rate)
    engine = make_engine(url)
    notifier = make_notifier(settings)
    clock = SystemClock()
    await notifier.initialize()
    sent = 0
    try:
        while True:
            n = await dispatch_pending(engine=engine, notifier=notifier, clock=clock, limit=chunk,
                                       lease=timedelta(seconds=lease_s))
            sent += n
            if n:
                print(json.dumps({"sent": sent}), flush=True)
                continue
            if not await asyncio.to_thread(unsent, url):
                break
            await asyncio.sleep(0.2)  # what is left is a killed drain's claim: sent again when its lease ends
    finally:
        await notifier.shutdown()
        engine.dispose()
    return sent


def drain_command(url: str, base_url: str, token: str, *, chunk: int = 10, lease_s: float = 3.0,
                  rate: float = 30.0) -> list[str]:
    return [sys.executable, "-m", "benchmarks.notify_5000", "drain", "--db", url, "--api", base_url,
            "--token", token, "--chunk", str(chunk), "--lease", str(lease_s), "--rate", str(rate)]


def run_drains(url: str, base_url: str, token: str, *, kills: int, kill_after: tuple[float, float],
               chunk: int, lease_s: float, rate: float, seed_: int | None = None,
               timeout: float = 900.0, on_kill: Callable[[], None] | None = None) -> dict[str, Any]:
    """`kills` drains SIGKILLed a random number of seconds in `kill_after` after each began sending (`on_kill`
    runs after each kill), then one drain to the end."""
    rng = random.Random(seed_)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    killed_at: list[float] = []
    t0 = time.perf_counter()
    for _ in range(kills):
        proc = subprocess.Popen(drain_command(url, base_url, token, chunk=chunk, lease_s=lease_s, rate=rate),
                                cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert proc.stdout is not None
        first = proc.stdout.readline()  # the drain's first delivered chunk: it is sending now
        if '"sent"' not in first:
            proc.kill()
            err = proc.stderr.read()[-2000:] if proc.stderr else ""
            raise RuntimeError(f"drain sent nothing before its kill: {first!r} {err}")
        wait = rng.uniform(*kill_after)
        try:
            proc.wait(timeout=wait)
            raise RuntimeError(f"drain ended before its kill ({wait:.1f} s after it began sending)")
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            killed_at.append(round(time.perf_counter() - t0, 2))
            if on_kill is not None:
                on_kill()
    last = subprocess.run(drain_command(url, base_url, token, chunk=chunk, lease_s=lease_s, rate=rate), cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=timeout)
    if last.returncode != 0:
        raise RuntimeError(f"last drain failed: {last.stderr[-2000:]}")
    return {"killed_at_s": killed_at, "drain_s": round(time.perf_counter() - t0, 2)}


def count(server: Any, n: int) -> dict[str, float]:
    """Per resident chat: how many got the notice once, twice or more, and none."""
    per_chat = Counter(int(c["params"]["chat_id"]) for c in server.calls("sendMessage")
                       if TELEGRAM_BASE <= int(c["params"]["chat_id"]) < TELEGRAM_BASE + n)
    times = sorted(c["t"] for c in server.calls("sendMessage")
                   if TELEGRAM_BASE <= int(c["params"]["chat_id"]) < TELEGRAM_BASE + n)
    peak, lo = 0, 0
    for hi, t in enumerate(times):  # the most messages the server saw within any one second
        while t - times[lo] >= 1.0:
            lo += 1
        peak = max(peak, hi - lo + 1)
    gaps = [b - a for a, b in itertools.pairwise(times)]
    active = sum(g for g in gaps if g <= 1.0)  # sending time: restarts and lease waits left out
    return {"delivered": len(per_chat), "lost": n - len(per_chat),
            "duplicates": sum(k - 1 for k in per_chat.values() if k > 1), "messages": sum(per_chat.values()),
            "peak_msgs_in_1s": peak, "msgs_per_s_sending": round((len(times) - 1) / active, 1) if active else 0.0}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd")
    d = sub.add_parser("drain", help="deliver pending notices until none is left (what the benchmark kills)")
    d.add_argument("--db", required=True)
    d.add_argument("--api", required=True)
    d.add_argument("--token", required=True)
    d.add_argument("--chunk", type=int, default=10)
    d.add_argument("--lease", type=float, default=3.0)
    d.add_argument("--rate", type=float, default=30.0)
    ap.add_argument("--residents", type=int, default=5000)
    ap.add_argument("--kills", type=int, default=1)
    ap.add_argument("--db", default="", help="database URL (default: a fresh SQLite file)")
    ap.add_argument("--seed", type=int, default=None)
    args = ap.parse_args(argv)
    if args.cmd == "drain":
        asyncio.run(_drain(args.db, args.api, args.token, args.chunk, args.lease, args.rate))
        return
    from tests.servers.botapi import DEFAULT_TOKEN, BotApiServer

    with tempfile.TemporaryDirectory() as tmp:
        url = args.db or f"sqlite:///{Path(tmp) / 'notify.db'}"
        seed(url, args.residents)
        queue_s, queued = queue(url)
        again_s, _ = queue(url)  # the same key again: nothing is queued twice
        with BotApiServer(DEFAULT_TOKEN) as server:
            expected = args.residents / 30.0
            figures = run_drains(url, server.base_url, DEFAULT_TOKEN, kills=args.kills,
                                 kill_after=(0.0, max(1.0, expected / (args.kills + 1))),
                                 chunk=10, lease_s=3.0, rate=30.0, seed_=args.seed)
            counted = count(server, args.residents)
        left = unsent(url)
    rate = counted["messages"] / figures["drain_s"] if figures["drain_s"] else 0.0  # restarts included
    print(json.dumps({"residents": args.residents, "queued": queued, "queue_s": round(queue_s, 3),
                      "queue_again_s": round(again_s, 3), **figures, **counted, "unsent": left,
                      "msgs_per_s": round(rate, 1)}, ensure_ascii=False))


if __name__ == "__main__":
    main()
