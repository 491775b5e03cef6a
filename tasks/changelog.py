"""The change log behind ``undo``: each write keeps the rows it changed, before and after.

A write collects a ``ChangeSet`` (one entry per row: ``{"table", "id", "before", "after"}``,
each row as JSON, ``None`` when the row did not exist); the service stores it as a
``ChangeRecord`` in the write's own transaction. ``undo`` walks the entries backwards and puts
every row back as it was before, checking first that each row is still as the change left it
(its ``version``): an undo is exact or refused, never a guess.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from sqlalchemy import Table
from sqlmodel import SQLModel

from tasks.clock import as_utc
from tasks.models import Task, TaskList, UTCDateTime

#: The tables a change may touch, by name.
TABLES: Final[dict[str, type[SQLModel]]] = {"tasks": Task, "task_lists": TaskList}
#: Columns an undo does not put back: the row's identity and history, and state the system
#: derives (a reminder already sent stays sent; it is recomputed from the restored times).
NOT_RESTORED: Final = frozenset({"id", "owner_id", "created_at", "updated_at", "version", "reminder_state"})


@dataclass
class ChangeSet:
    """The rows one write changed, in the order it changed them."""

    action: str
    summary: str = ""
    entries: list[dict[str, Any]] = field(default_factory=list)
    undoes_id: int | None = None

    def add(
        self, table: str, row_id: int, before: dict[str, Any] | None, after: dict[str, Any] | None
    ) -> None:
        if before != after:
            self.entries.append({"table": table, "id": row_id, "before": before, "after": after})

    def task_ids(self) -> set[int]:
        return {e["id"] for e in self.entries if e["table"] == "tasks"}


def row_json(row: SQLModel) -> dict[str, Any]:
    """Every column of the row, as JSON (times as ISO 8601 in UTC)."""
    return {key: _plain(getattr(row, key)) for key in _columns(type(row))}


def row_values(model: type[SQLModel], data: dict[str, Any]) -> dict[str, Any]:
    """A row's JSON (``row_json``) back as column values."""
    times = _time_columns(model)
    return {
        key: (as_utc(datetime.fromisoformat(value)) if key in times and value is not None else value)
        for key, value in data.items()
        if key in _columns(model)
    }


def _plain(value: Any) -> Any:
    return as_utc(value).isoformat() if isinstance(value, datetime) else value


@functools.cache
def _columns(model: type[SQLModel]) -> tuple[str, ...]:
    table: Table = model.__table__  # type: ignore[attr-defined]
    return tuple(column.key for column in table.columns)


@functools.cache
def _time_columns(model: type[SQLModel]) -> frozenset[str]:
    table: Table = model.__table__  # type: ignore[attr-defined]
    return frozenset(c.key for c in table.columns if isinstance(c.type, UTCDateTime))
