"""What the reminders part adds to each process role (see ``todo_agent.roles``).

- ``api`` / ``all``: ``POST /job/{name}`` (job callbacks), ``/api/notifications``, and in the
  lifespan the job scheduler (daprd's Jobs API with Dapr configured, else the in-process
  one), the after-commit scheduling of reminder jobs, and the reconciler.
- ``api`` with Dapr: a second consumer on the ``task-updates`` route the real-time hub already
  gets (every replica gets every event) that schedules the jobs of reminders other processes
  committed, such as the recurrence role's next occurrence: a job calls back the app that
  scheduled it, so the recurrence role cannot schedule it itself. The reconciler stays the
  safety net. (In the ``all`` role every commit goes through this process's after-commit.)
- ``notifications`` / ``all``: the ``reminders`` subscriber (``/events/reminders``) and, in the
  lifespan, the retrier of email and webhook deliveries (``retrier``).

Container extras it sets while running: ``"jobs"`` (the JobScheduler), ``"reminders"``
(the ``ReminderScheduling``) and ``"notification_retrier"`` (the ``NotificationRetrier``).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import AsyncIterator, Mapping
from datetime import timedelta
from typing import Any, Final

from fastapi import FastAPI

from events.ports import Delivery, Outcome, Subscription
from events.reminders import firing, routes
from events.reminders.firing import Fired, fire_job
from events.reminders.jobs import DaprJobScheduler, InProcessJobScheduler
from events.reminders.notifications import reminders_subscription
from events.reminders.reconciler import INTERVAL, reconciling
from events.reminders.retrier import notification_retries
from events.reminders.scheduling import ReminderScheduling, plan_from_event
from tasks.events import TASK_UPDATES
from todo_agent.api import Hook, LifespanHook
from todo_agent.bootstrap import Container

#: The consumer name of the ``task-updates`` follower (it shares the hub's route and delivery).
FOLLOWER: Final = "reminder-jobs"


def extensions(container: Container) -> list[Hook]:
    hooks: list[Hook] = []
    if container.role in ("api", "all"):
        hooks += [firing.install, routes.install]
    if container.role == "api" and container.settings.dapr_enabled:
        hooks.append(_follow_task_updates)
    if container.role in ("notifications", "all"):
        hooks.append(_mount_subscriber)
    return hooks


def lifespans(container: Container) -> list[LifespanHook]:
    hooks: list[LifespanHook] = []
    if container.role in ("api", "all"):
        hooks.append(reminder_jobs)
    if container.role in ("notifications", "all"):
        hooks.append(notification_retries)
    return hooks


def _mount_subscriber(app: FastAPI, container: Container) -> None:
    from events.subscriber import mount

    mount(app, container, reminders_subscription(container))


def _follow_task_updates(app: FastAPI, container: Container) -> None:
    from events.realtime import ROUTE
    from events.subscriber import mount

    async def follow(delivery: Delivery) -> Outcome:
        scheduling: ReminderScheduling | None = container.extras.get("reminders")
        if scheduling is not None and (plan := plan_from_event(delivery.type, delivery.data)):
            scheduling.follow(plan)
        return Outcome.SUCCESS  # a job that could not be scheduled is the reconciler's to repair

    mount(app, container, Subscription(topic=TASK_UPDATES, route=ROUTE, consumer=FOLLOWER, handler=follow))


def job_scheduler(container: Container) -> DaprJobScheduler | InProcessJobScheduler:
    settings = container.settings
    if not settings.dapr_enabled:
        return InProcessJobScheduler(on_due=functools.partial(_fire_in_process, container))
    if settings.dapr_http_port is None:
        raise RuntimeError(
            "Reminders use daprd's HTTP Jobs API: set DAPR_HTTP_PORT as well as DAPR_GRPC_PORT."
        )
    token = settings.dapr_api_token.get_secret_value() if settings.dapr_api_token else None
    return DaprJobScheduler(http_url=f"http://127.0.0.1:{settings.dapr_http_port}", api_token=token)


async def _fire_in_process(container: Container, name: str, data: Mapping[str, Any]) -> bool:
    return await fire_job(container, name, data) is not Fired.NOT_YET


@contextlib.asynccontextmanager
async def reminder_jobs(container: Container, *, interval: timedelta = INTERVAL) -> AsyncIterator[None]:
    """Schedule reminder jobs after each commit and reconcile them while the app runs."""
    jobs = job_scheduler(container)
    scheduling = ReminderScheduling(jobs, container.uow)
    await scheduling.start()
    container.extras["jobs"] = jobs
    container.extras["reminders"] = scheduling
    container.uow.after_commit.append(scheduling.after_commit)
    grace = timedelta(minutes=container.settings.reminder_grace_minutes)
    try:
        async with reconciling(scheduling, container.uow, grace=grace, interval=interval):
            yield
    finally:
        with contextlib.suppress(ValueError):
            container.uow.after_commit.remove(scheduling.after_commit)
        await scheduling.stop()
        await jobs.aclose()
        container.extras.pop("jobs", None)
        container.extras.pop("reminders", None)
