"""Firing a reminder job: the task's current state decides, and each reminder fires once.

    outcome = fire_reminder(uow_factory, task_id=7, remind_at=when, now=utc_now(), grace=hour)
    outcomes = fire_reminders(uow_factory, [FireRequest(7, when), FireRequest(8, other)], grace=hour)

A reminder fires only when its task still exists and is open, the reminder is still pending and
still the one the job was made for (same ``remind_at``), and its time has come. Then one
``ReminderDue`` goes to the outbox and the task's ``reminder_state`` becomes ``sent`` in the same
transaction, which also records ``(reminder-firing, "<task>@<remind_at>")`` in
``processed_events``: however often the job is delivered, the reminder fires once. A reminder
more than ``grace`` late (the system was down) is marked ``missed`` instead.

``POST /job/{name}`` is the Dapr callback (sidecar-only at the edge guard); the embedded
scheduler calls ``fire_job`` directly. Both go through ``GroupFiring``: callbacks that arrive
together are decided and committed in one transaction (``fire_reminders``), so a minute with
10,000 reminders costs a few hundred transactions, not 10,000; the rules above hold per request.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Final

from fastapi import APIRouter, Request, status
from fastapi.responses import JSONResponse
from sqlalchemy.exc import IntegrityError

from events.reminders.scheduling import task_id_of_job
from tasks.clock import as_utc, utc_now
from tasks.events import ReminderDue
from tasks.models import Task
from tasks.unit_of_work import UnitOfWork, UnitOfWorkFactory

log = logging.getLogger(__name__)

#: Job callbacks: only the sidecar may call paths under it (the composition root tells the edge guard).
JOB_ROUTE_PREFIX: Final = "/job/"

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


@dataclass(frozen=True)
class FireRequest:
    """One job delivery: the task it is for and the reminder time the job was made for."""

    task_id: int
    remind_at: datetime | None = None


def fire_reminder(
    uow_factory: UnitOfWorkFactory,
    *,
    task_id: int,
    remind_at: datetime | None,
    now: datetime,
    grace: timedelta,
) -> Fired:
    """Fire the reminder of ``task_id`` if it is still due (see the module docstring)."""
    [fired] = fire_reminders(uow_factory, [FireRequest(task_id, remind_at)], now=now, grace=grace)
    return fired


def fire_reminders(
    uow_factory: UnitOfWorkFactory,
    requests: Sequence[FireRequest],
    *,
    grace: timedelta,
    now: datetime | None = None,
) -> list[Fired]:
    """Decide and fire many job deliveries in one transaction (group commit); one outcome each.

    The tasks are locked in id order (``FOR UPDATE`` on PostgreSQL, so a concurrent batch or
    replica waits instead of deciding on a stale row). A task named twice fires once: the
    later request sees ``ALREADY_SENT``. ``now`` defaults to the time the transaction starts.
    If the commit hits a once-only key another delivery committed first, each request is
    decided again on its own.
    """
    if not requests:
        return []
    with uow_factory() as uow:
        tasks = uow.tasks.locked_many(request.task_id for request in requests)
        now = now or utc_now()
        done = _already_processed(uow, tasks.values())
        results = [_decide(uow, tasks.get(r.task_id), r, now, grace, done) for r in requests]
        if any(fired in (Fired.SENT, Fired.MISSED) for fired in results):
            try:
                uow.commit()
            except IntegrityError:  # a concurrent delivery of the same job committed first
                if len(requests) == 1:
                    return [Fired.ALREADY_SENT]
                results = []
    if not results:
        return [fire_reminder(uow_factory, task_id=r.task_id, remind_at=r.remind_at, now=now,
                              grace=grace) for r in requests]  # fmt: skip
    return results


def _already_processed(uow: UnitOfWork, tasks: Iterable[Task]) -> set[str]:
    """Once-only keys of these tasks' current reminders that already fired."""
    keys = [
        reminder_key(task.id, task.remind_at)
        for task in tasks
        if task.id is not None and task.remind_at is not None and task.reminder_state != "pending"
    ]
    return uow.processed_among(CONSUMER, keys)


