"""The agent part's wiring: the chat service, its conversation store, and its lifetime.

``todo_agent.bootstrap`` builds them for the ``api`` and ``all`` roles. In Dapr mode
(``DAPR_HTTP_PORT`` set) conversations live in the ``statestore`` component in the SDK's
``DaprSession`` layout, read and written through the sidecar's HTTP state API
(``dapr_conversation_store``); otherwise in the application's database
(``agent.memory_sql.SqlConversationStore``).

    chat = build_chat(tasks, store=store, models=select_model(settings), verifier=verifier)
    async with chat_running(chat): ...          # closes the chat and its store at the end
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any, Final

from pydantic_settings import BaseSettings, SettingsConfigDict

from agent.chat import Chat, turn_actor
from agent.memory import ConversationStore
from agent.models import ModelChoice
from mcp_server.auth import JwtVerifier
from mcp_server.server import build_mcp_server
from tasks.service import Actor, TaskService

if TYPE_CHECKING:
    from dapr.aio.clients import DaprClient

_TOKEN_TTL_SECONDS: Final = 300
#: Conversation items kept per conversation by default (``TODO_CONVERSATION_ITEM_LIMIT``).
ITEM_LIMIT: Final = 40


class ChatOptions(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TODO_", extra="ignore")

    agent_mcp_url: str | None = None  # default: the process's own MCP server, in-process


@contextlib.asynccontextmanager
async def chat_running(chat: Chat) -> AsyncIterator[Chat]:
    """The chat while the app runs; its connections and its store are closed at the end."""
    try:
        yield chat
    finally:
        await chat.aclose()
        await chat.store.close()


def build_chat(
    tasks: TaskService,
    *,
    store: ConversationStore,
    models: ModelChoice,
    verifier: JwtVerifier | None,
    mcp_url: str | None = None,
    item_limit: int = ITEM_LIMIT,
    httpx_client_factory: Any = None,
) -> Chat:
    """The chat: its agent reaches the task tools in-process (acting for the turn's caller), or
    ``mcp_url`` over HTTP with a short-lived token for the caller signed by ``verifier``."""
    return Chat(
        store=store,
        models=models,
        mcp_url=mcp_url,
        tools_in_process=build_mcp_server(tasks, resolve_actor=turn_actor),
        item_limit=item_limit,
        mcp_token=lambda actor, bearer: mcp_token(verifier, actor, bearer),
        httpx_client_factory=httpx_client_factory,
    )


def dapr_conversation_store(
    sidecar_url: str, api_token: str | None, *, grpc_address: str | None, store_name: str,
    ttl_seconds: int | None,
) -> ConversationStore:  # fmt: skip
    """The state store through the sidecar's HTTP API (address and token as the event publisher
    has them); the SDK sessions' gRPC client only on their first use."""
    from agent.dapr_state import DaprStateClient
    from agent.memory_dapr import DaprConversationStore

    def grpc_client() -> DaprClient:
        from dapr.aio.clients import DaprClient

        return DaprClient(address=grpc_address)

    state = DaprStateClient(base_url=sidecar_url, store_name=store_name, api_token=api_token)
    return DaprConversationStore(state, ttl_seconds=ttl_seconds, grpc_client=grpc_client)


def mcp_token(verifier: JwtVerifier | None, actor: Actor, bearer: str | None) -> str | None:
    """The identity the agent's MCP calls carry: the caller's, never a shared one."""
    if verifier is None:
        return None  # the unauthenticated embedded default: /mcp acts for the local user
    try:
        return verifier.issue(actor.user_id, ttl=_TOKEN_TTL_SECONDS, zoneinfo=actor.timezone)
    except RuntimeError:
        return bearer  # JWKS deployments cannot sign: pass the user's own verified token on
