"""Confirmations the chat asks with a button: found in a turn's tool results, answered once.

A turn whose tool call came back "needs the user's yes" ends with a pending confirmation; the
chat streams it as a ``confirm`` event and the web UI shows Confirm and Cancel. What to ask and
which call to make after a yes is the data the tool's error result carries
(``mcp_server.confirmations``), read from the call's output as the conversation keeps it (the
SDK keeps a result's content blocks, not its ``_meta``, and the conversation is the only state):
never the error's wording, nor what a model said about it.

The pending state is the conversation itself: a confirmation is pending while the refusing call
is in the conversation's last turn and nothing in that turn did it since. Answering appends a
turn (the user's answer, the confirmed call and its result, the outcome), so it is answered at
most once, and a later message makes it stale::

    pending = pending_in(items)              # [Confirmation(id="call_…", question=…, …)]
    Confirmation.public()                    # {"type": "confirm", "id", "question", "action", "count"}
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final, cast

from agent.memory import Item
from agent.transcript import assistant_message, parse_arguments, parse_output
from mcp_server.confirmations import NeededConfirmation, confirmation_in

#: How the chat's idempotency keys for confirmed calls begin.
KEY_PREFIX: Final = "chat-confirm-"
#: How long a question stays open: a Confirm pressed later asks the person to ask again.
OPEN_FOR: Final = timedelta(minutes=30)
_DONE: Final = {
    "complete": "Completed", "reopen": "Reopened", "move": "Moved", "tag": "Tagged",
    "untag": "Untagged", "reschedule": "Rescheduled", "delete": "Deleted",
}  # fmt: skip


@dataclass(frozen=True)
class Confirmation:
    """A pending confirmation: the id is the refused tool call's id."""

    id: str
    needed: NeededConfirmation
    #: A digest of the turn it belongs to: with the id, it names this confirmation for good.
    turn: str

    def public(self) -> dict[str, Any]:
        return {
            "type": "confirm",
            "id": self.id,
            "question": self.needed.question,
            "action": self.needed.tool,
            "count": self.needed.count,
        }

    def idempotency_key(self, conversation_id: str) -> str:
        """One key per confirmation: a second Confirm (double click, another tab, a retry)
        reaches the same key and the task service writes nothing again."""
        seed = f"{conversation_id}\n{self.id}\n{self.turn}".encode()
        return KEY_PREFIX + hashlib.sha256(seed).hexdigest()[:40]


class ConfirmationUnknown(LookupError):
    """No such confirmation in this conversation (answered 404, like another user's)."""


class ConfirmationStale(Exception):
    """The confirmation was answered already, the conversation moved on, or it expired (409)."""


def still_open(asked_at: datetime, now: datetime) -> bool:
    """Whether a question asked at ``asked_at`` (the conversation's last write) may be answered."""
    return now - asked_at <= OPEN_FOR


