"""Repairing reminders: every pending reminder in the database gets its job, and late ones are settled.

    report = await reconcile(scheduling, uow_factory, now=utc_now(), grace=timedelta(hours=1))

Run at start-up (the embedded scheduler's timers are rebuilt this way) and periodically. A
pending reminder this process has no job for is scheduled; one whose time passed without
firing is scheduled to fire now if it is less than ``grace`` late, otherwise marked ``missed``.
Scheduling goes through the same per-task queues as live changes and re-reads the task first,
so a repair never overwrites a newer change.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from sqlalchemy import update
from sqlmodel import col, select

from events.reminders.scheduling import ReminderPlan, ReminderScheduling
from tasks.clock import as_utc, utc_now
from tasks.models import Task
from tasks.unit_of_work import UnitOfWorkFactory

log = logging.getLogger(__name__)

#: A known job whose time passed this long ago without the reminder firing is scheduled again.
SETTLE: Final = timedelta(seconds=30)
INTERVAL: Final = timedelta(seconds=30)


@dataclass(frozen=True)
class PendingReminder:
    task_id: int
    user_id: str
    remind_at: datetime


@dataclass(frozen=True)
class ReconcileReport:
    scheduled: int
    missed: int


def pending_reminders(uow_factory: UnitOfWorkFactory) -> list[PendingReminder]:
    with uow_factory() as uow:
        rows = uow.session.exec(
            select(Task.id, Task.owner_id, Task.remind_at).where(
                Task.reminder_state == "pending",
                col(Task.completed).is_(False),
                col(Task.remind_at).is_not(None),
            )
        ).all()
    return [PendingReminder(int(i), owner, as_utc(at)) for i, owner, at in rows if i is not None and at]


def mark_missed(uow_factory: UnitOfWorkFactory, task_ids: list[int], *, before: datetime) -> int:
    """Mark these reminders missed if they are still pending and due before ``before``."""
    if not task_ids:
        return 0
    with uow_factory() as uow:
        result = uow.session.exec(
            update(Task)
            .where(
                col(Task.id).in_(task_ids),
                col(Task.reminder_state) == "pending",
                col(Task.remind_at) < before,
            )
            .values(reminder_state="missed")
        )
        uow.commit()
        return int(getattr(result, "rowcount", 0) or 0)


async def reconcile(
    scheduling: ReminderScheduling,
    uow_factory: UnitOfWorkFactory,
    *,
    now: datetime,
    grace: timedelta,
    settle: timedelta = SETTLE,
) -> ReconcileReport:
    pending = await asyncio.to_thread(pending_reminders, uow_factory)
    late = [r.task_id for r in pending if now - r.remind_at > grace]
    missed = await asyncio.to_thread(mark_missed, uow_factory, late, before=now - grace)
    if missed:
        log.warning("%d reminders were more than %s late: marked missed", missed, grace)
    plans = []
    for r in pending:
        if now - r.remind_at > grace:
            continue
        overdue = now - r.remind_at > settle
        if scheduling.known.get(r.task_id) == r.remind_at and not overdue:
            continue
        due = now if r.remind_at < now else None
        plans.append(ReminderPlan(r.task_id, r.user_id, r.remind_at, due=due, verify=True))
    scheduling.submit(plans)
    return ReconcileReport(scheduled=len(plans), missed=missed)


@contextlib.asynccontextmanager
async def reconciling(
    scheduling: ReminderScheduling,
    uow_factory: UnitOfWorkFactory,
    *,
    grace: timedelta,
    interval: timedelta = INTERVAL,
    clock: Callable[[], datetime] = utc_now,
) -> AsyncIterator[None]:
    """Reconcile now, then every ``interval`` until the block exits."""

    async def loop() -> None:
        while True:
            try:
                report = await reconcile(scheduling, uow_factory, now=clock(), grace=grace)
                if report.scheduled or report.missed:
                    log.info("reminders reconciled: %s", report)
            except Exception:
                log.exception("reconciling reminders failed; trying again in %s", interval)
            await asyncio.sleep(interval.total_seconds())

    task = asyncio.create_task(loop())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
