"""Alembic environment: the engine is handed over by ``tasks.db.migrate``."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, Engine
from sqlmodel import SQLModel

import tasks.models  # noqa: F401  (registers the tables)

config = context.config
target_metadata = SQLModel.metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()
    connection.commit()


def run_migrations_online() -> None:
    given: Connection | None = config.attributes.get("connection")
    if given is not None:
        _run(given)
        return
    engine: Engine | None = config.attributes.get("engine")
    if engine is None:
        from tasks.db import make_engine

        url = config.get_main_option("sqlalchemy.url")
        if not url:
            raise RuntimeError("Set TODO_DATABASE_URL or pass an engine to tasks.db.migrate().")
        engine = make_engine(url)
    with engine.connect() as connection:
        _run(connection)


run_migrations_online()
