"""The offline model driven by the real SDK Runner against small in-memory task tools."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, cast
from zoneinfo import ZoneInfo

import dateparser
import pytest
from agents import Agent, RunConfig, Runner, SQLiteSession, function_tool
from agents.tool import Tool
from mcp_types import TextContent

from agent.offline import OfflineModel
from agent.offline.results import decode_output
from mcp_server.confirmations import ConfirmationNeeded, delete_task_needs_yes

ZONE = ZoneInfo("Europe/Berlin")
NOW = datetime(2026, 11, 26, 18, 0, tzinfo=ZONE)  # a Thursday
INSTRUCTIONS = (
    "You manage the user's tasks.\nCurrent time: 2026-11-26T18:00:00+01:00\nUser time zone: Europe/Berlin"
)
RUN_CONFIG = RunConfig(tracing_disabled=True)


def text_blocks(refused: ConfirmationNeeded) -> list[TextContent]:
    """The text blocks of the MCP tool's error result for ``refused``."""
    blocks = refused.needed.result(str(refused)).content
    assert all(isinstance(block, TextContent) for block in blocks)
    return cast(list[TextContent], blocks)


class FakeTasks:
    """An in-memory stand-in for the MCP task tools that records every call."""

    def __init__(self) -> None:
        self.tasks: dict[int, dict[str, Any]] = {}
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def _when(self, phrase: str) -> str:
        base = NOW.replace(tzinfo=None)
        settings: Any = {"TIMEZONE": "Europe/Berlin", "RETURN_AS_TIMEZONE_AWARE": True}
        moment = dateparser.parse(
            phrase, settings={**settings, "RELATIVE_BASE": base, "PREFER_DATES_FROM": "future"}
        )
        if moment is None:
            raise ValueError(f"Could not understand '{phrase}' as a date")
        return moment.astimezone(UTC).isoformat()

    def _task(self, task_id: int) -> dict[str, Any]:
        if task_id not in self.tasks:
            raise ValueError(f"Task {task_id} not found")
        return self.tasks[task_id]

    def add(self, title: str, due: str | None = None, **fields: Any) -> dict[str, Any]:
        task_id = len(self.tasks) + 1
        task = {
            "id": task_id,
            "title": title,
            "description": fields.get("description"),
            "completed": False,
            "priority": fields.get("priority") or "none",
            "tags": fields.get("tags") or [],
            "due_at": self._when(due) if due else None,
            "remind_at": None,
            "recurrence": fields.get("recurrence"),
        }
        self.tasks[task_id] = task
        return task

    def run(self, name: str, arguments: dict[str, Any], action: Callable[[], Any]) -> Any:
        """Record the call; answer like an MCP tool: JSON, or error text content."""
        helpers = {"store", "fields", "changes"}
        self.calls.append((name, {k: v for k, v in arguments.items() if v is not None and k not in helpers}))
        try:
            return json.dumps(action())
        except ConfirmationNeeded as refused:  # the MCP tool's content blocks: its words, then its data
            return [{"type": "text", "text": block.text} for block in text_blocks(refused)]
        except ValueError as error:
            return {"type": "text", "text": str(error)}

    def update(self, task_id: int, due: str | None, **changes: Any) -> dict[str, Any]:
        task = self._task(task_id)
        task.update({k: v for k, v in changes.items() if v is not None})
        if due is not None:
            task["due_at"] = self._when(due)
        return task

    def listing(self, status: str, search: str | None, before: str | None) -> dict[str, Any]:
        items = [
            t for t in self.tasks.values() if status == "all" or t["completed"] == (status == "completed")
        ]
        items = [t for t in items if not search or search.lower() in t["title"].lower()]
        items = [t for t in items if not before or (t["due_at"] or "9") < self._when(before)]
        return {"items": items, "next_cursor": None}

    def remind(self, task_id: int, at: str | None, cancel: bool) -> dict[str, Any]:
        task = self._task(task_id)
        task["remind_at"] = None if cancel else self._when(at) if at else task["due_at"]
        return task

    def tools(self) -> list[Tool]:
        store = self

        @function_tool
        def add_task(
            title: str,
            description: str | None = None,
            due: str | None = None,
            priority: str | None = None,
            tags: list[str] | None = None,
            recurrence: str | None = None,
            remind_before_minutes: int | None = None,
        ) -> Any:
            """Add a task."""
            fields = dict(description=description, priority=priority, tags=tags, recurrence=recurrence)
            return store.run("add_task", locals(), lambda: store.add(title, due, **fields))

        @function_tool
        def update_task(
            task_id: int,
            title: str | None = None,
            due: str | None = None,
            priority: str | None = None,
            description: str | None = None,
            completed: bool | None = None,
        ) -> Any:
            """Update a task."""
            changes = dict(title=title, priority=priority, description=description, completed=completed)
            return store.run("update_task", locals(), lambda: store.update(task_id, due, **changes))

        @function_tool
        def complete_task(task_id: int) -> Any:
            """Complete a task."""
            return store.run("complete_task", locals(), lambda: store.update(task_id, None, completed=True))

        @function_tool
        def delete_task(task_id: int, confirm: bool = False) -> Any:
            """Delete a task (like the MCP tool: only with confirm, once the user said yes)."""

            def delete() -> Any:
                task = store._task(task_id)
                if not confirm:
                    raise delete_task_needs_yes(task_id, task["title"])
                return store.tasks.pop(task["id"])

            return store.run("delete_task", {"task_id": task_id, "confirm": confirm}, delete)

        @function_tool
        def list_tasks(
            status: str = "pending",
            search: str | None = None,
            tag: str | None = None,
            priority: str | None = None,
            overdue: bool | None = None,
            due_before: str | None = None,
            due_after: str | None = None,
        ) -> Any:
            """List tasks."""
            return store.run("list_tasks", locals(), lambda: store.listing(status, search, due_before))

        @function_tool
        def set_reminder(
            task_id: int, at: str | None = None, minutes_before_due: int | None = None, cancel: bool = False
        ) -> Any:
            """Set or cancel a reminder."""
            return store.run("set_reminder", locals(), lambda: store.remind(task_id, at, cancel))

        return [add_task, update_task, complete_task, delete_task, list_tasks, set_reminder]


