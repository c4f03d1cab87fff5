"""Chaos on the Official Account channel: `quanbot run` (WeChat only, the real dialogue engine) killed with SIGKILL
mid-burst and once more during the replay that follows, then started a third time; on SQLite and PostgreSQL.

The burst is 102 encrypted callbacks from 30 residents, 15 of them posted twice: 24 reporters (consented, address
set) each report a problem (`problem`, `跳过`, `1` = the numbered 对), 6 newcomers follow the account (subscribe
event), type `1` (同意), an address, a policy question and a thank-you. The driver behaves like WeChat: a callback
that got no "success" (the process was down or killed mid-request) is posted again until one does. After the last
start every callback must be handled once, each resident's transcript must equal the one the same engine gives
the same script in-process without WeChat or crashes (digits set aside), and each reporter has one case. What may
differ is a reply sent again after a kill caught it between WeChat accepting it and its outbox row being marked
sent: it shows as an immediate repeat and is counted ("re-sent"), bounded by the claims the restarts took back.

    TEST_DATABASE_URL=... .venv/bin/python -m pytest -q -s -p no:cacheprovider tests/test_wechat_chaos.py
"""

from __future__ import annotations

import os
import random
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from bot.channels.callback import CallbackSigner
from bot.channels.inbox import Inbox
from bot.channels.wechat_render import WeChatRenderer
from bot.channels.wechat_store import alias_of
from bot.dialogue.types import Incoming
from bot.services import Services
from bot.settings import Settings
from casestore.clock import SystemClock
from casestore.db import make_engine, session_scope, upgrade
from casestore.dispatch import count_replies
from casestore.models import Case, Conversation
from casestore.org import sync_org
from policies.loader import load_policies
from policies.models import Policies
from tests.factories import AI_CACHE, SharedAI, make_resident, resident_of, shared_ai
from tests.servers.wechat import AES_KEY, APP_ID, APP_SECRET, TOKEN, CallbackDriver, WeChatApiServer
from tests.test_chaos_telegram import FURONG, PROBLEMS, QUSHUI, _compare, order_free_policies

KILLS = 2
DUPLICATES = 15
_DIGITS = re.compile(r"\d")


def _norm(text: str) -> str:
    return _DIGITS.sub("0", text)


@dataclass
class Msg:
    openid: str
    kind: str  # "text" | "subscribe"
    text: str
    msg_id: int


@dataclass
class Script:
    chats: dict[str, list[Msg]] = field(default_factory=dict)
    homes: dict[str, tuple[str, int]] = field(default_factory=dict)
    order: list[Msg] = field(default_factory=list)  # duplicates included

    @property
    def messages(self) -> int:
        return sum(len(m) for m in self.chats.values())


def build_script(rng: random.Random) -> Script:
    script = Script()
    steps: dict[str, list[tuple[str, str]]] = {}
    for category, problem in enumerate(PROBLEMS):
        homes = [FURONG[(category + k) % len(FURONG)] for k in range(2)]
        homes += [QUSHUI[(category + k) % len(QUSHUI)] for k in range(2)]
        for k, home in enumerate(homes):
            openid = f"oREP{category}{k}_chaos"
            script.homes[openid] = home
            steps[openid] = [("text", problem), ("text", "跳过"), ("text", "1")]
    for k in range(6):
        steps[f"oNEW{k}_chaos"] = [("subscribe", ""), ("text", "1"), ("text", "芙蓉小区3号楼2单元"),
                                   ("text", "办居住证要带什么"), ("text", "谢谢")]
    left = {user: list(s) for user, s in steps.items()}
    msg_id = 5_000_000_000
    while left:
        user = rng.choice(sorted(left))
        kind, text = left[user].pop(0)
        if not left[user]:
            del left[user]
        msg_id += 1
        msg = Msg(user, kind, text, msg_id)
        script.chats.setdefault(user, []).append(msg)
        script.order.append(msg)
    for dup in rng.sample(list(script.order), DUPLICATES):  # a retry right after its original
        script.order.insert(script.order.index(dup) + 1, dup)
    return script


