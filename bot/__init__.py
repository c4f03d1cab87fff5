"""The bot: settings, the dialogue, message understanding, channel adapters and renderers, the CLI.

Owns: talking to people (Telegram, the terminal, the demo's recording channel) and wiring the services
together once per process (`bot.services.Services`). Rules come from policies/ and every database write goes
through casestore/.
Must not: hold rules that belong in policies/ or write to the database except through casestore/.
"""
