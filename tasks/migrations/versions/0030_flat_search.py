"""flat search: PostgreSQL's trigram GIN indexes without a pending list (``fastupdate = off``)

A GIN index puts new entries in an unsorted "pending list" by default (``fastupdate``) and
merges them into the index only when the list outgrows ``gin_pending_list_limit`` (4 MB), or
when (auto)vacuum or autoanalyze runs; a manual ``ANALYZE`` does not. Every search through the
index reads the whole pending list, row by row. With 100,000 tasks just written, the lists of
the three trigram indexes of migration 0005 held 217-371 pages (36,751 tag entries): a tag no
task has read 334 pages and took 20 ms in the database (35 pages and 0.03 ms once merged), a
phrase one task has 742 pages and 14 ms (170 pages, 1.2 ms). The list's size depends on how
much was written since the last vacuum, not on the user, so every user's tag or search paid
for it, and it grew with the table up to 4 MB per index.

``fastupdate = off`` makes each insert or update put its entries straight into the index, so a
search reads only the index (the PostgreSQL manual's advice "if consistent response time is
more important than update speed"). The price is paid by writes of tasks: 100,000 rows
inserted in one statement cost the backend 8 s of CPU against 2.6 s (about 55 µs a row);
``benchmarks/growth.py``'s ``add`` has the figure for one task. Turning the option off does not
empty the lists already there, so the upgrade merges them (``gin_clean_pending_list``).

SQLite: nothing changes (its trigram index, migration 0020, is an FTS5 table with no such
list).

Revision ID: 0030_flat_search
Revises: 0020_sqlite_search
"""

from __future__ import annotations

from alembic import op

revision = "0030_flat_search"
down_revision = "0020_sqlite_search"
branch_labels = None
depends_on = None

#: The trigram GIN indexes of migration 0005.
TRIGRAM_INDEXES = ("ix_tasks_title_trgm", "ix_tasks_description_trgm", "ix_tasks_tags_trgm")


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for name in TRIGRAM_INDEXES:
        op.execute(f"ALTER INDEX {name} SET (fastupdate = off)")
        op.execute(f"SELECT gin_clean_pending_list('{name}'::regclass)")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for name in TRIGRAM_INDEXES:
        op.execute(f"ALTER INDEX {name} RESET (fastupdate)")
