"""The reminder jobs' lifespan and the ``task-updates`` follower, as the ``api`` and ``all`` roles
run them (``todo_agent.api``; the job scheduler is chosen by ``todo_agent.bootstrap``).

    async with reminder_jobs(scheduling, uow, grace=grace): ...   # while the app runs
    subscription = task_updates_follower(scheduling)                    # api role with Dapr

``reminder_jobs`` schedules reminder jobs after each commit and runs the reconciler. With Dapr
the ``api`` role also follows ``task-updates`` (on the route the real-time hub already gets:
every replica gets every event) to schedule the jobs of reminders other processes committed,
such as the recurrence role's next occurrence: a job calls back the app that scheduled it, so
the recurrence role cannot schedule it itself. The reconciler stays the safety net. (In the
``all`` role every commit goes through this process's after-commit.)
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Final

from events.ports import Delivery, Outcome, Subscription
from events.realtime import ROUTE
from events.reminders.reconciler import INTERVAL, reconciling
from events.reminders.scheduling import ReminderScheduling, plan_from_event
from tasks.events import TASK_UPDATES
from tasks.unit_of_work import UnitOfWorkFactory

#: The consumer name of the ``task-updates`` follower (it shares the hub's route and delivery).
FOLLOWER: Final = "reminder-jobs"


def task_updates_follower(scheduling: ReminderScheduling) -> Subscription:
    async def follow(delivery: Delivery) -> Outcome:
        if scheduling.running and (plan := plan_from_event(delivery.type, delivery.data)):
            scheduling.follow(plan)
        return Outcome.SUCCESS  # a job that could not be scheduled is the reconciler's to repair

    return Subscription(topic=TASK_UPDATES, route=ROUTE, consumer=FOLLOWER, handler=follow)


@contextlib.asynccontextmanager
async def reminder_jobs(
    scheduling: ReminderScheduling,
    uow: UnitOfWorkFactory,
    *,
    grace: timedelta,
    interval: timedelta = INTERVAL,
) -> AsyncIterator[ReminderScheduling]:
    """Schedule reminder jobs after each commit and reconcile them while the app runs."""
    await scheduling.start()
    uow.after_commit.append(scheduling.after_commit)
    try:
        async with reconciling(scheduling, uow, grace=grace, interval=interval):
            yield scheduling
    finally:
        with contextlib.suppress(ValueError):
            uow.after_commit.remove(scheduling.after_commit)
        await scheduling.stop()
        await scheduling.jobs.aclose()
