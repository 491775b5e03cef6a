"""How the offline model words its replies: help, tasks and lists in the user's time zone."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final
from zoneinfo import ZoneInfo

EXAMPLES: Final = (
    "add buy milk tomorrow 5pm #groceries high priority",
    "add team sync every monday at 9am, remind me 10 minutes before",
    "what's due this week? / what's overdue / show tasks tagged work / search milk",
    "done with buy milk / mark 3 as done / reopen 3",
    "move buy milk to friday 6pm / rename 3 to Buy oat milk / change priority of 3 to low",
    "remind me about 3 at 9am tomorrow / cancel the reminder for 3",
    "delete buy milk",
)
HELP_TEXT: Final = (
    "Hi! I keep your tasks. I'm running offline, so I understand short commands like:\n"
    + "\n".join(f"- {example}" for example in EXAMPLES)
)


def not_understood(text: str) -> str:
    examples = "\n".join(f"- {example}" for example in EXAMPLES[:4])
    return f'Sorry, I didn\'t understand "{text}". Here are things I understand:\n{examples}'


def parse_instant(value: Any) -> datetime | None:
    """An aware datetime from an ISO 8601 string; naive values are taken as UTC."""
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=ZoneInfo("UTC"))


def format_when(value: Any, zone: ZoneInfo, now: datetime) -> str | None:
    """ "Fri 27 Nov 17:00" in the user's zone; the year only when it is not this year."""
    moment = parse_instant(value)
    if moment is None:
        return None
    local = moment.astimezone(zone)
    text = f"{local:%a} {local.day} {local:%b} {local:%H:%M}"
    return text if local.year == now.astimezone(zone).year else f"{text} {local.year}"


def describe_task(task: dict[str, Any], zone: ZoneInfo, now: datetime, *, check: bool = True) -> str:
    """ "#4 Buy milk — due Fri 27 Nov 17:00 (high, #groceries, repeats daily)"."""
    text = f"#{task.get('id')} {task.get('title', '')}".rstrip()
    if (due := format_when(task.get("due_at"), zone, now)) is not None:
        text += f" — due {due}"
    details: list[str] = []
    if task.get("priority") not in (None, "", "none"):
        details.append(str(task["priority"]))
    details += [f"#{tag}" for tag in task.get("tags") or []]
    if rule := task.get("recurrence_text") or task.get("recurrence"):
        details.append(f"repeats {str(rule).removeprefix('RRULE:')}")
    if (remind := format_when(task.get("remind_at"), zone, now)) is not None:
        details.append(f"reminder {remind}")
    if details:
        text += f" ({', '.join(details)})"
    return f"✓ {text}" if check and task.get("completed") else text


def describe_list(items: list[dict[str, Any]], zone: ZoneInfo, now: datetime, *, more: bool = False) -> str:
    if not items:
        return "No matching tasks."
    noun = "task" if len(items) == 1 else "tasks"
    lines = [f"{len(items)} {noun}:"]
    lines += [f"- {describe_task(task, zone, now)}" for task in items]
    if more:
        lines.append("(more tasks not shown — narrow the filter to see them)")
    return "\n".join(lines)


def ask_which(fragment: str, items: list[dict[str, Any]], zone: ZoneInfo, now: datetime) -> str:
    lines = [f'Several tasks match "{fragment}":']
    lines += [f"- {describe_task(task, zone, now)}" for task in items]
    lines.append(f'{WHICH_ONE} Reply with its number, e.g. "{items[0].get("id")}".')
    return "\n".join(lines)


WHICH_ONE: Final = "Which one did you mean?"
CONFIRM_DELETE: Final = 'Reply "yes" to delete it or "no" to keep it.'


def ask_delete(task_id: int, title: str | None) -> str:
    name = f'#{task_id} "{title}"' if title else f"task #{task_id}"
    return f"Delete {name}? {CONFIRM_DELETE}"
