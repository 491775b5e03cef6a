"""The Responses-API stream events for one finished output item, as a real model would send.

A message streams as word-sized ``response.output_text.delta`` events; a function call as one
arguments delta. The final ``response.completed`` carries the whole item, which is what the
``Runner`` uses to decide the turn.
"""

from __future__ import annotations

import re
from typing import Any, cast

from agents.items import TResponseStreamEvent
from openai.types.responses import (
    Response,
    ResponseCompletedEvent,
    ResponseContentPartAddedEvent,
    ResponseContentPartDoneEvent,
    ResponseCreatedEvent,
    ResponseFunctionCallArgumentsDeltaEvent,
    ResponseFunctionCallArgumentsDoneEvent,
    ResponseFunctionToolCall,
    ResponseInProgressEvent,
    ResponseOutputItemAddedEvent,
    ResponseOutputItemDoneEvent,
    ResponseOutputMessage,
    ResponseOutputText,
    ResponseTextDeltaEvent,
    ResponseTextDoneEvent,
    ResponseUsage,
)
from openai.types.responses.response_usage import InputTokensDetails, OutputTokensDetails

OutputItem = ResponseFunctionToolCall | ResponseOutputMessage


def _response(response_id: str, output: list[Any], status: str) -> Response:
    usage = ResponseUsage(
        input_tokens=0,
        output_tokens=0,
        total_tokens=0,
        input_tokens_details=InputTokensDetails.model_validate({"cached_tokens": 0, "cache_write_tokens": 0}),
        output_tokens_details=OutputTokensDetails(reasoning_tokens=0),
    )
    return Response.model_validate(
        {
            "id": response_id,
            "created_at": 0,
            "model": "offline",
            "object": "response",
            "output": output,
            "tool_choice": "auto",
            "tools": [],
            "top_p": None,
            "parallel_tool_calls": False,
            "status": status,
            "usage": usage if status == "completed" else None,
        }
    )


def _item_events(item: OutputItem) -> list[dict[str, Any]]:
    """The events between output_item.added and output_item.done, without sequence numbers."""
    if isinstance(item, ResponseFunctionToolCall):
        common = {"item_id": item.id or item.call_id, "output_index": 0}
        return [
            {"type": "response.function_call_arguments.delta", "delta": item.arguments, **common},
            {
                "type": "response.function_call_arguments.done",
                "arguments": item.arguments,
                "name": item.name,
                **common,
            },
        ]
    part = item.content[0]
    text = part.text if isinstance(part, ResponseOutputText) else ""
    common = {"item_id": item.id, "output_index": 0, "content_index": 0}
    empty = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
    events: list[dict[str, Any]] = [{"type": "response.content_part.added", "part": empty, **common}]
    events += [
        {"type": "response.output_text.delta", "delta": chunk, "logprobs": [], **common}
        for chunk in re.findall(r"\S+\s*|\s+", text)
    ]
    events.append({"type": "response.output_text.done", "text": text, "logprobs": [], **common})
    events.append({"type": "response.content_part.done", "part": part.model_dump(), **common})
    return events


_EVENT_TYPES: dict[str, Any] = {
    "response.function_call_arguments.delta": ResponseFunctionCallArgumentsDeltaEvent,
    "response.function_call_arguments.done": ResponseFunctionCallArgumentsDoneEvent,
    "response.content_part.added": ResponseContentPartAddedEvent,
    "response.output_text.delta": ResponseTextDeltaEvent,
    "response.output_text.done": ResponseTextDoneEvent,
    "response.content_part.done": ResponseContentPartDoneEvent,
}


def stream_events(item: OutputItem, *, response_id: str) -> list[TResponseStreamEvent]:
    """created, in_progress, output_item.added, the item's deltas, output_item.done, completed."""
    pending = _response(response_id, [], "in_progress")
    if isinstance(item, ResponseFunctionToolCall):
        started: OutputItem = item.model_copy(update={"arguments": "", "status": "in_progress"})
    else:
        started = item.model_copy(update={"content": [], "status": "in_progress"})
    events: list[Any] = [
        ResponseCreatedEvent(type="response.created", response=pending, sequence_number=0),
        ResponseInProgressEvent(type="response.in_progress", response=pending, sequence_number=1),
        ResponseOutputItemAddedEvent(
            type="response.output_item.added", item=started, output_index=0, sequence_number=2
        ),
    ]
    for raw in _item_events(item):
        events.append(_EVENT_TYPES[raw["type"]].model_validate({**raw, "sequence_number": len(events)}))
    events.append(
        ResponseOutputItemDoneEvent(
            type="response.output_item.done", item=item, output_index=0, sequence_number=len(events)
        )
    )
    completed = _response(response_id, [item], "completed")
    events.append(
        ResponseCompletedEvent(type="response.completed", response=completed, sequence_number=len(events))
    )
    return [cast(TResponseStreamEvent, event) for event in events]
