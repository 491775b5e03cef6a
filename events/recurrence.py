"""The recurrence consumer: completing a recurring task creates its next occurrence, once.

    subscription = recurrence_subscription(uow, tasks)   # topic task-events, consumer "recurrence"

Once means: the event id goes into ``processed_events`` in the same transaction as the new
task, the completed task's row is locked (PostgreSQL) while the next one is made, a task that
already has a next occurrence gets no other (the unique ``previous_occurrence_id`` backs this
up across replicas), and a task reopened before the event is handled gets nothing until it is
completed again. Unreadable events are dropped (dead-letter); database trouble is retried.
"""

from __future__ import annotations

import logging
from typing import Final

from events.consuming import apply_in_thread, read_task_event
from events.contracts import TASK_EVENTS, TaskEvent
from events.ports import Delivery, Outcome, Subscription
from tasks.clock import utc_now
from tasks.models import Task
from tasks.service import TaskService
from tasks.unit_of_work import UnitOfWorkFactory

log = logging.getLogger(__name__)

CONSUMER: Final = "recurrence"
ROUTE: Final = "/events/task-events"


class NextOccurrence:
    def __init__(self, uow_factory: UnitOfWorkFactory, tasks: TaskService) -> None:
        self._uow = uow_factory
        self._tasks = tasks

    async def handle(self, delivery: Delivery) -> Outcome:
        event = read_task_event(CONSUMER, delivery)
        if event is None:
            return Outcome.DROP
        if (
            not isinstance(event, TaskEvent)
            or event.event_type != "completed"
            or not event.task_data.recurrence
        ):
            return Outcome.SUCCESS
        return await apply_in_thread(CONSUMER, delivery.id, lambda: self.apply(delivery.id, event))

    def apply(self, event_id: str, event: TaskEvent) -> Task | None:
        """Create the next occurrence for a completion event; returns it (None: nothing to do)."""
        with self._uow() as uow:
            if not uow.first_time(CONSUMER, event_id):
                return None
            done = uow.tasks.locked(event.task_id)
            created = None
            if done is not None and done.id is not None and done.owner_id == event.user_id and done.completed:
                if uow.tasks.next_of(done.id) is None:
                    created = self._tasks.add_next_occurrence(uow, done, now=utc_now())
            uow.mark_processed(CONSUMER, event_id)
            uow.commit()
            return created


def recurrence_subscription(uow: UnitOfWorkFactory, tasks: TaskService) -> Subscription:
    consumer = NextOccurrence(uow, tasks)
    return Subscription(
        topic=TASK_EVENTS, route=ROUTE, consumer=CONSUMER, handler=consumer.handle,
        dead_letter_topic=f"{TASK_EVENTS}-dlq",
    )  # fmt: skip
