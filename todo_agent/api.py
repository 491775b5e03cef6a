"""The ASGI app of a role: health, REST task API and MCP, and what the role's row in
``todo_agent.roles.SERVES`` adds from the parts, each given exactly the dependencies it names.

app = app_for(container)

Every app is wrapped in the edge guard (``todo_agent.edge``): Host, Origin, who may call which
route, the body cap and the security headers, the same for REST, chat, ``/ws`` and ``/mcp``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from mcp.server.transport_security import TransportSecuritySettings
from sqlalchemy import text
from starlette.routing import Route

from agent import routes as chat_routes
from agent.wiring import chat_running
from events import audit, inprocess, realtime, recurrence, subscriber
from events import wiring as outbox
from events.ports import Subscription
from events.relay_process import relay_process
from events.reminders import firing
from events.reminders import notifications as reminders_notifications
from events.reminders import routes as reminder_routes
from events.reminders import wiring as reminders_wiring
from events.reminders.retrier import notification_retries
from mcp_server.server import resource_metadata
from todo_agent import routes_tasks, telemetry, web
from todo_agent.bootstrap import Container
from todo_agent.deps import current_actor
from todo_agent.edge import EdgeGuard, EdgePolicy
from todo_agent.errors import install_error_handlers

Hook = Callable[[FastAPI, Container], Any]
LifespanHook = Callable[[Container], contextlib.AbstractAsyncContextManager[Any]]


def create_app(
    container: Container,
    *,
    extensions: list[Hook] | None = None,
    lifespans: list[LifespanHook] | None = None,
) -> FastAPI:
    """Build the role's app. ``extensions`` add routes; ``lifespans`` run background work
    (``app_for`` passes what the role's row in ``todo_agent.roles.SERVES`` says).
    Refuses (``RuntimeError``) a configuration that must not serve (``Settings.serving_problem``)."""
    if (problem := container.settings.serving_problem()) is not None:
        raise RuntimeError(problem)
    mcp = container.build_mcp() if container.serves.tasks else None
    mcp_app = mcp.streamable_http_app(
        streamable_http_path="/mcp",
        # The edge guard checks Host and Origin for every route, /mcp included, by one rule.
        transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False),
        # Sessions (handshake-era clients: resources/subscribe, elicitation mid-call) live in
        # the memory of the replica that answered their initialize; 2026-07-28 requests need none.
        stateless_http=False,
        # SSE responses, so a session's tool call can carry a question to the client (a delete's
        # elicitation); a 2026-07-28 answer without notifications is still plain JSON.
        json_response=False,
    ) if mcp else None  # fmt: skip
    if mcp is not None and container.hub is not None:  # the same delivery as /ws feeds MCP
        container.hub.observers.append(container.mcp_live.on_task_update)

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        _size_the_thread_pool(container)
        async with contextlib.AsyncExitStack() as stack:
            if mcp is not None:
                await stack.enter_async_context(mcp.session_manager.run())
            for hook in lifespans or []:
                await stack.enter_async_context(hook(container))
            yield
        container.engine.dispose()

    app = FastAPI(
        title="todo-agent",
        version="0.1.0",
        description="A conversational task assistant: REST, MCP at /mcp, chat and live updates.",
        lifespan=lifespan,
        telemetry=telemetry.request_spans(),
    )
    app.state.container = container
    app.state.edge = EdgePolicy.of(container)
    app.add_middleware(EdgeGuard, policy=app.state.edge)
    # Request spans and metrics around the edge; GET /metrics with the relay's part where it runs.
    sources = outbox.metrics_sources(container.relay, container.relay_process, container.engine) \
        if container.relay is not None else []  # fmt: skip
    if container.hub is not None:
        sources.append(outbox.hub_metrics_source(container.hub))
    telemetry.install(app, sources)
    install_error_handlers(app)
    _health_routes(app, container)
    if container.serves.tasks:
        app.include_router(routes_tasks.router)
    if mcp is not None and container.verifier is not None:
        _protected_resource_routes(app, container)
    for extend in extensions or []:
        extend(app, container)
    if mcp_app is not None:
        # Each path of the MCP app (/mcp, and its OAuth metadata when it serves some) is a route
        # of this app to the whole MCP app (its middleware and router): the router then knows
        # the route, so the request's span and metrics are named after it (POST /mcp). Last:
        # lowest precedence.
        for path in dict.fromkeys(route.path for route in mcp_app.routes if isinstance(route, Route)):
            app.router.routes.append(Route(path, mcp_app, include_in_schema=False))
    return app


def _protected_resource_routes(app: FastAPI, container: Container) -> None:
    """RFC 9728 metadata at the root well-known path and at the one for ``/mcp`` (where the
    ``WWW-Authenticate`` of a 401 from ``/mcp`` points): the issuer and the scopes."""
    metadata = resource_metadata(container.mcp_options())
    for path in ("/.well-known/oauth-protected-resource", "/.well-known/oauth-protected-resource/mcp"):
        app.add_api_route(
            path, lambda: metadata, methods=["GET"], tags=["mcp"], summary="OAuth protected resource metadata"
        )


def app_for(container: Container) -> FastAPI:
    """The app of the container's role: what its row in ``SERVES`` says, and nothing else."""
    return create_app(container, extensions=[_mount_parts], lifespans=[_run_parts])


def subscriptions_of(c: Container) -> list[Subscription]:
    """The consumers this role runs, in the order they answer on a shared route."""
    serves, found = c.serves, []
    if c.hub is not None:
        found.append(realtime.realtime_subscription(c.hub))
    if serves.recurrence:
        found.append(recurrence.recurrence_subscription(c.uow, c.tasks))
    if serves.audit_log:
        found.append(audit.audit_subscription(c.uow))
    if c.reminders is not None and c.settings.dapr_enabled:
        found.append(reminders_wiring.task_updates_follower(c.reminders))
    if c.notifier is not None:
        found.append(reminders_notifications.reminders_subscription(c.notifier))
    return found


def _mount_parts(app: FastAPI, c: Container) -> None:
    serves, signing_in = c.serves, c.verifier is not None
    if c.hub is not None:
        app.include_router(realtime.router(c.hub, c.uow, c.authenticate, sign_in_required=signing_in))
    if serves.audit_api:
        app.include_router(audit.router(c.uow, current_actor))
    if c.firing is not None:
        app.state.edge.sidecar_only(firing.JOB_ROUTE_PREFIX, prefix=True)
        app.include_router(firing.router(c.firing))
        app.include_router(reminder_routes.router(c.uow, current_actor))
    if c.chat is not None:
        app.include_router(chat_routes.router(c.chat, current_actor))
    if serves.tasks:
        web.serve_web_app(app)
    serve_subscriptions(app, c, subscriptions_of(c))
    if c.bus is not None:
        app.include_router(inprocess.dead_letter_router(c.bus, sign_in_required=signing_in))


def serve_subscriptions(app: FastAPI, c: Container, subscriptions: list[Subscription]) -> None:
    """In-process: the bus delivers to each; with Dapr: sidecar-only routes daprd posts to."""
    if c.bus is not None:
        for subscription in subscriptions:
            c.bus.subscribe(subscription)
        return
    routes = subscriber.routes_of(subscriptions)
    for route in routes:
        app.state.edge.sidecar_only(route)
    app.state.event_routes = routes  # what daprd may post to (tests/deploy checks subscriptions.yaml)
    if subscriptions:
        app.include_router(subscriber.router(subscriptions))


@contextlib.asynccontextmanager
async def _run_parts(c: Container) -> AsyncIterator[None]:
    """The role's background work, started in this order and stopped in reverse."""
    async with contextlib.AsyncExitStack() as stack:
        if c.sidecar is not None:
            stack.push_async_callback(c.sidecar.aclose)  # last: after everything that calls it
        if c.relay_process is not None:
            await stack.enter_async_context(relay_process(c.relay_process, c.uow))
        elif c.relay is not None:
            await stack.enter_async_context(c.relay.running(c.uow))
        if c.reminders is not None:
            grace = timedelta(minutes=c.settings.reminder_grace_minutes)
            await stack.enter_async_context(reminders_wiring.reminder_jobs(c.reminders, c.uow, grace=grace))
        if c.retrier is not None:
            await stack.enter_async_context(notification_retries(c.retrier))
        if c.chat is not None:
            await stack.enter_async_context(chat_running(c.chat))
        yield


def _size_the_thread_pool(container: Container) -> None:
    """Database work runs in threads (``asyncio.to_thread``); the default pool has only
    cpu+4 workers, which queues I/O-bound writes on small machines. Match the connection pool."""
    workers = max(8, container.engine.pool.size() * 2) if hasattr(container.engine.pool, "size") else 8
    asyncio.get_running_loop().set_default_executor(
        ThreadPoolExecutor(max_workers=workers, thread_name_prefix="todo-db")
    )


def _health_routes(app: FastAPI, container: Container) -> None:
    @app.get("/healthz", tags=["health"], summary="The process is alive")
    async def healthz() -> dict[str, str]:
        return {"status": "ok", "role": container.role}

    @app.get("/readyz", tags=["health"], summary="The database answers")
    def readyz() -> JSONResponse:
        try:
            with container.engine.connect() as connection:
                connection.execute(text("SELECT 1"))
        except Exception as exc:  # report, never raise: this is a probe
            return JSONResponse({"status": "unavailable", "database": type(exc).__name__}, 503)
        return JSONResponse({"status": "ready", "role": container.role, "database": "ok"})
