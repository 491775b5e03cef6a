"""The real-time hub: every open WebSocket of a user gets that user's task updates, live.

    hub = WebSocketHub()
    app.include_router(router(hub, uow, authenticate, sign_in_required=True))   # GET /ws
    subscription = realtime_subscription(hub)                                  # task-updates

Protocol (JSON text frames). Authenticate with ``/ws?token=...`` or a first message
``{"type": "auth", "token": "..."}`` (the embedded default without auth needs neither). Then:

- server: ``{"type": "hello", "user_id": ...}``
- server: ``{"type": "task", "id": "<event id>", "event_type": "created|updated|...",
  "task_id": N, "task": {...}, "changes": {...}, "timestamp": "...", "change_id": N}``
  (``change_id``, the write it belongs to, for undo: on events since lists and undo)
- server: ``{"type": "list", "id": "<event id>", "event_type": "created|renamed|archived|...",
  "list_id": N, "list": {...}, "changes": {...}, "timestamp": "..."}``
- server: ``{"type": "notification", "id": "<event id>", "task_id", "title", "body", ...}``
- client: ``{"type": "resume", "last_event_id": "<id>"}`` (or ``/ws?last_event_id=<id>`` when
  connecting): the server replays what this user missed since that id (from the outbox, in id
  order), then carries on live; no event is sent twice on one connection. With the query
  parameter nothing live can overtake the replay; with the message, events sent between
  ``hello`` and ``resume`` came first (ids increase: sort by id if order matters).
  ``{"type": "reset"}`` means too much was missed: reload.
- client: ``{"type": "ping"}`` -> server: ``{"type": "pong"}``.

Refusals: a bad token gets ``{"type": "error", "detail"}`` and close 1008; so does a
``last_event_id`` query parameter that is no event id (a whole number 0..2**63-1; in a ``resume``
message it gets the error and the connection stays). A binary frame gets the error and close 1003
(this protocol speaks JSON text frames only).

Each connection has its own bounded queue and sender task; a client that falls behind (queue
full) or stops reading (send timeout) is disconnected without slowing anyone else.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import defaultdict, deque
from collections.abc import Callable, Mapping
from typing import Any, Final

from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from events.contracts import CLIENT_TOPICS, NOTIFICATION_CREATED, TASK_UPDATES, is_list_event, is_task_event
from events.ports import Delivery, Outcome, Subscription
from mcp_server.auth import InvalidToken
from tasks.models import OutboxEvent
from tasks.service import Actor
from tasks.unit_of_work import UnitOfWorkFactory

#: The acting user of a bearer token (``None``: none given); raises ``InvalidToken``.
Authenticate = Callable[[str | None], Actor]

log = logging.getLogger(__name__)

CONSUMER: Final = "realtime"
ROUTE: Final = "/events/task-updates"
QUEUE_SIZE: Final = 2048  # well above a bulk delivery (100 per call, one call per partition)
SEND_TIMEOUT: Final = 5.0
AUTH_TIMEOUT: Final = 10.0
REPLAY_LIMIT: Final = 500
_SEND_SLICE: Final = 0.002  # how long one socket sends queued messages before yielding
_SENT_MEMORY: Final = 2048
_UNSUPPORTED_DATA: Final = 1003
_POLICY_VIOLATION: Final = 1008
_TRY_AGAIN_LATER: Final = 1013
_LARGEST_EVENT_ID: Final = 2**63 - 1  # the outbox id column is a BIGINT
BAD_EVENT_ID: Final = f"last_event_id must be an event id: a whole number from 0 to {_LARGEST_EVENT_ID}"
TEXT_ONLY: Final = 'Send JSON text frames, e.g. {"type": "auth", "token": "..."}; binary frames are refused.'


class BinaryFrame(Exception):
    """The client sent a binary frame; this protocol speaks JSON text frames only."""


def event_id_of(value: Any) -> int | None:
    """``value`` as an outbox event id, or None when it is not one (text or a number)."""
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 19:
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= _LARGEST_EVENT_ID:
        return value
    return None


async def receive_text(websocket: WebSocket) -> str:
    """The next text frame; ``BinaryFrame`` for a binary one, ``WebSocketDisconnect`` at the end."""
    message = await websocket.receive()
    if message["type"] == "websocket.disconnect":
        raise WebSocketDisconnect(message.get("code", 1000), message.get("reason"))
    text = message.get("text")
    if text is None:
        raise BinaryFrame
    return str(text)


def client_message(event_id: str, event_type: str, data: Mapping[str, Any]) -> dict[str, Any] | None:
    """What a client sees for one ``task-updates`` CloudEvent (None: nothing to show)."""
    if is_task_event(event_type):
        message = {
            "type": "task",
            "id": event_id,
            "event_type": data.get("event_type"),
            "task_id": data.get("task_id"),
            "task": data.get("task_data"),
            "changes": data.get("changes", {}),
            "timestamp": data.get("timestamp"),
        }
        if data.get("change_id") is not None:  # events since lists and undo carry it
            message["change_id"] = data["change_id"]
        return message
    if is_list_event(event_type):
        return {
            "type": "list",
            "id": event_id,
            "event_type": data.get("event_type"),
            "list_id": data.get("list_id"),
            "list": data.get("list_data"),
            "changes": data.get("changes", {}),
            "timestamp": data.get("timestamp"),
        }
    if event_type == NOTIFICATION_CREATED:
        return {**data, "type": "notification", "id": event_id}
    return None


class Connection:
    def __init__(self, websocket: WebSocket, user_id: str) -> None:
        self.websocket = websocket
        self.user_id = user_id
        self.queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue(QUEUE_SIZE)
        self._sent: deque[str] = deque(maxlen=_SENT_MEMORY)
        self._sent_set: set[str] = set()
        self._held: list[dict[str, Any]] | None = None
        self.closed = asyncio.Event()
        self.close_code = _TRY_AGAIN_LATER
        self.close_reason = ""

    def finish(self, detail: str, code: int, reason: str) -> None:
        """Send the error ``detail`` after what is queued, then close with ``code``."""
        self.close_code, self.close_reason = code, reason
        self._held = None
        if not (self._put({"type": "error", "detail": detail}) and self._put(None)):
            self.closed.set()

    def offer(self, message: dict[str, Any]) -> bool:
        """Queue ``message``; False when the client is too far behind (it gets disconnected)."""
        if self._held is not None:  # a replay is being read: live messages wait behind it
            self._held.append(message)
            return len(self._held) <= QUEUE_SIZE
        return self._put(message)

    def _put(self, message: dict[str, Any] | None) -> bool:
        try:
            self.queue.put_nowait(message)
        except asyncio.QueueFull:
            return False
        return True

    def hold_live(self) -> None:
        self._held = []

    def release_live(self, before: list[dict[str, Any]]) -> bool:
        """Queue ``before`` (the replay), then the live messages held meanwhile."""
        held, self._held = self._held or [], None
        return all(self._put(message) for message in [*before, *held])

    def _first_time(self, event_id: str | None) -> bool:
        if event_id is None:
            return True
        if event_id in self._sent_set:
            return False
        if len(self._sent) == self._sent.maxlen:
            self._sent_set.discard(self._sent[0])
        self._sent.append(event_id)
        self._sent_set.add(event_id)
        return True

    async def send_loop(self) -> None:
        """Drain the queue to the socket, skipping events already sent (live + replay overlap)."""
        try:
            slice_ends = time.perf_counter() + _SEND_SLICE
            while (message := await self.queue.get()) is not None:
                if not self._first_time(message.get("id")):
                    continue
                # asyncio.timeout, not wait_for: no task per message, so a send the socket takes
                # at once does not wait a whole turn of a busy loop (under load that capped each
                # socket at a few hundred messages a second and queues filled up)
                async with asyncio.timeout(SEND_TIMEOUT):
                    await self.websocket.send_text(json.dumps(message))
                if time.perf_counter() > slice_ends:  # a long queue: let the rest of the app run
                    await asyncio.sleep(0)
                    slice_ends = time.perf_counter() + _SEND_SLICE
        except (TimeoutError, WebSocketDisconnect, RuntimeError, OSError) as exc:
            log.info("dropping a WebSocket of %s: %s", self.user_id, type(exc).__name__)
        finally:
            self.closed.set()


class WebSocketHub:
    """Open connections by user; ``send_to_user`` never waits for a client."""

    def __init__(self) -> None:
        self._connections: dict[str, set[Connection]] = defaultdict(set)
        self.delivered = 0
        self.dropped_clients = 0

    def add(self, connection: Connection) -> None:
        self._connections[connection.user_id].add(connection)

    def remove(self, connection: Connection) -> None:
        users = self._connections.get(connection.user_id)
        if users is not None:
            users.discard(connection)
            if not users:
                del self._connections[connection.user_id]

    def connection_count(self) -> int:
        return sum(len(c) for c in self._connections.values())

    async def send_to_user(self, user_id: str, message: Mapping[str, Any]) -> int:
        sent = 0
        for connection in list(self._connections.get(user_id, ())):
            if connection.offer(dict(message)):
                sent += 1
            else:
                self.dropped_clients += 1
                log.warning(
                    "a WebSocket of %s fell %d messages behind; disconnecting it", user_id, QUEUE_SIZE
                )
                self.remove(connection)
                connection.closed.set()
        self.delivered += sent
        return sent

    async def handle(self, delivery: Delivery) -> Outcome:
        """The ``task-updates`` consumer: push the event to its user's connections."""
        user_id = delivery.data.get("user_id")
        message = client_message(delivery.id, delivery.type, delivery.data)
        if not isinstance(user_id, str) or message is None:
            log.warning("DROP %s event %s: no user or unknown type %r", CONSUMER, delivery.id, delivery.type)
            return Outcome.DROP
        await self.send_to_user(user_id, message)
        return Outcome.SUCCESS


