"""Listing tasks: filters, a stable order (due time, then id; undated last) and cursor paging.

Every listing reads one user's rows in the order of an index (``ix_tasks_owner_status_order``
or ``ix_tasks_owner_order``: owner, [completed,] ``due_at IS NULL``, ``due_at``, ``id``) and
stops after a page, so its cost does not grow with the user's task count: a due bound also
says "dated" (so the index's range starts at the bound), and the cursor is one row comparison
on the index's keys. Tags and words that few tasks have are found through trigram indexes: on
PostgreSQL the planner uses them (migration 0005); on SQLite the listing first asks the FTS5
trigram index ``tasks_fts`` (migration 0020) which tasks may match, and when those are at most
``FEW`` it reads just them by id and sorts them (``among``), else it walks the order as above,
where matches are common enough to fill a page soon. Either way the listing's own conditions
decide, so the index changes the cost, never the results.

Tasks in an archived list are left out (like an archived project's) unless the caller names the
list, a parent task, or asks ``include_archived``: the user's archived lists are read once per
listing through ``uq_task_lists_owner_name`` and the walk of ``tasks`` skips their tasks.
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Integer,
    Row,
    Select,
    String,
    Table,
    and_,
    bindparam,
    false,
    func,
    literal_column,
    or_,
    select,
    text,
    tuple_,
)
from sqlalchemy.orm import configure_mappers
from sqlalchemy.sql import operators
from sqlalchemy.sql.elements import UnaryExpression
from sqlmodel import col

from tasks.errors import InvalidInput
from tasks.inputs import MAX_ID, TaskFilter, TaskQuery, clean_limit, clean_priority, clean_tags
from tasks.models import Task, TaskList, UTCDateTime
from tasks.schemas import TaskPage, TaskView
from tasks.timeparse import in_range, parse_when


def run(
    connection: Connection, owner_id: str, query: TaskQuery, *, tz: str, now: datetime,
    list_id: int | None = None,
) -> TaskPage:  # fmt: skip
    """A page of the user's tasks; ``list_id`` is ``query.list`` resolved by the caller."""
    limit = clean_limit(query.limit)
    filters, params = _filters(query, tz=tz, now=now, list_id=list_id)
    if query.cursor:
        after, cursor_params = _after_cursor(query.cursor)
        filters, params = (*filters, after), params | cursor_params
    params |= {"owner_id": owner_id, "limit": limit + 1}
    if connection.dialect.name == "sqlite":
        filters, params = _narrowed(connection, query, filters, params)
    rows = connection.execute(_statement(filters), params).all()
    page, more = tasks_to_read(rows[:limit]), len(rows) > limit
    return TaskPage(
        items=[TaskView.of(task) for task in page],
        next_cursor=_cursor_for(page[-1]) if more and page else None,
    )


def matching_ids(
    connection: Connection, owner_id: str, query: TaskFilter, *, tz: str, now: datetime,
    list_id: int | None, limit: int,
) -> list[int]:  # fmt: skip
    """The ids of up to ``limit`` of the user's tasks that ``query`` matches, in the listing's
    order (the batch tools' selection by filter)."""
    filters, params = _filters(query, tz=tz, now=now, list_id=list_id)
    params |= {"owner_id": owner_id, "limit": limit}
    return list(connection.execute(_ids_statement(filters), params).scalars())


def tasks_to_read(rows: Sequence[Row[Any]]) -> list[Task]:
    """Rows of ``tasks`` read with Core as ``Task`` objects to read from, never to change or add
    to a session: ``model_construct`` gives them no ORM state, for a tenth of ``Task()``'s cost."""
    configure_mappers()  # a no-op once done; without it a constructed task's fields can't be read
    return [Task.model_construct(**row._mapping) for row in rows]


#: SQLite: a filter that the trigram index says at most this many tasks may match reads those
#: tasks by id and sorts them; with more, walking the user's tasks in order fills a page sooner.
FEW = 200
#: SQLite: a user with fewer tasks than this has them all walked (cheaper than asking the index).
WALK_ALL = 1000


def _narrowed(
    connection: Connection, query: TaskQuery, filters: tuple[str, ...], params: dict[str, Any]
) -> tuple[tuple[str, ...], dict[str, Any]]:
    """SQLite: the filters with ``among`` (the ids of the tasks that may match) when the trigram
    index finds few candidates for the tag or the search; unchanged otherwise."""
    match = _fts_query(query) if "tag" in filters or "search" in filters else None
    if match is None:
        return filters, params
    owned = {"owner_id": params["owner_id"], "limit": WALK_ALL}
    if connection.execute(_OWNED_UP_TO, owned).scalar_one() < WALK_ALL:
        return filters, params
    found = connection.execute(_FTS_CANDIDATES, {"match": match, "limit": FEW + 1}).scalars().all()
    if len(found) > FEW:
        return filters, params
    return (*filters, "among"), params | {"among": json.dumps(list(found))}


