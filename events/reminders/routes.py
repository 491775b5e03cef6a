"""The signed-in user's in-app notifications: list them, mark them read.

GET  /api/notifications?unread=true&limit=50
POST /api/notifications/{id}/read
POST /api/notifications/read-all
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, Query, status
from pydantic import BaseModel
from sqlalchemy import update
from sqlmodel import col, select

from tasks.clock import utc_now
from tasks.inputs import MAX_ID
from tasks.models import Notification
from tasks.service import Actor
from tasks.unit_of_work import UnitOfWorkFactory

IN_APP = "in_app"


class NotificationView(BaseModel):
    id: int
    task_id: int | None
    title: str
    body: str
    due_at: datetime | None
    remind_at: datetime | None
    created_at: datetime
    read: bool

    @classmethod
    def of(cls, row: Notification) -> NotificationView:
        assert row.id is not None
        return cls(
            id=row.id, task_id=row.task_id, title=row.title, body=row.body, due_at=row.due_at,
            remind_at=row.remind_at, created_at=row.created_at, read=row.read_at is not None,
        )  # fmt: skip


class NotificationList(BaseModel):
    items: list[NotificationView]
    unread: int


def list_notifications(
    uow_factory: UnitOfWorkFactory, user_id: str, *, unread_only: bool, limit: int
) -> NotificationList:
    mine = (Notification.user_id == user_id, Notification.channel == IN_APP)
    with uow_factory() as uow:
        query = select(Notification).where(*mine)
        if unread_only:
            query = query.where(col(Notification.read_at).is_(None))
        rows = uow.session.exec(query.order_by(col(Notification.id).desc()).limit(limit)).all()
        unread = uow.session.exec(select(Notification.id).where(*mine, col(Notification.read_at).is_(None)))
        return NotificationList(items=[NotificationView.of(r) for r in rows], unread=len(unread.all()))


def mark_read(uow_factory: UnitOfWorkFactory, user_id: str, notification_id: int | None) -> int:
    """Mark one (or, with None, every) unread notification of ``user_id`` read."""
    conditions: list[Any] = [
        col(Notification.user_id) == user_id,
        col(Notification.channel) == IN_APP,
        col(Notification.read_at).is_(None),
    ]
    if notification_id is not None:
        conditions.append(col(Notification.id) == notification_id)
    with uow_factory() as uow:
        result = uow.session.exec(update(Notification).where(*conditions).values(read_at=utc_now()))
        uow.commit()
        return int(getattr(result, "rowcount", 0) or 0)


def router(uow_factory: UnitOfWorkFactory, current_actor: Callable[..., Actor]) -> APIRouter:
    """The acting user's (``current_actor``, a FastAPI dependency) in-app notifications."""
    routes = APIRouter(prefix="/api/notifications", tags=["notifications"])

    @routes.get("", summary="My notifications, newest first")
    def get_notifications(
        actor: Actor = Depends(current_actor),
        unread: bool = False,
        limit: Annotated[int, Query(ge=1, le=200)] = 50,
    ) -> NotificationList:
        return list_notifications(uow_factory, actor.user_id, unread_only=unread, limit=limit)

    @routes.post("/{notification_id}/read", summary="Mark a notification read")
    def read_one(
        notification_id: Annotated[int, Path(ge=1, le=MAX_ID)], actor: Actor = Depends(current_actor)
    ) -> NotificationView:
        mark_read(uow_factory, actor.user_id, notification_id)
        with uow_factory() as uow:
            row = uow.session.get(Notification, notification_id)
            if row is None or row.user_id != actor.user_id or row.channel != IN_APP:
                raise HTTPException(status.HTTP_404_NOT_FOUND, f"Notification {notification_id} not found.")
            return NotificationView.of(row)

    @routes.post("/read-all", summary="Mark all my notifications read")
    def read_all(actor: Actor = Depends(current_actor)) -> dict[str, int]:
        return {"marked_read": mark_read(uow_factory, actor.user_id, None)}

    return routes
