"""Firing a reminder job: the task's current state decides, and each reminder fires once.

    outcome = fire_reminder(uow_factory, task_id=7, remind_at=when, now=utc_now(), grace=hour)

A reminder fires only when its task still exists and is open, the reminder is still pending and
still the one the job was made for (same ``remind_at``), and its time has come. Then one
``ReminderDue`` goes to the outbox and the task's ``reminder_state`` becomes ``sent`` in the same
transaction, which also records ``(reminder-firing, "<task>@<remind_at>")`` in
``processed_events``: however often the job is delivered, the reminder fires once. A reminder
more than ``grace`` late (the system was down) is marked ``missed`` instead.

``POST /job/{name}`` is the Dapr callback; the embedded scheduler calls ``fire_job`` directly.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import json
import logging
from collections.abc import Mapping
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Final

from fastapi import APIRouter, FastAPI, HTTPException, Request, status
from fastapi.responses import JSONResponse
from sqlalchemy.exc import IntegrityError
from sqlmodel import select

from events.reminders.scheduling import task_id_of_job
from tasks.clock import as_utc, utc_now
from tasks.events import ReminderDue
from tasks.models import ProcessedEvent, Task
from tasks.unit_of_work import UnitOfWorkFactory
from todo_agent.bootstrap import Container

log = logging.getLogger(__name__)

CONSUMER: Final = "reminder-firing"


class Fired(StrEnum):
    """What a job delivery did. Only ``NOT_YET`` asks the scheduler to try again later."""

    SENT = "sent"
    ALREADY_SENT = "already_sent"
    STALE = "stale"  # the task is gone, done, or its reminder changed: nothing to send
    MISSED = "missed"
    NOT_YET = "not_yet"


def reminder_key(task_id: int, remind_at: datetime) -> str:
    return f"{task_id}@{as_utc(remind_at).isoformat()}"


def fire_reminder(
    uow_factory: UnitOfWorkFactory,
    *,
    task_id: int,
    remind_at: datetime | None,
    now: datetime,
    grace: timedelta,
) -> Fired:
    """Fire the reminder of ``task_id`` if it is still due (see the module docstring)."""
    with uow_factory() as uow:
        statement = select(Task).where(Task.id == task_id)
        if uow.is_postgres:
            statement = statement.with_for_update()
        task = uow.session.exec(statement).first()
        if task is None or task.remind_at is None or task.completed:
            return Fired.STALE
        current = as_utc(task.remind_at)
        if remind_at is not None and as_utc(remind_at) != current:
            return Fired.STALE
        if task.reminder_state != "pending":
            seen = uow.session.get(ProcessedEvent, (CONSUMER, reminder_key(task_id, current)))
            return Fired.ALREADY_SENT if seen else Fired.STALE
        if current > now:  # early (clock skew): retry; without the job's time, a newer job exists
            return Fired.NOT_YET if remind_at is not None else Fired.STALE
        if now - current > grace:
            task.reminder_state = "missed"
            uow.session.add(task)
            uow.commit()
            log.warning("reminder of task %s was %s late: marked missed", task_id, now - current)
            return Fired.MISSED
        uow.session.add(ProcessedEvent(consumer=CONSUMER, event_id=reminder_key(task_id, current)))
        task.reminder_state = "sent"
        uow.session.add(task)
        uow.record(
            ReminderDue(
                user_id=task.owner_id, task_id=task_id, title=task.title, due_at=task.due_at,
                remind_at=current, timestamp=now,
            )
        )  # fmt: skip
        try:
            uow.commit()
        except IntegrityError:  # a concurrent delivery of the same job committed first
            return Fired.ALREADY_SENT
        return Fired.SENT


def decode_job_body(body: bytes) -> dict[str, Any]:
    """The job's data: a raw JSON object, or the ``{"type_url", "value": base64}`` Any shape."""
    if not body.strip():
        return {}
    try:
        decoded = json.loads(body)
    except ValueError:
        return {}
    if isinstance(decoded, dict) and "value" in decoded and ("type_url" in decoded or "@type" in decoded):
        return _unpack_any(decoded["value"])
    return decoded if isinstance(decoded, dict) else {}


def _unpack_any(value: Any) -> dict[str, Any]:
    if isinstance(value, dict):
        return value
    if not isinstance(value, str):
        return {}
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raw = value.encode()
    try:
        decoded = json.loads(raw)
    except ValueError:
        from google.protobuf import json_format, struct_pb2

        message = struct_pb2.Value()
        try:
            message.ParseFromString(raw)
        except Exception:
            return {}
        decoded = json_format.MessageToDict(message)
    return decoded if isinstance(decoded, dict) else {}


def parse_remind_at(data: Mapping[str, Any]) -> datetime | None:
    raw = data.get("remind_at")
    if not isinstance(raw, str):
        return None
    try:
        return as_utc(datetime.fromisoformat(raw.replace("Z", "+00:00")))
    except ValueError:
        return None


async def fire_job(container: Container, name: str, data: Mapping[str, Any]) -> Fired:
    """Fire job ``name`` (``reminder-task-<id>``) against the database, off the event loop."""
    task_id = task_id_of_job(name)
    if task_id is None:
        return Fired.STALE
    grace = timedelta(minutes=container.settings.reminder_grace_minutes)
    return await asyncio.to_thread(
        fire_reminder, container.uow, task_id=task_id, remind_at=parse_remind_at(data),
        now=utc_now(), grace=grace,
    )  # fmt: skip


def _check_app_token(request: Request, container: Container) -> None:
    expected = container.settings.app_api_token
    if expected is None:
        return
    given = request.headers.get("dapr-api-token", "")
    if not hmac.compare_digest(given.encode(), expected.get_secret_value().encode()):
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "Missing or wrong dapr-api-token.")


def install(app: FastAPI, container: Container) -> None:
    router = APIRouter(tags=["reminders"])

    @router.post("/job/{name}", summary="Dapr job callback: fire a reminder if it is still due")
    async def job_callback(name: str, request: Request) -> JSONResponse:
        _check_app_token(request, container)
        fired = await fire_job(container, name, decode_job_body(await request.body()))
        if fired is Fired.NOT_YET:  # the scheduler's clock is ahead of ours: retry shortly
            return JSONResponse({"status": fired.value}, status.HTTP_503_SERVICE_UNAVAILABLE)
        return JSONResponse({"status": fired.value})

    app.include_router(router)
