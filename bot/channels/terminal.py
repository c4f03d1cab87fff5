"""The terminal channel: one line in, the engine's reply out; buttons are numbered choices.

Owns: turning a typed line into an `Incoming` (a number or a label picks a button of the last reply;
`/photo 说明`, `/location 纬度,经度` and `/sticker` stand in for what a keyboard cannot send), rendering
replies as text, and a Notifier that prints pushes. Scriptable: read from any text stream, one input per
line, EOF ends.

Pushes: a window shows the pushes addressed to its own terminal account (claimed in the database, so two
windows of one person show each once), after every input and, with `start_polling`, every second while the
person is reading; that is how a resident's window and a worker's window on one database see each other.
Pushes to another terminal account are left for that person's window (shown when it opens). Pushes to
accounts of channels nobody runs here (a worker's Telegram account from grids.yaml) are printed after an input
as "→ 推送给 …：…", so one window plays the whole loop.
Must not: hold dialogue logic (the engine does) or business rules.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import threading
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, TextIO

from bot.dialogue.types import Incoming, Reply
from casestore.accounts import find_worker_by_external_id, get_worker_by_account, link_worker_account, name_of_account
from casestore.db import session_scope
from casestore.dispatch import dispatch_pending
from casestore.notify import Button, OutboundMessage

if TYPE_CHECKING:
    from bot.services import Services

log = logging.getLogger(__name__)

CHANNEL = "terminal"
BOT_NAME = "泉小智"
POLL_SECONDS = 1.0  # how often a window looks for pushes addressed to it while the person reads


def render(message: OutboundMessage, *, first_number: int = 1) -> tuple[str, list[Button]]:
    """The message as terminal text with its buttons numbered from `first_number`, and those buttons in order."""
    lines = [message.text]
    if message.photo:
        lines.append("[照片]")
    numbered: list[Button] = []
    n = first_number
    for row in message.buttons:
        bits = []
        for b in row:
            bits.append(f"[{n}] {b.label}")
            numbered.append(b)
            n += 1
        lines.append("  ".join(bits))
    return "\n".join(lines), numbered


class TerminalNotifier:
    """Prints pushes: to the person at this terminal as bot messages (their buttons become choices),
    to anyone else as "→ 推送给 <name>：<text>"."""

    def __init__(self, out: TextIO, *, self_chat_id: int, name_of: Callable[[int], str],
                 on_own_buttons: Callable[[list[Button]], None]) -> None:
        self.out = out
        self.self_chat_id = self_chat_id
        self.name_of = name_of
        self.on_own_buttons = on_own_buttons
        self._own: list[Button] = []
        self.lead = ""  # written before the next push: a line break when the cursor waits after a prompt

    async def send(self, *, chat_id: int, message: OutboundMessage) -> None:
        if chat_id == self.self_chat_id:
            text, buttons = render(message, first_number=len(self._own) + 1)
            self._own += buttons
            self.out.write(f"{self.lead}{BOT_NAME}：{text}\n")
            self.on_own_buttons(list(self._own))
        else:
            labels = "  ".join(f"[{b.label}]" for row in message.buttons for b in row)
            tail = f"\n   {labels}" if labels else ""
            self.out.write(f"{self.lead}→ 推送给 {self.name_of(chat_id)}：{message.text}{tail}\n")
        self.lead = ""
        self.out.flush()

    def start_turn(self, shown: list[Button]) -> None:
        """Pushes to this person continue the numbering of the reply just shown."""
        self._own = list(shown)


def worker_holding(services: Services, user_id: int) -> str | None:
    """The name of the active worker who holds `user_id` on any channel, or None."""
    with session_scope(services.engine) as session:
        worker = find_worker_by_external_id(session=session, external_id=user_id)
        return worker.name if worker is not None and worker.active else None


def terminal_worker(services: Services, user_id: int) -> str | None:
    """The name of the active worker whose terminal account `user_id` is (the engine treats it as theirs)."""
    with session_scope(services.engine) as session:
        worker = get_worker_by_account(session=session, channel=CHANNEL, external_id=user_id)
        return worker.name if worker is not None and worker.active else None


def link_terminal_worker(services: Services, user_id: int) -> str:
    """Make terminal user `user_id` an account of the worker who holds that id elsewhere; returns their name."""
    with session_scope(services.engine) as session:
        worker = find_worker_by_external_id(session=session, external_id=user_id)
        if worker is None or not worker.active:
            raise LookupError(f"no active worker holds id {user_id}")
        link_worker_account(session=session, worker=worker, channel=CHANNEL, external_id=user_id, actor="terminal",
                            now=services.clock.now())
        return worker.name


class TerminalChat:
    """Runs the dialogue engine for one person at the terminal."""

    def __init__(self, services: Services, *, user_id: int, out: TextIO, display_name: str = "",
                 as_worker: bool = False) -> None:
        """`as_worker`: play the worker who holds `user_id` on any channel (grids.yaml gives Telegram ids): the
        terminal account becomes one of theirs. LookupError if no worker holds it."""
        self.services = services
        if as_worker:
            link_terminal_worker(services, user_id)
        self.user_id = user_id
        self.out = out
        self.display_name = display_name
        self.choices: list[Button] = []
        self._files = itertools.count(1)
        self.notifier = TerminalNotifier(out, self_chat_id=user_id, name_of=self._name_of,
                                         on_own_buttons=self._set_choices)
        self._lock = threading.RLock()  # the input loop and the poller share the output and the choices
        self._stop = threading.Event()
        self._poller: threading.Thread | None = None

    # ---- input
    def to_incoming(self, line: str) -> Incoming:
        line = line.rstrip("\r\n")
        base = {"channel": CHANNEL, "user_id": self.user_id, "chat_id": self.user_id,
                "display_name": self.display_name}
        stripped = line.strip()
        choice = self._choice(stripped)
        if choice is not None:
            return Incoming(kind="button", button=choice, **base)  # type: ignore[arg-type]
        if stripped.startswith("/"):
            name, _, args = stripped[1:].partition(" ")
            name = name.lower()
            if name == "photo":
                return Incoming(kind="photo", text=args.strip(), photo_file_id=f"terminal-photo-{next(self._files)}",
                                **base)  # type: ignore[arg-type]
            if name == "location":
                try:
                    lat, lng = (float(x) for x in args.replace("，", ",").split(",", 1))
                    return Incoming(kind="location", location=(lat, lng), **base)  # type: ignore[arg-type]
                except ValueError:
                    return Incoming(kind="text", text=stripped, **base)  # type: ignore[arg-type]
            if name in ("sticker", "voice", "document"):
                return Incoming(kind="unsupported", unsupported_type=name, **base)  # type: ignore[arg-type]
            return Incoming(kind="command", text=stripped, command=name, args=args.strip(), **base)  # type: ignore[arg-type]
        return Incoming(kind="text", text=line, **base)  # type: ignore[arg-type]

    def _choice(self, text: str) -> Button | None:
        if not self.choices or not text:
            return None
        if text.isdigit() and 1 <= int(text) <= len(self.choices):
            return self.choices[int(text) - 1]
        return next((b for b in self.choices if b.label == text), None)

    def _set_choices(self, buttons: list[Button]) -> None:
        self.choices = buttons

    # ---- output
    def show(self, reply: Reply) -> None:
        self.choices = []
        for message in reply.messages:
            text, buttons = render(message, first_number=len(self.choices) + 1)
            self.choices += buttons
            self.out.write(f"{BOT_NAME}：{text}\n")
        self.out.flush()

    def _name_of(self, chat_id: int) -> str:
        with session_scope(self.services.engine) as session:
            return name_of_account(session=session, channel=None, external_id=chat_id) or f"会话 {chat_id}"

    # ---- loop
    def deliver(self, *, others: bool = False) -> int:
        """Show the pushes due to this window's account (with `others`, print those to accounts on channels
        no window serves, too); returns how many this window took."""
        engine, clock = self.services.engine, self.services.clock
        with self._lock:
            sent = asyncio.run(dispatch_pending(engine=engine, notifier=self.notifier, clock=clock, channel=CHANNEL,
                                                chat_id=self.user_id))
            if others:
                sent += asyncio.run(dispatch_pending(engine=engine, notifier=self.notifier, clock=clock,
                                                     except_channel=CHANNEL))
            return sent

    def step(self, line: str) -> Reply:
        """One input: handle it, show the reply, then deliver pushes (the task push to the worker...)."""
        reply = self.services.dialogue.handle(self.to_incoming(line))
        with self._lock:
            self.show(reply)
            self.notifier.start_turn(self.choices)
            self.deliver(others=True)
        return reply

    def start_polling(self, *, every: float = POLL_SECONDS, after_push: Callable[[], None] | None = None) -> None:
        """Look for this window's pushes every `every` seconds in a thread, until `stop_polling`; `after_push`
        runs after a push is shown (to show the prompt again)."""
        def poll() -> None:
            while not self._stop.wait(every):
                try:
                    with self._lock:
                        self.notifier.lead = "\n" if after_push is not None else ""
                        if self.deliver() and after_push is not None:
                            after_push()
                        self.notifier.lead = ""
                except Exception as exc:  # noqa: BLE001 - a failed poll is retried next second; the chat goes on
                    log.warning("terminal poll failed: %s", type(exc).__name__)

        self._stop.clear()
        self._poller = threading.Thread(target=poll, name="quanbot-terminal-poll", daemon=True)
        self._poller.start()

    def stop_polling(self) -> None:
        self._stop.set()
        if self._poller is not None:
            self._poller.join(timeout=10)
            self._poller = None

    def run(self, lines: Iterable[str], *, prompt: Callable[[], None] | None = None) -> int:
        """Handle every line until EOF; returns how many inputs were handled."""
        count = 0
        if prompt:
            prompt()
        for line in lines:
            self.step(line)
            count += 1
            if prompt:
                prompt()
        return count
