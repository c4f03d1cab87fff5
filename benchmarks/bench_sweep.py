"""How fast is one sweep with a big case store? Target: 1,000 due cases found and handled in <= 200 ms
with 1,000,000 cases stored (100,000 open), on SQLite and on PostgreSQL.

Run: .venv/bin/python -m benchmarks.bench_sweep [--sizes 10000,100000,1000000] [--due 1000] [--runs 5]
PostgreSQL runs too when TEST_DATABASE_URL is set (a dedicated schema, dropped afterwards).
Bulk loading bypasses the ORM (sqlite3 executemany in big chunks with synchronous=OFF / PostgreSQL COPY) and
builds the case table's secondary indexes after the rows are in (same definitions, read back from the
catalogue). Of the due cases, 90 % get a reminder and 10 % are past their response deadline and escalate
(state machine + audit event each).

Each size runs the sweep `--runs` times over the same 1,000 due cases, restoring them (and deleting the
notifications and events written) between runs: the first run is "cold" (a fresh process compiles its
statements), the median of the others is what a long-running scheduler sees. Query = the due query inside
the sweep; sweep = the whole step (query, plan, writes, commit). The machine load average is printed too,
because the figures are only comparable on a quiet machine.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Table, bindparam, delete, select, text, update
from sqlalchemy.engine import Engine

from casestore.clock import FakeClock
from casestore.db import make_engine, session_scope, upgrade
from casestore.deadlines import SlaPolicy
from casestore.models import Case, CaseEvent, Notification
from casestore.org import sync_org
from casestore.sweep import SweepReport, due_cases_stmt, sweep
from policies.loader import load_policies

NOW = datetime(2026, 11, 20, 6, 0, tzinfo=UTC)
CASE: Table = Case.__table__  # type: ignore[attr-defined]
COLS = ["code", "intent", "category", "urgency", "title", "description", "grid_id", "community_id", "assignee_id",
        "assignee_role", "cc_roles", "status", "needs_address_confirmation", "attachments", "created_at",
        "clock_started_at", "response_due_at", "resolve_due_at", "closed_at", "close_reason", "escalation_level",
        "next_reminder_at", "reopen_count", "clock_cycle", "version"]
# what a sweep changes on a due case: restored between runs
RESTORED = ["status", "escalation_level", "next_reminder_at", "close_reason", "closed_at", "version"]


def _rows(n: int, due: int, assignees: list[tuple[int, str, str]], ts: Callable[[datetime], Any],
          seed: int = 7) -> Iterator[tuple[Any, ...]]:
    """Case rows as tuples in COLS order; `ts` renders a datetime for the driver (None stays None)."""
    rng = random.Random(seed)
    n_open = n // 10
    hour, day = timedelta(hours=1), timedelta(days=1)
    for i in range(n):
        worker_id, grid_id, community_id = assignees[i % len(assignees)]
        if i < n_open:
            if i < due:
                age = 61 + rng.randint(0, 20) if i % 10 == 0 else 30 + rng.randint(1, 15)  # 10 % breached
                created = NOW - timedelta(minutes=age)
                nxt = created + timedelta(minutes=60 if i % 10 == 0 else 30)
            else:
                created = NOW - timedelta(minutes=rng.randint(0, 25))
                nxt = created + timedelta(minutes=30)
            yield (f"BM{i:09d}", "help", "building", "urgent", "楼道灯不亮", "3号楼2单元楼道灯坏了", grid_id,
                   community_id, worker_id, "full_time", "[]", "assigned", False, "[]", ts(created), ts(created),
                   ts(created + hour), ts(created + 24 * hour), None, None, 0, ts(nxt), 0, 0, 1)
        else:
            created = NOW - timedelta(days=rng.randint(2, 700), minutes=rng.randint(0, 1440))
            yield (f"BM{i:09d}", "help", "building", "urgent", "楼道灯不亮", "3号楼2单元楼道灯坏了", grid_id,
                   community_id, worker_id, "full_time", "[]", "closed", False, "[]", ts(created), ts(created),
                   ts(created + hour), ts(created + 24 * hour), ts(created + day), "rated", 0, None, 0, 0, 1)


def _sqlite_ts(v: datetime) -> str:
    """SQLAlchemy's SQLite DATETIME text ("2026-11-20 06:00:00.000000"), UTC (every bench datetime is UTC)."""
    return v.replace(tzinfo=None).isoformat(" ", "microseconds")


def _assignees(engine: Engine) -> list[tuple[int, str, str]]:
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT id, grid_id, community_id FROM worker WHERE role = 'full_time'")).all()
    return [(r[0], r[1], r[2]) for r in rows]


