"""Keeping one job per pending reminder, from the task rows each commit writes to the outbox.

    scheduling = ReminderScheduling(jobs, uow_factory)
    await scheduling.start()                  # on the app's event loop
    uow_factory.after_commit.append(scheduling.after_commit)
    ...
    await scheduling.drain()                  # wait until every change so far is applied
    await scheduling.stop()

Every ``todo.task.*.v1`` row carries the task snapshot. A snapshot with a pending reminder
(``remind_at`` set) creates or overwrites the job ``reminder-task-<id>``; a completed or
deleted task, or a cleared reminder, deletes it. Changes are applied in commit order per task
(one queue per shard of task ids), after commit, off the committing thread. A failure leaves
the reminder for the reconciler; the firing check keeps a stale job from sending anything.

Changes committed by another process (the recurrence role's next occurrences; with several api
replicas, each other's changes) reach this one as ``task-updates`` events:

    plan = plan_from_event(delivery.type, delivery.data)
    if plan is not None:
        scheduling.follow(plan)       # queued unless our job already matches it

Such a plan re-reads the task before it is applied, so an event that arrives late never
overwrites a newer change, and it deletes only jobs this process scheduled. Job names are
stable and scheduling overwrites, so several replicas following the same event is harmless.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Final

from events.ports import JobScheduler
from tasks.clock import as_utc
from tasks.inputs import MAX_ID
from tasks.models import OutboxEvent
from tasks.unit_of_work import UnitOfWorkFactory

log = logging.getLogger(__name__)

JOB_PREFIX: Final = "reminder-task-"
_REMINDER_FIELDS: Final = frozenset({"remind_at", "due_at", "completed"})


def job_name(task_id: int) -> str:
    return f"{JOB_PREFIX}{task_id}"


def task_id_of_job(name: str) -> int | None:
    if not name.startswith(JOB_PREFIX):
        return None
    rest = name[len(JOB_PREFIX) :]
    # ASCII digits only ("²".isdigit() is true), and an id a task can have.
    if not (rest.isascii() and rest.isdigit() and len(rest) <= 10) or not 1 <= int(rest) <= MAX_ID:
        return None
    return int(rest)


@dataclass(frozen=True)
class ReminderPlan:
    """What one change means for the job: keep it at ``remind_at``, or delete it (None).

    ``due`` is when the job should call back (later than ``remind_at`` when repairing a
    reminder that is already late); ``verify`` re-reads the task first (reconciler plans are
    read outside the commit order, so they must not overwrite a newer change).
    """

    task_id: int
    user_id: str
    remind_at: datetime | None
    must_cancel: bool = False
    due: datetime | None = None
    verify: bool = False
    #: The trace of the change that set the reminder; the job carries it, and its firing links to it.
    traceparent: str | None = None


def plan_from_row(row: OutboxEvent) -> ReminderPlan | None:
    """The reminder plan of a ``todo.task.*`` outbox row; None for rows that change nothing."""
    if not row.event_type.startswith("todo.task.") or row.task_id is None:
        return None
    plan = _plan(row.task_id, row.user_id, row.payload)
    return replace(plan, traceparent=row.trace_context) if row.trace_context else plan


def plan_from_event(event_type: str, data: Mapping[str, Any]) -> ReminderPlan | None:
    """The plan for a task change another process committed (the ``data`` of a ``task-updates``
    event): checked against the database before it is applied, and it deletes only a job this
    process scheduled. None for events that are not task changes."""
    task_id, user_id = data.get("task_id"), data.get("user_id")
    if (
        not event_type.startswith("todo.task.")
        or not isinstance(task_id, int)
        or not isinstance(user_id, str)
    ):
        return None
    return replace(_plan(task_id, user_id, data), must_cancel=False, verify=True)


def _plan(task_id: int, user_id: str, payload: Mapping[str, Any]) -> ReminderPlan:
    kind = payload.get("event_type")
    data = payload.get("task_data") or {}
    changes = payload.get("changes") or {}
    if kind == "deleted" or data.get("completed"):
        # A job exists only for a pending reminder: the deleted task's snapshot shows it, a
        # completion records it going away in ``changes``. Otherwise there is nothing to delete
        # (unless this process knows a job, see ``apply``); a stale job left by a failed delete
        # fires into the firing check, which sends nothing.
        had_one = data.get("remind_at") is not None or "remind_at" in changes
        return ReminderPlan(task_id, user_id, None, must_cancel=had_one)
    remind_at = _parse(data.get("remind_at"))
    touched = bool(_REMINDER_FIELDS & set(changes))
    if remind_at is None and (kind == "created" or not touched):
        return ReminderPlan(task_id, user_id, None)  # cancel only if this process knows a job
    return ReminderPlan(task_id, user_id, remind_at, must_cancel=remind_at is None)


def _parse(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    return as_utc(datetime.fromisoformat(value.replace("Z", "+00:00")))


def current_reminder(uow_factory: UnitOfWorkFactory, task_id: int) -> datetime | None:
    """The task's pending reminder time now (None: no task, done, or nothing pending)."""
    with uow_factory() as uow:
        task = uow.tasks.get(task_id)
        if task is None or task.completed or task.reminder_state != "pending" or task.remind_at is None:
            return None
        return as_utc(task.remind_at)


