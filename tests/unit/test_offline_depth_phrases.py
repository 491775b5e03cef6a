"""The offline parser on lists, subtasks, batches and undo: a tuned set of phrasings, and a
held-out set written before any rule was adjusted to it (and never tuned on) that must score as
well. The first run scored the held-out set 13 of 14 against 15 of 15: "take that back" was
missed; it was fixed and moved to the tuned set, and three new unseen phrasings joined the
held-out set. The second run scored it 16 of 17: "oops, undo that" was missed; leading
interjections are now dropped (a general rule) and that phrase moved to the tuned set too. So
the held-out set below has been seen once: its score now says less than a fresh one would."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from agent.offline import ToolCommand, parse_command

NOW = datetime(2026, 11, 26, 18, 0, tzinfo=ZoneInfo("Europe/Berlin"))

#: (message, tool, arguments that must be among the call's, list the add may go to, parent fragment)
Case = tuple[str, str, dict[str, Any]]

TUNED: list[Case] = [
    ("add milk to groceries", "add_task", {"title": "Milk to groceries", "?list": "groceries"}),
    ("add slides to my work list", "add_task", {"title": "Slides", "list": "work"}),
    ("add a subtask pack passport to trip", "add_task", {"title": "Pack passport", "^parent": "trip"}),
    ("add pack passport as a subtask of trip", "add_task", {"title": "Pack passport", "^parent": "trip"}),
    ("show my work list", "list_tasks", {"list": "work"}),
    ("what's on my groceries list?", "list_tasks", {"list": "groceries"}),
    ("my lists", "lists", {}),
    ("complete everything tagged home", "change_tasks", {"action": "complete", "filter": {"tag": "home"}}),
    ("mark all home tasks as done", "change_tasks", {"action": "complete", "filter": {"tag": "home"}}),
    ("move all overdue tasks to tomorrow", "change_tasks",
     {"action": "reschedule", "filter": {"overdue": True}, "due": "tomorrow"}),
    ("move everything in inbox to work", "change_tasks",
     {"action": "move", "filter": {"list": "inbox"}, "list": "work"}),
    ("finish all tasks in my work list", "change_tasks", {"action": "complete", "filter": {"list": "work"}}),
    ("delete all completed tasks", "delete_tasks", {"filter": {"status": "completed"}}),
    ("undo that", "undo", {}),
    ("undo", "undo", {}),
    ("take that back", "undo", {}),  # held out in the first run, missed there (13 of 14)
    ("oops, undo that", "undo", {}),  # held out in the second run, missed there (16 of 17)
]  # fmt: skip

HELD_OUT: list[Case] = [
    ("please add eggs to my shopping list", "add_task", {"title": "Eggs", "list": "shopping"}),
    ("add bread to groceries", "add_task", {"title": "Bread to groceries", "?list": "groceries"}),
    ("create a subtask book hotel under trip", "add_task", {"title": "Book hotel", "^parent": "trip"}),
    ("show me the work list", "list_tasks", {"list": "work"}),
    ("what is in my home list", "list_tasks", {"list": "home"}),
    ("show all my lists", "lists", {}),
    ("check off everything tagged errands", "change_tasks",
     {"action": "complete", "filter": {"tag": "errands"}}),
    ("complete all tasks tagged garden", "change_tasks", {"action": "complete", "filter": {"tag": "garden"}}),
    ("postpone all overdue tasks to next monday", "change_tasks",
     {"action": "reschedule", "filter": {"overdue": True}, "due": "next monday"}),
    ("move all tasks tagged work to friday", "change_tasks",
     {"action": "reschedule", "filter": {"tag": "work"}, "due": "friday"}),
    ("revert that", "undo", {}),
    ("undo the last change", "undo", {}),
    # Added after the first run (which missed "take that back", then moved to TUNED), unseen:
    ("complete every task in the groceries list", "change_tasks",
     {"action": "complete", "filter": {"list": "groceries"}}),
    ("add a subtask call airline to trip", "add_task", {"title": "Call airline", "^parent": "trip"}),
    ("reopen everything tagged home", "change_tasks", {"action": "reopen", "filter": {"tag": "home"}}),
]  # fmt: skip


def matches(case: Case) -> bool:
    text, tool, expected = case
    command = parse_command(text, now=NOW)
    if not isinstance(command, ToolCommand) or command.tool != tool:
        return False
    for key, value in expected.items():
        if key == "?list":  # decided after asking which lists the user has
            if command.maybe_list is None or command.maybe_list[0] != value:
                return False
        elif key == "^parent":
            if command.ref_argument != "parent_id" or command.ref is None or command.ref.fragment != value:
                return False
        elif key == "filter":
            if {k: v for k, v in command.arguments.get("filter", {}).items() if k in value} != value:
                return False
        elif command.arguments.get(key) != value:
            return False
    return True


@pytest.mark.parametrize("case", TUNED, ids=[c[0] for c in TUNED])
def test_each_tuned_phrasing_gives_its_call(case: Case) -> None:
    assert matches(case), parse_command(case[0], now=NOW)


def test_the_held_out_phrasings_score_as_well_as_the_tuned_ones() -> None:
    tuned = sum(map(matches, TUNED)) / len(TUNED)
    held = sum(map(matches, HELD_OUT)) / len(HELD_OUT)
    missed = [(c[0], parse_command(c[0], now=NOW)) for c in HELD_OUT if not matches(c)]
    assert held >= tuned, f"held-out {held:.0%} against tuned {tuned:.0%}; missed: {missed}"


def test_what_worked_before_still_parses_the_same() -> None:
    assert parse_command("undo task 3", now=NOW) == ToolCommand("update_task", {"completed": False}, _ref(3))
    talk = parse_command("add talk to bob tomorrow", now=NOW)
    assert isinstance(talk, ToolCommand) and talk.arguments == {"title": "Talk to bob", "due": "tomorrow"}
    assert talk.maybe_list is None
    vague = parse_command("complete everything", now=NOW)
    assert not isinstance(vague, ToolCommand)  # asks which tasks instead of completing all


def _ref(task_id: int) -> Any:
    from agent.offline import TaskRef

    return TaskRef(id=task_id)
