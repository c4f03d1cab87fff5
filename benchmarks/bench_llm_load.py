"""Many residents at once against a slow or a hanging LLM, through the real dialogue engine.

N residents (distinct users, one thread each, all released at the same moment) call DialogueEngine.handle:
half ask a policy question, half report a problem; half of each are known residents (consented, address bound),
half write for the first time. A known resident's report goes on with 跳过 / 对 until its case is opened. The
LLM is the OpenAI-compatible test server on 127.0.0.1 (in this process), acting as a sensible model: it labels
like the offline classifier and answers from passage 1. Two modes: every call takes --latency seconds ("slow"),
or no call is ever answered ("hang"). The classifier and the knowledge service each build their adapter from
the settings, as `quanbot run` does (LLM_TIMEOUT_S and LLM_MAX_CONCURRENCY from the options).

Measured: the wall time of each resident's first message (the one that reaches the model) and of the follow-ups;
the replies that say 系统开小差, "database is locked" in the log, cases opened, LLM requests and the most in
flight at once. Targets (first messages): slow p95 <= min(2 x latency, LLM_TIMEOUT_S) + 0.5 s (a question
is classified and answered, the turn's deadline clips the two calls, then the offline work), hang p95 <=
LLM_TIMEOUT_S + 1 s, and no 系统开小差 anywhere. A limit below the offered load (--limits 80,16)
shows the degradation: calls wait for a slot within their deadline, then the offline path answers (no target).

    .venv/bin/python -m benchmarks.bench_llm_load [--residents 50] [--latency 2] [--timeout 8] [--limits 80]
        [--modes slow,hang] [--postgres URL]

--postgres also runs every measurement on a fresh schema of that PostgreSQL server (dropped afterwards).
"""

from __future__ import annotations

import argparse
import logging
import statistics
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import SecretStr
from sqlalchemy import func, select, text

from bot.dialogue import texts
from bot.dialogue.types import Incoming
from bot.services import Services
from bot.settings import Settings
from bot.understanding.service import MessageClassifier
from casestore.clock import SystemClock
from casestore.db import make_engine, session_scope, upgrade
from casestore.models import Case
from casestore.org import sync_org
from knowledge.answers import KnowledgeService
from knowledge.llm import llm_from_settings
from policies.loader import load_policies
from tests.factories import SharedAI, make_resident, shared_ai
from tests.servers.openai_compat import OpenAICompatServer

SYSTEM_ERROR = texts.SYSTEM_ERROR.split("，")[0]
# resident-style questions answered from passages (none is an FAQ entry, so the answer is the model's)
QUESTIONS = ["居住证多久签注一次", "暖气不热打什么电话", "老年卡怎么办", "电动车能在楼道充电吗",
             "俺爹八十了 高龄补贴咋领", "孩子上学要啥材料", "租房的能办居住证不", "暖气费啥时候交"]
REPORTS = ["俺家楼道灯坏了好几天了", "小区门口垃圾堆了好几天没人清", "单元门禁坏了 关不上", "楼下饭店油烟太大了",
           "路灯不亮了 晚上黑"]
FIRST_USER = 880000


@dataclass
class Run:
    db: str
    mode: str
    residents: int
    limit: int
    timeout_s: float
    latency_s: float
    first: list[float] = field(default_factory=list)  # seconds, the first message of each resident
    slowest: list[tuple[float, str]] = field(default_factory=list)  # the five slowest first messages, and what
    arrivals: list[float] = field(default_factory=list)  # when each model call reached the server (s after start)
    follow_ups: list[float] = field(default_factory=list)
    system_errors: int = 0
    locked: int = 0
    cases: int = 0
    llm_requests: int = 0
    peak_in_flight: int = 0
    fallbacks: int = 0  # model calls that ended in the offline path (timeouts, no slot, no time left)
    targeted: bool = True  # False: a limit below the offered load, shown for its degradation (no target)

    @property
    def target_s(self) -> float:
        """Slow: the two model calls of a question (classify, answer), which the turn's deadline clips at
        LLM_TIMEOUT_S, plus the offline work after them; hang: the deadline plus that work. The turn's deadline
        covers the model calls only, so a bound without the allowance fails whenever the deadline is what ends
        the calls (CI once measured p95 2.08 s against a bound of exactly 2.0 s with latency 1 s, timeout 2 s)."""
        model = min(2 * self.latency_s, self.timeout_s) if self.mode == "slow" else self.timeout_s
        return model + (AFTER_MODEL_S if self.mode == "slow" else 1.0)

    def p(self, q: float, values: list[float] | None = None) -> float:
        data = sorted(self.first if values is None else values)
        if not data:
            return float("nan")
        return data[min(len(data) - 1, max(0, round(q * len(data)) - 1))]

    @property
    def ok(self) -> bool:
        return self.p(0.95) <= self.target_s and self.system_errors == 0 and self.locked == 0


