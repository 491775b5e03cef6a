"""lists, subtasks and completed history: every user's Inbox, tasks.list_id, tasks.parent_id

Adds ``task_lists`` (a user's lists; the Inbox is the one with ``is_inbox``), ``tasks.list_id``
and ``tasks.parent_id``, and indexes for a list's tasks in the listing's order, for a task's
subtasks, and for completed tasks by ``completed_at`` (the completed history). Existing data is
kept: every user who has tasks gets an Inbox and all their tasks go to it.

Revision ID: 0006_lists_subtasks_history
Revises: 0005
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0006_lists_subtasks_history"
down_revision = "0005"
branch_labels = None
depends_on = None

_UNDATED = sa.text("(due_at IS NULL)")


def upgrade() -> None:
    op.create_table(
        "task_lists",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("owner_id", sa.String(length=200), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("name_key", sa.String(length=100), nullable=False),
        sa.Column("is_inbox", sa.Boolean(), nullable=False),
        sa.Column("archived_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("owner_id", "name_key", name="uq_task_lists_owner_name"),
    )
    op.add_column("tasks", sa.Column("list_id", sa.Integer(), nullable=True))
    op.add_column("tasks", sa.Column("parent_id", sa.Integer(), nullable=True))
    op.create_index("ix_tasks_owner_list_order", "tasks", ["owner_id", "list_id", _UNDATED, "due_at", "id"])
    op.create_index("ix_tasks_owner_completed_at", "tasks", ["owner_id", "completed_at"])
    op.create_index("ix_tasks_parent_id", "tasks", ["parent_id"])
    # Every user with tasks gets an Inbox, and their tasks go to it.
    now = datetime.now(UTC)
    op.get_bind().execute(
        sa.text(
            "INSERT INTO task_lists (owner_id, name, name_key, is_inbox, created_at, updated_at, version) "
            "SELECT DISTINCT owner_id, 'Inbox', 'inbox', :inbox, :now, :now, 1 FROM tasks"
        ),
        {"inbox": True, "now": now},
    )
    op.get_bind().execute(
        sa.text(
            "UPDATE tasks SET list_id = (SELECT l.id FROM task_lists l "
            "WHERE l.owner_id = tasks.owner_id AND l.is_inbox = :inbox) WHERE list_id IS NULL"
        ),
        {"inbox": True},
    )


def downgrade() -> None:
    op.drop_index("ix_tasks_parent_id", table_name="tasks")
    op.drop_index("ix_tasks_owner_completed_at", table_name="tasks")
    op.drop_index("ix_tasks_owner_list_order", table_name="tasks")
    # Plain ALTER TABLE ... DROP COLUMN (SQLite 3.35+ has it): a batch copy of ``tasks`` would
    # have to rebuild the expression indexes of 0005.
    op.execute("ALTER TABLE tasks DROP COLUMN parent_id")
    op.execute("ALTER TABLE tasks DROP COLUMN list_id")
    op.drop_table("task_lists")
