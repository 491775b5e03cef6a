"""What callers may ask of the use cases, and the checks on each field."""

from __future__ import annotations

import builtins
import re
from datetime import datetime
from typing import Annotated, Final, Literal

from pydantic import AfterValidator, BaseModel, Field

from tasks.errors import InvalidInput
from tasks.schemas import PriorityName, StatusFilter

MAX_TITLE: Final = 200
MAX_DESCRIPTION: Final = 4000
MAX_TAGS: Final = 20
MAX_TAG_LENGTH: Final = 40
#: Ids are PostgreSQL ``integer`` columns: a larger number can never name a row.
MAX_ID: Final = 2**31 - 1
#: A time phrase ("next friday 9am", ISO 8601) is short; this bounds the parser's work.
MAX_WHEN: Final = 200
MAX_RECURRENCE: Final = 500
MAX_SEARCH: Final = 200
MAX_CURSOR: Final = 200
MAX_EMAIL: Final = 320
MAX_TIMEZONE: Final = 64
MAX_LIST_NAME: Final = 100
#: How many tasks one ``add_tasks`` call may add.
MAX_BATCH_ADD: Final = 50
#: How many ids one batch call may name.
MAX_BATCH_IDS: Final = 200
#: How many tasks one batch call by filter may change (the benchmark completes 1,000).
MAX_BATCH_FILTER: Final = 2000
#: A batch by filter that would change more tasks than this needs ``confirm``.
CONFIRM_OVER: Final = 20
PRIORITY_WORDS: Final = {
    "none": "none", "": "none", "low": "low", "medium": "medium", "normal": "medium",
    "high": "high", "urgent": "high", "p1": "high", "p2": "medium", "p3": "low",
}  # fmt: skip


def plain_text(value: str) -> str:
    """Refuse what no database stores the same: NUL (PostgreSQL refuses it) and lone UTF-16
    surrogates (not encodable as UTF-8, so SQLite and every wire refuse them)."""
    if "\x00" in value:
        raise ValueError("contains a NUL character (\\u0000); remove it")
    if not value.isascii():  # both checks run in C: a loop over the characters cost ~50 us per 4 kB
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise ValueError(
                "contains a lone UTF-16 surrogate, which is not valid text; send UTF-8 text"
            ) from exc
    return value


#: Text any field may hold: no NUL, no lone surrogates (``plain_text``).
Text = Annotated[str, AfterValidator(plain_text)]
#: A time: natural language or ISO 8601, in the user's zone.
When = Annotated[str, AfterValidator(plain_text), Field(max_length=MAX_WHEN)]
RecurrenceText = Annotated[str, AfterValidator(plain_text), Field(max_length=MAX_RECURRENCE)]
#: A row id (tasks, notifications): positive and within the database's ``integer``.
RowId = Annotated[int, Field(ge=1, le=MAX_ID)]
#: Minutes before the due time (0 to one year).
Minutes = Annotated[int, Field(ge=0, le=60 * 24 * 365)]
#: A list, by name ("Groceries", any case) or by id ("7").
ListRef = Annotated[str, AfterValidator(plain_text), Field(max_length=MAX_LIST_NAME)]


class TaskDraft(BaseModel):
    """A new task. ``due`` and ``recurrence`` may be natural language."""

    title: Text
    description: Text | None = None
    due: When | datetime | None = None
    priority: Text | None = None
    tags: builtins.list[Text] | None = None
    recurrence: RecurrenceText | None = None
    repeat_from: Literal["due", "completion"] | None = None
    remind_before_minutes: Minutes | None = None
    remind_at: When | datetime | None = None
    list: ListRef | None = Field(default=None, description="The list, by name or id (default: Inbox).")
    parent_id: RowId | None = Field(default=None, description="Make it a subtask of this task.")