AFTER_MODEL_S = 0.5  # retrieval, the reply and the database writes after the model calls, on a loaded 2-core box


class _Counter(logging.Handler):
    """Counts the log lines that matter here (the dialogue's errors and the fallbacks), nothing else."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.locked = 0
        self.fallbacks = 0
        self._lock2 = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        with self._lock2:
            self.locked += "database is locked" in message
            self.fallbacks += "failed" in message and ("LLM classification" in message or "llm answer" in message)


@contextmanager
def _database(postgres: str, tmp: Path) -> Iterator[tuple[str, str]]:
    """(label, URL) of a fresh, migrated case store with the sample street."""
    def drop() -> None:
        return None

    if not postgres:
        url = f"sqlite:///{tmp / f'bench-{uuid.uuid4().hex[:6]}.db'}"
        label = "sqlite"
    else:
        schema = f"qb_llm_{uuid.uuid4().hex[:8]}"
        admin = make_engine(postgres)
        with admin.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        url = f"{postgres}{'&' if '?' in postgres else '?'}options=-csearch_path%3D{schema}"
        label = "postgres"

        def drop() -> None:  # type: ignore[misc]
            with admin.begin() as conn:
                conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
            admin.dispose()
    try:
        upgrade(url)
        yield label, url
    finally:
        drop()


def _script(n: int) -> tuple[bool, str]:
    """(known resident?, first message) of resident n: questions and reports, known and new, interleaved."""
    known = n % 2 == 0
    asks = (n // 2) % 2 == 0
    pool = QUESTIONS if asks else REPORTS
    return known, pool[(n // 4) % len(pool)]


def measure(ai: SharedAI, *, residents: int, mode: str, latency_s: float, timeout_s: float, limit: int,
            postgres: str = "", tmp: Path) -> Run:
    """One measurement: a fresh database, a fresh test server in `mode`, all residents at once."""
    policies = load_policies()
    counter = _Counter()
    root = logging.getLogger()
    root.addHandler(counter)
    try:
        with _database(postgres, tmp) as (label, url), OpenAICompatServer() as server:
            run = Run(db=label, mode=mode, residents=residents, limit=limit, timeout_s=timeout_s,
                      latency_s=latency_s)
            settings = Settings(_env_file=None, database_url=url, var_dir=tmp / "var",  # type: ignore[call-arg]
                                chroma_dir=tmp / "chroma", openai_base_url=server.base_url,
                                openai_api_key=SecretStr("bench"), llm_timeout_s=timeout_s,
                                llm_max_concurrency=limit)
            engine = make_engine(url)
            with session_scope(engine) as session:
                sync_org(session=session, grids=policies.grids)
            classifier = MessageClassifier(model_dir=tmp / "models", llm=llm_from_settings(settings),
                                           policies=policies, models=ai.classifier.models)
            knowledge = KnowledgeService(retriever=ai.knowledge.retriever, faq=ai.knowledge.faq,
                                         llm=llm_from_settings(settings))
            services = Services(settings, clock=SystemClock(), engine=engine, policies=policies,
                                classifier=classifier, knowledge=knowledge)
            server.answer_sensibly(lambda content: ai.classifier.understand_offline(content).labels())
            clock = SystemClock()
            warm = FIRST_USER - 1  # models, indexes and the client warmed outside the measurement
            make_resident(engine, policies, user=warm, clock=clock)
            services.dialogue.handle(_text(warm, QUESTIONS[0]))
            scripts = {}
            for n in range(residents):
                known, first = _script(n)
                if known:
                    make_resident(engine, policies, user=FIRST_USER + n, clock=clock)
                scripts[FIRST_USER + n] = (known, first)
            server.clear()
            counter.locked = counter.fallbacks = 0
            if mode == "hang":
                server.hang()
            else:
                server.set_latency(latency_s)
            start = threading.Barrier(residents)

            def resident(user: int) -> tuple[float, str, list[float], int]:
                known, first = scripts[user]
                start.wait()
                t0 = time.monotonic()
                said = _all(services.dialogue.handle(_text(user, first)))
                first_s = time.monotonic() - t0
                errors = int(SYSTEM_ERROR in said)
                later: list[float] = []
                for _ in range(3):  # a known reporter answers the follow-ups until the case is opened
                    if not known or first in QUESTIONS:
                        break
                    if "照片" in said and "跳过" in said:
                        reply = "跳过"
                    elif "我帮您登记" in said:
                        reply = "对"
                    else:
                        break
                    t1 = time.monotonic()
                    said = _all(services.dialogue.handle(_text(user, reply)))
                    later.append(time.monotonic() - t1)
                    errors += SYSTEM_ERROR in said
                return first_s, f"{'known' if known else 'new'}: {first}", later, errors

            with ThreadPoolExecutor(residents) as pool:
                released = time.monotonic()
                results = list(pool.map(resident, scripts))
            run.arrivals = sorted(round(r["t"] - released, 2) for r in server.chat_requests())
            run.llm_requests = len(server.chat_requests())
            run.peak_in_flight = server.peak_in_flight
            run.slowest = sorted(((round(r[0], 2), r[1]) for r in results), reverse=True)[:5]
            for first_s, _, later, errors in results:
                run.first.append(first_s)
                run.follow_ups.extend(later)
                run.system_errors += errors
            with session_scope(engine) as session:
                run.cases = int(session.execute(select(func.count()).select_from(Case)).scalar_one())
            run.locked, run.fallbacks = counter.locked, counter.fallbacks
            engine.dispose()
            return run
    finally:
        root.removeHandler(counter)


def _text(user: int, body: str) -> Incoming:
    return Incoming(channel="telegram", user_id=user, chat_id=user, kind="text", text=body)


def _all(reply: object) -> str:
    return "\n".join(m.text for m in getattr(reply, "messages", []))


def table(runs: list[Run]) -> str:
    head = (f"{'db':<9}{'LLM':<6}{'limit':>6}{'n':>5}{'p50 s':>8}{'p95 s':>8}{'max s':>8}{'target':>9}"
            f"{'follow p95':>11}{'开小差':>5}{'locked':>7}{'cases':>6}{'calls':>6}{'peak':>5}{'fallback':>9}  ok")
    lines = [head, "-" * len(head)]
    for r in runs:
        lines.append(f"{r.db:<9}{r.mode:<6}{r.limit:>6}{r.residents:>5}{statistics.median(r.first):>8.2f}"
                     f"{r.p(0.95):>8.2f}{max(r.first):>8.2f}{'≤' + format(r.target_s, '.1f'):>9}"
                     f"{r.p(0.95, r.follow_ups) if r.follow_ups else float('nan'):>11.2f}{r.system_errors:>7}"
                     f"{r.locked:>7}{r.cases:>6}{r.llm_requests:>6}{r.peak_in_flight:>5}{r.fallbacks:>9}  "
                     f"{('yes' if r.ok else 'NO') if r.targeted else '-'}")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--residents", type=int, default=50)
    ap.add_argument("--latency", type=float, default=2.0, help="seconds each call takes in the slow mode")
    ap.add_argument("--timeout", type=float, default=8.0, help="LLM_TIMEOUT_S")
    ap.add_argument("--limits", default="80",
                    help="LLM_MAX_CONCURRENCY values, comma-separated (the first one has targets)")
    ap.add_argument("--modes", default="slow,hang")
    ap.add_argument("--postgres", default="", help="also measure on a fresh schema of this PostgreSQL URL")
    args = ap.parse_args()
    logging.getLogger("bm25s").setLevel(logging.WARNING)
    limits = [int(x) for x in args.limits.split(",") if x.strip()]
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    with tempfile.TemporaryDirectory(prefix="bench-llm-") as tmp_dir:
        tmp = Path(tmp_dir)
        ai = shared_ai(tmp / "ai")
        runs: list[Run] = []
        for postgres in ["", *([args.postgres] if args.postgres else [])]:
            for mode in modes:
                for limit in limits:
                    run = measure(ai, residents=args.residents, mode=mode, latency_s=args.latency,
                                  timeout_s=args.timeout, limit=limit, postgres=postgres, tmp=tmp)
                    run.targeted = limit == limits[0]
                    runs.append(run)
                    print(f"  {run.db} {run.mode} limit {limit}: p95 {run.p(0.95):.2f} s", flush=True)
    print(f"\n{args.residents} residents at once, latency {args.latency:g} s (slow) or none answered (hang), "
          f"LLM_TIMEOUT_S {args.timeout:g}\n")
    print(table(runs))
    print()
    for r in runs:
        if r.targeted:
            print(f"{r.db} {r.mode}: first-message p95 {r.p(0.95):.2f} s (target ≤ {r.target_s:.1f} s), "
                  f"{r.system_errors} 系统开小差 (target 0), {r.locked} database is locked (target 0)")
    return 0 if all(r.ok for r in runs if r.targeted) else 1


if __name__ == "__main__":
    raise SystemExit(main())
