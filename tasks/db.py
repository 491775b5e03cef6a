"""Database engines for PostgreSQL (Neon-ready) and SQLite, and Alembic migrations.

>>> engine = make_engine("postgresql://user:pw@host/db?sslmode=require")
>>> migrate(engine)
"""

from __future__ import annotations

import contextlib
import fcntl
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.pool import StaticPool

from observability.tracing import instrument_engine

_MIGRATIONS = Path(__file__).parent / "migrations"
_PING_IDLE_AFTER: Final = 1.0  # seconds a pooled connection may sit idle before it is pinged
_IDLE_SINCE: Final = "todo_idle_since"


def normalise_url(url: str) -> str:
    """Accept the URLs people paste (``postgres://``, ``postgresql://``) and pick psycopg 3."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def is_sqlite(url: str) -> bool:
    return url.startswith("sqlite")


def make_engine(
    url: str,
    *,
    pool_size: int = 10,
    echo: bool = False,
    pre_ping: bool = True,
    ping_idle_after: float = _PING_IDLE_AFTER,
) -> Engine:
    """An engine for ``url``. ``pre_ping`` checks a pooled PostgreSQL connection before use (one
    round trip) when it sat in the pool for more than ``ping_idle_after`` seconds: what closes
    connections behind the pool's back (a restart, an idle timeout, Neon suspending) happens
    while they are idle, and a connection handed back moments ago skips the round trip. A caller
    that retries a failed transaction anyway (the relay) can skip the check altogether."""
    url = normalise_url(url)
    if is_sqlite(url):
        in_memory = url in ("sqlite://", "sqlite:///:memory:")
        engine = create_engine(
            url,
            echo=echo,
            connect_args={"check_same_thread": False, "timeout": 30},
            poolclass=StaticPool if in_memory else None,
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        instrument_engine(engine)
        return engine
    # Neon's pooled endpoints run PgBouncer in transaction mode: no server-side prepared
    # statements may outlive a transaction, so psycopg must not prepare them.
    engine = create_engine(
        url,
        echo=echo,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_recycle=300,
        connect_args={"prepare_threshold": None},
    )
    if pre_ping:
        _ping_idle_connections(engine, after=ping_idle_after)
    instrument_engine(engine)  # a span per statement, when tracing and TODO_TRACING_SQL are on
    return engine


def _ping_idle_connections(engine: Engine, *, after: float) -> None:
    """SQLAlchemy's ``pool_pre_ping``, for connections idle for more than ``after`` seconds: a
    dead one is replaced (the pool tries a fresh connection) before anyone uses it."""

    def fresh(_dbapi_connection: Any, record: Any) -> None:
        record.info[_IDLE_SINCE] = time.monotonic()

    def check(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        if time.monotonic() - record.info.get(_IDLE_SINCE, 0.0) <= after:
            return
        try:
            engine.dialect.do_ping(dbapi_connection)
        except Exception as exc:
            raise DisconnectionError(f"The pooled connection did not answer: {exc}") from exc

    event.listen(engine, "connect", fresh)
    event.listen(engine, "checkin", fresh)
    event.listen(engine, "checkout", check)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def alembic_config(engine: Engine) -> Config:
    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    config.attributes["engine"] = engine
    return config


_MIGRATION_LOCK = 4_242_001  # pg_advisory_lock key: one migrator at a time


def migrate(engine: Engine, revision: str = "head") -> None:
    """Bring the schema up to ``revision`` (idempotent).

    On PostgreSQL a session advisory lock makes replicas that start together wait for one
    another instead of racing to create the same tables.
    """
    if engine.dialect.name != "postgresql":
        with _file_lock(engine):
            command.upgrade(alembic_config(engine), revision)
        return
    with engine.connect() as connection:
        connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": _MIGRATION_LOCK})
        connection.commit()
        try:
            config = alembic_config(engine)
            config.attributes["connection"] = connection
            command.upgrade(config, revision)
        finally:
            connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": _MIGRATION_LOCK})
            connection.commit()


@contextlib.contextmanager
def _file_lock(engine: Engine) -> Iterator[None]:
    """SQLite: a lock file beside the database (``todo-agent run`` and ``mcp`` may start together)."""
    database = engine.url.database
    if not database or database == ":memory:":
        yield
        return
    with open(f"{database}.migrate.lock", "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def downgrade(engine: Engine, revision: str) -> None:
    command.downgrade(alembic_config(engine), revision)
