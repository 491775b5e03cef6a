"""``todo-agent run`` keeps a reminder delivery it gave up as a dead letter of ``reminders`` and
replays it: the in-process bus keeps what the relay publishes to ``reminders-dlq``.

SQLite, the in-process scheduler, bus and relay; the webhook is a real HTTP server (uvicorn in a
thread). The same flow through daprd and Kafka is in
``tests/integration/reminders/test_reminder_dead_letters.py``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import httpx
from sqlmodel import Session, select
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from devstack.appserver import serve_in_thread
from tasks.clock import utc_now
from tasks.inputs import TaskDraft
from tasks.models import Notification
from tasks.profiles import ProfileChanges
from tasks.service import Actor
from todo_agent.api import app_for
from todo_agent.bootstrap import bootstrap
from todo_agent.settings import Settings


class Hook:
    """Answers each POST with the next of ``statuses`` (the last one repeats)."""

    def __init__(self, *statuses: int) -> None:
        self.statuses = list(statuses)
        self.answered: list[int] = []
        self.app = Starlette(routes=[Route("/hook", self._receive, methods=["POST"])])

    async def _receive(self, request: Request) -> JSONResponse:
        await request.json()
        status = self.statuses[min(len(self.answered), len(self.statuses) - 1)]
        self.answered.append(status)
        return JSONResponse({}, status)


async def wait_for(check: Callable[[], Any], seconds: float) -> Any:
    deadline = asyncio.get_running_loop().time() + seconds
    while not (found := check()):
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.05)
    return found


def webhook_delivery(engine: Any) -> Notification | None:
    with Session(engine) as session:
        return session.exec(select(Notification).where(Notification.channel == "webhook")).first()


async def test_a_webhook_given_up_is_a_dead_letter_of_reminders_and_its_replay_posts_it_once(
    make_settings: Callable[..., Settings],
) -> None:
    hook = Hook(503, 503, 200)  # down for both attempts allowed, back for the replay
    server = serve_in_thread(hook.app)
    settings = make_settings(user="alice", notify_max_attempts=2, notify_retry_base_seconds=0.1,
                             notify_retry_max_seconds=0.2,
                             webhook_allowed_networks=["127.0.0.1/32"])  # fmt: skip
    container = bootstrap("all", settings)  # the allow-list lets the hook be on loopback
    container.profiles.update("alice", ProfileChanges(webhook_url=f"{server.url}/hook"))
    app = app_for(container)
    try:
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1") as client,
        ):
            task = container.tasks.add(
                Actor("alice", "Europe/Berlin"),
                TaskDraft(title="Water the plants", remind_at=utc_now() + timedelta(seconds=1)),
            )
            bus = container.bus
            assert bus is not None
            [letter] = await wait_for(lambda: list(bus.dead_letters), seconds=10)
            listed = (await client.get("/events/dead-letters", params={"topic": "reminders"})).json()
            replayed = (
                await client.post("/events/dead-letters/replay", params={"topic": "reminders"})
            ).json()
            sent = await wait_for(
                lambda: (row := webhook_delivery(container.engine)) and row.status == "sent" and row,
                seconds=5,
            )
            await asyncio.sleep(0.3)  # anything sent twice would arrive by now
            notifications = (await client.get("/api/notifications")).json()
    finally:
        server.stop()
        container.engine.dispose()

    assert (letter.topic, letter.consumer, letter.attempts) == ("reminders-dlq", "notifications", 2)
    assert letter.reason == "gave up webhook: webhook answered HTTP 503 (gave up after 2 attempts)"
    assert (letter.event["type"], letter.event["data"]["task_id"]) == ("todo.reminder.due.v1", task.id)
    assert [d["event"]["id"] for d in listed["dead_letters"]] == [letter.event["id"]]
    assert replayed["count"] == 1 and not bus.dead_letters
    assert hook.answered == [503, 503, 200]
    assert (sent.attempts, sent.last_error) == (3, None)
    assert [n["title"] for n in notifications["items"]] == ["Water the plants"], "in-app once"