def _decide(
    uow: UnitOfWork, task: Task | None, request: FireRequest, now: datetime, grace: timedelta, done: set[str]
) -> Fired:
    if task is None or task.id is None or task.remind_at is None or task.completed:
        return Fired.STALE
    current = as_utc(task.remind_at)
    if request.remind_at is not None and as_utc(request.remind_at) != current:
        return Fired.STALE
    key = reminder_key(task.id, current)
    if task.reminder_state != "pending":
        return Fired.ALREADY_SENT if key in done else Fired.STALE
    if current > now:  # early (clock skew): retry; without the job's time, a newer job exists
        return Fired.NOT_YET if request.remind_at is not None else Fired.STALE
    if now - current > grace:
        task.reminder_state = "missed"
        uow.session.add(task)
        log.warning("reminder of task %s was %s late: marked missed", task.id, now - current)
        return Fired.MISSED
    uow.mark_processed(CONSUMER, key)
    done.add(key)
    task.reminder_state = "sent"
    uow.session.add(task)
    uow.record(
        ReminderDue(
            user_id=task.owner_id, task_id=task.id, title=task.title, due_at=task.due_at,
            remind_at=current, timestamp=now,
        )
    )  # fmt: skip
    return Fired.SENT


class GroupFiring:
    """Job callbacks fire in batches: while ``lanes`` batches are in the database, callbacks
    that arrive wait and go together in the next one (up to ``max_batch``), so a burst of
    reminders costs a few transactions instead of one each. A lone callback starts at once.

        firing = GroupFiring(uow_factory, grace=timedelta(hours=1))
        outcome = await firing.fire(FireRequest(task_id=7, remind_at=when))
    """

    def __init__(
        self, uow_factory: UnitOfWorkFactory, *, grace: timedelta, lanes: int = 2, max_batch: int = 200
    ) -> None:
        self._uow = uow_factory
        self._grace = grace
        self._lanes = lanes
        self._max_batch = max_batch
        self._waiting: list[tuple[FireRequest, asyncio.Future[Fired]]] = []
        self._running: set[asyncio.Task[None]] = set()
        self.batches = 0  # transactions started so far

    async def fire(self, request: FireRequest) -> Fired:
        future: asyncio.Future[Fired] = asyncio.get_running_loop().create_future()
        self._waiting.append((request, future))
        if len(self._running) < self._lanes:
            self._start_batch()
        return await future

    def _start_batch(self) -> None:
        batch = self._waiting[: self._max_batch]
        del self._waiting[: self._max_batch]
        self.batches += 1
        task = asyncio.create_task(self._run(batch), name="reminder-firing")
        self._running.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._running.discard(task)
        if self._waiting and len(self._running) < self._lanes:
            self._start_batch()

    async def _run(self, batch: list[tuple[FireRequest, asyncio.Future[Fired]]]) -> None:
        requests = [request for request, _ in batch]
        try:
            results = await asyncio.to_thread(fire_reminders, self._uow, requests, grace=self._grace)
        except Exception as exc:  # the callers answer with an error; Dapr retries the jobs
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        for (_, future), fired in zip(batch, results, strict=True):
            if not future.done():
                future.set_result(fired)


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
    except (ValueError, OverflowError):  # OverflowError: year 1 with an offset
        return None


async def fire_job(firing: GroupFiring, name: str, data: Mapping[str, Any]) -> Fired:
    """Fire job ``name`` (``reminder-task-<id>``) against the database, off the event loop,
    grouped with the callbacks arriving at the same time."""
    task_id = task_id_of_job(name)
    if task_id is None:
        return Fired.STALE
    return await firing.fire(FireRequest(task_id, parse_remind_at(data)))


def router(firing: GroupFiring) -> APIRouter:
    """``POST /job/{name}``: daprd's job callback (sidecar-only: ``JOB_ROUTE_PREFIX``)."""
    routes = APIRouter(tags=["reminders"])

    @routes.post("/job/{name}", summary="Dapr job callback: fire a reminder if it is still due")
    async def job_callback(name: str, request: Request) -> JSONResponse:
        fired = await fire_job(firing, name, decode_job_body(await request.body()))
        if fired is Fired.NOT_YET:  # the scheduler's clock is ahead of ours: retry shortly
            return JSONResponse({"status": fired.value}, status.HTTP_503_SERVICE_UNAVAILABLE)
        return JSONResponse({"status": fired.value})

    return routes
