"""Fixtures shared by every tier: settings on a temporary SQLite file, a fixed clock, tokens; and
a run that stops on Ctrl-C (SIGINT)."""

from __future__ import annotations

import _thread
import signal
import sys
import threading
from collections.abc import Callable, Generator, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from auth.tokens import JwtVerifier
from tasks.db import make_engine, migrate
from tasks.service import Actor, TaskService
from tasks.unit_of_work import UnitOfWorkFactory
from todo_agent.settings import Settings

JWT_SECRET = "test-secret-that-is-long-enough-for-hs256-0123456789"


@pytest.hookimpl(trylast=True)  # after pytest's own unraisable-exception hook is in place
def pytest_configure(config: pytest.Config) -> None:
    """Ctrl-C stops the run, in two cases where Python alone would carry on:

    - started as a background job of a shell without job control (``make check &`` in a script),
      the process inherits SIGINT ignored, and Python then installs no handler for it;
    - a KeyboardInterrupt raised while a finalizer or weakref callback runs (garbage collection
      happens anywhere) is "ignored" (pytest reports it as a warning): a moment later, out of the
      finalizer, the SIGINT handler runs again (raised there, or in this hook, it would be
      ignored once more)."""
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    report = sys.unraisablehook

    def interrupt_again(unraisable: sys.UnraisableHookArgs) -> None:
        report(unraisable)
        if isinstance(unraisable.exc_value, KeyboardInterrupt):
            threading.Timer(0.05, _thread.interrupt_main).start()

    def restore() -> None:
        sys.unraisablehook = report

    sys.unraisablehook = interrupt_again
    config.add_cleanup(restore)


class FixedClock:
    """A clock the test moves by hand."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(datetime(2026, 11, 26, 16, 0, tzinfo=UTC))  # Thu 17:00 in Berlin


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'todo.db'}"


@pytest.fixture
def make_settings(tmp_path: Path, sqlite_url: str) -> Callable[..., Settings]:
    def make(**overrides: object) -> Settings:
        values: dict[str, object] = {
            "database_url": sqlite_url,
            "data_dir": tmp_path,
            "timezone": "Europe/Berlin",
        }
        values.update(overrides)
        return Settings(**values)  # type: ignore[arg-type]

    return make


@pytest.fixture
def verifier() -> JwtVerifier:
    return JwtVerifier(secret=JWT_SECRET, audience="todo-agent")


@pytest.fixture
def berlin() -> Actor:
    return Actor(user_id="alice", timezone="Europe/Berlin")


def service_on(url: str, clock: Callable[[], datetime]) -> Generator[tuple[TaskService, UnitOfWorkFactory]]:
    engine = make_engine(url)
    migrate(engine)
    uow = UnitOfWorkFactory(engine)
    yield TaskService(uow, clock=clock), uow
    engine.dispose()


@pytest.fixture
def sqlite_service(sqlite_url: str, clock: FixedClock) -> Iterator[tuple[TaskService, UnitOfWorkFactory]]:
    yield from service_on(sqlite_url, clock)