def load_sqlite(engine: Engine, n: int, due: int) -> float:
    t0 = time.perf_counter()
    assignees = _assignees(engine)
    raw = engine.raw_connection()
    try:
        cur = raw.cursor()
        cur.execute("PRAGMA synchronous=OFF")  # this throw-away bench database only
        cur.execute("PRAGMA cache_size=-262144")
        indexes = [r[0] for r in cur.execute(
            "SELECT sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'case' AND sql IS NOT NULL")]
        for name, in cur.execute(
                "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'case' AND sql IS NOT NULL"
                ).fetchall():
            cur.execute(f'DROP INDEX "{name}"')
        sql = f'INSERT INTO "case" ({", ".join(COLS)}) VALUES ({", ".join("?" for _ in COLS)})'
        rows = _rows(n, due, assignees, _sqlite_ts)
        while chunk := [row for _, row in zip(range(100_000), rows, strict=False)]:
            cur.executemany(sql, chunk)
        for ddl in indexes:  # bulk index builds instead of n incremental inserts per index
            cur.execute(ddl)
        raw.commit()
        cur.execute("ANALYZE")
        cur.execute("PRAGMA synchronous=NORMAL")
        raw.commit()
    finally:
        raw.close()
    return time.perf_counter() - t0


def load_postgres(engine: Engine, n: int, due: int) -> float:
    t0 = time.perf_counter()
    assignees = _assignees(engine)
    raw = engine.raw_connection()
    try:
        cur = raw.cursor()
        cur.execute("SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = current_schema() "
                    "AND tablename = 'case' AND indexdef NOT LIKE 'CREATE UNIQUE %'")
        indexes = cur.fetchall()
        for name, _ in indexes:
            cur.execute(f'DROP INDEX "{name}"')
        with cur.copy(f'COPY "case" ({", ".join(COLS)}) FROM STDIN') as copy:  # type: ignore[attr-defined]
            for row in _rows(n, due, assignees, lambda v: v):
                copy.write_row(row)
        for _, ddl in indexes:
            cur.execute(ddl)
        raw.commit()
        cur.execute('ANALYZE "case"')
        raw.commit()
    finally:
        raw.close()
    return time.perf_counter() - t0


def time_due_query(engine: Engine, due: int, runs: int = 5) -> tuple[float, int, str]:
    """The due query alone (median of `runs`, each in its own rolled-back transaction) and its plan."""
    stmt = due_cases_stmt(NOW, due, engine.dialect.name)
    times, found = [], 0
    for _ in range(runs):
        with engine.connect() as conn:
            t0 = time.perf_counter()
            found = len(conn.execute(stmt).all())
            times.append((time.perf_counter() - t0) * 1000)
            conn.rollback()
    with engine.connect() as conn:
        compiled = stmt.compile(engine, compile_kwargs={"literal_binds": True})
        prefix = "EXPLAIN QUERY PLAN " if engine.dialect.name == "sqlite" else "EXPLAIN "
        plan = " | ".join(str(r[-1]).strip() for r in conn.execute(text(prefix + str(compiled))).all()[:4])
    return statistics.median(times), found, plan


def _snapshot(engine: Engine) -> list[dict[str, Any]]:
    cols = [CASE.c.id, *(CASE.c[name] for name in RESTORED)]
    with engine.connect() as conn:
        rows = conn.execute(select(*cols).where(CASE.c.next_reminder_at <= NOW)).all()
    return [{"b_id": r[0], **{f"v_{name}": value for name, value in zip(RESTORED, r[1:], strict=True)}} for r in rows]


def _restore(engine: Engine, snapshot: list[dict[str, Any]]) -> None:
    """Put the due cases back as loaded and drop what the sweep wrote, so the next run has the same work."""
    stmt = update(CASE).where(CASE.c.id == bindparam("b_id")).values(
        {name: bindparam(f"v_{name}", type_=CASE.c[name].type) for name in RESTORED})
    with engine.begin() as conn:
        conn.execute(stmt, snapshot)
        conn.execute(delete(Notification.__table__))  # type: ignore[attr-defined]
        conn.execute(delete(CaseEvent.__table__))  # type: ignore[attr-defined]


