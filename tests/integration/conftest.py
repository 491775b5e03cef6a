"""Shared fixtures for tests against the real stack: PostgreSQL, Kafka and Dapr.

The first fixture used brings the stack up through :mod:`devstack` (same state folder and
ports as ``python -m devstack up``: ``$TODO_STACK_DIR``, default ``.devstack/``). Whatever this
session started is stopped at its end; a stack that was already running is reused and left
running (the lease in :mod:`devstack.lease` lets concurrent sessions share one stack).
A missing prerequisite fails the test with the command that fixes it (nothing is
skipped): run ``scripts/test-prereqs.sh`` once on a new machine.

Fixtures (all session-scoped unless noted):

``stack`` -> :class:`devstack.stack.Stack`
    the running stack (``stack.cfg`` has every port and folder).
``pg_url`` -> ``str``
    SQLAlchemy URL ``postgresql+psycopg://todo:todo@127.0.0.1:<port>/todo_test_<hex>`` of a
    database created for this session and dropped at its end.
``kafka_brokers`` -> ``str``
    ``host:port[,host:port]`` of the broker; topics ``task-events``, ``task-updates``,
    ``reminders`` and their ``-dlq`` topics exist with 3 partitions.
``scheduler_address`` -> ``str``
    ``127.0.0.1:<port>`` of the Dapr scheduler (pass to daprd ``--scheduler-host-address``).
``daprd_binary`` -> ``pathlib.Path``
    the pinned daprd.
``dapr_resources`` -> :class:`devstack.components.RenderedResources`
    ``dapr-components/`` rendered for this stack: ``.path`` (``--resources-path``),
    ``.config`` (``--config``), ``.env`` (secrets daprd needs; ``sidecar_factory`` adds it).
``sidecar_factory`` (function scope) -> ``make(app_id, app_port=None, **kwargs) -> Sidecar``
    starts a daprd for an app (see :func:`devstack.sidecar.start_sidecar` for ``kwargs``:
    ``app_api_token``, ``dapr_api_token``, ``wait_for`` ("outbound" | "app" | "none"),
    ``resources``, ``extra_env`` ...) and stops every sidecar it started at the test's end.
``app_server_factory`` (function scope) -> ``serve(asgi_app, port=None) -> AppServer``
    runs an ASGI app with uvicorn in a thread (``.url``, ``.port``); stopped at the test's end.
``isolated_stack`` (function scope) -> :class:`devstack.stack.Stack`
    a private stack (own folder under /tmp, own free ports) for tests that stop or break
    components (outages, restarts): never stop components of the shared ``stack``, other
    sessions may be using it. Purged at the test's end.
``stack_log_dir`` -> ``pathlib.Path``
    where this session's sidecar logs go (``<state>/logs/pytest-<hex>``).
"""

from __future__ import annotations

import secrets
import tempfile
import uuid
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any, NoReturn

import pytest

from devstack import dapr_bin, jaeger
from devstack.appserver import AppServer, serve_in_thread
from devstack.components import RenderedResources, render
from devstack.config import StackConfig
from devstack.errors import StackError
from devstack.lease import SessionLease
from devstack.postgres import libpq_url, sqlalchemy_url
from devstack.procs import free_port
from devstack.sidecar import Sidecar, start_sidecar
from devstack.stack import Stack
from tasks.service import Actor, TaskService
from tasks.unit_of_work import UnitOfWorkFactory
from tests.conftest import FixedClock, service_on

SidecarFactory = Callable[..., Sidecar]
AppServerFactory = Callable[..., AppServer]


def _fail(what: str, exc: Exception) -> NoReturn:
    pytest.fail(
        f"the real stack is needed for integration tests and {what} failed:\n{exc}\n"
        "Fix it (scripts/test-prereqs.sh installs/builds what is missing), then re-run.",
        pytrace=False,
    )


@pytest.fixture(scope="session")
def stack() -> Iterator[Stack]:
    """Bring the stack up (idempotent) under a lease shared with concurrent sessions; the
    last session out stops what sessions started (never a stack started by hand)."""
    s = Stack(StackConfig.from_env())
    lease = SessionLease(s)
    try:
        # The one-time Dapr build takes longer than a test's timeout: it belongs to
        # scripts/test-prereqs.sh (`make test` runs it first), so fail fast without it.
        dapr_bin.ensure(s.cfg, build=False)
        if not jaeger.built(s.cfg):  # the same for the trace backend's one-time build
            raise StackError(f"Jaeger {s.cfg.jaeger_version} is not built yet (cache {s.cfg.jaeger_cache})")
        lease.acquire(progress=True)
    except StackError as exc:
        _fail("`python -m devstack up`", exc)
    try:
        yield s
    finally:
        lease.release()


