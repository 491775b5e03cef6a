"""Helpers for the chat tests: a running app (real uvicorn, real /mcp) and SSE parsing."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, cast

import httpx
import pytest
from pydantic import SecretStr

from agent.chat import Chat
from agent.memory import Item
from agent.models import ModelChoice
from agent.wiring import ChatOptions, build_chat
from auth.tokens import JwtVerifier
from devstack.appserver import AppServer, serve_in_thread
from devstack.procs import free_port
from tests.conftest import JWT_SECRET
from todo_agent.api import app_for
from todo_agent.bootstrap import Container, bootstrap
from todo_agent.settings import Settings


def content(item: Item) -> Any:
    """A message item's ``content``, read as the JSON it is (the item types are a union of shapes)."""
    return cast(dict[str, Any], item)["content"]


@dataclass
class RunningApp:
    server: AppServer
    container: Container

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def chat(self) -> Chat:
        assert self.container.chat is not None
        return self.container.chat

    def client(self, token: str | None = None) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.AsyncClient(base_url=self.url, headers=headers, timeout=60)


@contextmanager
def running_app(settings: Settings, *, model: Any = None, port: int | None = None) -> Iterator[RunningApp]:
    """Serve the ``all`` role on ``settings.port`` (the agent reaches its own /mcp there)."""
    container = bootstrap("all", settings)
    if model is not None:
        assert container.conversations is not None
        container.chat = build_chat(
            container.tasks,
            store=container.conversations,
            models=ModelChoice("custom", "test", shared=model),
            verifier=container.verifier,
            mcp_url=ChatOptions().agent_mcp_url,
            item_limit=settings.conversation_item_limit,
        )
    server = serve_in_thread(app_for(container), port or settings.port)
    try:
        yield RunningApp(server, container)
    finally:
        server.stop()


def fail_next_append(store: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The conversation store's next ``append`` fails (a turn whose save is lost); later ones work."""
    real_append = store.append
    failures = iter([RuntimeError("state store down")])

    async def append_failing_once(user_id: str, conversation_id: str, items: Any) -> None:
        if (failure := next(failures, None)) is not None:
            raise failure
        await real_append(user_id, conversation_id, items)

    monkeypatch.setattr(store, "append", append_failing_once)


def settings_on_free_port(make_settings: Any, **overrides: Any) -> Settings:
    settings: Settings = make_settings(port=free_port(), **overrides)
    return settings


def token(verifier: JwtVerifier, user: str, zone: str = "Europe/Berlin") -> str:
    return verifier.issue(user, ttl=600, zoneinfo=zone)


def parse_sse(text: str) -> list[tuple[str, Any]]:
    """``[(event, data), ...]`` from an SSE body; comments (pings) are skipped."""
    events: list[tuple[str, Any]] = []
    for block in text.replace("\r\n", "\n").split("\n\n"):
        name, data = "message", []
        for line in block.split("\n"):
            if line.startswith("event:"):
                name = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].lstrip())
        if data:
            events.append((name, json.loads("\n".join(data))))
    return events


async def stream(
    client: httpx.AsyncClient, message: str, conversation_id: str | None = None
) -> list[tuple[str, Any]]:
    body: dict[str, Any] = {"message": message}
    if conversation_id:
        body["conversation_id"] = conversation_id
    async with client.stream("POST", "/api/chat/stream", json=body) as response:
        assert response.status_code == 200, await response.aread()
        assert response.headers["content-type"].startswith("text/event-stream")
        return parse_sse((await response.aread()).decode())


def app_on_each_database(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, name: str
) -> Iterator[RunningApp]:
    """The app with sign-in on SQLite or PostgreSQL (``request.param``), for a module's fixture."""
    folder = tmp_path_factory.mktemp(name)
    url = (
        f"sqlite:///{folder / 'todo.db'}" if request.param == "sqlite" else request.getfixturevalue("pg_url")
    )
    settings = Settings(
        database_url=url,
        data_dir=folder,
        timezone="Europe/Berlin",
        jwt_secret=SecretStr(JWT_SECRET),
        port=free_port(),
    )
    with running_app(settings) as running:
        yield running