def realtime_subscription(hub: WebSocketHub) -> Subscription:
    return Subscription(
        topic=TASK_UPDATES, route=ROUTE, consumer=CONSUMER, handler=hub.handle,
        dead_letter_topic=f"{TASK_UPDATES}-dlq",
    )  # fmt: skip


def missed_since(
    uow_factory: UnitOfWorkFactory, user_id: str, last_event_id: int, limit: int = REPLAY_LIMIT
) -> list[OutboxEvent]:
    """Outbox rows of ``user_id`` a client has not seen since ``last_event_id`` (oldest first);
    one more than ``limit`` when more were missed."""
    with uow_factory(read_only=True) as uow:
        return uow.outbox.of_user_after(user_id, last_event_id, topics=CLIENT_TOPICS, limit=limit + 1)


def router(
    hub: WebSocketHub, uow: UnitOfWorkFactory, authenticate: Authenticate, *, sign_in_required: bool
) -> APIRouter:
    """``GET /ws``: the signed-in user's live updates, from ``hub``; missed ones from the outbox."""
    routes = APIRouter()

    @routes.websocket("/ws")
    async def live_updates(websocket: WebSocket) -> None:
        await websocket.accept()
        user_id = await _authenticate(websocket, authenticate, sign_in_required)
        if user_id is None:
            return
        resume_from = websocket.query_params.get("last_event_id")
        since = event_id_of(resume_from)
        if resume_from is not None and since is None:
            await _refuse(websocket, BAD_EVENT_ID, _POLICY_VIOLATION, "bad last_event_id")
            return
        connection = Connection(websocket, user_id)
        connection.offer({"type": "hello", "user_id": user_id})
        if since is not None:
            connection.hold_live()
        hub.add(connection)
        sender = asyncio.create_task(connection.send_loop())
        if since is not None:
            await _replay(connection, uow, since)
        receiver = asyncio.create_task(_receive_loop(connection, uow))
        try:
            await connection.closed.wait()
        finally:
            hub.remove(connection)
            for task in (receiver, sender):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            with contextlib.suppress(Exception):
                await websocket.close(connection.close_code, connection.close_reason)

    return routes


