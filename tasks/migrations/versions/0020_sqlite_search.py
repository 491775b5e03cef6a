"""sqlite search: a trigram full-text index of task titles, descriptions and tags (SQLite)

SQLite has no trigram index of its own, so a tag or a phrase that few of a user's tasks have
made the listing walk all of the user's rows (``tasks.listing``). ``tasks_fts`` is an FTS5
table with the ``trigram`` tokenizer over ``title``, ``description`` and ``tags_text``, an
external-content index of ``tasks`` (it stores only the index, not a second copy of the text),
kept in step by three triggers on ``tasks`` (insert, delete, update of those columns), as the
SQLite documentation describes for external content. ``detail=column`` keeps which columns
hold each trigram but not where: half the index of ``detail=full`` and a cheaper lookup; the
listing asks for every trigram of the needle in the right columns (a superset of the tasks
holding the needle itself) and applies its own condition to those rows, so the results are the
same as without the index (trigram matching also ignores case in all of Unicode).

A later migration that rebuilds ``tasks`` on SQLite (Alembic's batch mode copies the table and
drops the old one) drops these triggers with it: such a migration must create them again
(``create_triggers``) and rebuild the index (``rebuild``).

On PostgreSQL nothing changes for tasks: its trigram GIN indexes (migration 0005) serve the
same filters.

On both databases, ``conversation_items`` gets ``(conversation_id, id)`` in place of
``(conversation_id)``: a chat turn reads its conversation's last items newest first and stops,
where PostgreSQL read all of the conversation's items and sorted them (SQLite's index held the
rowid already; the new one is the same there).

On both databases, ``ix_outbox_pending_user``: the pending outbox rows by user and id (a partial
index, so it holds only what waits to be published), for the relay's question "has this user an
earlier pending row?" when it publishes new writes beside a backlog (``events.relay``).

Revision ID: 0020_sqlite_search
Revises: 0010_outbox_trace_context
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0020_sqlite_search"
down_revision = "0010_outbox_trace_context"
branch_labels = None
depends_on = None

COLUMNS = "title, description, tags_text"
_OLD = "old.title, old.description, old.tags_text"
_NEW = "new.title, new.description, new.tags_text"
TRIGGERS = {
    "tasks_fts_after_insert": f"""
        CREATE TRIGGER tasks_fts_after_insert AFTER INSERT ON tasks BEGIN
            INSERT INTO tasks_fts (rowid, {COLUMNS}) VALUES (new.id, {_NEW});
        END""",
    "tasks_fts_after_delete": f"""
        CREATE TRIGGER tasks_fts_after_delete AFTER DELETE ON tasks BEGIN
            INSERT INTO tasks_fts (tasks_fts, rowid, {COLUMNS}) VALUES ('delete', old.id, {_OLD});
        END""",
    "tasks_fts_after_update": f"""
        CREATE TRIGGER tasks_fts_after_update AFTER UPDATE OF {COLUMNS} ON tasks BEGIN
            INSERT INTO tasks_fts (tasks_fts, rowid, {COLUMNS}) VALUES ('delete', old.id, {_OLD});
            INSERT INTO tasks_fts (rowid, {COLUMNS}) VALUES (new.id, {_NEW});
        END""",
}


def _sqlite() -> bool:
    return op.get_bind().dialect.name == "sqlite"


def create_triggers() -> None:
    for statement in TRIGGERS.values():
        op.execute(statement)


def rebuild() -> None:
    """Index every task again from ``tasks`` (the tasks written before, or after a rebuild)."""
    op.execute("INSERT INTO tasks_fts (tasks_fts) VALUES ('rebuild')")


def upgrade() -> None:
    op.create_index(
        "ix_conversation_items_conversation_order", "conversation_items", ["conversation_id", "id"]
    )
    op.drop_index("ix_conversation_items_conversation_id", table_name="conversation_items")
    pending = sa.text("published_at IS NULL AND failed_at IS NULL")
    op.create_index(
        "ix_outbox_pending_user", "outbox", ["user_id", "id"], postgresql_where=pending, sqlite_where=pending
    )
    if not _sqlite():
        return
    op.execute(
        f"CREATE VIRTUAL TABLE tasks_fts USING fts5({COLUMNS}, content='tasks', content_rowid='id', "
        "tokenize='trigram', detail=column)"
    )
    create_triggers()
    rebuild()


def downgrade() -> None:
    op.drop_index("ix_outbox_pending_user", table_name="outbox")
    op.create_index("ix_conversation_items_conversation_id", "conversation_items", ["conversation_id"])
    op.drop_index("ix_conversation_items_conversation_order", table_name="conversation_items")
    if not _sqlite():
        return
    for name in TRIGGERS:
        op.execute(f"DROP TRIGGER IF EXISTS {name}")
    op.execute("DROP TABLE IF EXISTS tasks_fts")
