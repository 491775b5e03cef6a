"""The embedded default's job scheduler: never early, overwrite moves, cancel stops, failures retry."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from events.reminders.jobs import InProcessJobScheduler
from tasks.clock import utc_now


class Recorder:
    def __init__(self, *, fail_times: int = 0) -> None:
        self.calls: list[tuple[str, datetime, dict[str, Any]]] = []
        self.fail_times = fail_times

    async def __call__(self, name: str, data: Mapping[str, Any]) -> bool:
        self.calls.append((name, utc_now(), dict(data)))
        if self.fail_times:
            self.fail_times -= 1
            raise RuntimeError("database briefly unavailable")
        return True


async def test_a_job_fires_once_and_never_before_its_time() -> None:
    fired = Recorder()
    jobs = InProcessJobScheduler(on_due=fired)
    due = utc_now() + timedelta(milliseconds=300)
    await jobs.schedule("reminder-task-1", due=due, data={"task_id": 1})
    await asyncio.sleep(0.6)
    assert [(name, data) for name, _, data in fired.calls] == [("reminder-task-1", {"task_id": 1})]
    assert fired.calls[0][1] >= due
    assert fired.calls[0][1] - due < timedelta(milliseconds=100)
    assert jobs.pending == 0
    await jobs.aclose()


async def test_scheduling_the_same_name_again_moves_the_job() -> None:
    fired = Recorder()
    jobs = InProcessJobScheduler(on_due=fired)
    first = utc_now() + timedelta(milliseconds=200)
    await jobs.schedule("reminder-task-2", due=first, data={"v": 1})
    moved = utc_now() + timedelta(milliseconds=500)
    await jobs.schedule("reminder-task-2", due=moved, data={"v": 2})
    await asyncio.sleep(0.8)
    assert [data for _, _, data in fired.calls] == [{"v": 2}]
    assert fired.calls[0][1] >= moved
    await jobs.aclose()


async def test_a_cancelled_job_never_fires_and_cancelling_an_unknown_one_is_fine() -> None:
    fired = Recorder()
    jobs = InProcessJobScheduler(on_due=fired)
    await jobs.schedule("reminder-task-3", due=utc_now() + timedelta(milliseconds=200), data={})
    await jobs.cancel("reminder-task-3")
    await jobs.cancel("reminder-task-404")
    await asyncio.sleep(0.4)
    assert fired.calls == []
    await jobs.aclose()


async def test_a_failing_job_is_retried_until_it_succeeds() -> None:
    fired = Recorder(fail_times=2)
    jobs = InProcessJobScheduler(on_due=fired, retry_interval=timedelta(milliseconds=100))
    await jobs.schedule("reminder-task-4", due=utc_now(), data={})
    await asyncio.sleep(0.6)
    assert len(fired.calls) == 3
    await jobs.aclose()


async def test_a_due_time_in_the_past_fires_at_once() -> None:
    fired = Recorder()
    jobs = InProcessJobScheduler(on_due=fired)
    await jobs.schedule("reminder-task-5", due=utc_now() - timedelta(minutes=5), data={})
    await asyncio.sleep(0.05)
    assert len(fired.calls) == 1
    await jobs.aclose()
