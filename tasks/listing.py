"""Listing tasks: filters, a stable order (due time, then id; undated last) and cursor paging."""

from __future__ import annotations

import base64
import binascii
import json
from datetime import datetime
from typing import Any

from sqlalchemy import and_, func, or_
from sqlmodel import Session, col, select

from tasks.errors import InvalidInput
from tasks.inputs import TaskQuery, clean_limit, clean_priority, clean_tags
from tasks.models import Task
from tasks.schemas import TaskPage, TaskView
from tasks.timeparse import parse_when


def run(session: Session, owner_id: str, query: TaskQuery, *, tz: str, now: datetime) -> TaskPage:
    limit = clean_limit(query.limit)
    statement = select(Task).where(Task.owner_id == owner_id)
    for condition in _filters(query, tz=tz, now=now):
        statement = statement.where(condition)
    if query.cursor:
        statement = statement.where(_after_cursor(query.cursor))
    statement = statement.order_by(col(Task.due_at).is_(None), col(Task.due_at), col(Task.id)).limit(
        limit + 1
    )
    rows = list(session.exec(statement))
    page, more = rows[:limit], len(rows) > limit
    return TaskPage(
        items=[TaskView.of(task) for task in page],
        next_cursor=_cursor_for(page[-1]) if more and page else None,
    )


def _filters(query: TaskQuery, *, tz: str, now: datetime) -> list[Any]:
    conditions: list[Any] = []
    if query.status == "pending":
        conditions.append(col(Task.completed).is_(False))
    elif query.status == "completed":
        conditions.append(col(Task.completed).is_(True))
    if query.due_before is not None:
        conditions.append(col(Task.due_at) <= _bound(query.due_before, "due_before", tz, now))
    if query.due_after is not None:
        conditions.append(col(Task.due_at) >= _bound(query.due_after, "due_after", tz, now))
    if query.overdue:
        conditions += [col(Task.completed).is_(False), col(Task.due_at) < now]
    if query.tag:
        tags = clean_tags([query.tag])
        if tags:
            conditions.append(col(Task.tags_text).contains(f",{tags[0]},"))
    if query.priority:
        conditions.append(Task.priority == clean_priority(query.priority))
    if query.search and query.search.strip():
        needle = query.search.strip().lower()
        conditions.append(
            or_(
                func.lower(col(Task.title)).contains(needle, autoescape=True),
                func.lower(col(Task.description)).contains(needle, autoescape=True),
            )
        )
    return conditions


def _bound(value: str | datetime, field: str, tz: str, now: datetime) -> datetime:
    if isinstance(value, datetime):
        return value
    return parse_when(value, tz=tz, now=now, field=field)


def _cursor_for(task: Task) -> str:
    due = task.due_at.isoformat() if task.due_at else None
    raw = json.dumps([due, task.id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _after_cursor(cursor: str) -> Any:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        due_text, last_id = json.loads(base64.urlsafe_b64decode(padded))
        due = datetime.fromisoformat(due_text) if due_text else None
        last_id = int(last_id)
    except (ValueError, TypeError, binascii.Error, json.JSONDecodeError) as exc:
        raise InvalidInput(
            "cursor", "The cursor is not one this server gave out; start again without it."
        ) from exc
    if due is None:
        return and_(col(Task.due_at).is_(None), col(Task.id) > last_id)
    return or_(
        col(Task.due_at) > due,
        and_(col(Task.due_at) == due, col(Task.id) > last_id),
        col(Task.due_at).is_(None),
    )
