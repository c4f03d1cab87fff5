"""Text hygiene: the one rule for characters that must not be stored, shown or logged as they came in.

Residents' text (and anything pasted into it) can carry terminal escape sequences (ANSI), control characters
(C0, DEL, C1: a bare CR rewrites a terminal line, a newline forges a log line), bidi overrides and isolates
(they make "gnp.exe" read as "exe.png") and unpaired surrogates (they cannot be encoded as UTF-8, so the
database and the log refuse them). `clean_text` removes them from text that is stored and shown; `escape_controls`
makes them visible in text that is logged, so a log line is always one line and says what was there.
Must not: import anything of ours, or change anything else about the text (full-width forms, emoji, ZWJ stay).
"""

from __future__ import annotations

import re

# ESC-introduced sequences as terminals read them (ECMA-48): CSI, terminated OSC / DCS / SOS / PM / APC strings,
# and the two- or three-character escapes; also the 8-bit CSI. A lone ESC is left to the control-character rule.
_ANSI = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]"
    r"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)"
    r"|\x1b[PX^_][^\x1b]*\x1b\\"
    r"|\x1b[ -/]*[0-~]"
    r"|\x9b[0-?]*[ -/]*[@-~]")
# bidi embeddings, overrides and isolates (U+202A-U+202E, U+2066-U+2069) and the invisible direction marks
_BIDI = "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c"
# what str.splitlines() (and so many log viewers) take as a line break
_LINE_BREAKS = "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"
_SURROGATE = re.compile(r"[\ud800-\udfff]")
_BREAK_RUN = re.compile(r"\r\n|[" + _LINE_BREAKS + "]")
_CONTROL = re.compile(r"[\x00-\x08\x0e-\x1b\x1f\x7f-\x84\x86-\x9f" + _BIDI + "]")
_SPACES = re.compile(r"[\t" + _LINE_BREAKS + r"]+")
_UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f" + _BIDI + "\u2028\u2029\ud800-\udfff]")


def fix_surrogates(text: str) -> str:
    """`text` with every unpaired surrogate replaced by U+FFFD, so it can be encoded (and stored, and logged)."""
    return _SURROGATE.sub("\ufffd", text) if text else text


def clean_text(text: str, *, multiline: bool = False) -> str:
    """`text` safe to store and show: no ANSI sequences, control or bidi characters, no unpaired surrogates.

    Multi-line text keeps its line breaks as "\\n" (CR LF, CR, U+2028 … become "\\n"); one-line text (a title,
    an address) gets one space for each run of line breaks and tabs. Tabs become spaces in both.
    """
    if not text:
        return text
    text = _ANSI.sub("", fix_surrogates(text))
    text = _BREAK_RUN.sub("\n", text).replace("\t", " ") if multiline else _SPACES.sub(" ", text)
    return _CONTROL.sub("", text)


def escape_controls(text: str) -> str:
    """`text` on one line for a log: control, bidi and line-separator characters and unpaired surrogates written
    out as escapes (\\r, \\n, \\x1b, \\u202e), so nothing can start a forged line or repaint the terminal."""
    if not text:
        return text
    return _UNSAFE.sub(_escape, text)


def _escape(m: re.Match[str]) -> str:
    ch = m.group(0)
    named = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}.get(ch)
    if named:
        return named
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"
