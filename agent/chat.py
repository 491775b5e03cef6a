"""The chat use case: one turn of a user's conversation with the task assistant.

    chat = Chat(store=store, models=select_model(settings), mcp_url=None, item_limit=40,
                tools_in_process=build_mcp_server(tasks, resolve_actor=turn_actor),
                mcp_token=lambda actor, bearer: None)
    turn = await chat.begin(actor, "add buy milk tomorrow", conversation_id=None)
    async for event in turn.events():   # start, delta, tool_call, tool_result, confirm, done | error
        ...
    reply = await chat.send(actor, "what's due this week?", conversation_id=turn.conversation_id)
    answered = await chat.answer(actor, reply.conversation_id, reply.confirmations[0]["id"], confirmed=True)

A turn opens its own MCP connection with the caller's identity: in-process to the process's own
MCP server, whose tools act for the turn's caller (``turn_actor``), or, with ``mcp_url``, over
streamable HTTP with a short-lived token for the caller (none in the unauthenticated embedded
default). It runs the agent and appends every item of the turn to memory in one write. The turn
runs in a task of its own that also opens and closes the MCP connection, so a client that goes
away mid-stream neither breaks the connection's lifecycle nor leaves half a turn in memory.
Nothing is stored when the model or the tools fail: the conversation stays as it was. Each
write tool call carries an idempotency key of its own (``agent.tool_keys``), so a turn run again
on the same conversation, or a call sent again, writes once.

A tool call that needs the user's yes leaves a confirmation (``agent.confirmations``), streamed as
a ``confirm`` event; ``answer`` runs it once with ``confirm: true`` or cancels it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sqlite3
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Final, Literal, TypeVar, cast

import httpx2
import mcp
import mcp_types
from agents import RunConfig, Runner, RunResultStreaming
from agents.exceptions import AgentsException, MaxTurnsExceeded, UserError
from agents.items import ToolCallItem, ToolCallOutputItem
from agents.mcp import MCPServer
from agents.mcp.util import MCPToolCustomDataContext, MCPToolMetaContext, MCPUtil
from agents.run_context import RunContextWrapper
from agents.stream_events import RawResponsesStreamEvent, RunItemStreamEvent
from mcp.client.streamable_http import streamable_http_client
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from psycopg import Error as PostgresError
from sqlalchemy.exc import SQLAlchemyError

from agent.assistant import build_assistant
from agent.confirmations import answer_items, expired, outcome, pending_in, said, still_open
from agent.confirmations import find as find_confirmation
from agent.dapr_state import StateStoreError
from agent.memory import ConversationNotFound, ConversationStore, Item, title_from, trim_for_model
from agent.models import ModelChoice
from agent.offline import OfflineModel
from agent.timing import TimedModel, ToolTimer, TurnTimings
from agent.tool_keys import TurnKeys
from agent.transcript import assistant_message, parse_arguments, parse_output
from mcp_server.idempotency import META_KEY as IDEMPOTENCY_META_KEY
from observability import tracing
from tasks.clock import Clock, utc_now
from tasks.service import Actor

log = logging.getLogger(__name__)
T = TypeVar("T")

EventKind = Literal["start", "delta", "tool_call", "tool_result", "confirm", "done", "error"]
TokenFor = Callable[[Actor, str | None], str | None]
MAX_MESSAGE_LENGTH: Final = 8000
_MAX_AGENT_TURNS: Final = 12
#: Errors whose text is the database's own (it may quote SQL): never shown to the user.
_DATABASE_ERRORS: Final = (SQLAlchemyError, sqlite3.Error, PostgresError)


class ChatFailed(Exception):
    """The model or the tools failed; ``detail`` says which and why (safe to show)."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


@dataclass(frozen=True)
class ChatEvent:
    kind: EventKind
    data: dict[str, Any]


