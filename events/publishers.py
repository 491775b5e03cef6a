"""Event publishers: through the Dapr sidecar, or straight into the in-process bus.

    publisher = DaprPublisher(base_url="http://127.0.0.1:3500", pubsub="kafka-pubsub")
    await publisher.publish("task-events", [event1, event2], partition_key="alice")

The Dapr publisher sends whole CloudEvents (``application/cloudevents+json``) so the id, type
and source survive as written; one event goes through the publish API, several through the
bulk publish API in one request. The partition key is Dapr publish metadata ``partitionKey``.
It talks HTTP with a short timeout and never blocks the event loop while the sidecar is down.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, Final

import httpx

from events.contracts import CLOUDEVENT_CONTENT_TYPE
from events.inprocess import InProcessBus
from events.ports import PublishError

_BULK_PATH: Final = "/v1.0-alpha1/publish/bulk"


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
        if not events:
            return
        params = {"metadata.partitionKey": partition_key}
        try:
            if len(events) == 1:
                response = await self._client.post(
                    f"/v1.0/publish/{self._pubsub}/{topic}",
                    params=params,
                    content=json.dumps(events[0]),
                    headers={"content-type": CLOUDEVENT_CONTENT_TYPE},
                )
            else:
                entries = [
                    {"entryId": str(e["id"]), "event": e, "contentType": CLOUDEVENT_CONTENT_TYPE,
                     "metadata": {"partitionKey": partition_key}}
                    for e in events
                ]  # fmt: skip
                response = await self._client.post(f"{_BULK_PATH}/{self._pubsub}/{topic}", params=params,
                                                   json=entries)  # fmt: skip
        except httpx.HTTPError as exc:
            raise PublishError(f"the Dapr sidecar is unreachable: {type(exc).__name__}: {exc}") from exc
        if response.status_code >= 300:
            raise PublishError(
                f"Dapr refused to publish to {topic}: {response.status_code} {response.text[:300]}"
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
