"""Short signed button tokens for Telegram `callback_data` (at most 64 bytes).

Format (ASCII, ':'-separated): ``a:<act>:<case>:<arg>:<t>:<sig>``

* ``act``  a one-letter upper-case code for a known action (see ``ACTION_CODES``), or the action name
  itself (lower-case words never collide with the upper-case codes);
* ``case`` the case code or empty; ``arg`` a small extra value or empty;
* ``t``    the issue time in whole hours since the Unix epoch, base 36: lets us refuse stale buttons;
* ``sig``  HMAC-SHA256 over everything before it, truncated to 9 bytes, base64url (12 chars).

A 72-bit truncated tag is far beyond what an attacker can guess through the Bot API. Decoding returns
None for anything forged, malformed or older than ``max_age``; callers refuse such presses without any
state change. Owns only the token format: no Telegram types, no case logic (a button for a case that has
moved on is the engine's business, through the case version guard).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import timedelta

from casestore.clock import Clock, SystemClock
from casestore.notify import Button

MAX_CALLBACK_BYTES = 64
PREFIX = "a"
SIG_BYTES = 9
DEFAULT_MAX_AGE = timedelta(days=30)

ACTION_CODES: dict[str, str] = {
    "accept": "A",
    "respond": "P",
    "resolve": "R",
    "transfer": "T",
    "extend": "E",
    "rate": "S",
    "useful": "U",
    "useless": "N",
    "human": "H",
    "confirm": "C",
    "cancel": "X",
    "consent": "K",
    "decline": "D",
    "choose": "O",
    "reopen": "Q",
}
_CODE_ACTIONS = {code: action for action, code in ACTION_CODES.items()}


class CallbackTooLong(ValueError):
    """The button cannot be encoded into 64 bytes (a renderer bug: shorten the arg)."""


def signing_key(*, configured: str, bot_token: str) -> bytes:
    """The configured key, or one derived from the bot token (rotating the token invalidates buttons)."""
    if configured:
        return configured.encode("utf-8")
    return hashlib.sha256(b"quanbot-callback-v1|" + bot_token.encode("utf-8")).digest()


class CallbackSigner:
    """Encodes `Button`s into signed callback_data and decodes them back (or refuses)."""

    def __init__(self, key: bytes, *, clock: Clock | None = None, max_age: timedelta = DEFAULT_MAX_AGE):
        if not key:
            raise ValueError("callback signing key must not be empty")
        self._key = key
        self._clock = clock or SystemClock()
        self._max_age_h = int(max_age.total_seconds() // 3600)

    def _sig(self, body: str) -> str:
        tag = hmac.new(self._key, body.encode("ascii"), hashlib.sha256).digest()[:SIG_BYTES]
        return base64.urlsafe_b64encode(tag).decode("ascii")

    def _hour(self) -> int:
        return int(self._clock.now().timestamp() // 3600)

    def encode(self, button: Button) -> str:
        """Signed callback_data for `button`; raises CallbackTooLong / ValueError if it cannot fit."""
        act = ACTION_CODES.get(button.action, button.action)
        case = button.case_code or ""
        arg = button.arg or ""
        for name, part in (("action", act), ("case_code", case), ("arg", arg)):
            if ":" in part or not part.isascii():
                raise ValueError(f"button {name} must be ASCII without ':': {part!r}")
        if not act:
            raise ValueError("button action is empty")
        body = f"{PREFIX}:{act}:{case}:{arg}:{_b36(self._hour())}"
        data = f"{body}:{self._sig(body)}"
        if len(data.encode("ascii")) > MAX_CALLBACK_BYTES:
            raise CallbackTooLong(f"callback_data is {len(data)} bytes (> {MAX_CALLBACK_BYTES}): {button!r}")
        return data

    def decode(self, data: str | None, *, label: str = "") -> Button | None:
        """The button behind `data`, or None if it is forged, malformed or stale."""
        if not data or not data.isascii() or len(data) > MAX_CALLBACK_BYTES:
            return None
        body, sep, sig = data.rpartition(":")
        if not sep or not hmac.compare_digest(sig.encode("ascii"), self._sig(body).encode("ascii")):
            return None
        parts = body.split(":")
        if len(parts) != 5 or parts[0] != PREFIX:
            return None
        _, act, case, arg, issued = parts
        try:
            age_h = self._hour() - int(issued, 36)
        except ValueError:
            return None
        if age_h < -1 or age_h > self._max_age_h:  # -1: tolerate a clock a little behind the issuer's
            return None
        return Button(label=label, action=_CODE_ACTIONS.get(act, act), case_code=case or None, arg=arg or None)


def _b36(n: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while True:
        n, r = divmod(n, 36)
        out = digits[r] + out
        if n == 0:
            return out
