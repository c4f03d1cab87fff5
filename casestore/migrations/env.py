"""Alembic environment: migrates the SQLModel metadata of casestore.models."""

from __future__ import annotations

from alembic import context
from sqlmodel import SQLModel

import casestore.models  # noqa: F401  (registers the tables)
from casestore.db import make_engine

config = context.config
target_metadata = SQLModel.metadata


def run_migrations_online() -> None:
    url = config.get_main_option("sqlalchemy.url")
    if url is None:  # casestore.db.alembic_config always sets it
        raise RuntimeError("alembic config has no sqlalchemy.url")
    engine = make_engine(url)
    with engine.connect() as connection:
        if connection.dialect.name == "sqlite":
            # batch migrations recreate tables that others reference: SQLite must not enforce foreign keys
            # meanwhile (the pragma is ignored inside a transaction, so it is set before the first one)
            connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
            connection.commit()
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=connection.dialect.name == "sqlite",
            compare_type=True,
        )
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


def run_migrations_offline() -> None:
    context.configure(url=config.get_main_option("sqlalchemy.url"), target_metadata=target_metadata,
                      literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
