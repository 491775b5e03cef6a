"""Event publishers: through the Dapr sidecar, or straight into the in-process bus.

    publisher = DaprPublisher(Sidecar.at("http://127.0.0.1:3500"), pubsub="kafka-pubsub")
    await publisher.publish("task-events", [event1, event2], partition_key="alice")
    await publisher.aclose()

The Dapr publisher sends whole CloudEvents (``application/cloudevents+json``) so the id, type
and source survive as written; one event goes through the publish API, several through the
bulk publish API in one request. The partition key is Dapr publish metadata ``partitionKey``
(per entry in a bulk request: request-level metadata would override every entry's).
It talks to the sidecar through ``sidecar.Sidecar`` (aiohttp: a fraction of httpx's CPU per
request, which the relay pays for every round; keep-alive connections, a timeout on every call),
so it never blocks the event loop while the sidecar is down.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final

from yarl import URL

from events.contracts import CLOUDEVENT_CONTENT_TYPE
from events.ports import PublishError
from observability import tracing
from sidecar import Sidecar, SidecarUnreachable

if TYPE_CHECKING:  # the relay process needs only DaprPublisher: no FastAPI import there
    from events.inprocess import InProcessBus

_PUBLISH_PATH: Final = "/v1.0/publish"
_BULK_PATH: Final = "/v1.0-alpha1/publish/bulk"
_EVENT_HEADERS: Final = {"content-type": CLOUDEVENT_CONTENT_TYPE}
_BULK_HEADERS: Final = {"content-type": "application/json"}
#: 4xx answers that are not about the message: too many requests, a timeout, and 404 (Dapr's
#: answer while the pub/sub component is missing: configuration, the same for every row).
_TRANSIENT_4XX: Final = frozenset({404, 408, 425, 429})


def is_permanent(status_code: int) -> bool:
    """Dapr refused this request for good: retrying it would get the same answer."""
    return 400 <= status_code < 500 and status_code not in _TRANSIENT_4XX


class DaprPublisher:
    """Publishes through the sidecar's pub/sub component ``pubsub``."""

    def __init__(self, sidecar: Sidecar, *, pubsub: str) -> None:
        self._sidecar = sidecar
        self._pubsub = pubsub
        self._urls: dict[tuple[str, str], URL] = {}  # (path, topic) -> parsed once

    async def publish(self, topic: str, events: Sequence[Mapping[str, Any]], *, partition_key: str) -> None:
        await self.publish_keyed(topic, [(event, partition_key) for event in events])

    async def publish_keyed(self, topic: str, items: Sequence[tuple[Mapping[str, Any], str]]) -> None:
        """Publish events with a partition key each: one event through the publish API, several
        in one bulk request (the key as entry metadata, so each keeps its own)."""
        if not items:
            return
        if len(items) == 1:
            event, key = items[0]
            url = self._url(_PUBLISH_PATH, topic).with_query({"metadata.partitionKey": key})
            body, headers = json.dumps(event), _EVENT_HEADERS
        else:
            entries = [
                {"entryId": entry_id, "event": event, "contentType": CLOUDEVENT_CONTENT_TYPE,
                 "metadata": {"partitionKey": key}}
                for entry_id, (event, key) in zip(_entry_ids(items), items, strict=True)
            ]  # fmt: skip
            url, body, headers = self._url(_BULK_PATH, topic), json.dumps(entries), _BULK_HEADERS
        if tracing.is_on():  # daprd's publish span joins the relay's (W3C traceparent header)
            headers = tracing.inject(dict(headers))
        try:
            status, answer = await self._sidecar.call("POST", url, data=body.encode(), headers=headers)
        except SidecarUnreachable as exc:
            error = exc.error
            raise PublishError(f"the Dapr sidecar is unreachable: {type(error).__name__}: {error}") from exc
        if status < 300:
            return
        text = answer.decode("utf-8", "replace")
        raise PublishError(
            f"Dapr refused to publish to {topic}: {status} {text[:300]}", permanent=is_permanent(status)
        )

    async def aclose(self) -> None:
        await self._sidecar.aclose()

    def _url(self, path: str, topic: str) -> URL:
        url = self._urls.get((path, topic))
        if url is None:
            url = self._urls[(path, topic)] = self._sidecar.url(f"{path}/{self._pubsub}/{topic}")
        return url


def _entry_ids(items: Sequence[tuple[Mapping[str, Any], str]]) -> list[str]:
    """The events' ids as bulk entry ids, which daprd requires to differ (400 otherwise); the
    position goes first if two events share an id (two dead letters of one reminder event)."""
    ids = [str(event["id"]) for event, _ in items]
    return ids if len(set(ids)) == len(ids) else [f"{index}:{id_}" for index, id_ in enumerate(ids)]


class InProcessPublisher:
    """Hands events to the in-process bus (the embedded default)."""

    def __init__(self, bus: InProcessBus) -> None:
        self._bus = bus

    async def publish(self, topic: str, events: Sequence[Mapping[str, Any]], *, partition_key: str) -> None:
        await self._bus.publish(topic, events, partition_key=partition_key)

    async def aclose(self) -> None:
        return None
