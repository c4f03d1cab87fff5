"""What a channel hands the dialogue engine, and what it gets back. No channel types leak past here."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from casestore.notify import Button, OutboundMessage

IncomingKind = Literal["text", "command", "button", "photo", "location", "voice", "unsupported"]


@dataclass(frozen=True)
class Voice:
    """A voice message as any channel hands it over; `transcript` / `problem` are filled in before the turn, outside
    any transaction (bot.dialogue.voice.transcribe)."""

    file_id: str  # the channel's reference: the grid worker listens to it through the same channel
    duration: int  # seconds, as the channel reports it
    mime_type: str = ""
    audio: bytes | None = field(default=None, repr=False)  # the downloaded file; None: not fetched or fetch failed
    fetch_failed: bool = False  # the channel could not download it (the file id still works for the worker)
    transcript: str | None = None  # the spoken words (raw, like typed text); None: not transcribed
    problem: str = ""  # why not: "offline" | "too_long" | "broken" | "unsupported" | "failed" | "empty"


@dataclass(frozen=True)
class Incoming:
    channel: str  # "telegram" | "terminal" | "demo"
    user_id: int  # the person's id on that channel
    chat_id: int  # where replies go
    kind: IncomingKind
    text: str = ""  # message text or photo caption (raw: the engine masks before storing or logging)
    command: str | None = None  # "start", "mycases", "tasks", ... without the slash
    args: str = ""
    button: Button | None = None  # a decoded, signature-checked button press
    photo_file_id: str | None = None
    location: tuple[float, float] | None = None
    display_name: str = ""
    unsupported_type: str | None = None  # "sticker", "voice", "document", ...
    voice: Voice | None = None


@dataclass
class Reply:
    """The engine's answer to one incoming update: messages to the same chat, in order."""

    messages: list[OutboundMessage] = field(default_factory=list)

    def say(self, text: str, buttons: list[list[Button]] | None = None) -> Reply:
        self.messages.append(OutboundMessage(text=text, buttons=buttons or []))
        return self
