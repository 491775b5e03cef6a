"""Conversation memory: the index of a user's conversations and each conversation's items.

    store = SqlConversationStore(engine)                       # embedded default
    store = DaprConversationStore(DaprStateClient(Sidecar.at(sidecar), store_name="statestore"))
    info = await store.create("alice", title="Buy milk")
    history = await store.load("alice", info.id, limit=40)     # trimmed for the model
    await store.append("alice", info.id, new_items)            # one atomic append per turn

A turn appends all its items at once (user message, tool calls and outputs, reply), so two
turns running at the same time never interleave or lose each other's items: the SQL store
inserts rows, the Dapr store retries its etag-guarded write (in the SDK's ``DaprSession`` layout).
A conversation that belongs to another user is reported exactly like one that does not exist.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from agents import TResponseInputItem

from tasks.clock import utc_now

Item = TResponseInputItem
TITLE_LENGTH = 60


class ConversationNotFound(Exception):
    def __init__(self, conversation_id: str) -> None:
        super().__init__(f"Conversation {conversation_id} not found.")
        self.conversation_id = conversation_id


@dataclass(frozen=True)
class ConversationInfo:
    id: str
    title: str
    created_at: datetime
    updated_at: datetime

    def public(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "title": self.title,
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
        }


class ConversationStore(Protocol):
    """Where conversations live; every method is scoped to the acting user."""

    async def create(
        self, user_id: str, *, title: str, conversation_id: str | None = None
    ) -> ConversationInfo: ...
    async def get(self, user_id: str, conversation_id: str) -> ConversationInfo: ...
    async def recent(self, user_id: str) -> list[ConversationInfo]: ...
    async def rename(self, user_id: str, conversation_id: str, title: str) -> ConversationInfo: ...
    async def delete(self, user_id: str, conversation_id: str) -> None: ...
    async def load(self, user_id: str, conversation_id: str, *, limit: int | None = None) -> list[Item]: ...
    async def append(self, user_id: str, conversation_id: str, items: Sequence[Item]) -> None: ...
    async def close(self) -> None: ...


def new_conversation_id() -> str:
    return uuid.uuid4().hex


def title_from(message: str) -> str:
    """A conversation's default title: the first words of its first message."""
    text = " ".join(message.split())
    if len(text) <= TITLE_LENGTH:
        return text or "New conversation"
    return text[: TITLE_LENGTH - 1].rsplit(" ", 1)[0] + "…"


def trim_for_model(items: Sequence[Item], limit: int | None) -> list[Item]:
    """The last ``limit`` items, starting at a user message so no tool output loses its call."""
    if limit is None or len(items) <= limit:
        return list(items)
    tail = list(items[-limit:]) if limit > 0 else []
    for index, item in enumerate(tail):
        if _is_user_message(item):
            return tail[index:]
    return []


def _is_user_message(item: Any) -> bool:
    return isinstance(item, dict) and item.get("role") == "user" and item.get("type", "message") == "message"


def encode_items(items: Sequence[Item]) -> list[str]:
    return [json.dumps(item, separators=(",", ":"), ensure_ascii=False) for item in items]


def now() -> datetime:
    return utc_now()
