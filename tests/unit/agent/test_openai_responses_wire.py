"""The real-model path on the wire with ``TODO_MODEL_API=responses``: an OpenAI Responses API server.

The test server speaks the Responses wire format: ``POST /v1/responses`` answered with a
``Response`` object, or with ``stream: true`` by typed SSE events (``response.created``,
``response.output_item.added``, ``response.function_call_arguments.delta``/``.done``,
``response.output_text.delta``, ``response.output_item.done``, ``response.completed``, ...).
Every body it sends is validated against the ``openai`` package's own types, so the shapes are
the API's, not guesses. It answers from a script: one entry per request, each turning the
request into the output items of the response (a function call, or a message).

The chat API always runs the model streamed (``/api/chat`` waits for the same stream), so the
chat tests see only streaming requests; the non-streamed ``Response`` is read by the model that
``select_model`` builds, driven directly.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any, Final

import pytest
from agents import ModelSettings, ModelTracing, OpenAIResponsesModel
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse
from openai.types.responses import Response, ResponseFunctionToolCall, ResponseStreamEvent
from pydantic import TypeAdapter

from agent.models import select_model
from devstack.appserver import serve_in_thread
from tasks.errors import TaskNotFound
from tasks.inputs import TaskQuery
from tasks.service import Actor
from tests.unit.agent.openai_wire_support import (
    ADD_TASK_ARGUMENT_PARTS,
    ADD_TASK_ARGUMENTS,
    API_KEY,
    MODEL_NAME,
    TASK_TOOLS,
    RequestLog,
    added_reply,
    app_on_model_server,
)
from tests.unit.agent.support import stream, token

Item = dict[str, Any]
Answer = Callable[[dict[str, Any]], list[Item]]

CAROL: Final = Actor("carol", "Europe/Berlin")
DAVE: Final = Actor("dave", "Europe/Berlin")
CALL_ID: Final = "call_wire_1"
_EVENT: Final = TypeAdapter[Any](ResponseStreamEvent)


def function_call(name: str, argument_parts: tuple[str, ...], call_id: str) -> Answer:
    """A function call whose arguments stream in ``argument_parts``."""

    def answer(_body: dict[str, Any]) -> list[Item]:
        item = {"type": "function_call", "id": f"fc_{call_id}", "call_id": call_id, "name": name}
        return [{**item, "arguments": "".join(argument_parts), "_parts": argument_parts}]

    return answer


def message(text: Callable[[dict[str, Any]], str]) -> Answer:
    """An assistant message whose text is made from the request."""

    def answer(body: dict[str, Any]) -> list[Item]:
        return [
            {"type": "message", "id": f"msg_{len(body['input'])}", "role": "assistant", "text": text(body)}
        ]

    return answer


def output_of(body: dict[str, Any], call_id: str) -> str:
    """The ``function_call_output`` the request carries for ``call_id``."""
    [output] = [
        i for i in body["input"] if i.get("type") == "function_call_output" and i["call_id"] == call_id
    ]
    return str(output["output"])


class ResponsesServer:
    """``POST /v1/responses`` answering from a script, one answer per request."""

    def __init__(self, *script: Answer) -> None:
        self.script = list(script)
        self.received = RequestLog()
        self.app = FastAPI()
        self.app.post("/v1/responses")(self._responses)

    async def _responses(self, request: Request) -> Any:
        body = await self.received.record(request)
        if len(self.received) > len(self.script):
            error = {"message": f"unscripted request #{len(self.received)}", "type": "server_error"}
            return JSONResponse({"error": error}, 500)
        items = self.script[len(self.received) - 1](body)
        response_id = f"resp_wire_{len(self.received)}"
        if not body.get("stream"):
            return JSONResponse(_response(response_id, body, [_done(i) for i in items], "completed"))
        frames = list(_numbered(_stream(response_id, body, items)))  # validated before the first byte
        return StreamingResponse(iter(frames), media_type="text/event-stream")


def _response(response_id: str, body: dict[str, Any], output: list[Item], status: str) -> dict[str, Any]:
    response = {
        "id": response_id,
        "object": "response",
        "created_at": 1764000000,
        "status": status,
        "model": body["model"],
        "instructions": body.get("instructions"),
        "output": output,
        "parallel_tool_calls": body.get("parallel_tool_calls", True),
        "tool_choice": body.get("tool_choice", "auto"),
        "tools": body.get("tools", []),
        "text": {"format": {"type": "text"}},
        "usage": _usage() if status == "completed" else None,
        "error": None,
        "incomplete_details": None,
    }
    Response.model_validate(response)
    return response


def _usage() -> dict[str, Any]:
    return {
        "input_tokens": 120,
        "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
        "output_tokens": 20,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": 140,
    }


def _done(item: Item) -> Item:
    """The finished output item as the API shows it (``response.output_item.done``, the Response)."""
    if item["type"] == "function_call":
        keys = ("type", "id", "call_id", "name", "arguments")
        return {**{k: item[k] for k in keys}, "status": "completed"}
    content = [{"type": "output_text", "text": item["text"], "annotations": [], "logprobs": []}]
    return {
        "type": "message",
        "id": item["id"],
        "role": "assistant",
        "status": "completed",
        "content": content,
    }


def _stream(response_id: str, body: dict[str, Any], items: list[Item]) -> Iterator[Item]:
    yield {"type": "response.created", "response": _response(response_id, body, [], "in_progress")}
    yield {"type": "response.in_progress", "response": _response(response_id, body, [], "in_progress")}
    for index, item in enumerate(items):
        if item["type"] == "function_call":
            yield from _function_call_events(index, item)
        else:
            yield from _message_events(index, item)
    output = [_done(i) for i in items]
    yield {"type": "response.completed", "response": _response(response_id, body, output, "completed")}


def _function_call_events(index: int, item: Item) -> Iterator[Item]:
    at = {"item_id": item["id"], "output_index": index}
    started = {**_done(item), "arguments": "", "status": "in_progress"}
    yield {"type": "response.output_item.added", "output_index": index, "item": started}
    for part in item["_parts"]:
        yield {"type": "response.function_call_arguments.delta", **at, "delta": part}
    yield {"type": "response.function_call_arguments.done", **at, "arguments": item["arguments"]}
    yield {"type": "response.output_item.done", "output_index": index, "item": _done(item)}


def _message_events(index: int, item: Item) -> Iterator[Item]:
    at = {"item_id": item["id"], "output_index": index, "content_index": 0}
    started = {**_done(item), "content": [], "status": "in_progress"}
    yield {"type": "response.output_item.added", "output_index": index, "item": started}
    part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
    yield {"type": "response.content_part.added", **at, "part": part}
    words = item["text"].split(" ")
    for number, word in enumerate(words):
        delta = word if number == len(words) - 1 else word + " "
        yield {"type": "response.output_text.delta", **at, "delta": delta, "logprobs": []}
    yield {"type": "response.output_text.done", **at, "text": item["text"], "logprobs": []}
    yield {"type": "response.content_part.done", **at, "part": {**part, "text": item["text"]}}
    yield {"type": "response.output_item.done", "output_index": index, "item": _done(item)}


def _numbered(events: Iterator[Item]) -> Iterator[str]:
    """SSE frames as the API sends them: ``event: <type>`` and the JSON with its sequence number."""
    for number, event in enumerate(events):
        numbered = {**event, "sequence_number": number}
        _EVENT.validate_python(numbered)
        yield f"event: {event['type']}\ndata: {json.dumps(numbered)}\n\n"


def _add_then_confirm() -> ResponsesServer:
    return ResponsesServer(
        function_call("add_task", ADD_TASK_ARGUMENT_PARTS, CALL_ID),
        message(lambda body: added_reply(output_of(body, CALL_ID))),
    )


async def test_a_responses_server_drives_real_tool_calls_over_the_wire(
    make_settings: Any, verifier: Any
) -> None:
    server = _add_then_confirm()
    with app_on_model_server(make_settings, server.app, model_api="responses") as app:
        assert app.chat.models.kind == "openai"
        assert isinstance(app.chat.models.shared, OpenAIResponsesModel)
        async with app.client(token(verifier, "carol")) as carol:
            events = await stream(carol, "remind me to water the plants, it's important")
        [task] = app.container.tasks.list(CAROL, TaskQuery(status="all")).items
        assert app.container.tasks.list(DAVE, TaskQuery(status="all")).items == []
        with pytest.raises(TaskNotFound):
            app.container.tasks.get(DAVE, task.id)

    assert (task.title, task.priority, task.tags) == ("Water the plants", "high", ["home"])
    names = [name for name, _ in events]
    assert names[:3] == ["start", "tool_call", "tool_result"] and names[-1] == "done", events
    assert set(names[3:-1]) == {"delta"}
    assert events[1][1] == {"name": "add_task", "arguments": ADD_TASK_ARGUMENTS}
    result, done = events[2][1], events[-1][1]
    assert result["name"] == "add_task" and result["is_error"] is False
    assert (result["output"]["id"], result["output"]["title"]) == (task.id, "Water the plants")
    assert done["reply"] == f"Added #{task.id} Water the plants."
    assert "".join(d["text"] for n, d in events if n == "delta") == done["reply"]
    assert done["conversation_id"] == events[0][1]["conversation_id"]
    assert done["tool_calls"] == [{**events[1][1], "output": result["output"], "is_error": False}]

    assert all(r.authorization == f"Bearer {API_KEY}" for r in server.received)
    first, second = server.received.bodies
    assert first["model"] == second["model"] == MODEL_NAME
    assert first["stream"] is True and second["stream"] is True
    assert "User time zone: Europe/Berlin" in first["instructions"]
    assert first["input"] == [{"role": "user", "content": "remind me to water the plants, it's important"}]
    assert {t["name"] for t in first["tools"] if t["type"] == "function"} >= TASK_TOOLS
    call, output = second["input"][1:]
    assert (call["type"], call["call_id"], call["name"]) == ("function_call", CALL_ID, "add_task")
    assert json.loads(call["arguments"]) == ADD_TASK_ARGUMENTS
    assert (output["type"], output["call_id"]) == ("function_call_output", CALL_ID)
    assert json.loads(output["output"]) == result["output"]


async def test_a_responses_conversation_continues_from_its_stored_items(
    make_settings: Any, verifier: Any
) -> None:
    server = ResponsesServer(
        function_call("add_task", ADD_TASK_ARGUMENT_PARTS, CALL_ID),
        message(lambda body: added_reply(output_of(body, CALL_ID))),
        message(lambda body: "You're welcome."),
    )
    with app_on_model_server(make_settings, server.app, model_api="responses") as app:
        async with app.client(token(verifier, "carol")) as carol:
            added = await carol.post("/api/chat", json={"message": "remind me to water the plants"})
            assert added.status_code == 200, added.text
            cid = added.json()["conversation_id"]
            thanked = await carol.post("/api/chat", json={"message": "thanks", "conversation_id": cid})
            assert thanked.status_code == 200, thanked.text
            transcript = (await carol.get(f"/api/conversations/{cid}")).json()["messages"]
        [task] = app.container.tasks.list(CAROL, TaskQuery(status="all")).items

    body = added.json()
    assert body["reply"] == f"Added #{task.id} Water the plants."
    [call] = body["tool_calls"]
    assert (call["name"], call["arguments"], call["is_error"]) == ("add_task", ADD_TASK_ARGUMENTS, False)
    assert {key: call["output"][key] for key in ("id", "title", "priority", "tags")} == {
        "id": task.id, "title": "Water the plants", "priority": "high", "tags": ["home"]
    }  # fmt: skip
    assert thanked.json() == {
        "conversation_id": cid, "reply": "You're welcome.", "tool_calls": [], "confirmations": []
    }  # fmt: skip
    assert [(m["role"], m["content"]) for m in transcript] == [
        ("user", "remind me to water the plants"),
        ("tool", call["output"]),
        ("assistant", body["reply"]),
        ("user", "thanks"),
        ("assistant", "You're welcome."),
    ]

    # The second turn sends the first turn's stored items back as Responses input items.
    first_turn, _, second_turn = server.received.bodies
    assert all(b["stream"] is True for b in server.received.bodies)
    user, function_call_item, function_output, reply, thanks = second_turn["input"]
    assert user == first_turn["input"][0] == {"role": "user", "content": "remind me to water the plants"}
    assert function_call_item == {
        "type": "function_call",
        "id": f"fc_{CALL_ID}",
        "call_id": CALL_ID,
        "name": "add_task",
        "arguments": "".join(ADD_TASK_ARGUMENT_PARTS),
        "status": "completed",
    }
    assert function_output["type"] == "function_call_output" and function_output["call_id"] == CALL_ID
    assert json.loads(function_output["output"]) == call["output"]
    assert reply["type"] == "message" and reply["role"] == "assistant" and reply["id"].startswith("msg_")
    assert [(c["type"], c["text"]) for c in reply["content"]] == [("output_text", body["reply"])]
    assert thanks == {"role": "user", "content": "thanks"}


async def test_a_responses_server_error_is_a_502_with_its_reason_and_keeps_the_conversation(
    make_settings: Any, verifier: Any
) -> None:
    server = ResponsesServer(message(lambda body: "First answer."))  # then: 500 for anything else
    with app_on_model_server(make_settings, server.app, model_api="responses") as app:
        async with app.client(token(verifier, "carol")) as carol:
            first = await carol.post("/api/chat", json={"message": "one"})
            cid = first.json()["conversation_id"]
            failed = await carol.post("/api/chat", json={"message": "two", "conversation_id": cid})
            events = await stream(carol, "three", conversation_id=cid)
            after = (await carol.get(f"/api/conversations/{cid}")).json()["messages"]

    assert first.status_code == 200 and first.json()["reply"] == "First answer."
    assert failed.status_code == 502, failed.text
    detail = failed.json()["detail"]
    assert detail.startswith("The model failed") and "500" in detail and "unscripted request" in detail
    assert "Traceback" not in failed.text
    assert [name for name, _ in events] == ["start", "error"]
    assert events[1][1]["detail"].startswith("The model failed")
    assert [(m["role"], m["content"]) for m in after] == [("user", "one"), ("assistant", "First answer.")]
    assert len(server.received) > 2  # the openai client retried the 500s before giving up


async def test_todo_model_api_selects_a_responses_model_that_also_reads_a_plain_response(
    make_settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = ResponsesServer(function_call("add_task", ADD_TASK_ARGUMENT_PARTS, CALL_ID))
    with serve_in_thread(server.app) as wire:
        monkeypatch.setenv("TODO_MODEL_API", "responses")
        monkeypatch.setenv("TODO_MODEL", MODEL_NAME)
        monkeypatch.setenv("OPENAI_API_KEY", API_KEY)
        monkeypatch.setenv("OPENAI_BASE_URL", f"{wire.url}/v1")
        choice = select_model(make_settings())
        assert choice.kind == "openai" and isinstance(choice.shared, OpenAIResponsesModel)
        response = await choice.shared.get_response(
            "Be brief.", "add water the plants", ModelSettings(), [], None, [], ModelTracing.DISABLED,
            previous_response_id=None, conversation_id=None, prompt=None,
        )  # fmt: skip

    [call] = response.output
    assert isinstance(call, ResponseFunctionToolCall)
    assert (call.call_id, call.name, json.loads(call.arguments)) == (CALL_ID, "add_task", ADD_TASK_ARGUMENTS)
    assert response.response_id == "resp_wire_1" and response.usage.total_tokens == 140
    [request] = server.received
    assert request.authorization == f"Bearer {API_KEY}" and "stream" not in request.body
    assert request.body["model"] == MODEL_NAME and request.body["instructions"] == "Be brief."
