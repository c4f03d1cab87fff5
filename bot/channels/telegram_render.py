"""The one Telegram renderer: `OutboundMessage` -> what the Bot API accepts.

It knows Telegram's limits: 4096 characters a text message, 1024 a photo caption, 64 bytes of
callback_data (signed short tokens from `callback.py`). Text goes out as plain text with no parse_mode,
everywhere and always, so user-written text never needs escaping and can never break markup or be cut
inside an entity when long replies are split. Limits are counted in UTF-16 code units, as Telegram does,
so an emoji counts twice. Must not: talk to the network or decide what to say.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from telegram import InlineKeyboardButton, InlineKeyboardMarkup

from bot.channels.callback import CallbackSigner
from casestore.notify import OutboundMessage

MAX_TEXT = 4096
MAX_CAPTION = 1024
MAX_BUTTON_LABEL = 64
VOICE_CAPTION = "🔊 居民的语音留言"
# sentence ends in Chinese and Western punctuation, optionally followed by closing quotes/brackets
_SENTENCE_END = re.compile(r"[。！？；!?;…]+[”’」』）)]*|\.(?=\s)")


@dataclass(frozen=True)
class TelegramPart:
    """One Bot API send: a text message, or a photo / voice with an optional caption."""

    text: str
    reply_markup: InlineKeyboardMarkup | None = None
    photo: str | None = None
    voice: str | None = None


def utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def split_text(text: str, limit: int = MAX_TEXT) -> list[str]:
    """Split `text` into chunks of at most `limit` UTF-16 units, preferring paragraph, line, sentence,
    then word boundaries; joining the chunks gives back the text (nothing is lost or reordered)."""
    if limit < 2:
        raise ValueError("limit too small")
    chunks: list[str] = []
    rest = text
    while utf16_len(rest) > limit:
        head = _prefix_within(rest, limit)
        cut = _best_cut(head)
        chunks.append(rest[:cut])
        rest = rest[cut:]
    if rest or not chunks:
        chunks.append(rest)
    return chunks


def _prefix_within(text: str, limit: int) -> str:
    """The longest prefix of `text` with at most `limit` UTF-16 units (never splits a surrogate pair)."""
    units = 0
    for i, ch in enumerate(text):
        units += 2 if ord(ch) > 0xFFFF else 1
        if units > limit:
            return text[:i]
    return text


def _best_cut(head: str) -> int:
    """Where to end a chunk that may use all of `head`: the last good boundary in its second half."""
    floor = len(head) // 2  # never produce tiny chunks because of an early boundary
    for sep in ("\n\n", "\n"):
        pos = head.rfind(sep)
        if pos >= floor:
            return pos + len(sep)
    ends = [m.end() for m in _SENTENCE_END.finditer(head) if m.end() >= floor]
    if ends:
        return ends[-1]
    pos = max(head.rfind(" "), head.rfind("，"), head.rfind(","))
    if pos >= floor:
        return pos + 1
    return len(head)


class TelegramRenderer:
    """Turns channel-neutral messages into Telegram parts (text chunks, photo, inline keyboard)."""

    def __init__(self, signer: CallbackSigner):
        self.signer = signer

    def keyboard(self, message: OutboundMessage) -> InlineKeyboardMarkup | None:
        rows = [
            [
                InlineKeyboardButton(_clip(b.label or b.action, MAX_BUTTON_LABEL), callback_data=self.signer.encode(b))
                for b in row
            ]
            for row in message.buttons
            if row
        ]
        return InlineKeyboardMarkup(rows) if rows else None

    def render(self, message: OutboundMessage) -> list[TelegramPart]:
        """The sends for one message, in order; the keyboard goes on the last part. Empty -> []."""
        markup = self.keyboard(message)
        text = message.text or ""
        parts: list[TelegramPart] = []
        if message.voice:  # the resident's voice first, then the words and buttons about it
            parts.append(TelegramPart(text=VOICE_CAPTION, voice=message.voice))
        if message.photo:
            caption = text if utf16_len(text) <= MAX_CAPTION else ""
            parts.append(TelegramPart(text=caption, photo=message.photo))
            if caption:
                text = ""
        if text.strip():
            parts.extend(TelegramPart(text=chunk) for chunk in split_text(text) if chunk.strip())
        if not parts:
            if markup is None:
                return []
            parts.append(TelegramPart(text="请选择："))  # a keyboard needs a message to sit on
        if markup is not None:
            last = parts[-1]
            parts[-1] = TelegramPart(text=last.text, reply_markup=markup, photo=last.photo, voice=last.voice)
        return parts


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
