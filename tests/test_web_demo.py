"""`quanbot web --demo` on a demo day: it prints a one-time login that works (and retires the previous one), the
console opens on the demo's clock, and the overview's figures are the ones `quanbot stats --json` prints for
the same database (one definition, casestore.stats)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import pytest
from sqlmodel import Session

from bot.demo.runner import demo_settings, prepare_dir, run_day, setup_environment
from bot.demo.scenario import scenario_from_dict
from bot.settings import PROJECT_ROOT, Settings
from bot.web.demo import OffsetClock
from casestore.db import make_engine
from casestore.stats import overview
from knowledge.service import KnowledgeRuntime
from tests.embedders import HASH_THRESHOLDS, HashEmbedder
from tests.test_demo import small_scenario
from tests.web_support import free_port, login

LOGIN_LINE = re.compile(r"演示登录：用户名 ([\w-]+)\s+密码 ([\w-]+)")


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("webdemo") / "demo"
    prepare_dir(out)
    base = Settings(_env_file=None, var_dir=PROJECT_ROOT / "var")  # type: ignore[call-arg]
    settings = demo_settings(base, out)
    runtime = KnowledgeRuntime(settings, embedder=HashEmbedder(), thresholds=HASH_THRESHOLDS)
    setup = setup_environment(settings, knowledge=runtime)
    assert setup.missing == []
    run_day(setup, out=out, seed=11, scenario=scenario_from_dict(small_scenario()))
    return out


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "CHROMA_DIR", "TELEGRAM_TOKEN")} | {
        "ANONYMIZED_TELEMETRY": "False", "COLUMNS": "200"}


@pytest.fixture
def web_demo(demo_dir: Path) -> Iterator[tuple[str, str, str]]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "bot.cli", "web", "--demo", "--demo-dir", str(demo_dir),
                             "--port", str(port), "--no-jobs"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env=_env(), cwd=PROJECT_ROOT)
    try:
        assert proc.stdout is not None
        username = password = ""
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and not username:
            line = proc.stdout.readline()
            if not line and proc.poll() is not None:
                raise AssertionError(f"quanbot web --demo exited with {proc.returncode}")
            found = LOGIN_LINE.search(line)
            if found:
                username, password = found.group(1), found.group(2)
        assert username, "no one-time login printed"
        base = f"http://127.0.0.1:{port}"
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{base}/login", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        yield base, username, password
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_the_one_time_login_opens_the_demo_day_and_the_overview_is_casestore_stats(
        web_demo: tuple[str, str, str], demo_dir: Path) -> None:
    """The page's figures are casestore.stats.overview at the console's clock (tests/test_stats_one_definition.py
    proves `quanbot stats --json` prints that same overview)."""
    base, username, password = web_demo
    client = login(base, username, password)
    page = client.get("/")
    assert "演示模式" in page.text and "今日" in page.text and "本周" in page.text
    # the demo's follow-up days end after the simulated day: the banner says why 今日 may be empty
    assert "模拟日是" in page.text and "所以「今日」里可能没有新工单" in page.text
    shown = client.get("/api/overview").json()
    now = datetime.fromisoformat(shown["now"])
    # the console's clock is the end of the demo's day, not the wall clock
    assert now.date() < datetime.now(UTC).date()
    engine = make_engine(f"sqlite:///{demo_dir / 'quanbot.db'}")
    try:
        with Session(engine) as session:
            expected = overview(session=session, now=now).to_dict()
    finally:
        engine.dispose()
    for window in ("today", "week", "all"):
        assert shown[window] == expected[window], window
    assert shown["all"]["cases"] > 0
    fragment = client.get("/overview/fragment")
    assert fragment.status_code == 200 and str(shown["all"]["cases"]) in fragment.text


def test_a_second_start_retires_the_first_login(demo_dir: Path, web_demo: tuple[str, str, str]) -> None:
    base, first_user, first_password = web_demo
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "bot.cli", "web", "--demo", "--demo-dir", str(demo_dir),
                             "--port", str(port), "--no-jobs"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env=_env(), cwd=PROJECT_ROOT)
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if LOGIN_LINE.search(proc.stdout.readline() or ""):
                break
        client = httpx.Client(base_url=base)
        form = client.get("/login").text
        token = re.search(r'name="form_token" value="([^"]+)"', form)
        assert token
        old = client.post("/login", data={"username": first_user, "password": first_password,
                                          "form_token": token.group(1)})
        assert old.status_code == 401
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_without_a_demo_it_says_to_run_make_demo(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "bot.cli", "web", "--demo", "--demo-dir", str(tmp_path / "none")],
                          capture_output=True, text=True, env=_env(), timeout=60, cwd=PROJECT_ROOT)
    assert done.returncode == 2 and "make demo" in done.stderr and "Traceback" not in done.stderr


def test_the_demo_note_names_the_simulated_day_only_when_the_clock_has_left_it() -> None:
    tz = ZoneInfo("Asia/Shanghai")
    day = datetime(2026, 11, 18, 1, 0, tzinfo=UTC)  # 09:00 local
    assert OffsetClock(day + timedelta(hours=10), first=day, tz=tz).demo_note == ""
    later = OffsetClock(day + timedelta(days=4), first=day, tz=tz).demo_note
    assert "模拟日是 11月18日" in later and "11月22日 09:00" in later and "「本周」和「全部」" in later
    next_week = OffsetClock(day + timedelta(days=6), first=day, tz=tz).demo_note
    assert "「本周」" not in next_week and "「全部」" in next_week