@pytest.fixture
def store() -> FakeTasks:
    return FakeTasks()


def make_agent(store: FakeTasks, model: OfflineModel | None = None) -> Agent[Any]:
    return Agent(name="todo", instructions=INSTRUCTIONS, model=model or OfflineModel(), tools=store.tools())


async def ask(store: FakeTasks, text: str, session: SQLiteSession | None = None) -> str:
    result = await Runner.run(make_agent(store), text, session=session, run_config=RUN_CONFIG)
    return str(result.final_output)


async def test_adding_a_task_calls_add_task_and_confirms_in_the_users_zone(store: FakeTasks) -> None:
    reply = await ask(store, "add buy milk tomorrow at 5pm #groceries high priority")
    assert store.calls == [
        (
            "add_task",
            {"title": "Buy milk", "due": "tomorrow at 5pm", "priority": "high", "tags": ["groceries"]},
        )
    ]
    assert reply == "Added #1 Buy milk — due Fri 27 Nov 17:00 (high, #groceries)."


async def test_listing_this_week_sends_iso_bounds_and_lists_compact_lines(store: FakeTasks) -> None:
    store.add("Buy milk", "tomorrow at 5pm", priority="high", tags=["groceries"])
    store.add("Call mom")
    reply = await ask(store, "what's due this week?")
    assert store.calls == [
        (
            "list_tasks",
            {
                "status": "pending",
                "due_after": "2026-11-23T00:00:00+01:00",
                "due_before": "2026-11-30T00:00:00+01:00",
            },
        )
    ]
    assert reply == "1 task:\n- #1 Buy milk — due Fri 27 Nov 17:00 (high, #groceries)"
    assert await ask(store, "show everything") == (
        "2 tasks:\n- #1 Buy milk — due Fri 27 Nov 17:00 (high, #groceries)\n- #2 Call mom"
    )


async def test_completing_by_title_fragment_looks_the_task_up_first(store: FakeTasks) -> None:
    store.add("Buy milk")
    store.add("Write report")
    reply = await ask(store, "done with buy milk")
    assert store.calls == [
        ("list_tasks", {"status": "all", "search": "buy milk"}),
        ("complete_task", {"task_id": 1}),
    ]
    assert reply == "Completed #1 Buy milk."


async def test_an_ambiguous_fragment_asks_which_and_the_next_turn_picks_by_id(store: FakeTasks) -> None:
    store.add("Buy milk")
    store.add("Buy oat milk")
    session = SQLiteSession("ambiguous")
    question = await ask(store, "move milk to friday 6pm", session)
    assert question.startswith('Several tasks match "milk":\n- #1 Buy milk\n- #2 Buy oat milk\n')
    assert [name for name, _ in store.calls] == ["list_tasks"]
    reply = await ask(store, "2", session)
    assert store.calls[-1] == ("update_task", {"task_id": 2, "due": "friday 6pm"})
    assert reply == "Updated #2 Buy oat milk — due Fri 27 Nov 18:00."


