"""Resource subscriptions in both protocol eras, fed by ``LiveResources``.

- 2026-07-28 clients (the official SDKs' default) send ``subscriptions/listen``: the response
  is a stream that stays open on the request's own HTTP response (or stdio), so it needs no
  session. ``UserBus`` is the SDK's ``SubscriptionBus`` seam: each stream is registered for the
  user who opened it, and hears only that user's changes.
- Handshake-era clients (protocol 2025-11-25 and before: Claude Desktop over stdio, most
  connectors) send ``resources/subscribe`` on a session; each change is sent as
  ``notifications/resources/updated`` on the session's standalone stream (the GET stream over
  streamable HTTP). The subscriptions live in the session's connection and end with it.

    bus = UserBus(live, current_user)                 # MCPServer(subscriptions=bus)
    install_session_subscriptions(mcp, live, current_user, check_uri)
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Final

import anyio.lowlevel
from mcp.server import MCPServer
from mcp.server.context import ServerRequestContext
from mcp.server.subscriptions import ResourcesListChanged, ResourceUpdated, ServerEvent
from mcp.shared.exceptions import MCPError
from mcp_types import INVALID_PARAMS, EmptyResult, SubscribeRequestParams, UnsubscribeRequestParams

from mcp_server.live import LIST_CHANGED, LiveResources, TooManyWatchers

log = logging.getLogger(__name__)

_STATE_KEY: Final = "todo_agent.resource_subscriptions"


class UserBus:
    """A ``SubscriptionBus`` whose listeners are per user: ``subscribe`` runs inside the
    ``subscriptions/listen`` request, so ``current_user()`` names who opened the stream."""

    def __init__(self, live: LiveResources, current_user: Callable[[], str]) -> None:
        self._live = live
        self._current_user = current_user

    async def publish(self, event: ServerEvent) -> None:
        """Events published through ``ctx.notify_*`` name no user, so they reach nobody; changes
        arrive through ``LiveResources`` instead."""
        log.debug("ignoring a user-less %s", type(event).__name__)
        await anyio.lowlevel.checkpoint()

    def subscribe(self, listener: Callable[[ServerEvent], None]) -> Callable[[], None]:
        def on_change(uri: str) -> None:
            listener(ResourcesListChanged() if uri == LIST_CHANGED else ResourceUpdated(uri=uri))

        try:
            return self._live.watch(self._current_user(), None, on_change)
        except TooManyWatchers as exc:
            raise MCPError(INVALID_PARAMS, str(exc)) from exc


def install_session_subscriptions(
    mcp: MCPServer,
    live: LiveResources,
    current_user: Callable[[], str],
    check_uri: Callable[[str], Awaitable[None]],
) -> None:
    """Serve ``resources/subscribe`` and ``resources/unsubscribe`` (handshake era).
    ``check_uri`` raises ``MCPError`` for a URI the caller cannot read."""
    sending: set[asyncio.Task[Any]] = set()

    async def subscribe(ctx: ServerRequestContext[Any], params: SubscribeRequestParams) -> EmptyResult:
        uri = str(params.uri)
        await check_uri(uri)
        mine = _subscriptions_of(ctx)
        if uri in mine:
            return EmptyResult()
        session = ctx.session

        def on_change(changed: str) -> None:  # on the loop; sending is best effort, never raises
            task = asyncio.get_running_loop().create_task(session.send_resource_updated(changed))
            sending.add(task)
            task.add_done_callback(sending.discard)

        try:
            mine[uri] = live.watch(current_user(), {uri}, on_change)
        except TooManyWatchers as exc:
            raise MCPError(INVALID_PARAMS, str(exc)) from exc
        return EmptyResult()

    async def unsubscribe(ctx: ServerRequestContext[Any], params: UnsubscribeRequestParams) -> EmptyResult:
        stop = _subscriptions_of(ctx).pop(str(params.uri), None)
        if stop is not None:
            stop()
        return EmptyResult()

    # MCPServer has no decorator for these two methods; the low-level server serves them and
    # then advertises ``resources.subscribe`` to handshake-era clients.
    mcp._lowlevel_server.add_request_handler("resources/subscribe", SubscribeRequestParams, subscribe)
    mcp._lowlevel_server.add_request_handler("resources/unsubscribe", UnsubscribeRequestParams, unsubscribe)


def _subscriptions_of(ctx: ServerRequestContext[Any]) -> dict[str, Callable[[], None]]:
    """This connection's subscriptions (uri -> stop), stopped when the connection closes."""
    connection = ctx.session._connection  # the SDK keeps per-connection state and teardown here
    mine: dict[str, Callable[[], None]] | None = connection.state.get(_STATE_KEY)
    if mine is None:
        mine = connection.state[_STATE_KEY] = {}

        def stop_all(subscriptions: dict[str, Callable[[], None]] = mine) -> None:
            for stop in subscriptions.values():
                stop()
            subscriptions.clear()

        connection.exit_stack.callback(stop_all)
    return mine
