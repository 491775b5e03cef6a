"""The ASGI app of a role: health, REST task API and MCP (api role), plus what other parts add.

app = create_app(container)

Every app is wrapped in the edge guard (``todo_agent.edge``): Host, Origin, who may call which
route, the body cap and the security headers, the same for REST, chat, ``/ws`` and ``/mcp``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from mcp.server.transport_security import TransportSecuritySettings
from sqlalchemy import text

from events.realtime import hub_of
from mcp_server.server import resource_metadata
from todo_agent import routes_tasks
from todo_agent.bootstrap import Container
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
    """Build the role's app. ``extensions`` add routes; ``lifespans`` run background work.
    Refuses (``RuntimeError``) a configuration that must not serve (``Settings.serving_problem``)."""
    if (problem := container.settings.serving_problem()) is not None:
        raise RuntimeError(problem)
    mcp = container.build_mcp() if container.role in ("api", "all") else None
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
    if mcp is not None:  # MCP subscriptions hear task changes from the same delivery as /ws
        hub_of(container).observers.append(container.mcp_live.on_task_update)

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
    )
    app.state.container = container
    app.state.edge = EdgePolicy.of(container)
    app.add_middleware(EdgeGuard, policy=app.state.edge)
    install_error_handlers(app)
    _health_routes(app, container)
    if container.role in ("api", "all"):
        app.include_router(routes_tasks.router)
    if mcp is not None and container.verifier is not None:
        _protected_resource_routes(app, container)
    for extend in extensions or []:
        extend(app, container)
    if mcp_app is not None:
        app.mount("/", mcp_app)  # last: lowest precedence; serves /mcp and its OAuth metadata
    return app


def _protected_resource_routes(app: FastAPI, container: Container) -> None:
    """RFC 9728 metadata at the root well-known path and at the one for ``/mcp`` (where the
    ``WWW-Authenticate`` of a 401 from ``/mcp`` points): the issuer and the scopes."""
    metadata = resource_metadata(container.mcp_options())
    for path in ("/.well-known/oauth-protected-resource", "/.well-known/oauth-protected-resource/mcp"):
        app.add_api_route(
            path, lambda: metadata, methods=["GET"], tags=["mcp"], summary="OAuth protected resource metadata"
        )


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
