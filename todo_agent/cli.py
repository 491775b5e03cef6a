"""The ``todo-agent`` command.

todo-agent run                 # embedded default on http://127.0.0.1:8000
todo-agent serve api           # one role (api, recurrence, notifications, audit)
todo-agent mcp                 # MCP over stdio for Claude Desktop, acting for $TODO_USER
todo-agent token alice         # a signed token for alice (needs TODO_JWT_SECRET)
todo-agent migrate             # apply database migrations

Development tooling (the local PostgreSQL/Kafka/Dapr stack, a role beside its own daprd, the
container image) is ``python -m devstack``: it is not part of the product and not in the image.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from contextlib import ExitStack

import anyio
import httpx
from pydantic import ValidationError

import observability.logs
from mcp_server.live import OutboxFeed
from todo_agent import telemetry
from todo_agent.bootstrap import ROLES, Container, Role, bootstrap, make_verifier
from todo_agent.settings import Settings

_LOOPBACK = ("127.0.0.1", "localhost", "::1")
ROLE_PORTS = {"api": 8000, "recurrence": 8001, "notifications": 8002, "audit": 8003}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="todo-agent", description="A conversational task assistant.")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="start the embedded default (every role, SQLite, no server needed)")
    run.add_argument("--host", default=None)
    run.add_argument("--port", type=int, default=None)
    serve = sub.add_parser("serve", help="start one process role")
    serve.add_argument("role", choices=ROLES)
    serve.add_argument("--host", default=None)
    serve.add_argument("--port", type=int, default=None)
    sub.add_parser("mcp", help="serve MCP over stdio (Claude Desktop), acting for TODO_USER")
    token = sub.add_parser("token", help="print a signed token for a user (needs TODO_JWT_SECRET)")
    token.add_argument("user")
    token.add_argument("--ttl", type=int, default=3600, help="seconds (default 3600)")
    token.add_argument("--zone", default=None, help="IANA time zone to put in the zoneinfo claim")
    sub.add_parser("migrate", help="apply database migrations and exit")
    chat = sub.add_parser("chat", help="chat with the assistant in the terminal")
    chat.add_argument("args", nargs=argparse.REMAINDER)
    events = sub.add_parser("events", help="watch events (tail) and manage dead letters (dlq list|replay)")
    events.add_argument("args", nargs=argparse.REMAINDER)
    return parser


_PASS_THROUGH = ("chat", "events")


def load_settings(prog: str) -> Settings | None:
    """The environment's settings with logging set up, or None after printing what is wrong."""
    try:
        settings = Settings()
    except ValidationError as exc:
        print(f"{prog}: configuration error:\n{exc}", file=sys.stderr)
        return None
    configure_logging(settings.log_level)
    return settings


def configure_logging(level: str) -> None:
    """Root logging at ``level``: one line per event, JSON when stderr is not a terminal, with
    the trace ids (``observability.logs``); the HTTP clients' one-line-per-request INFO logs only
    when ``level`` is DEBUG."""
    observability.logs.configure_logging(level)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in _PASS_THROUGH:  # their own flags follow: hand them over untouched
        args = argparse.Namespace(command=argv[0], args=argv[1:])
    else:
        args = _parser().parse_args(argv)
    settings = load_settings("todo-agent")
    if settings is None:
        return 2
    if args.command == "chat":
        from agent.terminal import main as chat_main

        return chat_main(list(args.args), local_server=local_server_for(settings))
    if args.command == "events":
        from events.cli import main as events_main

        return events_main(list(args.args), settings)
    if args.command == "migrate":
        bootstrap("api", settings)
        print("database is up to date")
        return 0
    if args.command == "token":
        verifier = make_verifier(settings)
        if verifier is None:
            print("todo-agent: set TODO_JWT_SECRET to issue tokens.", file=sys.stderr)
            return 2
        print(verifier.issue(args.user, ttl=args.ttl, zoneinfo=args.zone))
        return 0
    if args.command == "mcp":
        anyio.run(serve_mcp_stdio, bootstrap("mcp", settings))
        return 0
    role: Role = "all" if args.command == "run" else args.role
    return serve_role(role, settings, host=args.host, port=args.port)


def serve_role(role: Role, settings: Settings, *, host: str | None, port: int | None) -> int:
    """Serve ``role`` until stopped, within the shutdown grace after SIGTERM (``python -m devstack
    serve`` reuses it)."""
    from todo_agent.api import app_for
    from todo_agent.serving import serve

    settings.host = host or settings.host
    settings.port = port or (ROLE_PORTS.get(role, settings.port) if role != "all" else settings.port)
    if not settings.auth_enabled and settings.host not in _LOOPBACK:
        print(
            f"todo-agent: refusing to listen on {settings.host} without authentication; set "
            "TODO_JWT_SECRET (or TODO_JWKS_URL), or keep --host 127.0.0.1.",
            file=sys.stderr,
        )
        return 2
    if (problem := settings.serving_problem()) is not None:
        print(f"todo-agent: configuration error: {problem}", file=sys.stderr)
        return 2
    try:
        telemetry.configure_for(role, settings.log_level)
    except ValueError as exc:  # TODO_TRACING neither on nor off
        print(f"todo-agent: configuration error: {exc}", file=sys.stderr)
        return 2
    container = bootstrap(role, settings)
    print(f"todo-agent {role} on http://{settings.host}:{settings.port}", file=sys.stderr)
    app = app_for(container)
    _freeze_the_start_up_heap()
    serve(app, host=settings.host, port=settings.port, grace=settings.shutdown_grace_seconds)
    return 0


def _freeze_the_start_up_heap() -> None:
    """Before serving: move what start-up allocated (modules, the app, schemas) out of the
    collector's generations, so a full collection later scans only what requests made (a full
    collection is a pause during which every request, socket and the loop stand still). Done
    here, once per server process, not in the app's lifespan (tests start many apps in one
    process)."""
    import gc

    gc.collect()
    gc.freeze()


async def serve_mcp_stdio(container: Container) -> None:
    """MCP over stdio, with live resources: this process has no event subscription, so the
    outbox (every writer's events, in the shared database) feeds its subscriptions."""
    server = container.build_mcp(stdio=True)
    feed = OutboxFeed(container.uow, container.mcp_live)
    await feed.begin()
    async with anyio.create_task_group() as group:
        group.start_soon(feed.run)
        await server.run_stdio_async()
        group.cancel_scope.cancel()


if __name__ == "__main__":
    raise SystemExit(main())


def local_server_for(settings: Settings) -> Callable[[ExitStack], str]:
    """The terminal chat's server: the embedded default at its usual address, or one started in
    this process (stopped when the chat's ``stack`` closes)."""

    def start(stack: ExitStack) -> str:
        url = settings.base_url
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return url
        except httpx.HTTPError:
            pass
        from todo_agent.api import app_for
        from todo_agent.local_server import free_port, serve_in_thread

        local = settings.model_copy(update={"host": "127.0.0.1", "port": free_port(), "public_url": None})
        server = serve_in_thread(app_for(bootstrap("all", local)), local.port)
        stack.callback(server.stop)
        return server.url

    return start
