"""Temporary alias of `bot.cli.run.serve` for tests/test_telegram_loop_e2e.py; delete once it imports bot.cli.run."""

from bot.cli.run import serve

__all__ = ["serve"]