class ReminderScheduling:
    def __init__(self, jobs: JobScheduler, uow_factory: UnitOfWorkFactory, *, shards: int = 8) -> None:
        self.jobs = jobs
        self._uow = uow_factory
        #: task id -> the remind_at this process last scheduled a job for.
        self.known: dict[int, datetime] = {}
        self._shards = shards
        self._queues: list[asyncio.Queue[ReminderPlan]] = [asyncio.Queue() for _ in range(shards)]
        self._workers: list[asyncio.Task[None]] = []
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        """The loop the jobs are scheduled from (set by ``start``)."""
        return self._loop

    @property
    def shards(self) -> int:
        """How many jobs are scheduled at a time (one queue and worker each)."""
        return self._shards

    @property
    def running(self) -> bool:
        """Between ``start`` and ``stop``."""
        return bool(self._workers)

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        # Fresh queues on every start: a queue belongs to the loop that first waited on it.
        self._queues = [asyncio.Queue() for _ in range(self._shards)]
        self._workers = [asyncio.create_task(self._work(q)) for q in self._queues]

    async def stop(self) -> None:
        for worker in self._workers:
            worker.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        self._workers = []

    def after_commit(self, rows: Sequence[OutboxEvent]) -> None:
        """Unit-of-work listener: runs in the committing thread, hops to the loop."""
        plans = [plan for row in rows if (plan := plan_from_row(row)) is not None]
        if plans and self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self.submit, plans)

    def follow(self, plan: ReminderPlan) -> bool:
        """Queue a change committed elsewhere (``plan_from_event``) unless this process already
        has the job it asks for; True if queued. Runs on the loop's thread."""
        if self.known.get(plan.task_id) == plan.remind_at:
            return False  # our job is at that time already (or, for None, there is no job of ours)
        self.submit([plan])
        return True

    def submit(self, plans: Sequence[ReminderPlan]) -> None:
        """Queue plans (on the loop's thread); each task's plans apply in order."""
        for plan in plans:
            self._queues[plan.task_id % len(self._queues)].put_nowait(plan)

    async def drain(self) -> None:
        await asyncio.gather(*(q.join() for q in self._queues))

    async def _work(self, queue: asyncio.Queue[ReminderPlan]) -> None:
        while True:
            plan = await queue.get()
            try:
                await self.apply(plan)
            except Exception as exc:
                self.known.pop(plan.task_id, None)  # the reconciler will try again
                log.warning("could not update the reminder job of task %s: %s", plan.task_id, exc)
            finally:
                queue.task_done()

    async def apply(self, plan: ReminderPlan) -> None:
        name = job_name(plan.task_id)
        if plan.verify:
            now_at = await asyncio.to_thread(current_reminder, self._uow, plan.task_id)
            if now_at != plan.remind_at:
                return  # changed since the reconciler read it; that change has its own plan
        if plan.remind_at is None:
            if plan.must_cancel or plan.task_id in self.known:
                self.known.pop(plan.task_id, None)
                await self.jobs.cancel(name)
            return
        if plan.due is None and self.known.get(plan.task_id) == plan.remind_at:
            return
        data = {"task_id": plan.task_id, "user_id": plan.user_id, "remind_at": plan.remind_at.isoformat()}
        if plan.traceparent:
            data["traceparent"] = plan.traceparent
        await self.jobs.schedule(name, due=plan.due or plan.remind_at, data=data)
        self.known[plan.task_id] = plan.remind_at
