"""Argument completion: suggestions for a prompt's or resource template's argument, by its name.

    completers = default_completers(service)           # tag, task_id, task, list, list_id
    completers["list"] = list_names                     # a part adds its own argument names
    install_completions(mcp, completers, call)

A completer gets the caller and the text typed so far and returns at most ``MAX_VALUES``
suggestions (the protocol's cap is 100). Matching ignores case; a suggestion that starts with
the text comes before one that merely contains it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from mcp.server import MCPServer
from mcp_types import Completion, CompletionArgument, CompletionContext

from mcp_server.resources import Call
from tasks.inputs import TaskQuery
from tasks.service import Actor, TaskService

Completer = Callable[[Actor, str], list[str]]
MAX_VALUES: Final = 20
#: How many of the user's tasks suggestions are drawn from (the newest and soonest due).
SCAN_LIMIT: Final = 200


def ranked(candidates: list[str], typed: str) -> list[str]:
    """``candidates`` that match ``typed`` (prefix first, then substring), unique, capped."""
    needle = typed.casefold().strip()
    starts = [c for c in candidates if c.casefold().startswith(needle)]
    contains = [c for c in candidates if needle in c.casefold() and c not in starts]
    return list(dict.fromkeys(starts + contains))[:MAX_VALUES]


def default_completers(service: TaskService) -> dict[str, Completer]:
    def scan(actor: Actor) -> list[Any]:
        return service.list(actor, TaskQuery(status="all", limit=SCAN_LIMIT)).items

    def tags(actor: Actor, typed: str) -> list[str]:
        return ranked(sorted({tag for task in scan(actor) for tag in task.tags}), typed)

    def task_ids(actor: Actor, typed: str) -> list[str]:
        """Ids whose digits start with ``typed``, or whose title contains it."""
        tasks = scan(actor)
        if typed.strip().isdigit() or not typed.strip():
            return [str(t.id) for t in tasks if str(t.id).startswith(typed.strip())][:MAX_VALUES]
        needle = typed.casefold()
        return [str(t.id) for t in tasks if needle in t.title.casefold()][:MAX_VALUES]

    def titles(actor: Actor, typed: str) -> list[str]:
        return ranked(sorted({t.title for t in scan(actor) if not t.completed}), typed)

    def list_names(actor: Actor, typed: str) -> list[str]:
        return ranked([view.name for view in service.lists(actor).items], typed)

    def list_ids(actor: Actor, typed: str) -> list[str]:
        """Ids whose digits start with ``typed``, or whose list name contains it."""
        views = service.lists(actor).items
        if typed.strip().isdigit() or not typed.strip():
            return [str(v.id) for v in views if str(v.id).startswith(typed.strip())][:MAX_VALUES]
        return [str(v.id) for v in views if typed.casefold() in v.name.casefold()][:MAX_VALUES]

    return {
        "tag": tags, "focus_tag": tags, "task_id": task_ids, "task": titles,
        "list": list_names, "list_id": list_ids,
    }  # fmt: skip


def install_completions(mcp: MCPServer, completers: dict[str, Completer], call: Call) -> None:
    """Answer ``completion/complete`` for any prompt or template argument named in ``completers``
    (looked up when asked, so a part may add names after the server is built)."""

    @mcp.completion()  # type: ignore[no-untyped-call, untyped-decorator]  # the SDK leaves completion() unannotated
    async def complete(
        ref: Any, argument: CompletionArgument, context: CompletionContext | None
    ) -> Completion:
        completer = completers.get(argument.name)
        if completer is None:
            return Completion(values=[], has_more=False)
        values: list[str] = await call(lambda actor: completer(actor, argument.value))
        return Completion(values=values, total=len(values), has_more=len(values) >= MAX_VALUES)
