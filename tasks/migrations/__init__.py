"""The Alembic migrations of the task database (``versions/``), run by ``tasks.db.migrate``."""