@dataclass
class ChatReply:
    conversation_id: str
    reply: str
    tool_calls: list[dict[str, Any]]
    timings: TurnTimings
    #: What the turn left for the person to confirm (``Confirmation.public()``), if anything.
    confirmations: list[dict[str, Any]] = field(default_factory=list)

    def public(self) -> dict[str, Any]:
        return {
            "conversation_id": self.conversation_id,
            "reply": self.reply,
            "tool_calls": self.tool_calls,
            "confirmations": self.confirmations,
        }


@dataclass(frozen=True)
class Answered:
    """What answering a confirmation did: the outcome said in the conversation, and the
    confirmed tool call (None for a cancel)."""

    conversation_id: str
    id: str
    confirmed: bool
    said: str
    reply: str
    tool_call: dict[str, Any] | None

    def public(self) -> dict[str, Any]:
        return {
            "conversation_id": self.conversation_id, "id": self.id, "confirmed": self.confirmed,
            "said": self.said, "reply": self.reply, "tool_call": self.tool_call,
        }  # fmt: skip


@dataclass
class Chat:
    store: ConversationStore
    models: ModelChoice
    mcp_url: str | None
    item_limit: int | None
    mcp_token: TokenFor
    tools_in_process: Any = None
    clock: Clock = utc_now
    httpx_client_factory: Any = None
    _running: set[asyncio.Task[Any]] = field(default_factory=set, repr=False)
    _tools: list[Any] = field(default_factory=list, repr=False)
    _function_tools: list[Any] = field(default_factory=list, repr=False)
    _protocol: _Protocol = field(default_factory=lambda: _Protocol(), repr=False)
    _ssl: ssl.SSLContext | None = field(default=None, repr=False)
    _pool: tuple[asyncio.AbstractEventLoop, httpx2.AsyncHTTPTransport] | None = field(
        default=None, repr=False
    )
    _answering: dict[tuple[str, str], tuple[asyncio.Lock, int]] = field(default_factory=dict, repr=False)

    async def begin(
        self, actor: Actor, message: str, *, conversation_id: str | None, bearer: str | None = None
    ) -> Turn:
        """Check the conversation (``ConversationNotFound`` for another user's) and load its history
        (``ChatFailed`` when the conversation memory cannot be read or written).

        The turn starts at once in a task of its own, which opens its MCP connection while the
        history loads here; when the load fails, that task closes the connection and ends."""
        turn = Turn(self, actor, message, conversation_id, bearer=bearer)
        turn.start()
        started = time.perf_counter()
        try:
            await self._load(turn)
        except BaseException:
            turn.loaded(False)
            raise
        finally:
            turn.timings.memory_ms += (time.perf_counter() - started) * 1000
        turn.loaded(True)
        return turn

    async def _load(self, turn: Turn) -> None:
        """The turn's history, or its new conversation; memory failures become ``ChatFailed``."""
        user_id = turn.actor.user_id
        if turn.created:
            created = await self._memory_call(self.store.create(user_id, title=title_from(turn.message)))
            turn.conversation_id = created.id
        else:
            stored = await self._memory_call(
                self.store.load(user_id, turn.conversation_id, limit=self.item_limit)
            )
            turn.history = trim_for_model(stored, self.item_limit)

    async def send(
        self, actor: Actor, message: str, *, conversation_id: str | None = None, bearer: str | None = None
    ) -> ChatReply:
        """One turn, waited for; raises ``ChatFailed`` when the model or a tool fails."""
        turn = await self.begin(actor, message, conversation_id=conversation_id, bearer=bearer)
        async for event in turn.events():
            if event.kind == "error":
                raise ChatFailed(event.data["detail"])
        assert turn.reply is not None
        return turn.reply

    async def answer(
        self, actor: Actor, conversation_id: str, confirmation_id: str, *, confirmed: bool,
        bearer: str | None = None,
    ) -> Answered:  # fmt: skip
        """Answer a pending confirmation of ``actor``'s conversation: Confirm makes the refused
        call again with ``confirm: true`` through the same MCP tools, under an idempotency key
        of this confirmation's own; Cancel changes nothing. Either way the answer and its outcome
        join the conversation, which closes the confirmation. Raises ``ConversationNotFound``
        (another user's conversation too), ``ConfirmationUnknown``, ``ConfirmationStale`` and
        ``ChatFailed`` (memory or tools unavailable).

        The work runs in a task of its own, so a client that goes away mid-call does not cut
        it short; answers to one conversation take turns in this process."""
        answering = self._answer(actor, conversation_id, confirmation_id, confirmed, bearer)
        work = asyncio.create_task(_traced_answer(answering, confirmed))
        self._running.add(work)
        work.add_done_callback(self._running.discard)
        return await asyncio.shield(work)

    async def _answer(
        self, actor: Actor, conversation_id: str, confirmation_id: str, confirmed: bool, bearer: str | None
    ) -> Answered:
        async with self._one_at_a_time((actor.user_id, conversation_id)):
            info = await self._memory_call(self.store.get(actor.user_id, conversation_id))
            load = self.store.load(actor.user_id, conversation_id, limit=self.item_limit)
            confirmation = find_confirmation(await self._memory_call(load), confirmation_id)
            if not still_open(info.updated_at, self.clock()):
                raise expired()
            call: dict[str, Any] | None = None
            reply = "OK, I left everything as it was: nothing was changed."
            if confirmed:
                arguments = {
                    **confirmation.needed.arguments,
                    "idempotency_key": confirmation.idempotency_key(conversation_id),
                }
                output, is_error = await self._call_tool(actor, bearer, confirmation.needed.tool, arguments)
                call = {"name": confirmation.needed.tool, "arguments": arguments, "output": output,
                        "is_error": is_error}  # fmt: skip
                reply = outcome(confirmation, output, is_error=is_error)
            added = answer_items(confirmation, confirmed=confirmed, reply=reply, output=_stored(call))
            await self._memory_call(self.store.append(actor.user_id, conversation_id, added))
        answer = said(confirmation, confirmed=confirmed)
        return Answered(conversation_id, confirmation_id, confirmed, answer, reply, call)

    @contextlib.asynccontextmanager
    async def _one_at_a_time(self, key: tuple[str, str]) -> AsyncIterator[None]:
        """Answers to one conversation take turns (in this process)."""
        lock, users = self._answering.get(key, (asyncio.Lock(), 0))
        self._answering[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._answering[key]
            if users == 1:
                del self._answering[key]
            else:
                self._answering[key] = (lock, users - 1)

    async def _memory_call(self, operation: Awaitable[T]) -> T:
        """A conversation memory operation; its failures (but not a missing conversation) become
        ``ChatFailed``."""
        try:
            return await operation
        except ConversationNotFound:
            raise
        except Exception as exc:
            log.warning("the conversation memory failed", exc_info=True)
            raise ChatFailed(f"The conversation memory is unavailable: {_reason(exc)}") from exc

    async def _call_tool(
        self, actor: Actor, bearer: str | None, name: str, arguments: dict[str, Any]
    ) -> tuple[Any, bool]:
        """One task tool call for ``actor`` outside a turn: the result and whether it is an error."""
        _turn_actor.set(actor)  # this task's context (``answer`` runs in a task of its own)
        server = self._server(actor, bearer)
        try:
            await server.connect()
            result = await server.call_tool(name, arguments)
        except Exception as exc:
            log.warning("a confirmed task tool call failed", exc_info=True)
            raise ChatFailed(f"The task tools are unavailable: {_reason(exc)}") from exc
        finally:
            await server.cleanup()
        if result.structured_content is not None and not result.is_error:
            return result.structured_content, False
        text = "\n".join(getattr(part, "text", "") for part in result.content)
        return parse_output(text), bool(result.is_error)

    def _server(self, actor: Actor, bearer: str | None) -> _TaskTools:
        if self.mcp_url is None:  # the process's own MCP server, acting for ``turn_actor``
            server = self.tools_in_process
            return _TaskTools(lambda: server, shared_tools=self._tools, protocol=self._protocol)
        token = self.mcp_token(actor, bearer)
        headers = {"Authorization": f"Bearer {token}"} if token else None
        url = self.mcp_url
        factory = self.httpx_client_factory or self._http_client
        return _TaskTools(
            lambda: _http_streams(url, factory(headers=headers, timeout=_HTTP_TIMEOUT)),
            shared_tools=self._tools,
            protocol=self._protocol,
        )

    async def _task_tools(self) -> list[Any]:
        """The task tools as the agent's function tools (converted once, after a listing)."""
        if not self._function_tools:
            router = _TurnRouter(None, shared_tools=self._tools, protocol=self._protocol)
            context: RunContextWrapper[Any] = RunContextWrapper(None)
            self._function_tools[:] = await MCPUtil.get_function_tools(router, False, context, None)  # type: ignore[arg-type]
        return self._function_tools

    def _http_client(self, headers: Any = None, timeout: Any = None, auth: Any = None) -> Any:
        """An HTTP client for one MCP connection, over the process's keep-alive connection pool.

        The client (and so the caller's ``Authorization`` header) belongs to one turn; only the
        TCP connections to our own ``/mcp`` are reused, and the pool is per event loop."""
        return httpx2.AsyncClient(
            headers=headers, timeout=timeout, auth=auth, transport=_Borrowed(self._connections()),
            follow_redirects=False,
        )  # fmt: skip

    def _connections(self) -> httpx2.AsyncHTTPTransport:
        loop = asyncio.get_running_loop()
        if self._pool is None or self._pool[0] is not loop:
            if self._ssl is None:
                self._ssl = ssl.create_default_context()  # costly to build: once per process
            self._pool = (loop, httpx2.AsyncHTTPTransport(verify=self._ssl, limits=_POOL_LIMITS))
        return self._pool[1]

    async def aclose(self) -> None:
        """Close the MCP connection pool (the store is closed by its owner)."""
        if self._running:  # turns still closing their MCP connections after answering
            await asyncio.wait(set(self._running), timeout=_CLOSING_WAIT_SECONDS)
        pool, self._pool = self._pool, None
        if pool is not None and pool[0] is asyncio.get_running_loop():
            await pool[1].aclose()


_POOL_LIMITS: Final = httpx2.Limits(max_connections=64, max_keepalive_connections=16, keepalive_expiry=30)
_READ_TIMEOUT_SECONDS: Final = 30.0
_HTTP_TIMEOUT: Final = httpx2.Timeout(30.0, read=300.0)
_PROTOCOL_RECHECK_SECONDS: Final = 300.0
_CLOSING_WAIT_SECONDS: Final = 5.0


@asynccontextmanager
async def _http_streams(url: str, http_client: httpx2.AsyncClient) -> AsyncIterator[Any]:
    """The streamable HTTP transport of one MCP connection over ``http_client``, closed with it."""
    async with http_client, streamable_http_client(url, http_client=http_client) as streams:
        yield streams


class _Borrowed(httpx2.AsyncBaseTransport):
    """One turn's view of the shared pool: closing the turn's client leaves the pool open."""

    def __init__(self, pool: httpx2.AsyncHTTPTransport) -> None:
        self._pool = pool

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        return await self._pool.handle_async_request(request)

    async def aclose(self) -> None:
        return None


@dataclass
class _Protocol:
    """What ``server/discover`` said about our MCP server, kept per process.

    The first connection probes (``mode="auto"``); later ones adopt the known result and pin
    its protocol version, which saves a round trip per turn. It is probed again every few
    minutes, and at once after a connection or a call that failed."""

    discovered: mcp_types.DiscoverResult | None = None
    at: float = 0.0

    def known(self) -> tuple[mcp_types.DiscoverResult | None, str | None]:
        """The known result and the newest modern version both sides speak, if any."""
        if self.discovered is None or time.monotonic() - self.at >= _PROTOCOL_RECHECK_SECONDS:
            return None, None
        mutual = [v for v in MODERN_PROTOCOL_VERSIONS if v in self.discovered.supported_versions]
        return (self.discovered, mutual[-1]) if mutual else (None, None)

    def learn(self, session: Any) -> None:
        result = getattr(session, "discover_result", None)
        self.discovered, self.at = result, time.monotonic()

    def forget(self) -> None:
        self.discovered = None


_turn_tools: ContextVar[_TaskTools | None] = ContextVar("todo_turn_tools", default=None)
_turn_actor: ContextVar[Actor | None] = ContextVar("todo_turn_actor", default=None)


def turn_actor(_token: object = None) -> Actor:
    """The caller of the chat turn running in this context: who an in-process MCP server's
    tools act for (its ``resolve_actor``). Outside a turn there is nobody to act for."""
    actor = _turn_actor.get()
    if actor is None:
        raise UserError("The in-process task tools act only within a chat turn.")
    return actor


class _TaskTools(MCPServer):
    """The task tools of one turn, through the agents SDK's public ``MCPServer`` protocol: one
    ``mcp.Client`` connection made by ``transport`` (which carries the caller's identity). The
    tool list is fetched once per process and shared by every turn."""

    def __init__(
        self,
        transport: Callable[[], Any] | None,
        *,
        shared_tools: list[Any],
        protocol: _Protocol,
        read_timeout: float = _READ_TIMEOUT_SECONDS,
    ) -> None:
        super().__init__(
            use_structured_content=True, custom_data_extractor=_error_flag, tool_meta_resolver=self._keyed
        )
        self._transport = transport
        self._shared_tools = shared_tools
        self._protocol = protocol
        self._read_timeout = read_timeout
        self._session: Any = None
        self._closing: Callable[[], Awaitable[None]] | None = None

    @property
    def name(self) -> str:
        return "todo-tasks"

    async def connect(self) -> None:
        assert self._transport is not None
        try:
            self._session, self._closing = await _open_client(
                self._transport(), self._protocol, self._read_timeout
            )
        except BaseException:
            self._protocol.forget()
            raise

    async def cleanup(self) -> None:
        closing, self._closing, self._session = self._closing, None, None
        if closing is not None:
            await closing()

    async def call_tool(
        self, tool_name: str, arguments: dict[str, Any] | None, meta: dict[str, Any] | None = None
    ) -> mcp_types.CallToolResult:
        """``tools/call`` as a plain request: the client's ``call_tool`` would re-validate every
        structured result against the tool's JSON schema, compiling that schema and listing the
        tools again in each turn's session (tens of milliseconds per turn). This server is our own
        and already validated the result with its pydantic model."""
        params = mcp_types.CallToolRequestParams(
            name=tool_name, arguments=arguments, _meta=cast(mcp_types.RequestParamsMeta | None, meta)
        )
        try:
            result: mcp_types.CallToolResult = await self._connected().send_request(
                mcp_types.CallToolRequest(params=params), mcp_types.CallToolResult
            )
        except Exception:  # a transport or protocol failure (a tool's own error is a result)
            self._protocol.forget()
            raise
        return result

    async def list_tools(self, run_context: Any = None, agent: Any = None) -> list[Any]:
        if not self._shared_tools:
            self._shared_tools.extend((await self._connected().list_tools()).tools)
        return list(self._shared_tools)

    async def list_prompts(self) -> mcp_types.ListPromptsResult:
        result: mcp_types.ListPromptsResult = await self._connected().list_prompts()
        return result

    async def get_prompt(
        self, name: str, arguments: dict[str, Any] | None = None
    ) -> mcp_types.GetPromptResult:
        result: mcp_types.GetPromptResult = await self._connected().get_prompt(name, arguments)
        return result

    def _connected(self) -> Any:
        if self._session is None:
            raise UserError("The task tools are not connected.")
        return self._session

    def _keyed(self, context: MCPToolMetaContext) -> dict[str, Any] | None:
        """The ``_meta`` of a turn's call to a write tool: its idempotency key (the SDK asks
        before each call; the run's context is the turn's ``TurnKeys``)."""
        keys, call_id = context.run_context.context, getattr(context.run_context, "tool_call_id", None)
        if not isinstance(keys, TurnKeys) or not isinstance(call_id, str) or not call_id:
            return None
        if context.tool_name not in _keyed_tools(self._shared_tools):
            return None
        return {IDEMPOTENCY_META_KEY: keys.key_for(call_id)}


def _keyed_tools(tools: list[Any]) -> frozenset[str]:
    """The tools that take an idempotency key (the write tools), from their input schemas."""
    return frozenset(
        tool.name for tool in tools if "idempotency_key" in (tool.input_schema or {}).get("properties", {})
    )


async def _open_client(
    server: Any, protocol: _Protocol, read_timeout: float
) -> tuple[Any, Callable[[], Awaitable[None]]]:
    """Connect an ``mcp.Client`` to ``server`` in a task of its own (entered and left there, so
    its task groups never cancel the turn), with the protocol version pinned once it is known
    (``mode`` and ``prior_discover`` instead of probing ``server/discover`` every time). Returns
    the client's session and the coroutine function that closes it."""
    known, version = protocol.known()
    client = mcp.Client(
        server, mode=version or "auto", prior_discover=known, cache=None, read_timeout_seconds=read_timeout
    )
    ready: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    done = asyncio.Event()

    async def run_client() -> None:
        try:
            async with client as connected:
                ready.set_result(connected.session)
                await done.wait()
        except BaseException as exc:
            if not ready.done():
                ready.set_exception(exc)
                return
            raise

    task = asyncio.create_task(run_client())
    try:
        session = await asyncio.shield(ready)
    except BaseException:
        task.cancel()
        with contextlib.suppress(BaseException):
            await task
        raise
    if known is None:
        protocol.learn(session)

    async def close() -> None:
        done.set()
        try:
            await task
        except asyncio.CancelledError:
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
            raise

    return session, close


class _TurnRouter(_TaskTools):
    """Stands in for "this turn's MCP connection" in the agent's function tools.

    The SDK converts an agent's MCP tools into function tools (schema copies, checks) before
    every model call; the task tools never change, so they are converted once per process
    against this router, whose ``call_tool`` goes to the connection of the turn running in
    the current task (a context variable), with that turn's caller identity. It never
    connects itself, and a call outside a turn fails."""

    async def connect(self) -> None:
        raise UserError("The tool router has no connection of its own.")

    async def call_tool(
        self, tool_name: str, arguments: dict[str, Any] | None, meta: dict[str, Any] | None = None
    ) -> mcp_types.CallToolResult:
        server = _turn_tools.get()
        if server is None:
            raise UserError(f"Task tool '{tool_name}' called outside a chat turn.")
        return await server.call_tool(tool_name, arguments, meta)


def _error_flag(context: MCPToolCustomDataContext) -> dict[str, Any]:
    return {"is_error": bool(context.is_error)}


class _Abandoned(Exception):
    """The turn's history could not be loaded (``begin`` raised): the turn does not run."""


class Turn:
    """One turn, started by ``Chat.begin``; ``events()`` yields what happens until ``done`` or
    ``error``. The turn runs to its end even when nobody reads its events (the reply is saved)."""

    def __init__(
        self, chat: Chat, actor: Actor, message: str, conversation_id: str | None, *, bearer: str | None
    ) -> None:
        self.chat, self.actor, self.message, self.bearer = chat, actor, message, bearer
        self.created = conversation_id is None
        self.conversation_id = conversation_id or ""
        self.history: list[Item] = []
        self.timings = TurnTimings()
        self.reply: ChatReply | None = None
        self._memory: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._queue: asyncio.Queue[ChatEvent | None] = asyncio.Queue()
        self._result: RunResultStreaming
        self._said = False  # a text delta was streamed

    def start(self) -> None:
        task = asyncio.create_task(self._run(), name="chat-turn")
        self.chat._running.add(task)
        task.add_done_callback(self.chat._running.discard)

    def loaded(self, ok: bool) -> None:
        """Whether the history loaded (or the conversation was created): if so the agent runs,
        else the turn closes its connection and ends."""
        self._memory.set_result(ok)

    async def events(self) -> AsyncIterator[ChatEvent]:
        while (event := await self._queue.get()) is not None:
            yield event
            if event.kind in ("done", "error"):
                return  # the turn may still be closing its MCP connection

    def _emit(self, kind: EventKind, **data: Any) -> None:
        self._queue.put_nowait(ChatEvent(kind, data))

    async def _run(self) -> None:
        try:
            with tracing.span("chat.turn", attributes={"todo.conversation.new": self.created}):
                await self._run_agent()
        except _Abandoned:
            pass
        except ChatFailed as failure:
            await self._forget_if_new()
            self._emit("error", detail=failure.detail)
        except Exception as exc:  # never a stack trace on the wire
            log.exception("chat turn failed unexpectedly")
            await self._forget_if_new()
            self._emit("error", detail=f"The assistant failed unexpectedly ({type(exc).__name__}).")
        finally:
            self._queue.put_nowait(None)

    async def _run_agent(self) -> None:
        _turn_actor.set(self.actor)  # this task's context, copied by the MCP connection's tasks
        server = self.chat._server(self.actor, self.bearer)
        try:
            unavailable = await self._connect(server)
            if not await self._memory:  # loading in ``begin`` meanwhile
                raise _Abandoned
            self._emit("start", conversation_id=self.conversation_id)
            if unavailable is not None:
                raise ChatFailed(f"The task tools are unavailable: {_reason(unavailable)}") from unavailable
            await self._save(await self._stream(server))
        finally:
            await server.cleanup()  # after the reply: the caller is not kept waiting for it

    async def _connect(self, server: _TaskTools) -> Exception | None:
        """Open the MCP connection and know the tools; the failure, if any."""
        started = time.perf_counter()
        try:
            await server.connect()
            await server.list_tools()
        except Exception as exc:
            return exc
        finally:
            self.timings.tools_ms += (time.perf_counter() - started) * 1000
        return None

    async def _stream(self, server: _TaskTools) -> list[dict[str, Any]]:
        chat, timings = self.chat, self.timings
        inner = chat.models.model_for(timezone=self.actor.timezone)
        model = TimedModel(inner, timings)
        answers = model.timed(inner.answer_from_tools) if isinstance(inner, OfflineModel) else None
        agent = build_assistant(
            model=model, tools=await chat._task_tools(), now=chat.clock(), timezone=self.actor.timezone,
            answer_from_tools=answers,
        )  # fmt: skip
        _turn_tools.set(server)  # this task's context; the run's own tasks copy it
        config = RunConfig(tracing_disabled=not chat.models.tracing_enabled, workflow_name="todo-chat")
        user_item: Item = {"role": "user", "content": self.message}
        self._result = Runner.run_streamed(
            agent,
            [*self.history, user_item],
            context=TurnKeys(self.conversation_id, self.history, self.message),
            max_turns=_MAX_AGENT_TURNS,
            hooks=ToolTimer(timings),
            run_config=config,
        )
        calls: dict[str, dict[str, Any]] = {}
        try:
            async for event in self._result.stream_events():
                self._translate(event, calls)
        except MaxTurnsExceeded as exc:
            raise ChatFailed("The model kept calling tools without answering; try rephrasing.") from exc
        except AgentsException as exc:
            log.warning("a task tool failed", exc_info=True)
            raise ChatFailed(f"A task tool failed: {_reason(exc)}") from exc
        except Exception as exc:
            log.warning("the model failed", exc_info=True)
            raise ChatFailed(f"The model failed: {_reason(exc)}") from exc
        return list(calls.values())

    def _translate(self, event: Any, calls: dict[str, dict[str, Any]]) -> None:
        if isinstance(event, RawResponsesStreamEvent):
            if event.data.type == "response.output_text.delta" and event.data.delta:
                self._said = True
                self._emit("delta", text=event.data.delta)
            return
        if not isinstance(event, RunItemStreamEvent):
            return
        item = event.item
        if isinstance(item, ToolCallItem):
            raw: Any = item.raw_item
            name, call_id = getattr(raw, "name", "tool"), getattr(raw, "call_id", "")
            arguments = parse_arguments(getattr(raw, "arguments", "{}"))
            calls[call_id] = {"name": name, "arguments": arguments, "output": None, "is_error": False}
            self._emit("tool_call", name=name, arguments=arguments)
        elif isinstance(item, ToolCallOutputItem):
            call = calls.setdefault(str(item.call_id), {"name": "tool", "arguments": {}})
            output = parse_output(item.output)
            custom = item.custom_data or {}
            is_error = bool(custom["is_error"]) if "is_error" in custom else isinstance(output, str)
            call.update(output=output, is_error=is_error)
            self._emit(
                "tool_result", name=call["name"], output=output, is_error=is_error, id=str(item.call_id)
            )

    async def _save(self, calls: list[dict[str, Any]]) -> None:
        result = self._result
        reply = str(result.final_output or "")
        new_items = result.to_input_list()[len(self.history) :]
        if reply and not _is_assistant_message(new_items[-1] if new_items else None):
            # The run ended on tool results (the offline model answered from them): the reply
            # is stored as the assistant's message and streamed, as a model's reply would be.
            new_items.append(cast(Item, assistant_message(reply)))
            if not self._said:
                self._emit("delta", text=reply)
        started = time.perf_counter()
        try:
            await self.chat.store.append(self.actor.user_id, self.conversation_id, new_items)
        except Exception as exc:
            log.warning("saving conversation memory failed", exc_info=True)
            raise ChatFailed(f"The reply could not be saved to the conversation: {_reason(exc)}") from exc
        finally:
            self.timings.memory_ms += (time.perf_counter() - started) * 1000
        confirmations = [pending.public() for pending in pending_in(new_items)]
        for confirmation in confirmations:  # after the save: the conversation holds them now
            self._emit("confirm", **confirmation)
        self.reply = ChatReply(self.conversation_id, reply, calls, self.timings.finish(), confirmations)
        self._emit("done", **self.reply.public())

    async def _forget_if_new(self) -> None:
        """A first turn that failed leaves no empty conversation behind."""
        if not self.created or not await self._memory:  # created (or not) in ``begin``
            return
        try:
            await self.chat.store.delete(self.actor.user_id, self.conversation_id)
        except Exception:
            log.warning("could not remove the empty conversation %s", self.conversation_id, exc_info=True)


def _is_assistant_message(item: Any) -> bool:
    return (
        isinstance(item, dict)
        and item.get("role") == "assistant"
        and item.get("type", "message") == "message"
    )


async def _traced_answer(answering: Awaitable[Answered], confirmed: bool) -> Answered:
    with tracing.span("chat.confirmation", attributes={"todo.confirmed": confirmed}):
        return await answering


def _stored(call: dict[str, Any] | None) -> str | None:
    """A tool call's output as the SDK keeps it in memory: JSON, or an error's text."""
    if call is None:
        return None
    output = call["output"]
    return output if isinstance(output, str) else json.dumps(output, ensure_ascii=False)


def _reason(exc: BaseException) -> str:
    """The innermost readable message of an exception (groups included), fit to show the user:
    a database's or state store's own text (SQL, internal addresses) stays in the server's log."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    for link in _chain(exc):
        if isinstance(link, _DATABASE_ERRORS):
            return "the database refused the request (the details are in the server's log)"
        if isinstance(link, StateStoreError):
            said = " ".join(str(part) for part in (link.status, link.code) if part)
            return (
                f"the state store refused the request ({said})" if said else "the state store is unreachable"
            )
    text = str(exc).strip() or type(exc).__name__
    return text[:300]


def _chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and the exceptions it was raised from or during, innermost last."""
    seen: list[BaseException] = []
    link: BaseException | None = exc
    while link is not None and link not in seen and len(seen) < 20:
        seen.append(link)
        link = link.__cause__ or link.__context__
    return seen
