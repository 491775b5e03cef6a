"""Pooled PostgreSQL connections are checked before use only after sitting idle, and a dead one
is replaced without the caller noticing."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from sqlalchemy import Engine, text

from devstack.postgres import libpq_url
from tasks.db import make_engine

pytestmark = pytest.mark.integration


def engine_on(pg_url: str, *, ping_idle_after: float) -> Iterator[tuple[Engine, list[Any]]]:
    engine = make_engine(pg_url, pool_size=1, ping_idle_after=ping_idle_after)
    pings: list[Any] = []
    real_ping = engine.dialect.do_ping

    def counting(dbapi_connection: Any) -> bool:
        pings.append(dbapi_connection)
        return real_ping(dbapi_connection)

    engine.dialect.do_ping = counting  # type: ignore[method-assign]
    yield engine, pings
    engine.dispose()


@pytest.fixture
def patient(pg_url: str) -> Iterator[tuple[Engine, list[Any]]]:
    yield from engine_on(pg_url, ping_idle_after=60)


@pytest.fixture
def eager(pg_url: str) -> Iterator[tuple[Engine, list[Any]]]:
    yield from engine_on(pg_url, ping_idle_after=0.05)


def backend_pid(engine: Engine) -> int:
    with engine.connect() as connection:
        return int(connection.execute(text("SELECT pg_backend_pid()")).scalar_one())


def test_a_connection_handed_back_moments_ago_is_used_without_a_ping(patient) -> None:
    engine, pings = patient
    pids = {backend_pid(engine) for _ in range(5)}

    assert len(pids) == 1
    assert pings == []


def test_a_connection_idle_for_longer_is_pinged_first(eager) -> None:
    engine, pings = eager
    first = backend_pid(engine)
    time.sleep(0.1)

    assert backend_pid(engine) == first
    assert len(pings) == 1


def test_a_dead_idle_connection_is_replaced_before_anyone_uses_it(eager, pg_url: str) -> None:
    engine, pings = eager
    dead = backend_pid(engine)
    with psycopg.connect(libpq_url(pg_url), autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (dead,))
    time.sleep(0.1)

    replacement = backend_pid(engine)

    assert replacement != dead
    assert len(pings) == 1
