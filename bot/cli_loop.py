"""quanbot subcommands for this area (registered on import by bot.cli)."""

from __future__ import annotations

from bot.cli import app  # noqa: F401
