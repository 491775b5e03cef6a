"""What the wire-level model tests share: the app wired to an OpenAI-compatible test server.

    log = RequestLog()
    wire_app = FastAPI()          # its routes call ``await log.record(request)`` first
    with app_on_model_server(make_settings, wire_app) as app:      # a RunningApp
        events = await stream(client, "remind me to water the plants, it's important")

The app reaches the test server through ``OPENAI_BASE_URL``/``OPENAI_API_KEY``/``TODO_MODEL``,
like any OpenAI, Ollama, vLLM or LiteLLM endpoint. Both test servers answer the same scenario:
an ``add_task`` call whose arguments arrive in ``ADD_TASK_ARGUMENT_PARTS``, then a reply that
quotes the task the tool really created (``added_reply``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Final

from fastapi import FastAPI, Request

from devstack.appserver import serve_in_thread
from tests.conftest import JWT_SECRET
from tests.unit.agent.support import RunningApp, running_app, settings_on_free_port

API_KEY: Final = "sk-wire-test"
MODEL_NAME: Final = "wire-model"
ADD_TASK_ARGUMENT_PARTS: Final = (
    '{"title": "Water the',
    ' plants", "priority": "high",',
    ' "tags": ["home"]}',
)
ADD_TASK_ARGUMENTS: Final = {"title": "Water the plants", "priority": "high", "tags": ["home"]}
TASK_TOOLS: Final = {"add_task", "update_task", "complete_task", "delete_task", "list_tasks", "set_reminder"}


def added_reply(tool_output: str) -> str:
    """The model's answer once ``add_task`` returned ``tool_output`` (the task as JSON)."""
    task = json.loads(tool_output)
    return f"Added #{task['id']} {task['title']}."


@dataclass(frozen=True)
class Received:
    body: dict[str, Any]
    authorization: str | None


class RequestLog(list[Received]):
    """Every request the test server received, in order."""

    async def record(self, request: Request) -> dict[str, Any]:
        body: dict[str, Any] = await request.json()
        self.append(Received(body, request.headers.get("authorization")))
        return body

    @property
    def bodies(self) -> list[dict[str, Any]]:
        return [received.body for received in self]


@contextmanager
def app_on_model_server(make_settings: Any, wire_app: FastAPI, **overrides: Any) -> Iterator[RunningApp]:
    """Serve ``wire_app`` and the ``all`` role (JWT auth) whose model is at ``wire_app``'s ``/v1``."""
    wire = serve_in_thread(wire_app)
    try:
        settings = settings_on_free_port(
            make_settings,
            jwt_secret=JWT_SECRET,
            openai_api_key=API_KEY,
            openai_base_url=f"{wire.url}/v1",
            model=MODEL_NAME,
            **overrides,
        )
        with running_app(settings) as app:
            yield app
    finally:
        wire.stop()