async def test_an_unknown_fragment_is_reported_honestly(store: FakeTasks) -> None:
    reply = await ask(store, "complete the tax return")
    assert reply == 'I couldn\'t find a task matching "tax return".'
    assert [name for name, _ in store.calls] == ["list_tasks"]


async def test_deleting_asks_for_confirmation_and_yes_deletes(store: FakeTasks) -> None:
    store.add("Buy milk")
    session = SQLiteSession("delete-yes")
    question = await ask(store, "delete buy milk", session)
    assert question == 'Delete #1 "Buy milk"? Reply "yes" to delete it or "no" to keep it.'
    assert store.calls[-1] == ("delete_task", {"task_id": 1, "confirm": False}) and 1 in store.tasks
    reply = await ask(store, "yes", session)
    assert store.calls[-1] == ("delete_task", {"task_id": 1, "confirm": True})
    assert reply == "Deleted #1 Buy milk." and store.tasks == {}


async def test_deleting_by_id_asks_with_the_title_the_tool_gave(store: FakeTasks) -> None:
    store.add("Buy milk")
    question = await ask(store, "delete 1")
    assert question == 'Delete #1 "Buy milk"? Reply "yes" to delete it or "no" to keep it.'
    assert [name for name, _ in store.calls] == ["delete_task"] and 1 in store.tasks


async def test_deleting_a_task_that_is_not_there_says_so_instead_of_asking(store: FakeTasks) -> None:
    reply = await ask(store, "delete 42")
    assert reply == "Sorry, that didn't work: Task 42 not found"


async def test_deleting_and_answering_no_keeps_the_task(store: FakeTasks) -> None:
    store.add("Buy milk")
    session = SQLiteSession("delete-no")
    await ask(store, "delete 1", session)
    reply = await ask(store, "no", session)
    assert reply == "OK, I kept task #1." and 1 in store.tasks
    assert store.calls == [("delete_task", {"task_id": 1, "confirm": False})]


async def test_a_tool_error_is_reported_not_papered_over(store: FakeTasks) -> None:
    reply = await ask(store, "mark 42 as done")
    assert store.calls == [("complete_task", {"task_id": 42})]
    assert reply == "Sorry, that didn't work: Task 42 not found"


async def test_reminders_are_set_and_cancelled(store: FakeTasks) -> None:
    store.add("Buy milk", "tomorrow at 5pm")
    reply = await ask(store, "remind me about 1 at 9am tomorrow")
    assert store.calls[-1] == ("set_reminder", {"task_id": 1, "at": "9am tomorrow", "cancel": False})
    assert (
        reply == "Reminder set for Fri 27 Nov 09:00: #1 Buy milk — due Fri 27 Nov 17:00"
        " (reminder Fri 27 Nov 09:00)."
    )
    reply = await ask(store, "cancel the reminder for 1")
    assert store.calls[-1] == ("set_reminder", {"task_id": 1, "cancel": True})
    assert reply == "Cancelled the reminder for #1 Buy milk — due Fri 27 Nov 17:00."


async def test_reopening_and_renaming_use_update_task(store: FakeTasks) -> None:
    store.add("Buy milk")
    store.tasks[1]["completed"] = True
    assert await ask(store, "reopen 1") == "Reopened #1 Buy milk."
    assert await ask(store, "rename 1 to Buy oat milk") == "Updated #1 Buy oat milk."
    assert store.calls == [
        ("update_task", {"task_id": 1, "completed": False}),
        ("update_task", {"task_id": 1, "title": "Buy oat milk"}),
    ]


async def test_an_unclear_message_calls_no_tool_and_shows_examples(store: FakeTasks) -> None:
    reply = await ask(store, "flibber the jabberwock")
    assert reply.startswith('Sorry, I didn\'t understand "flibber the jabberwock".')
    assert "add buy milk tomorrow 5pm" in reply and store.calls == []


async def test_streaming_yields_text_deltas_and_the_same_final_answer(store: FakeTasks) -> None:
    result = Runner.run_streamed(make_agent(store), "add call mom friday 6pm !high", run_config=RUN_CONFIG)
    deltas: list[str] = []
    tool_calls: list[str] = []
    async for event in result.stream_events():
        if event.type == "raw_response_event" and event.data.type == "response.output_text.delta":
            deltas.append(event.data.delta)
        if event.type == "run_item_stream_event" and event.name == "tool_called":
            tool_calls.append(getattr(event.item.raw_item, "name", ""))
    assert tool_calls == ["add_task"]
    assert len(deltas) > 1
    assert "".join(deltas) == result.final_output == "Added #1 Call mom — due Fri 27 Nov 18:00 (high)."


