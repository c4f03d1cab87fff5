"""Outgoing messages as channel-neutral data, and the `Notifier` seam that delivers them.

Notification rows are the durable outbound queue: a service records a `Notification` (pending) in the
same transaction as the case change that caused it; a dispatcher later claims pending rows, calls the
Notifier, and marks them sent. Channels (Telegram, terminal, a recording one for tests and the demo)
implement `Notifier`; they render buttons and respect their own limits.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True)
class Button:
    label: str  # shown to the person, Chinese
    action: str  # e.g. "accept", "respond", "resolve", "transfer", "extend", "rate", "useful", "human"
    case_code: str | None = None
    arg: str | None = None  # a small extra value (a rating "5", a choice id)


@dataclass(frozen=True)
class OutboundMessage:
    text: str
    buttons: list[list[Button]] = field(default_factory=list)
    photo: str | None = None  # a channel file id
    voice: str | None = None  # a channel file id of a resident's voice message (a 语音留言 for the worker to hear)

    def to_payload(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> OutboundMessage:
        rows = [[Button(**b) for b in row] for row in payload.get("buttons", [])]
        return cls(text=payload.get("text", ""), buttons=rows, photo=payload.get("photo"), voice=payload.get("voice"))


class DeliveryError(Exception):
    """The channel refused the message for good (blocked bot, unknown chat)."""


class RetryLater(Exception):
    """The channel asked to wait (Telegram 429 retry_after); the message stays pending."""

    def __init__(self, seconds: float):
        super().__init__(f"retry after {seconds}s")
        self.seconds = seconds


class Notifier(Protocol):
    async def send(self, *, chat_id: int, message: OutboundMessage) -> None:
        """Deliver one message or raise DeliveryError / RetryLater."""
        ...


class RecordingNotifier:
    """Keeps every message it is given: for tests and the demo's recording channel."""

    def __init__(self) -> None:
        self.sent: list[tuple[int, OutboundMessage]] = []

    async def send(self, *, chat_id: int, message: OutboundMessage) -> None:
        self.sent.append((chat_id, message))

    def texts_to(self, chat_id: int) -> list[str]:
        return [m.text for c, m in self.sent if c == chat_id]