class TaskChanges(BaseModel):
    """Fields to change; a field left out stays, a field given as null is cleared."""

    title: Text | None = None
    description: Text | None = None
    due: When | datetime | None = None
    priority: Text | None = None
    tags: builtins.list[Text] | None = None
    recurrence: RecurrenceText | None = None
    repeat_from: Literal["due", "completion"] | None = None
    remind_before_minutes: Minutes | None = None
    completed: bool | None = None
    list: ListRef | None = Field(default=None, description="Move to this list (null: the Inbox).")
    parent_id: RowId | None = Field(default=None, description="Make it a subtask (null: top level).")


class TaskFilter(BaseModel):
    """Which tasks: the filters ``list_tasks`` and the batch tools share."""

    status: StatusFilter = "pending"
    due_before: When | datetime | None = None
    due_after: When | datetime | None = None
    overdue: bool | None = None
    tag: Text | None = None
    priority: Text | None = None
    search: Annotated[Text, Field(max_length=MAX_SEARCH)] | None = None
    list: ListRef | None = None
    parent_id: RowId | None = None
    completed_after: When | datetime | None = None
    completed_before: When | datetime | None = None
    #: Tasks in archived lists are left out unless the list (or a parent) is named, or this is true.
    include_archived: bool = False


class TaskQuery(TaskFilter):
    limit: int = Field(default=50)
    cursor: Annotated[Text, Field(max_length=MAX_CURSOR)] | None = None


def clean_title(title: str) -> str:
    cleaned = " ".join(title.split())
    if not cleaned:
        raise InvalidInput("title", "The title is empty; give the task a short name.")
    if len(cleaned) > MAX_TITLE:
        raise InvalidInput(
            "title",
            f"The title is {len(cleaned)} characters long; keep it to {MAX_TITLE} and put the "
            "rest in the description.",
        )
    return cleaned


def clean_description(description: str | None) -> str:
    text = (description or "").strip()
    if len(text) > MAX_DESCRIPTION:
        raise InvalidInput(
            "description",
            f"The description is {len(text)} characters long; the limit is {MAX_DESCRIPTION}.",
        )
    return text


def clean_priority(priority: str | None) -> PriorityName:
    word = (priority or "none").strip().lower()
    if word not in PRIORITY_WORDS:
        raise InvalidInput("priority", f"Unknown priority '{priority}'; use none, low, medium or high.")
    return PRIORITY_WORDS[word]  # type: ignore[return-value]


def clean_tags(tags: list[str] | None) -> list[str]:
    cleaned: list[str] = []
    for tag in tags or []:
        word = re.sub(r"\s+", "-", tag.strip().lstrip("#").lower())
        if not word:
            continue
        if "," in word or len(word) > MAX_TAG_LENGTH:
            raise InvalidInput(
                "tags",
                f"Tag '{tag}' is not allowed; tags are single words of up to {MAX_TAG_LENGTH} "
                "characters without commas.",
            )
        if word not in cleaned:
            cleaned.append(word)
    if len(cleaned) > MAX_TAGS:
        raise InvalidInput("tags", f"{len(cleaned)} tags given; a task can have at most {MAX_TAGS}.")
    return cleaned


def clean_minutes(minutes: int | None, *, field: str) -> int | None:
    if minutes is None:
        return None
    if minutes < 0 or minutes > 60 * 24 * 365:
        raise InvalidInput(field, f"{field} must be between 0 and 525600 minutes (one year).")
    return minutes


def clean_limit(limit: int) -> int:
    if limit < 1 or limit > 200:
        raise InvalidInput("limit", "limit must be between 1 and 200.")
    return limit


def clean_list_name(name: str) -> str:
    cleaned = " ".join(name.split())
    if not cleaned:
        raise InvalidInput("name", "The list name is empty; give the list a short name.")
    if len(cleaned) > MAX_LIST_NAME:
        raise InvalidInput(
            "name", f"The list name is {len(cleaned)} characters long; the limit is {MAX_LIST_NAME}."
        )
    if cleaned.isdigit():
        raise InvalidInput("name", f"'{cleaned}' is only digits, which reads as a list id; add a word.")
    return cleaned