def seed(engine: Engine, policies: Policies, script: Script) -> None:
    for openid, (estate, building) in script.homes.items():
        make_resident(engine, policies, user=alias_of("wechat", openid), clock=SystemClock(), estate=estate,
                      building=building, unit=1, channel="wechat")


@dataclass
class Reference:
    transcripts: dict[str, list[str]]
    states: dict[int, str]


def reference_run(script: Script, policies: Policies, ai: SharedAI, tmp: Path) -> Reference:
    """The same script through the same engine in-process, chat after chat, no WeChat, no crash; a typed number
    picks from the choices of the reply before, as the channel's menu does."""
    url = f"sqlite:///{tmp / 'reference.db'}"
    upgrade(url)
    engine = make_engine(url)
    with session_scope(engine) as session:
        sync_org(session=session, grids=policies.grids)
    seed(engine, policies, script)
    settings = Settings(_env_file=None, database_url=url, var_dir=tmp / "var", chroma_dir=tmp / "chroma")  # type: ignore[call-arg]
    services = Services(settings, engine=engine, policies=policies, classifier=ai.classifier, knowledge=ai.knowledge)
    renderer = WeChatRenderer(CallbackSigner(b"reference"))
    transcripts: dict[str, list[str]] = {}
    try:
        for openid, msgs in script.chats.items():
            alias = alias_of("wechat", openid)
            said = transcripts.setdefault(openid, [])
            menu: list[list[str]] = []
            for msg in msgs:
                base = {"channel": "wechat", "user_id": alias, "chat_id": alias}
                if msg.kind == "subscribe":
                    incoming = Incoming(kind="command", text="/start", command="start", **base)  # type: ignore[arg-type]
                else:
                    picked, button = renderer.choice_for(msg.text, menu)
                    incoming = (Incoming(kind="button", button=button, **base)  # type: ignore[arg-type]
                                if picked and button is not None else
                                Incoming(kind="text", text=msg.text, **base))  # type: ignore[arg-type]
                messages = services.dialogue.handle(incoming).messages
                menu = renderer.choices(messages)
                said.extend(_norm(p.text) for parts in renderer.render_reply(messages) for p in parts)
        with session_scope(engine) as session:
            rows = session.execute(select(Conversation.user_id, Conversation.state)).all()
        states = {int(u): s for u, s in rows}
    finally:
        services.close()
    return Reference(transcripts, states)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Bot:
    """`quanbot run` with only the Official Account configured, as a child process."""

    def __init__(self, *, server: WeChatApiServer, database_url: str, tmp: Path, port: int, policies_dir: Path):
        self.env = {**os.environ, "DATABASE_URL": database_url, "POLICIES_DIR": str(policies_dir),
                    "VAR_DIR": str(AI_CACHE), "CHROMA_DIR": str(tmp / "chroma"), "LOG_LEVEL": "INFO",
                    "WECHAT_APP_ID": APP_ID,
                    "WECHAT_APP_SECRET": APP_SECRET, "WECHAT_TOKEN": TOKEN, "WECHAT_ENCODING_AES_KEY": AES_KEY,
                    "WECHAT_CALLBACK_URL": "https://wx.example.invalid/wechat", "WECHAT_PORT": str(port),
                    "WECHAT_BASE_URL": server.base_url, "WECHAT_LIMIT_RETRY_S": "1"}
        self.env.pop("TELEGRAM_TOKEN", None)
        self.tmp = tmp
        self.starts = 0
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.starts += 1
        out = (self.tmp / f"bot-{self.starts}.log").open("wb")
        self.proc = subprocess.Popen([sys.executable, "-m", "bot.cli", "run", "--no-scheduler"], env=self.env,
                                     cwd=self.tmp, stdout=out, stderr=subprocess.STDOUT)
        out.close()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig: int) -> int:
        assert self.proc is not None
        self.proc.send_signal(sig)
        return self.proc.wait(timeout=30)

    def logs(self) -> str:
        return "".join((self.tmp / f"bot-{i}.log").read_text("utf-8", "replace") for i in range(1, self.starts + 1))

    def close(self) -> None:
        if self.alive():
            assert self.proc is not None
            self.proc.kill()
            self.proc.wait(timeout=10)


