"""The agent part of a process role: the chat routes and the chat service's lifetime.

Listed in ``todo_agent.roles.PARTS``; active on the ``api`` and ``all`` roles. In Dapr mode
(``DAPR_HTTP_PORT`` set) conversations live in the ``statestore`` component in the SDK's
``DaprSession`` layout, read and written through the sidecar's HTTP state API; otherwise in the
application's database.

    chat = build_chat(container)          # what the lifespan hook does, usable in tests
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any, Final

from fastapi import FastAPI
from pydantic_settings import BaseSettings, SettingsConfigDict

from agent.chat import Chat, turn_actor
from agent.memory import ConversationStore
from agent.models import ModelChoice, select_model
from agent.routes import CHAT_KEY, router
from mcp_server.server import build_mcp_server
from tasks.service import Actor
from todo_agent.api import Hook, LifespanHook
from todo_agent.bootstrap import Container

if TYPE_CHECKING:
    from dapr.aio.clients import DaprClient

    from todo_agent.settings import Settings

_ROLES: Final = ("api", "all")
_TOKEN_TTL_SECONDS: Final = 300


class ChatOptions(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TODO_", extra="ignore")

    agent_mcp_url: str | None = None  # default: the process's own MCP server, in-process


def extensions(container: Container) -> list[Hook]:
    return [_add_routes] if container.role in _ROLES else []


def lifespans(container: Container) -> list[LifespanHook]:
    return [chat_lifespan] if container.role in _ROLES else []


def _add_routes(app: FastAPI, _container: Container) -> None:
    app.include_router(router)


@contextlib.asynccontextmanager
async def chat_lifespan(container: Container) -> AsyncIterator[Chat]:
    chat = container.extras.get(CHAT_KEY) or build_chat(container)
    container.extras[CHAT_KEY] = chat
    try:
        yield chat
    finally:
        container.extras.pop(CHAT_KEY, None)
        await chat.aclose()
        await chat.store.close()


def build_chat(
    container: Container,
    *,
    store: ConversationStore | None = None,
    models: ModelChoice | None = None,
    httpx_client_factory: Any = None,
) -> Chat:
    settings = container.settings
    return Chat(
        store=store or conversation_store(container),
        models=models or select_model(settings),
        mcp_url=ChatOptions().agent_mcp_url,
        tools_in_process=build_mcp_server(container.tasks, resolve_actor=turn_actor),
        item_limit=settings.conversation_item_limit,
        mcp_token=lambda actor, bearer: mcp_token(container, actor, bearer),
        httpx_client_factory=httpx_client_factory,
    )


def conversation_store(container: Container) -> ConversationStore:
    settings = container.settings
    if settings.dapr_enabled:
        return _dapr_store(settings)
    from agent.memory_sql import SqlConversationStore

    return SqlConversationStore(container.engine)


def _dapr_store(settings: Settings) -> ConversationStore:
    """The state store through the sidecar's HTTP API (address and token as the event publisher
    has them); the SDK sessions' gRPC client only on their first use."""
    from agent.dapr_state import DaprStateClient
    from agent.memory_dapr import DaprConversationStore

    if settings.dapr_http_port is None:
        raise RuntimeError("Dapr mode needs DAPR_HTTP_PORT for conversation memory.")
    token = settings.dapr_api_token.get_secret_value() if settings.dapr_api_token else None
    grpc_address = f"127.0.0.1:{settings.dapr_grpc_port}" if settings.dapr_grpc_port else None

    def grpc_client() -> DaprClient:
        from dapr.aio.clients import DaprClient

        return DaprClient(address=grpc_address)

    state = DaprStateClient(
        base_url=f"http://127.0.0.1:{settings.dapr_http_port}",
        store_name=settings.statestore_name,
        api_token=token,
    )
    return DaprConversationStore(
        state, ttl_seconds=settings.conversation_ttl_seconds, grpc_client=grpc_client
    )


def mcp_token(container: Container, actor: Actor, bearer: str | None) -> str | None:
    """The identity the agent's MCP calls carry: the caller's, never a shared one."""
    verifier = container.verifier
    if verifier is None:
        return None  # the unauthenticated embedded default: /mcp acts for the local user
    try:
        return verifier.issue(actor.user_id, ttl=_TOKEN_TTL_SECONDS, zoneinfo=actor.timezone)
    except RuntimeError:
        return bearer  # JWKS deployments cannot sign: pass the user's own verified token on
