"""task query indexes: every listing reads one user's rows in its order, tags and search by trigram

The listing orders a user's tasks by ``due_at IS NULL, due_at, id`` (undated last): two indexes
carry that order, one behind the status (pending or completed) and one for all tasks, so a page
reads its rows in order and stops (replacing ``(owner_id, completed, due_at)`` and
``(owner_id)``, which made the database sort all of a user's tasks for each page). On
PostgreSQL, trigram GIN indexes (``pg_trgm``) serve the tag filter (``tags_text LIKE
'%,tag,%'``) and the text search (``lower(title|description) LIKE '%word%'``) when they match
few tasks; SQLite has no such index and filters the user's rows in order instead.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_UNDATED = sa.text("(due_at IS NULL)")
#: PostgreSQL only: name -> indexed expression (``gin_trgm_ops``).
_TRIGRAM = {
    "ix_tasks_title_trgm": "lower(title)",
    "ix_tasks_description_trgm": "lower(description)",
    "ix_tasks_tags_trgm": "tags_text",
}


def upgrade() -> None:
    op.create_index(
        "ix_tasks_owner_status_order", "tasks", ["owner_id", "completed", _UNDATED, "due_at", "id"]
    )
    op.create_index("ix_tasks_owner_order", "tasks", ["owner_id", _UNDATED, "due_at", "id"])
    op.drop_index("ix_tasks_owner_completed_due", table_name="tasks")
    op.drop_index("ix_tasks_owner_id", table_name="tasks")
    if op.get_bind().dialect.name == "postgresql":
        op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
        for name, expression in _TRIGRAM.items():
            op.execute(f"CREATE INDEX {name} ON tasks USING gin ({expression} gin_trgm_ops)")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for name in _TRIGRAM:
            op.execute(f"DROP INDEX IF EXISTS {name}")
    op.create_index("ix_tasks_owner_id", "tasks", ["owner_id"])
    op.create_index("ix_tasks_owner_completed_due", "tasks", ["owner_id", "completed", "due_at"])
    op.drop_index("ix_tasks_owner_order", table_name="tasks")
    op.drop_index("ix_tasks_owner_status_order", table_name="tasks")
