"""A browser tab's WebSocket as the tests see it: every message it gets, kept in order."""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

import websockets


class Tab:
    """A WebSocket client that keeps every message it gets."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.messages: list[dict[str, Any]] = []
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        with contextlib.suppress(websockets.ConnectionClosed):
            async for raw in self.ws:
                self.messages.append(json.loads(raw))

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        return [m for m in self.messages if m.get("type") == kind]

    def task_ids(self) -> list[str]:
        return [m["id"] for m in self.of_type("task")]
