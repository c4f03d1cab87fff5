"""The channel-independent dialogue engine: per-user conversation state, persisted in the database."""