async def test_time_and_zone_fall_back_to_the_constructor_without_instruction_lines(store: FakeTasks) -> None:
    store.add("Buy milk", "tomorrow at 5pm")
    model = OfflineModel(clock=lambda: datetime(2026, 11, 26, 12, tzinfo=UTC), timezone="America/New_York")
    agent = Agent(name="todo", instructions="You manage tasks.", model=model, tools=store.tools())
    result = await Runner.run(agent, "what do I have today", run_config=RUN_CONFIG)
    assert store.calls[-1][1]["due_after"] == "2026-11-26T00:00:00-05:00"
    assert result.final_output == "No matching tasks."
    assert model.reference_time(INSTRUCTIONS) == NOW


def test_the_same_conversation_gives_the_same_output() -> None:
    model = OfflineModel()
    first = model.respond(INSTRUCTIONS, "add buy milk tomorrow 5pm")
    second = OfflineModel().respond(INSTRUCTIONS, "add buy milk tomorrow 5pm")
    assert first == second


@pytest.mark.parametrize(
    "output",
    [
        '{"id": 3, "title": "Buy milk", "completed": false}',
        [{"type": "input_text", "text": '{"id": 3, "title": "Buy milk", "completed": false}'}],
        '{"type": "text", "text": "{\\"id\\": 3, \\"title\\": \\"Buy milk\\"}"}',
        "{'id': 3, 'title': 'Buy milk', 'completed': False}",
    ],
)
def test_tool_output_shapes_the_sdk_produces_all_decode_to_a_task(output: Any) -> None:
    result = decode_output(output)
    assert result.task is not None and result.task["id"] == 3 and result.error is None


def test_text_tool_output_is_an_error_message() -> None:
    assert decode_output([{"type": "input_text", "text": "Task 42 not found"}]).error == "Task 42 not found"
    assert decode_output("Task 42 not found").error == "Task 42 not found"


def test_a_completed_repeating_task_says_when_the_next_one_is_due() -> None:
    completed = {
        "id": 5,
        "title": "Standup",
        "completed": True,
        "priority": "none",
        "tags": [],
        "due_at": "2026-11-26T08:30:00Z",
        "recurrence": "FREQ=DAILY",
        "recurrence_text": "daily",
        "next_occurrence_due_at": "2026-11-27T08:30:00Z",
    }
    items = [
        {"role": "user", "content": "mark 5 as done"},
        {"type": "function_call", "call_id": "c1", "name": "complete_task", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "c1", "output": json.dumps(completed)},
    ]
    message = OfflineModel().respond(INSTRUCTIONS, items)  # type: ignore[arg-type]
    assert message.type == "message"
    assert message.content[0].text == (  # type: ignore[union-attr]
        "Completed #5 Standup — due Thu 26 Nov 09:30 (repeats daily). The next one is due Fri 27 Nov 09:30."
    )


async def test_the_offline_model_answers_from_a_tool_result_in_the_same_step() -> None:
    """A turn that calls one tool asks the model once: the reply comes from the tool result."""
    calls: list[str] = []

    class Counted(OfflineModel):
        def respond(self, system_instructions: Any, input: Any) -> Any:
            calls.append("model")
            return super().respond(system_instructions, input)

    @function_tool
    def add_task(title: str, due: str | None = None) -> str:
        """Add a task."""
        calls.append("tool")
        return json.dumps({"task": {"id": 7, "title": title, "due_at": None, "priority": "none",
                                    "tags": [], "completed": False}})  # fmt: skip

    model = Counted(timezone="UTC")
    agent = Agent(name="todo", instructions="Current time: 2026-11-26T18:00:00+00:00", model=model,
                  tools=[add_task], tool_use_behavior=model.answer_from_tools)  # fmt: skip
    result = await Runner.run(agent, "add water the plants", run_config=RunConfig(tracing_disabled=True))
    assert calls == ["model", "tool"]
    assert str(result.final_output).startswith("Added #7 Water the plants")

    calls.clear()
    looked_up = await Runner.run(agent, "blorp", run_config=RunConfig(tracing_disabled=True))
    assert calls == ["model"] and looked_up.final_output