@pytest.fixture(scope="session")
def session_id() -> str:
    """A short random id for names this session creates (databases, topics, app ids)."""
    return secrets.token_hex(4)


@pytest.fixture(scope="session")
def stack_log_dir(stack: Stack, session_id: str) -> Path:
    path = stack.cfg.log_dir / f"pytest-{session_id}"
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="session")
def pg_url(stack: Stack, session_id: str) -> Iterator[str]:
    """A fresh database for this session (SQLAlchemy URL), dropped at the end."""
    import psycopg
    from psycopg import sql

    admin = stack.postgres.admin_url()
    name = f"todo_test_{session_id}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
    base = admin.rsplit("/", 1)[0]
    yield sqlalchemy_url(f"{base}/{name}")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name)))


@pytest.fixture(scope="session")
def pg_libpq_url(pg_url: str) -> str:
    """``pg_url`` in libpq form (``postgresql://...``) for psycopg."""
    return libpq_url(pg_url)


@pytest.fixture(scope="session")
def kafka_brokers(stack: Stack) -> str:
    return stack.cfg.kafka_brokers


@pytest.fixture(scope="session")
def scheduler_address(stack: Stack) -> str:
    return stack.cfg.scheduler_address


@pytest.fixture(scope="session")
def daprd_binary(stack: Stack) -> Path:
    try:
        return dapr_bin.ensure(stack.cfg).daprd
    except StackError as exc:
        _fail("finding/building daprd", exc)


@pytest.fixture(scope="session")
def dapr_resources(stack: Stack, pg_url: str, tmp_path_factory: pytest.TempPathFactory) -> RenderedResources:
    return render(
        tmp_path_factory.mktemp("dapr-resources"),
        kafka_brokers=stack.cfg.kafka_brokers,
        pg_url=pg_url,
    )


@pytest.fixture
def sidecar_factory(
    dapr_resources: RenderedResources,
    scheduler_address: str,
    stack_log_dir: Path,
    daprd_binary: Path,
) -> Iterator[SidecarFactory]:
    started: list[Sidecar] = []

    def make(
        app_id: str,
        app_port: int | None = None,
        *,
        resources: RenderedResources | None = None,
        scheduler: str | None = None,
        extra_env: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> Sidecar:
        res = resources or dapr_resources
        env = {**res.env, **(extra_env or {})}
        sidecar = start_sidecar(
            app_id=app_id,
            app_port=app_port,
            resources_path=res.path,
            config=kwargs.pop("config", res.config),
            scheduler_address=scheduler or scheduler_address,
            log_dir=stack_log_dir,
            extra_env=env,
            daprd=daprd_binary,
            **kwargs,
        )
        started.append(sidecar)
        return sidecar

    yield make
    for sc in reversed(started):
        sc.stop()


@pytest.fixture
def isolated_stack(stack: Stack) -> Iterator[Stack]:
    state = Path(tempfile.mkdtemp(prefix="todo-stack-isolated-"))
    state.chmod(0o755)  # as root, the postgres OS user must reach it
    cfg = replace(
        stack.cfg,
        state_dir=state,
        pg_port=free_port(),
        kafka_port=free_port(),
        kafka_controller_port=free_port(),
        scheduler_port=free_port(),
        scheduler_healthz_port=free_port(),
        scheduler_etcd_client_port=free_port(),
        scheduler_etcd_peer_port=free_port(),
        jaeger_otlp_grpc_port=free_port(),
        jaeger_otlp_http_port=free_port(),
        jaeger_ui_port=free_port(),
        jaeger_query_grpc_port=free_port(),
        jaeger_health_port=free_port(),
        external_database_url=None,
        external_kafka_brokers=None,
    )
    private = Stack(cfg)
    try:
        private.up(progress=False)
    except StackError as exc:
        private.purge()
        _fail("starting an isolated stack", exc)
    try:
        yield private
    finally:
        private.purge()


@pytest.fixture
def app_server_factory() -> Iterator[AppServerFactory]:
    servers: list[AppServer] = []

    def serve(app: Any, port: int | None = None) -> AppServer:
        server = serve_in_thread(app, port)
        servers.append(server)
        return server

    yield serve
    for server in reversed(servers):
        server.stop()


# -- the task service on both databases ------------------------------------------------------
@pytest.fixture(params=["sqlite", "postgres"])
def backend(
    request: pytest.FixtureRequest, sqlite_url: str, clock: FixedClock
) -> Iterator[tuple[TaskService, UnitOfWorkFactory]]:
    """The task service and its units of work on SQLite, then on the session's PostgreSQL."""
    url = sqlite_url if request.param == "sqlite" else request.getfixturevalue("pg_url")
    yield from service_on(url, clock)


@pytest.fixture
def actor() -> Actor:
    return Actor(user_id=f"alice-{uuid.uuid4().hex[:8]}", timezone="Europe/Berlin")
