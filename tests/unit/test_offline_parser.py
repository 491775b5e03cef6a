"""The offline parser: each phrasing and the exact first tool call it must produce."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from agent.offline import Answer, Choice, Reply, ToolCommand, parse_command

NOW = datetime(2026, 11, 26, 18, 0, tzinfo=ZoneInfo("Europe/Berlin"))  # a Thursday
WEEK = {"due_after": "2026-11-23T00:00:00+01:00", "due_before": "2026-11-30T00:00:00+01:00"}
TODAY = {"due_after": "2026-11-26T00:00:00+01:00", "due_before": "2026-11-27T00:00:00+01:00"}
TOMORROW = {"due_after": "2026-11-27T00:00:00+01:00", "due_before": "2026-11-28T00:00:00+01:00"}


def lookup(fragment: str) -> tuple[str, dict[str, Any]]:
    return "list_tasks", {"status": "all", "search": fragment}


def first_call(text: str) -> tuple[str, dict[str, Any]]:
    """The first tool call the model makes: a title lookup when the task is named by title."""
    command = parse_command(text, now=NOW)
    assert isinstance(command, ToolCommand), command
    if command.needs_lookup:
        assert command.ref is not None and command.ref.fragment is not None
        return lookup(command.ref.fragment)
    return command.tool, command.call_arguments()


ADD = [
    ("add buy milk", {"title": "Buy milk"}),
    ("add buy milk tomorrow at 5pm", {"title": "Buy milk", "due": "tomorrow at 5pm"}),
    (
        "add buy milk tomorrow at 5pm #groceries high priority",
        {"title": "Buy milk", "due": "tomorrow at 5pm", "priority": "high", "tags": ["groceries"]},
    ),
    (
        "add Buy milk tomorrow 5pm, tag it groceries",
        {"title": "Buy milk", "due": "tomorrow 5pm", "tags": ["groceries"]},
    ),
    ("add call mom friday at 6pm !high", {"title": "Call mom", "due": "friday at 6pm", "priority": "high"}),
    ("add call mom at 5pm tomorrow", {"title": "Call mom", "due": "5pm tomorrow"}),
    (
        "add submit report next friday p1",
        {"title": "Submit report", "due": "next friday", "priority": "high"},
    ),
    ("add clean garage p3", {"title": "Clean garage", "priority": "low"}),
    ("add urgent: fix the server", {"title": "Fix the server", "priority": "high"}),
    ("add water plants with low priority", {"title": "Water plants", "priority": "low"}),
    ("add pay bills priority: medium", {"title": "Pay bills", "priority": "medium"}),
    ("add book flights in 2 hours", {"title": "Book flights", "due": "in 2 hours"}),
    ("add dentist on dec 3 at 10am", {"title": "Dentist", "due": "dec 3 at 10am"}),
    ("add file taxes 2026-12-31", {"title": "File taxes", "due": "2026-12-31"}),
    ("add pick up kids at 3pm", {"title": "Pick up kids", "due": "3pm"}),
    ("add send invoice by friday", {"title": "Send invoice", "due": "friday"}),
    ("add renew passport next month", {"title": "Renew passport", "due": "next month"}),
    ("add call bob tonight", {"title": "Call bob", "due": "tonight"}),
    ("add tidy desk #home #weekend", {"title": "Tidy desk", "tags": ["home", "weekend"]}),
    ("add plan trip tags: travel, family", {"title": "Plan trip", "tags": ["travel", "family"]}),
    ("add plan trip tagged travel and family", {"title": "Plan trip", "tags": ["travel", "family"]}),
    ("add standup daily at 9:30", {"title": "Standup", "due": "9:30", "recurrence": "daily"}),
    ("add take out trash every monday", {"title": "Take out trash", "recurrence": "every monday"}),
    (
        "add team sync every monday at 9am",
        {"title": "Team sync", "due": "monday at 9am", "recurrence": "every monday"},
    ),
    ("add gym every weekday at 7am", {"title": "Gym", "due": "7am", "recurrence": "every weekday"}),
    ("add water plants every 3 days", {"title": "Water plants", "recurrence": "every 3 days"}),
    (
        "add review every 2 weeks on monday and thursday",
        {"title": "Review", "recurrence": "every 2 weeks on monday and thursday"},
    ),
    (
        "add book club monthly on the last friday",
        {"title": "Book club", "recurrence": "monthly on the last friday"},
    ),
    ("add pay rent monthly on the 1st", {"title": "Pay rent", "recurrence": "monthly on the 1st"}),
    (
        "add call grandma tomorrow 5pm, remind me 30 minutes before",
        {"title": "Call grandma", "due": "tomorrow 5pm", "remind_before_minutes": 30},
    ),
    (
        "add submit report friday 5pm with a reminder 1 hour before",
        {"title": "Submit report", "due": "friday 5pm", "remind_before_minutes": 60},
    ),
    (
        "add flight tomorrow 6am and remind me a day before it's due",
        {"title": "Flight", "due": "tomorrow 6am", "remind_before_minutes": 1440},
    ),
    ('add "Read chapter 5 of Dune" tomorrow', {"title": "Read chapter 5 of Dune", "due": "tomorrow"}),
    ("add a task to buy eggs", {"title": "Buy eggs"}),
    ("add buy milk to my list", {"title": "Buy milk"}),
    (
        "new task call bob tomorrow about the contract",
        {"title": "Call bob about the contract", "due": "tomorrow"},
    ),
    ("create task: prepare slides", {"title": "Prepare slides"}),
    ("I need to renew my license", {"title": "Renew my license"}),
    (
        "remind me to call mom tomorrow at 5pm",
        {"title": "Call mom", "due": "tomorrow at 5pm", "remind_before_minutes": 0},
    ),
    (
        "add quarterly report with description: include the Q3 numbers",
        {"title": "Quarterly report", "description": "include the Q3 numbers"},
    ),
]

LIST = [
    ("what's due this week?", {"status": "pending", **WEEK}),
    ("what is due this week", {"status": "pending", **WEEK}),
    ("what do I have today", {"status": "pending", **TODAY}),
    ("what's due tomorrow", {"status": "pending", **TOMORROW}),
    (
        "what's due next week",
        {
            "status": "pending",
            "due_after": "2026-11-30T00:00:00+01:00",
            "due_before": "2026-12-07T00:00:00+01:00",
        },
    ),
    ("what's overdue", {"status": "pending", "overdue": True}),
    ("show overdue tasks", {"status": "pending", "overdue": True}),
    ("show high priority", {"status": "pending", "priority": "high"}),
    ("show urgent tasks", {"status": "pending", "priority": "high"}),
    ("show tasks tagged work", {"status": "pending", "tag": "work"}),
    ("show #groceries", {"status": "pending", "tag": "groceries"}),
    ("show completed", {"status": "completed"}),
    ("show everything", {"status": "all"}),
    ("list all tasks", {"status": "all"}),
    ("show my tasks", {"status": "pending"}),
    ("search milk", {"status": "all", "search": "milk"}),
    ("find tasks about the contract", {"status": "all", "search": "the contract"}),
    ("list tasks due before friday", {"status": "pending", "due_before": "friday"}),
    ("show top 5 tasks", {"status": "pending", "limit": 5}),
]

BY_ID = [
    ("mark 3 as done", ("complete_task", {"task_id": 3})),
    ("complete task 3", ("complete_task", {"task_id": 3})),
    ("complete #3", ("complete_task", {"task_id": 3})),
    ("check off task 7", ("complete_task", {"task_id": 7})),
    ("done 4", ("complete_task", {"task_id": 4})),
    ("reopen 3", ("update_task", {"task_id": 3, "completed": False})),
    ("mark 3 as not done", ("update_task", {"task_id": 3, "completed": False})),
    ("rename 3 to Buy oat milk", ("update_task", {"task_id": 3, "title": "Buy oat milk"})),
    ("change the title of 3 to call the bank", ("update_task", {"task_id": 3, "title": "Call the bank"})),
    ("move 3 to friday 6pm", ("update_task", {"task_id": 3, "due": "friday 6pm"})),
    ("postpone task 4 to next monday", ("update_task", {"task_id": 4, "due": "next monday"})),
    (
        "change the due date of 3 to tomorrow at noon",
        ("update_task", {"task_id": 3, "due": "tomorrow at noon"}),
    ),
    ("change priority of 3 to low", ("update_task", {"task_id": 3, "priority": "low"})),
    ("set 3 priority to high", ("update_task", {"task_id": 3, "priority": "high"})),
    ("make 3 high priority", ("update_task", {"task_id": 3, "priority": "high"})),
    (
        "set description of 3 to use the 2% one",
        ("update_task", {"task_id": 3, "description": "use the 2% one"}),
    ),
    ("add a note to 3: ring twice", ("update_task", {"task_id": 3, "description": "ring twice"})),
    ("set tags of 3 to work, urgent", ("update_task", {"task_id": 3, "tags": ["work", "urgent"]})),
    ("make 3 repeat every monday", ("update_task", {"task_id": 3, "recurrence": "every monday"})),
    ("remind me about 3 at 9am tomorrow", ("set_reminder", {"task_id": 3, "at": "9am tomorrow"})),
    ("remind me about task 3 tomorrow at 8am", ("set_reminder", {"task_id": 3, "at": "tomorrow at 8am"})),
    ("remind me 30 minutes before 3", ("set_reminder", {"task_id": 3, "minutes_before_due": 30})),
    ("remind me about 5 1 hour before it is due", ("set_reminder", {"task_id": 5, "minutes_before_due": 60})),
    ("cancel the reminder for 3", ("set_reminder", {"task_id": 3, "cancel": True})),
    ("don't remind me about 3", ("set_reminder", {"task_id": 3, "cancel": True})),
]

BY_TITLE = [
    ("done with buy milk", "complete_task", "buy milk"),
    ("I'm done with the laundry", "complete_task", "laundry"),
    ("I finished the report", "complete_task", "report"),
    ("mark buy milk as done", "complete_task", "buy milk"),
    ("the report is done", "complete_task", "report"),
    ("reopen buy milk", "update_task", "buy milk"),
    ("mark buy milk as not done", "update_task", "buy milk"),
    ("move buy milk to friday 6pm", "update_task", "buy milk"),
    ("rename buy milk to Buy oat milk", "update_task", "buy milk"),
    ("delete buy milk", "delete_task", "buy milk"),
    ("remove the dentist task", "delete_task", "dentist"),
    ("remind me 30 minutes before buy milk", "set_reminder", "buy milk"),
    ("cancel the reminder for buy milk", "set_reminder", "buy milk"),
]


@pytest.mark.parametrize(("text", "arguments"), ADD)
def test_adding_extracts_title_due_priority_tags_recurrence_and_reminder(
    text: str, arguments: dict[str, Any]
) -> None:
    assert first_call(text) == ("add_task", arguments)


@pytest.mark.parametrize(("text", "arguments"), LIST)
def test_listing_turns_the_question_into_filters(text: str, arguments: dict[str, Any]) -> None:
    assert first_call(text) == ("list_tasks", arguments)


@pytest.mark.parametrize(("text", "call"), BY_ID)
def test_a_task_named_by_id_is_acted_on_directly(text: str, call: tuple[str, dict[str, Any]]) -> None:
    command = parse_command(text, now=NOW)
    assert isinstance(command, ToolCommand) and not command.needs_lookup
    assert (command.tool, command.call_arguments()) == call


@pytest.mark.parametrize(("text", "tool", "fragment"), BY_TITLE)
def test_a_task_named_by_title_is_looked_up_before_the_action(text: str, tool: str, fragment: str) -> None:
    command = parse_command(text, now=NOW)
    assert isinstance(command, ToolCommand) and command.tool == tool
    assert first_call(text) == lookup(fragment)


def test_the_action_after_a_title_lookup_carries_the_found_id_and_the_changes() -> None:
    command = parse_command("move buy milk to friday 6pm", now=NOW)
    assert isinstance(command, ToolCommand)
    assert command.with_task_id(7).call_arguments() == {"task_id": 7, "due": "friday 6pm"}


@pytest.mark.parametrize("text", ["yes", "Yes please", "confirm", "ok"])
def test_yes_is_a_confirmation(text: str) -> None:
    assert parse_command(text, now=NOW) == Answer(confirmed=True)


@pytest.mark.parametrize("text", ["no", "cancel", "never mind"])
def test_no_is_a_refusal(text: str) -> None:
    assert parse_command(text, now=NOW) == Answer(confirmed=False)


@pytest.mark.parametrize("text", ["3", "#3", "task 3"])
def test_a_bare_id_is_a_choice(text: str) -> None:
    assert parse_command(text, now=NOW) == Choice(task_id=3)


@pytest.mark.parametrize("text", ["hi", "hello!", "help", "what can you do?"])
def test_greetings_and_help_get_the_help_text(text: str) -> None:
    reply = parse_command(text, now=NOW)
    assert isinstance(reply, Reply) and "add buy milk tomorrow 5pm" in reply.text


@pytest.mark.parametrize("text", ["flibber the jabberwock", "42 bananas", "the weather in Paris"])
def test_what_is_not_understood_is_said_honestly_with_examples(text: str) -> None:
    reply = parse_command(text, now=NOW)
    assert isinstance(reply, Reply)
    assert reply.text.startswith(f'Sorry, I didn\'t understand "{text}".')
    assert "what's due this week?" in reply.text


def test_add_without_a_title_asks_what_to_add() -> None:
    reply = parse_command("add", now=NOW)
    assert isinstance(reply, Reply) and reply.text.startswith("What should I add?")


def test_a_reminder_without_a_time_asks_when() -> None:
    reply = parse_command("remind me about buy milk", now=NOW)
    assert isinstance(reply, Reply) and reply.text.startswith("When should I remind you?")


def test_parsing_is_deterministic() -> None:
    text = "add team sync every monday at 9am #work, remind me 10 minutes before"
    assert parse_command(text, now=NOW) == parse_command(text, now=NOW)