async def _refuse(websocket: WebSocket, detail: str, code: int, reason: str) -> None:
    with contextlib.suppress(Exception):
        await websocket.send_text(json.dumps({"type": "error", "detail": detail}))
        await websocket.close(code, reason)


async def _authenticate(
    websocket: WebSocket, authenticate: Authenticate, sign_in_required: bool
) -> str | None:
    token: Any = websocket.query_params.get("token")
    header = websocket.headers.get("authorization", "")
    if not token and header.lower().startswith("bearer "):
        token = header[7:].strip()
    if not token and sign_in_required:
        try:
            first = json.loads(await asyncio.wait_for(receive_text(websocket), AUTH_TIMEOUT))
            token = first.get("token") if isinstance(first, dict) and first.get("type") == "auth" else None
        except BinaryFrame:
            await _refuse(websocket, TEXT_ONLY, _UNSUPPORTED_DATA, "text frames only")
            return None
        except (TimeoutError, json.JSONDecodeError, WebSocketDisconnect):
            token = None
    try:
        if token is not None and not isinstance(token, str):
            raise InvalidToken("The token must be a string.")
        actor = await asyncio.to_thread(authenticate, token)
    except InvalidToken as exc:
        await _refuse(websocket, str(exc), _POLICY_VIOLATION, "not authenticated")
        return None
    user_id: str = actor.user_id
    return user_id


async def _receive_loop(connection: Connection, uow: UnitOfWorkFactory) -> None:
    try:
        while True:
            try:
                message = json.loads(await receive_text(connection.websocket))
            except json.JSONDecodeError:
                continue
            if not isinstance(message, dict):
                continue
            if message.get("type") == "resume":
                since = event_id_of(message.get("last_event_id"))
                if since is None:
                    connection.offer({"type": "error", "detail": BAD_EVENT_ID})
                else:
                    await _replay(connection, uow, since)
            elif message.get("type") == "ping":
                connection.offer({"type": "pong"})
    except BinaryFrame:
        connection.finish(TEXT_ONLY, _UNSUPPORTED_DATA, "text frames only")
        await connection.closed.wait()  # the sender sends the error first, then the socket closes
    except (WebSocketDisconnect, RuntimeError, OSError):
        pass
    finally:
        connection.closed.set()


async def _replay(connection: Connection, uow: UnitOfWorkFactory, since: int) -> None:
    """Queue what the user missed since event ``since``, holding live messages meanwhile."""
    connection.hold_live()
    rows: list[OutboxEvent] = []
    try:
        rows = await asyncio.to_thread(missed_since, uow, connection.user_id, since)
    finally:
        if len(rows) > REPLAY_LIMIT:
            replay = [{"type": "reset", "detail": f"more than {REPLAY_LIMIT} events missed; reload"}]
        else:
            messages = (client_message(str(row.id), row.event_type, row.payload) for row in rows)
            replay = [m for m in messages if m is not None]
        if not connection.release_live(replay):
            connection.closed.set()
