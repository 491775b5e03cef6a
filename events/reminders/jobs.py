"""Two ``JobScheduler`` adapters: daprd's Jobs API, and a timer table for the embedded default.

    jobs = DaprJobScheduler(http_url="http://127.0.0.1:3500", api_token=None)
    await jobs.schedule("reminder-task-7", due=when, data={"task_id": 7, ...})
    await jobs.cancel("reminder-task-7")

    jobs = InProcessJobScheduler(on_due=fire)   # fire(name, data) -> True when done
    await jobs.schedule(...)                     # calls fire(name, data) at ``due``, never before

Dapr jobs call back ``POST /job/<name>`` on the app that scheduled them, and are retried by the
failure policy when the app answers with an error. The in-process scheduler keeps nothing on
disk: reminders live in the database and the reconciler rebuilds the timers at start-up.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime, timedelta
from typing import Any, Final

import httpx

from events.ports import JobScheduler
from tasks.clock import as_utc, utc_now

log = logging.getLogger(__name__)

#: Retry a job whose callback failed every 2 s, 30 times (one minute) before Dapr gives up.
RETRY_INTERVAL: Final = timedelta(seconds=2)
MAX_RETRIES: Final = 30


class JobSchedulingError(Exception):
    """daprd refused or could not take the job; the reconciler will try again."""


def rfc3339(when: datetime) -> str:
    return as_utc(when).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class DaprJobScheduler(JobScheduler):
    """Jobs through daprd's HTTP API (``/v1.0/jobs/<name>``), one-shot at ``dueTime``."""

    def __init__(
        self,
        *,
        http_url: str,
        api_token: str | None = None,
        retry_interval: timedelta = RETRY_INTERVAL,
        max_retries: int = MAX_RETRIES,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self._http_url = http_url
        self._headers = {"dapr-api-token": api_token} if api_token else {}
        self._given = client
        self._own: httpx.AsyncClient | None = None
        self._policy = {
            "constant": {"interval": f"{int(retry_interval.total_seconds())}s", "maxRetries": max_retries}
        }

    async def schedule(self, name: str, *, due: datetime, data: Mapping[str, Any]) -> None:
        body = {"dueTime": rfc3339(due), "data": dict(data), "overwrite": True, "failurePolicy": self._policy}
        try:
            response = await self._client.post(f"/v1.0/jobs/{name}", json=body)
        except httpx.HTTPError as exc:
            raise JobSchedulingError(f"Could not reach daprd to schedule job {name}: {exc}") from exc
        if response.status_code >= 300:
            raise JobSchedulingError(
                f"daprd refused job {name}: HTTP {response.status_code} {response.text[:300]}"
            )

    async def cancel(self, name: str) -> None:
        try:
            response = await self._client.delete(f"/v1.0/jobs/{name}")
        except httpx.HTTPError as exc:
            raise JobSchedulingError(f"Could not reach daprd to delete job {name}: {exc}") from exc
        if response.status_code >= 300 and not _is_not_found(response):
            raise JobSchedulingError(
                f"daprd could not delete job {name}: HTTP {response.status_code} {response.text[:300]}"
            )

    async def exists(self, name: str) -> bool:
        response = await self._client.get(f"/v1.0/jobs/{name}")
        if response.status_code < 300:
            return True
        if _is_not_found(response):
            return False
        raise JobSchedulingError(f"daprd could not read job {name}: HTTP {response.status_code}")

    @property
    def _client(self) -> httpx.AsyncClient:
        """The given client, else one of its own made on first use (again after ``aclose``)."""
        if self._given is not None:
            return self._given
        if self._own is None:
            self._own = httpx.AsyncClient(
                base_url=self._http_url, headers=self._headers, timeout=10.0,
                limits=httpx.Limits(max_connections=64),
            )  # fmt: skip
        return self._own

    async def aclose(self) -> None:
        client = self._given or self._own
        self._own = None
        if client is not None:
            await client.aclose()


def _is_not_found(response: httpx.Response) -> bool:
    return response.status_code == 404 or "not found" in response.text.lower()


OnDue = Callable[[str, Mapping[str, Any]], Awaitable[bool]]


class InProcessJobScheduler(JobScheduler):
    """One asyncio timer per job name; ``on_due`` returning False or raising is retried.

    Timers run on the loop that created the scheduler; ``schedule``/``cancel`` must be awaited
    on that loop (hop there with ``loop.call_soon_threadsafe`` from other threads).
    """

    def __init__(
        self,
        *,
        on_due: OnDue,
        retry_interval: timedelta = RETRY_INTERVAL,
        max_retries: int = MAX_RETRIES,
    ) -> None:
        self._on_due = on_due
        self._retry = retry_interval.total_seconds()
        self._max_retries = max_retries
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._running: set[asyncio.Task[None]] = set()

    @property
    def pending(self) -> int:
        return len(self._timers)

    async def schedule(self, name: str, *, due: datetime, data: Mapping[str, Any]) -> None:
        self._arm(name, as_utc(due), dict(data), attempt=0)

    async def cancel(self, name: str) -> None:
        timer = self._timers.pop(name, None)
        if timer is not None:
            timer.cancel()

    async def aclose(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        for task in list(self._running):
            task.cancel()
        await asyncio.gather(*self._running, return_exceptions=True)

    def _arm(self, name: str, due: datetime, data: dict[str, Any], *, attempt: int) -> None:
        loop = asyncio.get_running_loop()
        old = self._timers.pop(name, None)
        if old is not None:
            old.cancel()
        delay = max(0.0, (due - utc_now()).total_seconds())
        self._timers[name] = loop.call_later(delay, self._start, name, due, data, attempt)

    def _start(self, name: str, due: datetime, data: dict[str, Any], attempt: int) -> None:
        if utc_now() < due:  # the loop's monotonic clock and the wall clock may disagree a little
            self._arm(name, due, data, attempt=attempt)
            return
        self._timers.pop(name, None)
        task = asyncio.get_running_loop().create_task(self._fire(name, due, data, attempt))
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    async def _fire(self, name: str, due: datetime, data: dict[str, Any], attempt: int) -> None:
        try:
            done = await self._on_due(name, data)
        except Exception:
            log.exception("job %s failed (attempt %d)", name, attempt + 1)
            done = False
        if done or name in self._timers:  # done, or re-scheduled while it ran
            return
        if attempt >= self._max_retries:
            log.error("job %s gave up after %d attempts", name, attempt + 1)
            return
        retry_at = utc_now() + timedelta(seconds=self._retry)
        self._arm(name, max(due, retry_at), data, attempt=attempt + 1)
