"""Helpers for the event tests: a recording publisher and WebSocket waits."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping, Sequence
from typing import Any

from events.ports import PublishError


class RecordingPublisher:
    """A publisher that keeps what it was given; ``fail`` makes it refuse like a down sidecar."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, list[dict[str, Any]], str]] = []
        self.fail = False

    async def publish(self, topic: str, events: Sequence[Mapping[str, Any]], *, partition_key: str) -> None:
        if self.fail:
            raise PublishError("sidecar down")
        self.calls.append((topic, [dict(e) for e in events], partition_key))

    def ids(self, topic: str) -> list[str]:
        return [e["id"] for t, events, _ in self.calls if t == topic for e in events]


async def next_message(ws: Any, *, wait: float = 5.0, skip: tuple[str, ...] = ("pong",)) -> dict[str, Any]:
    while True:
        message: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), wait))
        if message.get("type") not in skip:
            return message


async def no_message(ws: Any, *, wait: float = 0.5) -> None:
    try:
        message = await asyncio.wait_for(ws.recv(), wait)
    except TimeoutError:
        return
    raise AssertionError(f"expected no message, got {message}")
