"""The one renderer of the WeChat channels (Official Account and WeCom): what those chats can show.

A customer-service text message has no buttons, so a message's buttons become numbered lines at its end
("回复 1 同意"), and the choices shown are remembered as signed tokens (bot.channels.callback, the same tokens
Telegram puts in callback_data): a typed number, or a typed label, is turned back into the same signed action and
verified the same way (`choice_for`). A text message is at most 2048 bytes of UTF-8 (WeChat cuts or refuses
longer ones), so long texts are split at line ends within MAX_TEXT_BYTES; the numbered choices always travel in
the last part. A photo URL the engine attaches is mentioned as a line of its own (an image needs an uploaded
media id, which the channel adapter handles).

Must not: decide what to say (the engine does) or talk to WeChat.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from bot.channels.callback import CallbackSigner
from casestore.notify import Button, OutboundMessage

MAX_TEXT_BYTES = 2000  # WeChat's limit is 2048 bytes; some room for the choices' line break
MAX_LABEL_CHARS = 20
_NUMBER = re.compile(r"^\s*[#＃]?\s*(\d{1,2})\s*[.。、]?\s*$")
_FULLWIDTH_DIGITS = str.maketrans("０１２３４５６７８９", "0123456789")


@dataclass(frozen=True)
class WeChatPart:
    text: str
    choices: list[list[str]] = field(default_factory=list)  # [label, signed token] in the order numbered


def _blen(text: str) -> int:
    return len(text.encode("utf-8"))


def split_bytes(text: str, limit: int = MAX_TEXT_BYTES) -> list[str]:
    """`text` in pieces of at most `limit` UTF-8 bytes, cut at line ends where possible, never inside a character."""
    out: list[str] = []
    rest = text
    while _blen(rest) > limit:
        cut = 0
        size = 0
        for i, ch in enumerate(rest):  # the longest prefix within the limit
            size += _blen(ch)
            if size > limit:
                break
            cut = i + 1
        head = rest[:cut]
        line_end = head.rfind("\n")
        if line_end > cut // 2:
            cut = line_end + 1
        out.append(rest[:cut].rstrip("\n"))
        rest = rest[cut:]
    if rest or not out:
        out.append(rest)
    return out


class WeChatRenderer:
    def __init__(self, signer: CallbackSigner):
        self.signer = signer

    def choices(self, messages: list[OutboundMessage]) -> list[list[str]]:
        """The numbered choices of a reply: the buttons of all its messages, numbered on from 1 across them."""
        return [[_label(b), self.signer.encode(b)] for m in messages for row in m.buttons for b in row]

    def render(self, message: OutboundMessage, *, first_number: int = 1) -> list[WeChatPart]:
        """The message as text parts; its buttons numbered from `first_number` at the end of the last part."""
        buttons = [b for row in message.buttons for b in row]
        lines = [message.text.strip()]
        if message.photo:
            lines.append(f"（图片：{message.photo}）")
        if buttons:
            numbered = [f"{first_number + i}. {_label(b)}" for i, b in enumerate(buttons)]
            lines.append("回复数字选择：\n" + "\n".join(numbered))
        pieces = split_bytes("\n".join(line for line in lines if line))
        choices = [[_label(b), self.signer.encode(b)] for b in buttons]
        parts = [WeChatPart(text=p) for p in pieces[:-1]]
        parts.append(WeChatPart(text=pieces[-1], choices=choices))
        return parts

    def render_reply(self, messages: list[OutboundMessage]) -> list[list[WeChatPart]]:
        """Each message of one reply rendered, the numbering running on across them (as `choices` numbers)."""
        out: list[list[WeChatPart]] = []
        n = 1
        for message in messages:
            out.append(self.render(message, first_number=n))
            n += sum(len(row) for row in message.buttons)
        return out

    def choice_for(self, text: str, choices: list[list[str]]) -> tuple[bool, Button | None]:
        """(True, the verified button) when `text` picks one of `choices` by number or exact label;
        (True, None) when it picks one whose token no longer verifies (stale); (False, None) for other text."""
        typed = text.translate(_FULLWIDTH_DIGITS).strip()
        index: int | None = None
        match = _NUMBER.match(typed)
        if match:
            index = int(match.group(1)) - 1
            if not 0 <= index < len(choices):
                return False, None
        else:
            labels = [c[0] for c in choices]
            if typed and typed in labels and labels.count(typed) == 1:
                index = labels.index(typed)
        if index is None:
            return False, None
        label, token = choices[index]
        return True, self.signer.decode(token, label=label)


def _label(button: Button) -> str:
    label = (button.label or button.action).replace("\n", " ").strip()
    return label if len(label) <= MAX_LABEL_CHARS else label[: MAX_LABEL_CHARS - 1] + "…"
