"""The real stack for a benchmark: bring it up under a session lease (as the tests do, so a
benchmark never stops components that a concurrent test session or benchmark is using) and
give the run a fresh PostgreSQL database that is dropped at the end.

    with ExitStack() as exits:
        stack, pg_url = stack_with_fresh_database(exits)
"""

from __future__ import annotations

import secrets
from contextlib import ExitStack
from typing import Any


def stack_with_fresh_database(exits: ExitStack) -> tuple[Any, str]:
    """The running ``devstack.stack.Stack`` and the SQLAlchemy URL of a new database; both are
    cleaned up by ``exits`` (the database dropped first, then the lease released: the last
    session out stops what sessions started)."""
    import psycopg
    from psycopg import sql

    from devstack.config import StackConfig
    from devstack.lease import SessionLease
    from devstack.postgres import sqlalchemy_url
    from devstack.stack import Stack

    stack = Stack(StackConfig.from_env())
    lease = SessionLease(stack)
    lease.acquire(progress=False)
    exits.callback(lease.release)
    admin = stack.postgres.admin_url()
    name = f"todo_bench_{secrets.token_hex(4)}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("create database {}").format(sql.Identifier(name)))

    def drop() -> None:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name)))

    exits.callback(drop)
    return stack, sqlalchemy_url(f"{admin.rsplit('/', 1)[0]}/{name}")
