"""notification retries: next_attempt_at on each delivery, and the index the retrier reads by

Deliveries left ``retrying`` or ``sending`` by the previous version (which retried through
Dapr's redelivery of the event) are due at once, so the retrier picks them up.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("notifications") as batch_op:
        batch_op.add_column(sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.create_index("ix_notifications_due", ["status", "next_attempt_at"], unique=False)
    op.execute(
        "UPDATE notifications SET next_attempt_at = CURRENT_TIMESTAMP WHERE status IN ('retrying', 'sending')"
    )


def downgrade() -> None:
    with op.batch_alter_table("notifications") as batch_op:
        batch_op.drop_index("ix_notifications_due")
        batch_op.drop_column("next_attempt_at")
