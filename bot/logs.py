"""Log hygiene: every record the process writes is masked and stays on one line.

Owns: `LogHygieneFilter` (phone and ID numbers masked by policies.masking, secrets replaced, control, ANSI, CR
and bidi characters escaped by policies.hygiene, in the final message with its args, and in tracebacks) and
`install(level)`, the process's logging set-up that the CLI calls once at start-up.
Must not: read settings or the environment (the caller passes the level and the secrets), or drop a record.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from policies.hygiene import escape_controls
from policies.masking import mask_text

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# clients whose INFO / DEBUG lines carry request URLs (the bot token is in Telegram's) and bodies (prompts)
CHATTY_LOGGERS = ("openai", "httpx", "httpcore")


class LogHygieneFilter(logging.Filter):
    """Masks personal data and secrets and escapes control characters in each record; never drops one."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self.secrets = tuple(s for s in secrets if s)
        self._formatter = logging.Formatter()

    def clean(self, text: str) -> str:
        """One log line: secrets replaced, numbers masked, controls escaped."""
        for secret in self.secrets:
            text = text.replace(secret, "<secret>")
        return escape_controls(mask_text(text))

    def _clean_block(self, text: str) -> str:
        # a traceback keeps its lines, each indented, so none of them can pass for a record of its own
        lines = (self.clean(line) for line in text.splitlines())
        return "\n".join("  " + line for line in lines)

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "_quanbot_clean", False):
            return True  # the same record reaches several handlers: clean it once
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a malformed call must still leave a (clean) line
            message = f"{record.msg!r} % {record.args!r}"
        record.msg, record.args = self.clean(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = self._formatter.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self._clean_block(record.exc_text)
        if record.stack_info:
            record.stack_info = self._clean_block(record.stack_info)
        record._quanbot_clean = True
        return True


def install(level: int | str = logging.INFO, *, secrets: Iterable[str] = ()) -> LogHygieneFilter:
    """Root logging at `level` with the hygiene filter on every root handler; openai, httpx and httpcore at
    WARNING. Safe to call twice (one filter per handler)."""
    logging.basicConfig(level=level, format=FORMAT)
    root = logging.getLogger()
    root.setLevel(level)
    hygiene = LogHygieneFilter(secrets)
    for handler in root.handlers:
        for old in [f for f in handler.filters if isinstance(f, LogHygieneFilter)]:
            handler.removeFilter(old)
        handler.addFilter(hygiene)
    for name in CHATTY_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    return hygiene