def _wait(condition: Callable[[], bool], timeout: float, what: str, bot: Bot) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert bot.alive(), f"the bot exited: {bot.logs()[-3000:]}"
        assert time.monotonic() < deadline, f"{what} did not happen in {timeout}s; log tail:\n{bot.logs()[-3000:]}"
        time.sleep(0.02)


def _post(driver: CallbackDriver, msg: Msg) -> bool:
    """One delivery attempt as WeChat makes it; True once the channel answered "success"."""
    xml = (driver.event(msg.openid, "subscribe", create_time=msg.msg_id % 10**9) if msg.kind == "subscribe"
           else driver.text(msg.openid, msg.text, msg_id=msg.msg_id))
    try:
        return driver.post(xml, timeout=10) == (200, "success")
    except OSError:  # refused or reset: the process is down or was killed mid-request
        return False


@dataclass
class Figures:
    lost: int = 0
    handled_twice: int = 0
    resent: int = 0
    unanswered: int = 0
    reporters_without_case: int = 0
    duplicate_cases: int = 0
    released: int = 0
    details: list[str] = field(default_factory=list)


def measure(server: WeChatApiServer, engine: Engine, script: Script, ref: Reference) -> Figures:
    figures = Figures()
    for openid, expected in ref.transcripts.items():
        got = [_norm(t) for t in server.texts_to(openid)]
        resent, extra, lost = _compare(got, expected)
        figures.resent += resent
        figures.handled_twice += extra
        figures.lost += lost
        figures.unanswered += int(not got)
        if extra or lost:
            figures.details.append(f"{openid}: got {got} expected {expected}")
    with session_scope(engine) as session:
        rows = session.execute(select(Conversation.user_id, Conversation.state)
                               .where(Conversation.channel == "wechat")).all()
    states = {int(u): s for u, s in rows}
    for openid in script.chats:
        alias = alias_of("wechat", openid)
        if states.get(alias) != ref.states.get(alias):
            figures.handled_twice += 1
            figures.details.append(f"{openid}: state {states.get(alias)} expected {ref.states.get(alias)}")
    inbox = Inbox(engine, channel="wechat")
    figures.lost += sum(1 for msgs in script.chats.values() for m in msgs
                        if m.kind == "text" and ((e := inbox.get(update_id=m.msg_id)) is None or e.state != "done"))
    figures.lost += max(0, script.messages - inbox.count(state="done"))
    with session_scope(engine) as session:
        for openid in script.homes:
            resident = resident_of(session, alias_of("wechat", openid), channel="wechat")
            assert resident is not None
            n = session.execute(select(func.count()).select_from(Case)
                                .where(Case.resident_id == resident.id)).scalar_one()
            figures.reporters_without_case += int(n == 0)
            figures.duplicate_cases += max(0, n - 1)
    return figures


@pytest.fixture(scope="module")
def ai(tmp_path_factory: pytest.TempPathFactory) -> SharedAI:
    return shared_ai(tmp_path_factory.mktemp("ai"))


@pytest.fixture(scope="module")
def chaos_seed() -> int:
    return int(os.environ.get("CHAOS_SEED") or random.SystemRandom().randrange(1, 10**6))


@pytest.fixture(scope="module")
def policies_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return order_free_policies(tmp_path_factory.mktemp("policies"))


@pytest.fixture(scope="module")
def policies(policies_dir: Path) -> Policies:
    return load_policies(policies_dir)


@pytest.fixture(scope="module")
def script(chaos_seed: int) -> Script:
    return build_script(random.Random(chaos_seed))


@pytest.fixture(scope="module")
def reference(script: Script, policies: Policies, ai: SharedAI, tmp_path_factory: pytest.TempPathFactory) -> Reference:
    return reference_run(script, policies, ai, tmp_path_factory.mktemp("reference"))


