"""Event publishers: through the Dapr sidecar, or straight into the in-process bus.

    publisher = DaprPublisher(base_url="http://127.0.0.1:3500", pubsub="kafka-pubsub")
    await publisher.publish("task-events", [event1, event2], partition_key="alice")

The Dapr publisher sends whole CloudEvents (``application/cloudevents+json``) so the id, type
and source survive as written; one event goes through the publish API, several through the
bulk publish API in one request. The partition key is Dapr publish metadata ``partitionKey``
(per entry in a bulk request: request-level metadata would override every entry's).
It talks HTTP with a short timeout and never blocks the event loop while the sidecar is down.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final

import httpx

from events.contracts import CLOUDEVENT_CONTENT_TYPE
from events.ports import PublishError

if TYPE_CHECKING:  # the relay process needs only DaprPublisher: no FastAPI import there
    from events.inprocess import InProcessBus

_BULK_PATH: Final = "/v1.0-alpha1/publish/bulk"
#: 4xx answers that are not about the message: too many requests, a timeout, and 404 (Dapr's
#: answer while the pub/sub component is missing: configuration, the same for every row).
_TRANSIENT_4XX: Final = frozenset({404, 408, 425, 429})


def is_permanent(status_code: int) -> bool:
    """Dapr refused this request for good: retrying it would get the same answer."""
    return 400 <= status_code < 500 and status_code not in _TRANSIENT_4XX


class DaprPublisher:
    def __init__(
        self,
        *,
        base_url: str,
        pubsub: str,
        api_token: str | None = None,
        timeout: float = 10.0,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        headers = {"dapr-api-token": api_token} if api_token else {}
        self._client = client or httpx.AsyncClient(base_url=base_url, headers=headers, timeout=timeout)
        self._pubsub = pubsub

    async def publish(self, topic: str, events: Sequence[Mapping[str, Any]], *, partition_key: str) -> None:
        await self.publish_keyed(topic, [(event, partition_key) for event in events])

    async def publish_keyed(self, topic: str, items: Sequence[tuple[Mapping[str, Any], str]]) -> None:
        """Publish events with a partition key each: one event through the publish API, several
        in one bulk request (the key as entry metadata, so each keeps its own)."""
        if not items:
            return
        try:
            if len(items) == 1:
                event, key = items[0]
                response = await self._client.post(
                    f"/v1.0/publish/{self._pubsub}/{topic}",
                    params={"metadata.partitionKey": key},
                    content=json.dumps(event),
                    headers={"content-type": CLOUDEVENT_CONTENT_TYPE},
                )
            else:
                entries = [
                    {"entryId": str(event["id"]), "event": event, "contentType": CLOUDEVENT_CONTENT_TYPE,
                     "metadata": {"partitionKey": key}}
                    for event, key in items
                ]  # fmt: skip
                response = await self._client.post(f"{_BULK_PATH}/{self._pubsub}/{topic}", json=entries)
        except httpx.HTTPError as exc:
            raise PublishError(f"the Dapr sidecar is unreachable: {type(exc).__name__}: {exc}") from exc
        if response.status_code >= 300:
            raise PublishError(
                f"Dapr refused to publish to {topic}: {response.status_code} {response.text[:300]}",
                permanent=is_permanent(response.status_code),
            )

    async def aclose(self) -> None:
        await self._client.aclose()


class InProcessPublisher:
    """Hands events to the in-process bus (the embedded default)."""

    def __init__(self, bus: InProcessBus) -> None:
        self._bus = bus

    async def publish(self, topic: str, events: Sequence[Mapping[str, Any]], *, partition_key: str) -> None:
        await self._bus.publish(topic, events, partition_key=partition_key)

    async def aclose(self) -> None:
        return None
