"""undo and safe retries: the change log (``changes``) and idempotency keys

``changes`` holds each write of a user with the rows it changed before and after, for ``undo``;
``idempotency_keys`` the first result of a write sent with a key, per user, for retries.

Revision ID: 0007_undo_idempotency
Revises: 0006_lists_subtasks_history
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007_undo_idempotency"
down_revision = "0006_lists_subtasks_history"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "changes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("owner_id", sa.String(length=200), nullable=False),
        sa.Column("action", sa.String(length=40), nullable=False),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.Column("entries", sa.JSON(), nullable=False),
        sa.Column("undoes_id", sa.Integer(), nullable=True),
        sa.Column("undone_by_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_changes_owner_id", "changes", ["owner_id", "id"])
    op.create_table(
        "idempotency_keys",
        sa.Column("owner_id", sa.String(length=200), nullable=False),
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("request_hash", sa.String(length=64), nullable=False),
        sa.Column("response", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("owner_id", "key"),
    )
    op.create_index("ix_idempotency_keys_created_at", "idempotency_keys", ["created_at"])


def downgrade() -> None:
    op.drop_index("ix_idempotency_keys_created_at", table_name="idempotency_keys")
    op.drop_table("idempotency_keys")
    op.drop_index("ix_changes_owner_id", table_name="changes")
    op.drop_table("changes")
