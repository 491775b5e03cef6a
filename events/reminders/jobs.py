"""Two ``JobScheduler`` adapters: daprd's Jobs API, and a timer table for the embedded default.

    jobs = DaprJobScheduler(Sidecar.at("http://127.0.0.1:3500"))
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
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime, timedelta
from typing import Any, Final

from events.ports import JobScheduler
from sidecar import Sidecar, SidecarUnreachable
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
        sidecar: Sidecar,
        *,
        retry_interval: timedelta = RETRY_INTERVAL,
        max_retries: int = MAX_RETRIES,
    ) -> None:
        self._sidecar = sidecar
        self._policy = {
            "constant": {"interval": f"{int(retry_interval.total_seconds())}s", "maxRetries": max_retries}
        }

    async def schedule(self, name: str, *, due: datetime, data: Mapping[str, Any]) -> None:
        body = {"dueTime": rfc3339(due), "data": dict(data), "overwrite": True, "failurePolicy": self._policy}
        status, text = await self._call("POST", name, "schedule", json.dumps(body).encode())
        if status >= 300:
            raise JobSchedulingError(f"daprd refused job {name}: HTTP {status} {text[:300]}")

    async def cancel(self, name: str) -> None:
        status, text = await self._call("DELETE", name, "delete")
        if status >= 300 and not _is_not_found(status, text):
            raise JobSchedulingError(f"daprd could not delete job {name}: HTTP {status} {text[:300]}")

    async def exists(self, name: str) -> bool:
        status, text = await self._call("GET", name, "read")
        if status < 300:
            return True
        if _is_not_found(status, text):
            return False
        raise JobSchedulingError(f"daprd could not read job {name}: HTTP {status}")

    async def aclose(self) -> None:
        await self._sidecar.aclose()

    async def _call(self, method: str, name: str, verb: str, body: bytes | None = None) -> tuple[int, str]:
        headers = _JSON_HEADERS if body is not None else None
        try:
            status, answer = await self._sidecar.call(
                method, self._sidecar.url(f"/v1.0/jobs/{name}"), data=body, headers=headers,
                span=f"dapr job {verb}",
            )  # fmt: skip
        except SidecarUnreachable as exc:
            raise JobSchedulingError(f"Could not reach daprd to {verb} job {name}: {exc}") from exc
        return status, answer.decode("utf-8", "replace")


_JSON_HEADERS: Final = {"content-type": "application/json"}


def _is_not_found(status: int, text: str) -> bool:
    return status == 404 or "not found" in text.lower()


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
