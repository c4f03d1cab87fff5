"""kill -9 of `quanbot run` during a burst, as many times as asked, then a last start to the end: the figures.

The scenario of tests/test_chaos_telegram.py (204 updates from 60 residents, 23 delivered twice, the real engine,
long polling against the Bot API test server on 127.0.0.1), with the number of kills and runs free. For each
run: lost messages or updates, messages handled twice (beyond the in-process reference transcript, or a final
conversation state that differs), residents who got nothing, reporters without a case, duplicate cases, and
replies re-sent after a kill (an immediate repeat: Telegram had accepted the message when the kill came, before
its outbox row was marked sent).

    .venv/bin/python -m benchmarks.bench_chaos [--kills 3] [--runs 1] [--seed N] [--postgres URL]

--postgres runs each measurement on a fresh schema of that server (e.g. TEST_DATABASE_URL) instead of a SQLite file.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
from pathlib import Path

from benchmarks.bench_telegram import _fresh_schema
from casestore.db import make_engine, session_scope, upgrade
from casestore.org import sync_org
from policies.loader import load_policies
from tests.factories import shared_ai
from tests.test_chaos_telegram import Figures, build_script, order_free_policies, reference_run, run_chaos


def _one(seed: int, kills: int, postgres: str, tmp: Path) -> Figures:
    policies_dir = order_free_policies(tmp / "policies")
    policies = load_policies(policies_dir)
    script = build_script(random.Random(seed))
    ai = shared_ai(tmp / "ai")
    reference = reference_run(script, policies, ai, tmp / "reference")
    url, drop = _fresh_schema(postgres) if postgres else (f"sqlite:///{tmp / 'chaos.db'}", None)
    try:
        upgrade(url)
        engine = make_engine(url)
        with session_scope(engine) as session:
            sync_org(session=session, grids=policies.grids)
        try:
            return run_chaos(engine=engine, database_url=url, policies=policies, policies_dir=policies_dir,
                             ref=reference, script=script, rng=random.Random(seed), tmp=tmp,
                             label=f"{engine.dialect.name} seed={seed}", kills=kills)
        finally:
            engine.dispose()
    finally:
        if drop is not None:
            drop()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kills", type=int, default=3)
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0, help="first seed (default: random); run i uses seed + i")
    ap.add_argument("--postgres", default="", help="a PostgreSQL URL: measure on a fresh schema there")
    args = ap.parse_args(argv)
    first = args.seed or random.SystemRandom().randrange(1, 10**6)
    totals = Figures()
    for i in range(args.runs):
        with tempfile.TemporaryDirectory() as tmpdir:
            tmp = Path(tmpdir)
            for part in ("ai", "reference"):
                (tmp / part).mkdir()
            f = _one(first + i, args.kills, args.postgres, tmp)
        for name in ("lost", "handled_twice", "unanswered", "reporters_without_case", "duplicate_cases", "resent",
                     "released"):
            setattr(totals, name, getattr(totals, name) + getattr(f, name))
    print(f"\n== {args.runs} run(s) x {args.kills} kills, {'PostgreSQL' if args.postgres else 'SQLite'}, "
          f"seeds {first}..{first + args.runs - 1}")
    print(f"  lost {totals.lost}, handled twice {totals.handled_twice}, unanswered residents {totals.unanswered}, "
          f"reporters without a case {totals.reporters_without_case}, duplicate cases {totals.duplicate_cases}")
    print(f"  replies re-sent after a kill {totals.resent} (claims a killed run held, taken back: {totals.released})")
    ok = (totals.lost, totals.handled_twice, totals.unanswered, totals.reporters_without_case,
          totals.duplicate_cases) == (0, 0, 0, 0, 0)
    print(f"  target (0 lost, 0 handled twice, 0 duplicate cases): {'MET' if ok else 'NOT MET'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
