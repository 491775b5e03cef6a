"""The real-model path on the wire: an OpenAI-compatible Chat Completions server that streams tool_calls.

The test server speaks the real wire format (``POST /v1/chat/completions`` with ``stream: true``
answered by ``chat.completion.chunk`` SSE and ``[DONE]``); the app reaches it through
``OPENAI_BASE_URL``/``OPENAI_API_KEY``/``TODO_MODEL`` like any Ollama, vLLM or LiteLLM server.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse

from tasks.inputs import TaskQuery
from tasks.service import Actor
from tests.unit.agent.openai_wire_support import (
    ADD_TASK_ARGUMENT_PARTS,
    ADD_TASK_ARGUMENTS,
    API_KEY,
    MODEL_NAME,
    RequestLog,
    added_reply,
    app_on_model_server,
)
from tests.unit.agent.support import stream, token


def _chunk(delta: dict[str, Any], finish: str | None = None) -> str:
    body = {
        "id": "chatcmpl-wire",
        "object": "chat.completion.chunk",
        "created": 1764000000,
        "model": MODEL_NAME,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    return f"data: {json.dumps(body)}\n\n"


def _tool_call_chunks() -> Iterator[str]:
    call = {"index": 0, "id": "call_wire_1", "type": "function"}
    opening = {**call, "function": {"name": "add_task", "arguments": ""}}
    yield _chunk({"role": "assistant", "content": None, "tool_calls": [opening]})
    for part in ADD_TASK_ARGUMENT_PARTS:
        yield _chunk({"tool_calls": [{"index": 0, "function": {"arguments": part}}]})
    yield _chunk({}, "tool_calls")


def _text_chunks(text: str) -> Iterator[str]:
    yield _chunk({"role": "assistant", "content": ""})
    for word in text.split(" "):
        yield _chunk({"content": word + " "})
    yield _chunk({}, "stop")


def openai_compatible_server() -> tuple[FastAPI, RequestLog]:
    app = FastAPI()
    received = RequestLog()

    @app.post("/v1/chat/completions")
    async def completions(request: Request) -> Any:
        body = await received.record(request)
        last = body["messages"][-1]
        if last["role"] == "tool":
            chunks = _text_chunks(added_reply(last["content"]))
        else:
            chunks = _tool_call_chunks()
        if not body.get("stream"):
            return JSONResponse({"error": {"message": "this test server only streams"}}, 400)

        def events() -> Iterator[str]:
            yield from chunks
            yield "data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    return app, received


async def test_a_chat_completions_server_drives_real_tool_calls_over_the_wire(
    make_settings: Any, verifier: Any
) -> None:
    wire_app, received = openai_compatible_server()
    with app_on_model_server(make_settings, wire_app) as app:
        assert app.chat.models.kind == "openai"
        async with app.client(token(verifier, "carol")) as carol:
            events = await stream(carol, "remind me to water the plants, it's important")
        tasks = app.container.tasks.list(Actor("carol", "Europe/Berlin"), TaskQuery(status="all")).items

    names = [name for name, _ in events]
    assert names[:3] == ["start", "tool_call", "tool_result"] and names[-1] == "done", events
    assert events[1][1] == {"name": "add_task", "arguments": ADD_TASK_ARGUMENTS}
    done = events[-1][1]
    assert done["reply"].strip() == f"Added #{tasks[0].id} Water the plants."
    assert "".join(d["text"] for n, d in events if n == "delta") == done["reply"]
    assert [(t.title, t.priority, t.tags) for t in tasks] == [("Water the plants", "high", ["home"])]

    first, second = received.bodies
    assert all(r.authorization == f"Bearer {API_KEY}" for r in received)
    assert first["model"] == MODEL_NAME and first["stream"] is True
    assert first["messages"][0]["role"] == "system"
    assert "User time zone: Europe/Berlin" in first["messages"][0]["content"]
    assert {t["function"]["name"] for t in first["tools"]} >= {"add_task", "list_tasks", "delete_task"}
    assert second["messages"][-2]["tool_calls"][0]["function"]["name"] == "add_task"
    assert second["messages"][-1] == {
        "role": "tool",
        "tool_call_id": "call_wire_1",
        "content": second["messages"][-1]["content"],
    }
