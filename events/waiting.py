"""Waiting for an ``asyncio.Event`` with a time limit, in a loop that is stopped by cancellation.

    await wait_at_most(self._wakeup, seconds=5.0)   # returns when set or after 5 s

``asyncio.wait_for`` is not used for this: on Python 3.11, when the task is cancelled in the same
loop turn as the event is set, ``wait_for`` returns normally and the cancellation is lost
(CPython gh-86296, fixed in 3.12), so a background loop cancelled at shutdown keeps running and
whoever awaits it waits forever. ``asyncio.timeout`` keeps the cancellation.
"""

from __future__ import annotations

import asyncio
import contextlib


async def wait_at_most(event: asyncio.Event, *, seconds: float) -> None:
    """Until ``event`` is set or ``seconds`` have passed, whichever comes first."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await event.wait()