_OWNED_UP_TO = text("SELECT count(*) FROM (SELECT 1 FROM tasks WHERE owner_id = :owner_id LIMIT :limit)")
_FTS_CANDIDATES = text("SELECT rowid FROM tasks_fts WHERE tasks_fts MATCH :match LIMIT :limit")


def _fts_query(query: TaskQuery) -> str | None:
    """The FTS5 query for the tag and the search: every trigram of each, in its columns (the
    index keeps no positions, so this finds a superset of the tasks holding the text); None when
    the index cannot narrow them: a needle under three characters has no trigram, and a tag with
    ``%`` or ``_`` is a pattern to ``LIKE`` (as it has always been), not a literal."""
    terms = []
    tags = clean_tags([query.tag]) if query.tag else []
    if tags and not any(wildcard in tags[0] for wildcard in "%_"):
        terms.append(f"tags_text : ({_trigrams(f',{tags[0]},')})")
    needle = (query.search or "").strip().lower()
    if len(needle) >= 3:
        terms.append(f"{{title description}} : ({_trigrams(needle)})")
    return " AND ".join(terms) or None


def _trigrams(text: str) -> str:
    """``"abc" AND "bcd" AND ...``: each trigram of ``text`` once, quoted as FTS5 strings."""
    grams = dict.fromkeys(text[i : i + 3] for i in range(len(text) - 2))
    return " AND ".join('"' + gram.replace('"', '""') + '"' for gram in grams)


def _filters(
    query: TaskFilter, *, tz: str, now: datetime, list_id: int | None = None
) -> tuple[tuple[str, ...], dict[str, Any]]:
    """The names of the conditions ``query`` asks for (see ``_condition``) and their values."""
    names: list[str] = []
    params: dict[str, Any] = {}
    completed_range = query.completed_after is not None or query.completed_before is not None
    if completed_range and query.status == "pending":
        raise InvalidInput(
            "status", "completed_after/completed_before find completed tasks; use status 'completed'."
        )
    if query.status == "pending":
        names.append("open")
    elif query.status == "completed":
        names.append("done")
    if query.due_before is not None or query.due_after is not None or query.overdue:
        names.append("dated")  # implied by each bound; it lets the index's range start there
    if query.due_before is not None:
        names.append("due_before")
        params["due_before"] = _bound(query.due_before, "due_before", tz, now)
    if query.due_after is not None:
        names.append("due_after")
        params["due_after"] = _bound(query.due_after, "due_after", tz, now)
    if query.overdue:
        names += ["open", "past_due"]
        params["now"] = now
    if query.tag:
        tags = clean_tags([query.tag])
        if tags:
            names.append("tag")
            params["tag"] = f",{tags[0]},"
    if query.priority:
        names.append("priority")
        params["priority"] = clean_priority(query.priority)
    if list_id is not None:
        names.append("list")
        params["list_id"] = list_id
    elif query.parent_id is None and not query.include_archived:
        names.append("unarchived")
    if query.parent_id is not None:
        names.append("parent")
        params["parent_id"] = query.parent_id
    if query.completed_after is not None:
        names += ["done", "completed_after"]
        params["completed_after"] = _bound(query.completed_after, "completed_after", tz, now, start=True)
    if query.completed_before is not None:
        names += ["done", "completed_before"]
        params["completed_before"] = _bound(query.completed_before, "completed_before", tz, now)
    if query.search and query.search.strip():
        names.append("search")
        needle = query.search.strip().lower()  # escaped as ``contains(..., autoescape=True)`` does
        params["search"] = needle.replace("/", "//").replace("%", "/%").replace("_", "/_")
    return tuple(names), params


@functools.cache
def _statement(filters: tuple[str, ...]) -> Select[Any]:
    """The listing with these conditions, in the stable order, built once per combination (the
    values are bound per call): building it per call cost about as much CPU as running it."""
    tasks: Table = Task.__table__  # type: ignore[attr-defined]
    owner: ColumnElement[str] = tasks.c.owner_id
    if "among" in filters:  # ``+owner_id``: SQLite then reads the few ids, not the owner's index
        owner = UnaryExpression(owner, operator=operators.custom_op("+"), type_=String())
    statement = select(tasks).where(owner == bindparam("owner_id"))
    for name in dict.fromkeys(filters):
        statement = statement.where(_condition(name))
    order = (col(Task.due_at).is_(None), col(Task.due_at), col(Task.id))
    return statement.order_by(*order).limit(bindparam("limit", type_=Integer()))


