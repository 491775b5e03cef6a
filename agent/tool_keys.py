"""Idempotency keys for the task tool calls a chat turn makes.

Every write tool call of a turn carries a key (in the request's ``_meta``,
``mcp_server.idempotency``) derived from the conversation, the turn and the model's tool call
id. The turn is the conversation as the turn found it (a digest of the history it loaded and the
user's message): a turn run again on the same conversation (a transport retry of the call, or
the same message sent again after a failure left nothing stored) reaches the same keys for the
same call ids, so the task service writes once; the next turn finds the previous one's items in
its history, so its calls get keys of their own even when a model repeats a call id (the offline
model's ids repeat once a conversation is longer than the history a turn loads)::

    keys = TurnKeys(conversation_id, history, message)   # the run's context
    keys.key_for("call_abc")                             # "chat-call-3f…"
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

#: How the chat's idempotency keys for a turn's tool calls begin.
KEY_PREFIX: Final = "chat-call-"


@dataclass
class TurnKeys:
    """One turn's tool call keys (the agent run's context)."""

    conversation_id: str
    history: Sequence[Any]
    message: str
    _turn: str | None = field(default=None, repr=False)

    def key_for(self, call_id: str) -> str:
        seed = f"{self.conversation_id}\n{self.turn}\n{call_id}".encode()
        return KEY_PREFIX + hashlib.sha256(seed).hexdigest()[:40]

    @property
    def turn(self) -> str:
        """The turn's name: a digest of what it found (made on the first write's call)."""
        if self._turn is None:
            found = json.dumps([list(self.history), self.message], sort_keys=True, default=str)
            self._turn = hashlib.sha256(found.encode()).hexdigest()[:32]
        return self._turn