def expired() -> ConfirmationStale:
    minutes = int(OPEN_FOR.total_seconds() // 60)
    return ConfirmationStale(
        f"This confirmation expired: it was asked more than {minutes} minutes ago. Ask again if it "
        "still needs doing."
    )


def pending_in(items: Sequence[Any]) -> list[Confirmation]:
    """The confirmations the conversation's last turn left open, in order."""
    turn = _last_turn(items)
    pending: dict[str, tuple[NeededConfirmation, dict[str, Any]]] = {}
    for call_id, name, arguments, output in _calls(turn):
        if (needed := _asked(name, output)) is not None:
            pending[call_id] = (needed, arguments)
        elif isinstance(parse_output(output), dict):  # it went through: the same call, confirmed, is done
            for key, (open_one, refused) in list(pending.items()):
                if open_one.tool == name and _same(refused, arguments):
                    del pending[key]
    if not pending:
        return []  # most turns: no digest to compute
    digest = hashlib.sha256(json.dumps(list(turn), sort_keys=True, default=str).encode()).hexdigest()[:16]
    return [Confirmation(call_id, needed, digest) for call_id, (needed, _) in pending.items()]


def _asked(tool: str, output: Any) -> NeededConfirmation | None:
    """The confirmation a call of ``tool`` came back with: only ever for that same tool."""
    needed = confirmation_in(output)
    return needed if needed is not None and needed.tool == tool else None


def find(items: Sequence[Any], confirmation_id: str) -> Confirmation:
    """The pending confirmation ``confirmation_id``; ``ConfirmationStale`` when it was one of
    this conversation's and is no longer open, ``ConfirmationUnknown`` when it never was."""
    for confirmation in pending_in(items):
        if confirmation.id == confirmation_id:
            return confirmation
    for call_id, name, _arguments, output in _calls(items):
        if call_id == confirmation_id and _asked(name, output) is not None:
            raise ConfirmationStale(
                "This confirmation is no longer pending: it was answered already, or the conversation "
                "moved on. Ask again if it still needs doing."
            )
    raise ConfirmationUnknown(f"Confirmation {confirmation_id} not found in this conversation.")


def _calls(items: Sequence[Any]) -> Iterator[tuple[str, str, dict[str, Any], Any]]:
    """Each answered tool call: its id, name, arguments and output (as stored)."""
    calls: dict[str, tuple[str, dict[str, Any]]] = {}
    for item in items:
        kind = item.get("type") if isinstance(item, dict) else None
        if kind == "function_call":
            calls[str(item.get("call_id"))] = (str(item.get("name")), parse_arguments(item.get("arguments")))
        elif kind == "function_call_output" and (call := calls.get(str(item.get("call_id")))):
            yield str(item.get("call_id")), call[0], call[1], item.get("output")


def said(confirmation: Confirmation, *, confirmed: bool) -> str:
    """The user's answer as the conversation keeps it."""
    return f"{'Confirm' if confirmed else 'Cancel'}: {confirmation.needed.question}"


def answer_items(confirmation: Confirmation, *, confirmed: bool, output: Any, reply: str) -> list[Item]:
    """What an answer adds to the conversation, so the model knows: the user's answer, the
    confirmed call and its result (when confirmed), and the outcome as the assistant's message."""
    items: list[dict[str, Any]] = [{"role": "user", "content": said(confirmation, confirmed=confirmed)}]
    if confirmed:
        call_id = f"call_{uuid.uuid4().hex[:24]}"
        arguments = json.dumps(confirmation.needed.arguments, ensure_ascii=False, separators=(",", ":"))
        name = confirmation.needed.tool
        items.append({"type": "function_call", "call_id": call_id, "name": name, "arguments": arguments})
        items.append({"type": "function_call_output", "call_id": call_id, "output": output})
    items.append(assistant_message(reply))
    return cast(list[Item], items)


def outcome(confirmation: Confirmation, result: Any, *, is_error: bool) -> str:
    """The assistant's words for what the confirmed call did, from its result alone."""
    if is_error or not isinstance(result, dict):
        return f"That didn't work: {result}"
    tool = confirmation.needed.tool
    if tool == "delete_task":
        return f"Deleted task #{result.get('id')} '{result.get('title')}'."
    if tool == "edit_list":
        deleted = result.get("deleted") or {}
        return f"Deleted the list '{deleted.get('name')}' and its {deleted.get('tasks_deleted', 0)} tasks."
    action = "delete" if tool == "delete_tasks" else str(result.get("action", ""))
    done = result.get("deleted") if action == "delete" else result.get("changed")
    count = len(done) if isinstance(done, list) else 0
    verb = _DONE.get(action, "Changed")
    return f'{verb} {count} {"task" if count == 1 else "tasks"}. Say "undo" to take it back.'


def _same(asked: dict[str, Any], done: dict[str, Any]) -> bool:
    ignore = ("confirm", "idempotency_key")
    return {k: v for k, v in asked.items() if k not in ignore} == {
        k: v for k, v in done.items() if k not in ignore
    }


def _last_turn(items: Sequence[Any]) -> Sequence[Any]:
    for index in range(len(items) - 1, -1, -1):
        item = items[index]
        if isinstance(item, dict) and item.get("role") == "user" and item.get("type", "message") == "message":
            return items[index:]
    return items
