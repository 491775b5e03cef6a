"""The audit consumer: an append-only log of who changed what and when, one entry per event.

subscription = audit_subscription(uow)              # topic task-events, consumer "audit"
app.include_router(router(uow, current_actor))      # GET /api/audit for the signed-in owner
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any, Final

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel
from sqlmodel import col, select

from events.consuming import apply_in_thread, read_task_event
from events.contracts import TASK_EVENTS, ListEvent, TaskEvent
from events.ports import Delivery, Outcome, Subscription
from tasks.inputs import MAX_ID
from tasks.models import AuditEntry
from tasks.service import Actor
from tasks.unit_of_work import UnitOfWorkFactory

log = logging.getLogger(__name__)

CONSUMER: Final = "audit"
ROUTE: Final = "/events/task-events"
_SHOWN: Final = ("title", "due_at", "priority", "completed")


class AuditLog:
    def __init__(self, uow_factory: UnitOfWorkFactory) -> None:
        self._uow = uow_factory

    async def handle(self, delivery: Delivery) -> Outcome:
        event = read_task_event(CONSUMER, delivery)
        if event is None:
            return Outcome.DROP
        return await apply_in_thread(CONSUMER, delivery.id, lambda: self.record(delivery.id, event))

    def record(self, event_id: str, event: TaskEvent | ListEvent) -> bool:
        """Append the entry for ``event_id`` unless it is already there; True when added."""
        with self._uow() as uow:
            if not uow.first_time(CONSUMER, event_id):
                return False
            uow.session.add(entry_for(event_id, event))
            uow.mark_processed(CONSUMER, event_id)
            uow.commit()
            return True


def entry_for(event_id: str, event: TaskEvent | ListEvent) -> AuditEntry:
    if isinstance(event, ListEvent):
        return _list_entry(event_id, event)
    task = event.task_data.model_dump(mode="json")
    before: dict[str, Any] | None = None
    after: dict[str, Any] | None = None
    if event.event_type == "created":
        after = task
    elif event.event_type == "deleted":
        before = task
    else:
        before = {k: v[0] for k, v in event.changes.items()}
        after = {k: v[1] for k, v in event.changes.items()}
    return AuditEntry(
        event_id=event_id, user_id=event.user_id, task_id=event.task_id, action=event.event_type,
        summary=summary(event), before=before, after=after, occurred_at=event.timestamp,
    )  # fmt: skip


def _list_entry(event_id: str, event: ListEvent) -> AuditEntry:
    """A list's entry: ``action`` is ``list_<kind>``; no task."""
    data = event.list_data.model_dump(mode="json")
    before = {k: v[0] for k, v in event.changes.items()} or (data if event.event_type == "deleted" else None)
    after = {k: v[1] for k, v in event.changes.items()} or (None if event.event_type == "deleted" else data)
    text = f"{event.event_type.capitalize()} list {event.list_id} '{event.list_data.name}'"
    if event.event_type == "renamed" and "name" in event.changes:
        text = f"Renamed list {event.list_id} {event.changes['name'][0]!r} -> {event.changes['name'][1]!r}"
    return AuditEntry(
        event_id=event_id, user_id=event.user_id, task_id=None, action=f"list_{event.event_type}",
        summary=text, before=before, after=after, occurred_at=event.timestamp,
    )  # fmt: skip


def summary(event: TaskEvent) -> str:
    title = event.task_data.title
    if event.event_type != "updated" or not event.changes:
        return f"{event.event_type.capitalize()} task {event.task_id} '{title}'"
    parts = [
        f"{field} {values[0]!r} -> {values[1]!r}" if field in _SHOWN else field
        for field, values in event.changes.items()
    ]
    return f"Updated task {event.task_id} '{title}': " + ", ".join(parts)


def audit_subscription(uow: UnitOfWorkFactory) -> Subscription:
    return Subscription(
        topic=TASK_EVENTS, route=ROUTE, consumer=CONSUMER, handler=AuditLog(uow).handle,
        dead_letter_topic=f"{TASK_EVENTS}-dlq",
    )  # fmt: skip


class AuditItem(BaseModel):
    id: int
    event_id: str
    task_id: int | None
    action: str
    summary: str
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    occurred_at: datetime | None
    recorded_at: datetime


class AuditPage(BaseModel):
    items: list[AuditItem]
    next_before_id: int | None


def router(uow_factory: UnitOfWorkFactory, current_actor: Callable[..., Actor]) -> APIRouter:
    """``GET /api/audit``: the acting user's (``current_actor``, a FastAPI dependency) entries."""
    routes = APIRouter(prefix="/api", tags=["audit"])

    @routes.get("/audit", summary="Your audit log: who changed what and when, newest first")
    def list_audit(
        actor: Actor = Depends(current_actor),
        task_id: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
        before_id: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 100,
    ) -> AuditPage:
        statement = select(AuditEntry).where(AuditEntry.user_id == actor.user_id)
        if task_id is not None:
            statement = statement.where(AuditEntry.task_id == task_id)
        if before_id is not None:
            statement = statement.where(col(AuditEntry.id) < before_id)
        statement = statement.order_by(col(AuditEntry.id).desc()).limit(limit)
        with uow_factory() as uow:
            rows = uow.session.exec(statement).all()
            items = [AuditItem.model_validate(row, from_attributes=True) for row in rows]
        more = len(items) == limit
        return AuditPage(items=items, next_before_id=items[-1].id if more and items else None)

    return routes
