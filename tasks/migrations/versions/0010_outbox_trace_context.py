"""outbox trace_context: the writer's W3C traceparent, so the relay and consumers continue its trace

Revision ID: 0010_outbox_trace_context
Revises: 0007_undo_idempotency
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010_outbox_trace_context"
down_revision = "0007_undo_idempotency"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("outbox") as batch_op:
        batch_op.add_column(sa.Column("trace_context", sa.String(length=128), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("outbox") as batch_op:
        batch_op.drop_column("trace_context")
