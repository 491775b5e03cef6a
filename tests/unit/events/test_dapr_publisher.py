"""The Dapr publisher on the wire: what a sidecar receives, and how its answers are classified.

A small aiohttp server records the requests and answers as daprd would; the publishing through
a real daprd and Kafka is covered by tests/integration/events.
"""

from __future__ import annotations

import gc
import json
import warnings
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web

from devstack.procs import free_port
from events.contracts import CLOUDEVENT_CONTENT_TYPE
from events.ports import PublishError
from events.publishers import DaprPublisher
from sidecar import Sidecar
from tests.unit.http_support import serving_posts


@dataclass
class FakeSidecar:
    url: str
    requests: list[tuple[str, dict[str, str], str, dict[str, str], Any]] = field(default_factory=list)
    answer: tuple[int, str] = (204, "")


@pytest.fixture
async def sidecar() -> AsyncIterator[FakeSidecar]:
    recorded = FakeSidecar(url="")

    async def handle(request: web.Request) -> web.Response:
        body = json.loads(await request.read())
        recorded.requests.append(
            (request.path, dict(request.query), request.content_type, dict(request.headers), body)
        )
        status, text = recorded.answer
        return web.Response(status=status, text=text or None)

    async with serving_posts(handle) as url:
        recorded.url = url
        yield recorded


def _event(event_id: int) -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "id": str(event_id),
        "type": "todo.task.created.v1",
        "data": {"n": event_id},
    }


async def test_one_event_goes_through_the_publish_api_as_a_cloudevent_with_its_key_and_token(
    sidecar: FakeSidecar,
) -> None:
    publisher = DaprPublisher(Sidecar.at(sidecar.url, api_token="secret"), pubsub="kafka-pubsub")
    await publisher.publish("task-events", [_event(1)], partition_key="alice smith")
    await publisher.aclose()

    [(path, query, content_type, headers, body)] = sidecar.requests
    assert path == "/v1.0/publish/kafka-pubsub/task-events" and query == {
        "metadata.partitionKey": "alice smith"
    }
    assert content_type == CLOUDEVENT_CONTENT_TYPE and headers["dapr-api-token"] == "secret"
    assert body == _event(1)


async def test_several_events_go_in_one_bulk_request_each_entry_with_its_own_key(
    sidecar: FakeSidecar,
) -> None:
    publisher = DaprPublisher(Sidecar.at(sidecar.url), pubsub="kafka-pubsub")
    await publisher.publish_keyed("task-updates", [(_event(1), "alice"), (_event(2), "bob")])
    await publisher.publish_keyed("task-updates", [])  # nothing to send: no request
    await publisher.aclose()

    [(path, query, content_type, headers, body)] = sidecar.requests
    assert path == "/v1.0-alpha1/publish/bulk/kafka-pubsub/task-updates" and not query
    assert content_type == "application/json" and "dapr-api-token" not in headers
    assert body == [
        {"entryId": "1", "event": _event(1), "contentType": CLOUDEVENT_CONTENT_TYPE,
         "metadata": {"partitionKey": "alice"}},
        {"entryId": "2", "event": _event(2), "contentType": CLOUDEVENT_CONTENT_TYPE,
         "metadata": {"partitionKey": "bob"}},
    ]  # fmt: skip


async def test_events_sharing_an_id_get_distinct_bulk_entry_ids(sidecar: FakeSidecar) -> None:
    """Two dead letters of one reminder event (two channels given up) share their CloudEvent id;
    daprd refuses a bulk request whose entry ids repeat ("entryId is duplicated")."""
    publisher = DaprPublisher(Sidecar.at(sidecar.url), pubsub="kafka-pubsub")
    await publisher.publish_keyed("reminders-dlq", [(_event(7), "alice"), (_event(7), "alice")])
    await publisher.aclose()

    [(_, _, _, _, body)] = sidecar.requests
    assert [entry["entryId"] for entry in body] == ["0:7", "1:7"]
    assert [entry["event"] for entry in body] == [_event(7), _event(7)]


@pytest.mark.parametrize(("status", "permanent"), [(400, True), (403, True), (404, False), (500, False)])
async def test_a_refusal_names_the_topic_and_answer_and_only_a_4xx_about_the_message_is_permanent(
    sidecar: FakeSidecar, status: int, permanent: bool
) -> None:
    sidecar.answer = (status, '{"errorCode":"ERR_PUBSUB_PUBLISH_MESSAGE"}')
    publisher = DaprPublisher(Sidecar.at(sidecar.url), pubsub="kafka-pubsub")
    with pytest.raises(PublishError) as raised:
        await publisher.publish("reminders", [_event(1), _event(2)], partition_key="alice")
    await publisher.aclose()
    assert (
        str(raised.value)
        == f'Dapr refused to publish to reminders: {status} {{"errorCode":"ERR_PUBSUB_PUBLISH_MESSAGE"}}'
    )
    assert raised.value.permanent is permanent


async def test_a_sidecar_that_is_down_is_a_transient_failure() -> None:
    publisher = DaprPublisher(Sidecar.at(f"http://127.0.0.1:{free_port()}", timeout=2), pubsub="kafka-pubsub")
    with pytest.raises(PublishError, match="the Dapr sidecar is unreachable: ") as raised:
        await publisher.publish("task-events", [_event(1)], partition_key="alice")
    await publisher.aclose()
    assert raised.value.permanent is False


async def test_a_publisher_built_outside_a_loop_publishes_in_one_and_closes_without_warnings(
    sidecar: FakeSidecar,
) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        publisher = DaprPublisher(Sidecar.at(sidecar.url), pubsub="kafka-pubsub")  # no session yet
        idle = DaprPublisher(Sidecar.at(sidecar.url), pubsub="kafka-pubsub")  # never used, never closed
        for n in range(3):
            await publisher.publish("task-events", [_event(n)], partition_key="alice")
        await publisher.aclose()
        await publisher.aclose()  # twice is fine
        del publisher, idle
        gc.collect()
    assert len(sidecar.requests) == 3
    assert not [w for w in caught if "Unclosed" in str(w.message)]
