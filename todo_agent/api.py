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

from todo_agent import routes_tasks, telemetry
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
        stateless_http=True,
        json_response=True,
    ) if mcp else None  # fmt: skip

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
    telemetry.install(app, container)  # request spans and metrics around the edge; GET /metrics
    install_error_handlers(app)
    _health_routes(app, container)
    if container.role in ("api", "all"):
        app.include_router(routes_tasks.router)
    for extend in extensions or []:
        extend(app, container)
    if mcp_app is not None:
        app.mount("/", mcp_app)  # last: lowest precedence; serves /mcp and its OAuth metadata
    return app


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
