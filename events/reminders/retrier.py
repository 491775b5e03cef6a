"""Trying reminder deliveries again, off the event stream (notifications role, and ``all``).

    retrier = NotificationRetrier(uow, profiles, settings)
    async with notification_retries(retrier):   # a lifespan hook: retrier.running while inside
        ...

The subscriber makes one attempt per channel and records a transient failure as ``retrying``
with the time of its next attempt, so the ``reminders`` partition moves on. The retrier claims
the deliveries that are due (``deliveries.claim_due``: replicas claim different rows, and the
claim of a sender that died expires), sends each again to the address or URL the user has saved
now, and records how it ended: ``sent``, ``retrying`` with a longer backoff, or ``failed``
(a permanent failure, or ``TODO_NOTIFY_MAX_ATTEMPTS`` used up), which writes the delivery's dead
letter for ``reminders-dlq`` in the same transaction (``dead_letters``). In-app notifications are
never retried: they are written once with the event.

It sleeps until the earliest delivery is due (at most ``POLL``, for rows other replicas wrote)
and wakes early when this process's subscriber records a retry.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timedelta
from typing import Any, Final

from events.reminders.deliveries import Claim, NotifySettings, RetryPolicy, Status, claim_due, next_due
from events.reminders.notifications import attempt, message_of, recipient_of, send
from events.waiting import wait_at_most
from tasks.clock import utc_now
from tasks.profiles import Profiles
from tasks.unit_of_work import UnitOfWorkFactory

log = logging.getLogger(__name__)

#: The longest sleep between two looks at the database.
POLL: Final = timedelta(seconds=5)
#: Deliveries claimed (and sent concurrently) per round.
BATCH: Final = 50
#: At shutdown, how long first attempts still running may take to finish.
DRAIN: Final = timedelta(seconds=5)


class NotificationRetrier:
    def __init__(
        self, uow: UnitOfWorkFactory, profiles: Profiles, settings: NotifySettings, *,
        policy: RetryPolicy | None = None, poll: timedelta = POLL, batch: int = BATCH,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:  # fmt: skip
        self._uow = uow
        self._profiles = profiles
        self._settings = settings
        self._policy = policy or RetryPolicy.from_settings(settings)
        self._poll = poll.total_seconds()
        self._batch = batch
        self._clock = clock
        self._wakeup = asyncio.Event()
        self._adopted: set[asyncio.Task[Any]] = set()
        self._loop: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        return self._loop is not None

    def wake(self) -> None:
        self._wakeup.set()

    def adopt(self, attempt: asyncio.Task[Any]) -> None:
        """Keep a first attempt the subscriber stopped waiting for until it ends."""
        self._adopted.add(attempt)
        attempt.add_done_callback(self._adopted_ended)

    async def retry_due(self) -> int:
        """One round: claim the deliveries due now and try each again; how many were claimed."""
        uow, now = self._uow, self._clock()
        claims = await asyncio.to_thread(claim_due, uow, now=now, policy=self._policy, limit=self._batch)
        ended = await asyncio.gather(*(self._retry(claim) for claim in claims), return_exceptions=True)
        for claim, result in zip(claims, ended, strict=True):
            if isinstance(result, BaseException):  # its claim expires and it is tried again
                log.error("retrying reminder %s via %s failed unexpectedly", claim.event_id, claim.channel,
                          exc_info=result)  # fmt: skip
        return len(claims)

    async def _retry(self, claim: Claim) -> Status:
        async def send_again() -> None:
            message = message_of(claim)
            recipient = await recipient_of(self._profiles, claim.user_id)
            await send(claim.channel, self._settings, recipient, claim.event_id, message)

        status = await attempt(self._uow, claim, self._policy, send_again, clock=self._clock)
        if status == "sent":
            log.info("reminder %s via %s sent on attempt %d", claim.event_id, claim.channel, claim.attempts)
        return status

    async def run(self) -> None:
        while True:
            self._wakeup.clear()
            try:
                while await self.retry_due() >= self._batch:
                    pass  # a full round: more may be due already
                wait = await self._until_next_due()
            except Exception:
                log.exception("retrying reminder deliveries failed; trying again in %s s", self._poll)
                wait = self._poll
            await wait_at_most(self._wakeup, seconds=wait)

    async def _until_next_due(self) -> float:
        earliest = await asyncio.to_thread(next_due, self._uow)
        if earliest is None:
            return self._poll
        return min(self._poll, max(0.0, (earliest - self._clock()).total_seconds()))

    def start(self) -> None:
        self._loop = asyncio.create_task(self.run(), name="notification-retrier")

    async def aclose(self) -> None:
        loop, self._loop = self._loop, None
        if loop is not None:
            loop.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await loop
        if self._adopted:  # unfinished ones stay claimed until their lease expires
            _, unfinished = await asyncio.wait(set(self._adopted), timeout=DRAIN.total_seconds())
            for task in unfinished:
                task.cancel()

    def _adopted_ended(self, task: asyncio.Task[Any]) -> None:
        self._adopted.discard(task)
        if task.cancelled():
            return
        if (error := task.exception()) is not None:
            log.error("reminder delivery %s failed unexpectedly; it is tried again when its claim expires",
                      task.get_name(), exc_info=error)  # fmt: skip
        elif task.result() == "retrying":
            self.wake()


@contextlib.asynccontextmanager
async def notification_retries(retrier: NotificationRetrier) -> AsyncIterator[NotificationRetrier]:
    """Run ``retrier`` while the app runs."""
    retrier.start()
    try:
        yield retrier
    finally:
        await retrier.aclose()
