"""``OfflineModel``: the agent's model when no LLM endpoint is configured.

It implements the openai-agents ``Model`` interface with a deterministic command parser, so the
real ``Runner`` drives real tool calls without a network or an API key::

    agent = Agent(name="todo", instructions=instructions, model=OfflineModel(),
                  mcp_servers=[server])

The reference time and the user's zone come from the agent instructions when they contain
``Current time: 2026-11-26T18:00:00+01:00`` and ``User time zone: Europe/Berlin`` lines, else
from the ``clock`` and ``timezone`` given to the constructor.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any, Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from agents.agent import ToolsToFinalOutputResult
from agents.agent_output import AgentOutputSchemaBase
from agents.handoffs import Handoff
from agents.items import ModelResponse, TResponseInputItem, TResponseStreamEvent
from agents.model_settings import ModelSettings
from agents.models.interface import Model, ModelTracing
from agents.run_context import RunContextWrapper
from agents.tool import FunctionToolResult, Tool
from agents.usage import Usage
from openai.types.responses import (
    ResponseFunctionToolCall,
    ResponseOutputMessage,
    ResponseOutputText,
)
from openai.types.responses.response_prompt_param import ResponsePromptParam

from agent.offline.conversation import Call, Say, next_step
from agent.offline.streaming import OutputItem, stream_events

_CURRENT_TIME: Final = re.compile(r"^\s*Current time:\s*(\S+)", re.MULTILINE | re.IGNORECASE)
_TIME_ZONE: Final = re.compile(r"^\s*User time zone:\s*(\S+)", re.MULTILINE | re.IGNORECASE)


def _zone(name: str | None, fallback: ZoneInfo) -> ZoneInfo:
    try:
        return ZoneInfo(name) if name else fallback
    except (ZoneInfoNotFoundError, ValueError):
        return fallback


class OfflineModel(Model):
    """A deterministic task-command model: same conversation in, same output out."""

    def __init__(self, *, clock: Callable[[], datetime] | None = None, timezone: str = "UTC") -> None:
        self._clock = clock or (lambda: datetime.now(UTC))
        self._zone = _zone(timezone, ZoneInfo("UTC"))
        #: The instructions, input and output of the last ``respond``: what ``answer_from_tools``
        #: continues from.
        self._last: tuple[str | None, list[Any], OutputItem] | None = None

    def reference_time(self, system_instructions: str | None) -> datetime:
        """Now, in the user's zone, as the instructions or the constructor say."""
        text = system_instructions or ""
        zone_line, time_line = _TIME_ZONE.search(text), _CURRENT_TIME.search(text)
        zone = _zone(zone_line[1] if zone_line else None, self._zone)
        now: datetime | None = None
        if time_line is not None:
            try:
                now = datetime.fromisoformat(time_line[1].replace("Z", "+00:00"))
            except ValueError:
                now = None
        now = now if now is not None and now.tzinfo is not None else self._clock()
        return (now if now.tzinfo else now.replace(tzinfo=UTC)).astimezone(zone)

    def respond(self, system_instructions: str | None, input: str | list[TResponseInputItem]) -> OutputItem:
        """The one output item for this turn: a function call or an assistant message."""
        items: list[Any] = [{"role": "user", "content": input}] if isinstance(input, str) else input
        now = self.reference_time(system_instructions)
        output = self._output((len(items), now.isoformat()), next_step(items, now=now))
        self._last = (system_instructions, items, output)
        return output

    def answer_from_tools(
        self, context: RunContextWrapper[Any], results: list[FunctionToolResult]
    ) -> ToolsToFinalOutputResult:
        """The agent's ``tool_use_behavior``: answer from the tool results in the same step.

        What this model says after a tool result depends only on the conversation, so when its
        next move is a reply, that reply is the run's final output without a second model
        step (each step of the SDK's run loop costs more CPU than the model itself). When the
        next move is another tool call (a lookup by title, then the change), the run goes on
        and the model makes that call as usual."""
        outputs = [result.run_item.raw_item for result in results if result.run_item is not None]
        if self._last is None or not outputs:
            return ToolsToFinalOutputResult(is_final_output=False)
        instructions, items, call = self._last
        step = next_step([*items, call, *outputs], now=self.reference_time(instructions))
        if isinstance(step, Call):
            return ToolsToFinalOutputResult(is_final_output=False)
        return ToolsToFinalOutputResult(is_final_output=True, final_output=step.text)

    def _output(self, position: tuple[int, str], step: Say | Call) -> OutputItem:
        """The step as an output item; its id digests the step with its position in the
        conversation and the time (so a call repeated later gets an id of its own)."""
        if isinstance(step, Call):
            arguments = json.dumps(step.arguments, ensure_ascii=False, separators=(",", ":"))
            call_id = f"call_{_digest(position, step.tool, arguments)}"
            return ResponseFunctionToolCall(
                id=call_id,
                call_id=call_id,
                type="function_call",
                name=step.tool,
                arguments=arguments,
                status="completed",
            )
        return ResponseOutputMessage(
            id=f"msg_{_digest(position, step.text)}",
            type="message",
            role="assistant",
            status="completed",
            content=[ResponseOutputText(type="output_text", text=step.text, annotations=[], logprobs=[])],
        )

    async def get_response(
        self,
        system_instructions: str | None,
        input: str | list[TResponseInputItem],
        model_settings: ModelSettings,
        tools: list[Tool],
        output_schema: AgentOutputSchemaBase | None,
        handoffs: list[Handoff],
        tracing: ModelTracing,
        *,
        previous_response_id: str | None,
        conversation_id: str | None,
        prompt: ResponsePromptParam | None,
    ) -> ModelResponse:
        item = self.respond(system_instructions, input)
        return ModelResponse(output=[item], usage=Usage(requests=1), response_id=None)

    async def stream_response(
        self,
        system_instructions: str | None,
        input: str | list[TResponseInputItem],
        model_settings: ModelSettings,
        tools: list[Tool],
        output_schema: AgentOutputSchemaBase | None,
        handoffs: list[Handoff],
        tracing: ModelTracing,
        *,
        previous_response_id: str | None,
        conversation_id: str | None,
        prompt: ResponsePromptParam | None,
    ) -> AsyncIterator[TResponseStreamEvent]:
        item = self.respond(system_instructions, input)
        for event in stream_events(item, response_id=f"resp_{item.id}"):
            yield event


def _digest(*parts: object) -> str:
    return hashlib.sha256("|".join(map(str, parts)).encode()).hexdigest()[:16]