def _load() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def run_size(label: str, engine: Engine, loader: Callable[[Engine, int, int], float], n: int, due: int,
             runs: int) -> dict[str, Any]:
    policies = load_policies()
    with session_scope(engine) as s:
        sync_org(session=s, grids=policies.grids)
    load_s = loader(engine, n, due)
    q_ms, found, plan = time_due_query(engine, due)
    sla = SlaPolicy(policies.sla, ZoneInfo("Asia/Shanghai"))
    snapshot = _snapshot(engine)
    reports: list[SweepReport] = []
    cpu: list[float] = []  # this process's CPU time per sweep: the rest of the wall time is waiting (DB, load)
    after_due = -1
    for i in range(runs):
        if i:
            _restore(engine, snapshot)
        c0 = time.process_time()
        reports.append(sweep(engine=engine, policies=policies, sla=sla, clock=FakeClock(NOW), batch=due))
        cpu.append((time.process_time() - c0) * 1000)
        if i == 0:  # the same instant again: nothing is due any more
            after_due = sweep(engine=engine, policies=policies, sla=sla, clock=FakeClock(NOW), batch=due).due
    first, warm = reports[0], reports[1:] or reports
    row = {"db": label, "cases": n, "open": n // 10, "load_s": round(load_s, 1), "due_found": found,
           "due_query_ms": round(q_ms, 1),
           "cold_query_ms": round(first.query_ms, 1), "cold_sweep_ms": round(first.total_ms, 1),
           "query_ms": round(statistics.median(r.query_ms for r in warm), 1),
           "sweep_ms": round(statistics.median(r.total_ms for r in warm), 1),
           "sweep_max_ms": round(max(r.total_ms for r in warm), 1),
           "cpu_ms": round(statistics.median(cpu[1:] or cpu), 1),
           "reminders": first.reminders, "escalations": first.escalations, "second_sweep_due": after_due,
           "plan": plan, "load": _load()}
    print(f"{label:8} {n:>9,} cases  load {load_s:6.1f}s  due-query {q_ms:6.1f} ms ({found} found)  "
          f"sweep: cold {first.total_ms:6.1f} ms (query {first.query_ms:5.1f}), "
          f"warm median {row['sweep_ms']:6.1f} ms (query {row['query_ms']:5.1f}, max {row['sweep_max_ms']}, "
          f"client CPU {row['cpu_ms']}) "
          f"over {len(warm)} runs; {first.reminders} reminders, {first.escalations} escalations; "
          f"then due={after_due}  [loadavg {row['load']}]", flush=True)
    print(f"         plan: {plan}", flush=True)
    return row


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--sizes", default="10000,100000,1000000")
    ap.add_argument("--due", type=int, default=1000)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--only", choices=["sqlite", "postgres"], default=None)
    args = ap.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    results = []
    if args.only != "postgres":
        with tempfile.TemporaryDirectory(prefix="qb-bench-") as tmp:
            for n in sizes:
                url = f"sqlite:///{Path(tmp) / f'bench_{n}.db'}"
                upgrade(url)
                engine = make_engine(url)
                try:
                    results.append(run_size("sqlite", engine, load_sqlite, n, args.due, args.runs))
                finally:
                    engine.dispose()
    base = os.environ.get("TEST_DATABASE_URL")
    if base and args.only != "sqlite":
        admin = make_engine(base)
        for n in sizes:
            schema = f"qb_bench_{uuid.uuid4().hex[:8]}"
            with admin.begin() as conn:
                conn.execute(text(f'CREATE SCHEMA "{schema}"'))
            url = f"{base}{'&' if '?' in base else '?'}options=-csearch_path%3D{schema}"
            try:
                upgrade(url)
                engine = make_engine(url)
                try:
                    results.append(run_size("postgres", engine, load_postgres, n, args.due, args.runs))
                finally:
                    engine.dispose()
            finally:
                with admin.begin() as conn:
                    conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()
    elif args.only != "sqlite":
        print("(TEST_DATABASE_URL not set: PostgreSQL skipped)")
    print("\nsummary (ms; query = due query inside the sweep; target: sweep <= 200 ms at 1M cases):")
    print(f"  {'db':8} {'cases':>9}  {'due-query':>9}  {'cold query':>10}  {'cold sweep':>10}  "
          f"{'warm query':>10}  {'warm sweep':>10}  {'client CPU':>10}  loadavg")
    for r in results:
        ok = "OK" if float(r["sweep_ms"]) <= 200 else "OVER"
        print(f"  {r['db']:8} {r['cases']:>9,}  {r['due_query_ms']:>9}  {r['cold_query_ms']:>10}  "
              f"{r['cold_sweep_ms']:>10}  {r['query_ms']:>10}  {r['sweep_ms']:>10}  {r['cpu_ms']:>10}  "
              f"{r['load']}  [{ok}]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
