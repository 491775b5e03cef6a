"""Migrations run forwards and backwards on PostgreSQL and SQLite, and match the models."""

from __future__ import annotations

import uuid

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect, text
from sqlmodel import SQLModel

import tasks.models  # noqa: F401  (registers every table)
from agent.memory_sql import metadata as conversation_metadata
from tasks.db import downgrade, make_engine, migrate, normalise_url

pytestmark = pytest.mark.integration


@pytest.fixture(params=["sqlite", "postgres"])
def empty_db(request: pytest.FixtureRequest, sqlite_url: str):
    if request.param == "sqlite":
        yield sqlite_url
        return
    base = request.getfixturevalue("pg_url")
    name = f"todo_mig_{uuid.uuid4().hex[:10]}"
    admin = create_engine(normalise_url(base), isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    yield base.rsplit("/", 1)[0] + f"/{name}"
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def test_upgrade_downgrade_upgrade(empty_db: str) -> None:
    engine = make_engine(empty_db)
    migrate(engine)
    migrate(engine)  # idempotent
    assert {"tasks", "outbox", "processed_events", "audit_log", "notifications"} <= set(
        inspect(engine).get_table_names()
    )
    downgrade(engine, "base")
    assert "tasks" not in inspect(engine).get_table_names()
    migrate(engine)
    assert "tasks" in inspect(engine).get_table_names()
    engine.dispose()


def test_the_models_and_the_migrations_agree(empty_db: str) -> None:
    engine = make_engine(empty_db)
    migrate(engine)
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": False})
        diff = compare_metadata(context, SQLModel.metadata)
        diff += compare_metadata(context, conversation_metadata)
    diff = [d for d in diff if not _belongs_to_the_other_metadata(d)]
    engine.dispose()
    assert diff == [], f"models changed without a migration: {diff}"


def test_replicas_starting_together_migrate_once_without_errors(empty_db: str) -> None:
    from concurrent.futures import ThreadPoolExecutor

    engines = [make_engine(empty_db) for _ in range(4)]
    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(migrate, engines))  # raises if any replica's migration failed
    assert "tasks" in inspect(engines[0]).get_table_names()
    for engine in engines:
        engine.dispose()


def _belongs_to_the_other_metadata(change: object) -> bool:
    """Each comparison sees the other metadata's tables as extra; only real drift counts. The
    SQLite trigram index of tasks (migration 0020: ``tasks_fts`` and the tables FTS5 keeps
    for it) is made by the migration alone: SQLAlchemy has no model of a virtual table."""
    known = set(SQLModel.metadata.tables) | set(conversation_metadata.tables) | {"alembic_version"}
    if isinstance(change, tuple) and change and change[0] == "remove_table":
        return change[1].name in known or change[1].name.startswith("tasks_fts")
    if isinstance(change, tuple) and change and change[0] == "remove_index":
        return change[1].table.name in known
    return False


def test_existing_tasks_go_to_their_owners_inbox_when_lists_arrive(empty_db: str) -> None:
    engine = make_engine(empty_db)
    migrate(engine, "0005")
    with engine.begin() as connection:
        for owner, title in (("ann", "Old one"), ("ann", "Old two"), ("ben", "Old three")):
            connection.execute(
                text(
                    "INSERT INTO tasks (owner_id, title, description, completed, priority, tags_text, "
                    "repeat_from, timezone, occurrence, created_at, updated_at, version) VALUES "
                    "(:owner, :title, '', :no, 'none', ',', 'due', 'UTC', 1, :now, :now, 1)"
                ),
                {"owner": owner, "title": title, "no": False, "now": "2026-01-01T00:00:00+00:00"},
            )
    migrate(engine)
    with engine.connect() as connection:
        inboxes: dict[str, int] = dict(
            connection.execute(text("SELECT owner_id, id FROM task_lists WHERE name = 'Inbox'")).all()
        )
        placed = connection.execute(text("SELECT owner_id, list_id FROM tasks ORDER BY id")).all()
    assert set(inboxes) == {"ann", "ben"}
    assert [(owner, list_id) for owner, list_id in placed] == [
        ("ann", inboxes["ann"]), ("ann", inboxes["ann"]), ("ben", inboxes["ben"])
    ]  # fmt: skip
    downgrade(engine, "0005")
    assert "task_lists" not in inspect(engine).get_table_names()
    engine.dispose()
