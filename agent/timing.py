"""Where a chat turn's time goes: the model, the task tools, and conversation memory.

``TimedModel`` wraps any SDK ``Model``; ``ToolTimer`` is a ``RunHooks`` that times tool calls.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, ParamSpec, TypeVar

from agents import Model, RunHooks
from agents.items import ModelResponse, TResponseStreamEvent

from observability import tracing
from observability.metrics import CHAT_PHASES

P = ParamSpec("P")
R = TypeVar("R")


@dataclass
class TurnTimings:
    """Milliseconds spent per part of one turn (``total_ms`` is the whole turn)."""

    model_ms: float = 0.0
    tools_ms: float = 0.0
    memory_ms: float = 0.0
    total_ms: float = 0.0
    _started: float = field(default_factory=time.perf_counter, repr=False)

    def finish(self) -> TurnTimings:
        self.total_ms = (time.perf_counter() - self._started) * 1000
        CHAT_PHASES.labels(phase="turn").observe(self.total_ms / 1000)
        return self

    def server_timing(self) -> str:
        """An HTTP ``Server-Timing`` header value."""
        return (
            f"model;dur={self.model_ms:.2f}, tools;dur={self.tools_ms:.2f}, "
            f"memory;dur={self.memory_ms:.2f}, total;dur={self.total_ms:.2f}"
        )

    def as_dict(self) -> dict[str, float]:
        return {
            "model_ms": self.model_ms,
            "tools_ms": self.tools_ms,
            "memory_ms": self.memory_ms,
            "total_ms": self.total_ms,
        }


class TimedModel(Model):
    """Delegates to ``inner`` and adds the time of each call to ``timings.model_ms``."""

    def __init__(self, inner: Model, timings: TurnTimings) -> None:
        self._inner = inner
        self._timings = timings

    async def get_response(self, *args: Any, **kwargs: Any) -> ModelResponse:
        started = time.perf_counter()
        try:
            with tracing.span("chat.model"):
                return await self._inner.get_response(*args, **kwargs)
        finally:
            self._add(started)

    async def stream_response(self, *args: Any, **kwargs: Any) -> AsyncIterator[TResponseStreamEvent]:
        started = time.perf_counter()
        span = tracing.start_span("chat.model")  # not current: the generator yields in between
        try:
            async for event in self._inner.stream_response(*args, **kwargs):
                yield event
        finally:
            self._add(started)
            if span is not None:
                span.end()

    def _add(self, started: float) -> None:
        seconds = time.perf_counter() - started
        self._timings.model_ms += seconds * 1000
        CHAT_PHASES.labels(phase="model").observe(seconds)

    async def close(self) -> None:
        await self._inner.close()

    def timed(self, work: Callable[P, R]) -> Callable[P, R]:
        """``work`` with its time counted as the model's: the model's own work done outside a
        model call (the offline model answering from tool results in the same step)."""

        def run(*args: P.args, **kwargs: P.kwargs) -> R:
            started = time.perf_counter()
            try:
                return work(*args, **kwargs)
            finally:
                self._timings.model_ms += (time.perf_counter() - started) * 1000

        return run


class ToolTimer(RunHooks[Any]):
    """Adds the wall time of tool calls to ``timings.tools_ms`` (overlapping calls count once)."""

    def __init__(self, timings: TurnTimings) -> None:
        self._timings = timings
        self._running = 0
        self._since = 0.0
        self._spans: dict[int, list[Any]] = {}  # open ``chat.tool`` spans per tool object

    async def on_tool_start(self, context: Any, agent: Any, tool: Any) -> None:
        if self._running == 0:
            self._since = time.perf_counter()
        self._running += 1
        name = str(getattr(tool, "name", "tool"))
        span = tracing.start_span(f"chat.tool {name}", attributes={"todo.tool": name})
        if span is not None:
            self._spans.setdefault(id(tool), []).append(span)

    async def on_tool_end(self, context: Any, agent: Any, tool: Any, result: object) -> None:
        self._running -= 1
        if self._running == 0:
            seconds = time.perf_counter() - self._since
            self._timings.tools_ms += seconds * 1000
            CHAT_PHASES.labels(phase="tool").observe(seconds)
        spans = self._spans.get(id(tool))
        if spans:
            spans.pop(0).end()