@functools.cache
def _ids_statement(filters: tuple[str, ...]) -> Select[Any]:
    """``_statement``'s selection, ids only."""
    statement = select(col(Task.id)).where(col(Task.owner_id) == bindparam("owner_id"))
    for name in dict.fromkeys(filters):
        statement = statement.where(_condition(name))
    order = (col(Task.due_at).is_(None), col(Task.due_at), col(Task.id))
    return statement.order_by(*order).limit(bindparam("limit", type_=Integer()))


def _condition(name: str) -> ColumnElement[bool]:
    due, completed = col(Task.due_at), col(Task.completed)
    match name:
        case "open":
            return completed.is_(False)
        case "done":
            return completed.is_(True)
        case "dated":
            return due.is_not(None)
        case "due_before":
            return due <= bindparam("due_before")
        case "due_after":
            return due >= bindparam("due_after")
        case "past_due":
            return due < bindparam("now")
        case "tag":
            return col(Task.tags_text).contains(bindparam("tag"))
        case "priority":
            return col(Task.priority) == bindparam("priority")
        case "list":
            return col(Task.list_id) == bindparam("list_id")
        case "parent":
            return col(Task.parent_id) == bindparam("parent_id")
        case "unarchived":  # ``NOT IN``, not ``NOT EXISTS``: a filter on the walk of the index,
            # whose list of the user's archived lists is read once (a hashed subplan), never a join
            archived = select(col(TaskList.id)).where(
                col(TaskList.owner_id) == bindparam("owner_id"), col(TaskList.archived_at).is_not(None)
            )
            return or_(col(Task.list_id).is_(None), col(Task.list_id).not_in(archived))
        case "completed_after":
            return col(Task.completed_at) >= bindparam("completed_after", type_=UTCDateTime())
        case "completed_before":
            return col(Task.completed_at) <= bindparam("completed_before", type_=UTCDateTime())
        case "search":
            return or_(
                func.lower(col(Task.title)).contains(bindparam("search", type_=String()), escape="/"),
                func.lower(col(Task.description)).contains(bindparam("search", type_=String()), escape="/"),
            )
        case "among":  # the ids as one JSON array: one statement, whatever their number
            ids: Select[Any] = select(literal_column("value")).select_from(
                func.json_each(bindparam("among", type_=String()))
            )
            return col(Task.id).in_(ids)
        case "after_dated":  # the cursor's task had a due time: later ones, then the undated
            # ``(undated, due, id) > (false, cursor_due, cursor_id)`` in the order's keys: an
            # undated row is after (its first key is greater, so its null due is not compared)
            return tuple_(due.is_(None), due, col(Task.id)) > tuple_(
                false(), bindparam("cursor_due", type_=UTCDateTime()), bindparam("cursor_id", type_=Integer())
            )
        case "after_undated":
            return and_(due.is_(None), col(Task.id) > bindparam("cursor_id"))
    raise ValueError(f"no listing condition named {name!r}")


def _bound(value: str | datetime, field: str, tz: str, now: datetime, *, start: bool = False) -> datetime:
    """A bound in the user's words; a day without a time is its end (its start with ``start``:
    "completed after monday" includes monday)."""
    if isinstance(value, datetime):
        return in_range(value, field, value.isoformat())
    return parse_when(value, tz=tz, now=now, field=field, date_only="start_of_day" if start else "end_of_day")


def _cursor_for(task: Task) -> str:
    due = task.due_at.isoformat() if task.due_at else None
    raw = json.dumps([due, task.id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _after_cursor(cursor: str) -> tuple[str, dict[str, Any]]:
    """The condition for the tasks after the cursor's one (see ``_condition``) and its values."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        due_text, last_id = json.loads(base64.urlsafe_b64decode(padded))
        due = in_range(datetime.fromisoformat(due_text), "cursor", due_text) if due_text else None
        if type(last_id) is not int or not 1 <= last_id <= MAX_ID:
            raise ValueError(f"{last_id!r} is not a task id")
    except (ValueError, TypeError, InvalidInput, binascii.Error, json.JSONDecodeError) as exc:
        raise InvalidInput(
            "cursor", "The cursor is not one this server gave out; start again without it."
        ) from exc
    if due is None:
        return "after_undated", {"cursor_id": last_id}
    return "after_dated", {"cursor_due": due, "cursor_id": last_id}
