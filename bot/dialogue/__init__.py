"""The channel-independent dialogue engine: per-user conversation state, persisted in the database."""

from bot.dialogue.texts import COMMANDS_ADMIN, COMMANDS_RESIDENT, COMMANDS_WORKER

__all__ = ["COMMANDS_ADMIN", "COMMANDS_RESIDENT", "COMMANDS_WORKER"]