@pytest.fixture(params=["sqlite", "postgresql"])
def chaos_db(request: pytest.FixtureRequest, engine: Engine, settings: Settings) -> Iterator[tuple[Engine, str]]:
    if request.param == "sqlite":
        yield engine, settings.database_url
    else:
        yield request.getfixturevalue("pg_engine"), request.getfixturevalue("pg_url")


def test_kill_minus_nine_mid_burst_loses_nothing_and_handles_nothing_twice(
        chaos_db: tuple[Engine, str], policies: Policies, policies_dir: Path, script: Script, reference: Reference,
        chaos_seed: int, tmp_path: Path) -> None:
    engine, url = chaos_db
    rng = random.Random(chaos_seed)
    label = f"{engine.dialect.name} seed={chaos_seed}"
    assert script.messages == 102 and len(script.order) == 102 + DUPLICATES
    seed(engine, policies, script)
    port = _free_port()
    inbox = Inbox(engine, channel="wechat")
    log: list[str] = []
    t0 = time.monotonic()
    with WeChatApiServer() as server:
        driver = CallbackDriver(f"http://127.0.0.1:{port}/wechat")
        bot = Bot(server=server, database_url=url, tmp=tmp_path, port=port, policies_dir=policies_dir)

        def up() -> bool:
            try:
                return driver.verify("ping")[0] == 200
            except OSError:
                return False

        def finished() -> bool:
            return (inbox.count(state="done") >= script.messages
                    and count_replies(engine=engine, channel="wechat", unsent=True) == 0)

        try:
            pending = list(script.order)
            kill_after = rng.randint(20, 70)  # callbacks answered before the first kill
            for kill in range(KILLS + 1):
                bot.start()
                _wait(up, 120, f"start {kill + 1}: the callback answers", bot)
                if kill >= 1:  # during the replay of what the last run left: a few more callbacks, then kill
                    kill_after = len(script.order) - len(pending) + rng.randint(0, 10)
                    time.sleep(rng.uniform(0, 0.3))
                while pending and (kill == KILLS or len(script.order) - len(pending) < kill_after):
                    if _post(driver, pending[0]):
                        pending.pop(0)
                    else:
                        assert bot.alive(), bot.logs()[-3000:]
                if kill == KILLS:
                    break
                time.sleep(rng.uniform(0, 0.05))
                done = inbox.count(state="done")
                assert bot.signal(signal.SIGKILL) == -signal.SIGKILL
                log.append(f"kill {kill + 1} after {len(script.order) - len(pending)} callbacks answered, "
                           f"{done} handled ({time.monotonic() - t0:.1f}s)")
            _wait(finished, 120, "the last start: every callback handled and answered", bot)
            log.append(f"all done at {time.monotonic() - t0:.1f}s")
            assert bot.signal(signal.SIGTERM) == 0, bot.logs()[-3000:]
        finally:
            bot.close()
        figures = measure(server, engine, script, reference)
        figures.released = sum(int(m) for m in re.findall(r"(\d+) wechat replies were being sent", bot.logs()))
    print(f"\n[wechat chaos {label}] {script.messages} callbacks from {len(script.chats)} residents, {DUPLICATES} "
          f"posted twice; {'; '.join(log)}")
    print(f"[wechat chaos {label}] lost {figures.lost}, handled twice {figures.handled_twice}, unanswered "
          f"{figures.unanswered}, reporters without a case {figures.reporters_without_case}, duplicate cases "
          f"{figures.duplicate_cases}; re-sent after a kill {figures.resent} (claims taken back: {figures.released})")
    (tmp_path / "details.txt").write_text("\n".join(figures.details), "utf-8")
    assert (figures.lost, figures.handled_twice, figures.unanswered) == (0, 0, 0), figures.details[:5]
    assert (figures.reporters_without_case, figures.duplicate_cases) == (0, 0)
    assert figures.resent <= figures.released, "re-sent replies that no killed run's claim explains"
