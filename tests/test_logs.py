"""Log hygiene (bot.logs): every record comes out as one masked line, args and tracebacks included."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest

from bot import logs
from casestore.notify import OutboundMessage

ID = "11010519491231002X"
FORGED = "\r\n2026-12-01 09:30:00,000 INFO bot.scheduler: forged"


@pytest.fixture
def stream() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    """A logger writing through the hygiene filter into a string, formatted as the CLI formats."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(logging.Formatter(logs.FORMAT))
    handler.addFilter(logs.LogHygieneFilter(secrets=("123456:SECRET-token",)))
    logger = logging.getLogger("tests.logs")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    yield logger, out
    logger.removeHandler(handler)
    logger.propagate = True


def test_a_forged_line_and_an_id_number_come_out_as_one_masked_line(stream) -> None:  # type: ignore[no-untyped-def]
    logger, out = stream
    logger.warning("case title=%s", f"楼道灯坏了 身份证{ID}{FORGED}")
    lines = out.getvalue().splitlines()
    assert len(lines) == 1, lines
    assert ID not in lines[0] and "110***********002X" in lines[0]
    assert "\\r\\n2026-12-01 09:30:00,000 INFO bot.scheduler: forged" in lines[0]


@pytest.mark.parametrize("junk", ["\x1b[31m", "\x1b]0;pwned\x07", "\r", "\u202e", "\u2028", "\x85", "\ud800"])
def test_escapes_and_controls_are_written_out_not_obeyed(stream, junk: str) -> None:  # type: ignore[no-untyped-def]
    logger, out = stream
    logger.info("%s: %s", "title", f"楼道灯{junk}坏了")
    written = out.getvalue()
    assert len(written.splitlines()) == 1 and "\x1b" not in written and "\r" not in written
    assert "楼道灯\\" in written
    written.encode("utf-8")


def test_every_format_residents_type_is_masked_in_args(stream) -> None:  # type: ignore[no-untyped-def]
    logger, out = stream
    for raw in ("0531 8888 6666", "88886666", "010 6234 5678", "110105491231002", "138.1234.5678",
                "1 3 9 0 0 0 0 1 1 1 1", "008613912345679"):
        logger.warning("LLM classification failed | text=%r", f"电话{raw}，楼道灯坏了")
    written = out.getvalue()
    for raw in ("88886666", "62345678", "491231002", "12345678", "13900001111", "13912345679"):
        assert raw not in written.replace(" ", "").replace(".", "")


def test_secrets_are_replaced_and_tracebacks_stay_indented_under_their_record(stream) -> None:  # type: ignore[no-untyped-def]
    logger, out = stream
    try:
        raise ValueError(f"bad text 13812345678{FORGED}")
    except ValueError:
        logger.exception("GET https://api.telegram.org/bot123456:SECRET-token/getUpdates failed")
    lines = out.getvalue().splitlines()
    assert "SECRET" not in out.getvalue() and "<secret>" in lines[0]
    assert all(line.startswith("  ") for line in lines[1:]) and len(lines) > 2
    assert "13812345678" not in out.getvalue() and "ValueError: bad text 138****5678" in out.getvalue()


def test_a_record_that_reaches_several_handlers_is_cleaned_once(stream) -> None:  # type: ignore[no-untyped-def]
    logger, _ = stream
    second = io.StringIO()
    handler = logging.StreamHandler(second)
    handler.addFilter(logs.LogHygieneFilter())
    logger.addHandler(handler)
    try:
        try:
            raise RuntimeError("boom")
        except RuntimeError:
            logger.exception("电话%s", "88886666")
    finally:
        logger.removeHandler(handler)
    assert "电话****66" in second.getvalue()
    assert "\n    File" in second.getvalue() and "\n      File" not in second.getvalue()  # indented once


def test_a_malformed_call_still_leaves_a_clean_line(stream) -> None:  # type: ignore[no-untyped-def]
    logger, out = stream
    logger.info("two args %s %s", "13812345678")
    assert "13812345678" not in out.getvalue() and len(out.getvalue().splitlines()) == 1


def test_the_terminal_notifiers_push_log_is_one_masked_line(stream) -> None:  # type: ignore[no-untyped-def]
    """The scheduler's log of a push (bot.channels.notifiers.LogNotifier) with a title as a resident typed it."""
    logger, out = stream
    message = OutboundMessage(text=f"📋 新工单\n【JN20261201-0001】楼道灯\x1b[2J坏了{FORGED} 电话0531 8888 6666")
    logger.info("→ chat %s: %s %s", 900100, message.text.replace("\n", " / "), [])
    [line] = out.getvalue().splitlines()
    assert "\x1b" not in line and "JN20261201-0001" in line and "0531****66" in line


def test_install_filters_the_root_handlers_and_quiets_the_http_clients() -> None:
    root = logging.getLogger()
    before = list(root.handlers), root.level
    levels = {name: logging.getLogger(name).level for name in logs.CHATTY_LOGGERS}
    handler = logging.StreamHandler(io.StringIO())
    root.addHandler(handler)
    try:
        first = logs.install(logging.INFO, secrets=("tok",))
        again = logs.install("WARNING")
        assert [f for f in handler.filters if isinstance(f, logs.LogHygieneFilter)] == [again]
        assert first is not again and root.level == logging.WARNING
        for name in logs.CHATTY_LOGGERS:
            assert logging.getLogger(name).level == logging.WARNING
    finally:
        root.removeHandler(handler)
        root.handlers[:] = before[0]
        root.setLevel(before[1])
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)
