"""``todo-agent events``: watch events and manage dead letters.

    todo-agent events tail [--topic task-updates] [--since ID] [--once]
    todo-agent events dlq list [--topic task-events] [--wait 5]
    todo-agent events dlq replay [--topic task-events] [--wait 5]

``tail`` follows the outbox, the source of every event (both modes), one CloudEvent per line
with the topics it goes to, whether it has been published, and whether the bus refused it for
good (``failed``, with ``last_error``). ``dlq`` reads the dead-letter topic ``<topic>-dlq``:
with Dapr (``DAPR_GRPC_PORT``) through a streaming subscription of the CLI's own sidecar
(consumer group = its app id); in the embedded default through the running server
(``/events/dead-letters``). Consumers ignore events they already applied. A reminder delivery
given up (``--topic reminders``) is the reminder event with ``data["dead_letter"]`` (consumer,
channel, error, attempts): ``list`` shows it with a ``reason``; its replay makes one more attempt
on that channel only (``events.reminders.notifications``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any, Final

import httpx
from sqlmodel import Session, col, select

from events.contracts import CLOUDEVENT_CONTENT_TYPE, cloud_event, dead_letter_key, target_topics
from tasks.db import make_engine
from tasks.models import OutboxEvent

#: How much longer than ``--wait`` the first dead letter may take: a new consumer group joins
#: first (Kafka holds a new group's first assignment for group.initial.rebalance.delay.ms, 3 s
#: by default, and Dapr's Kafka client then starts its partition consumers).
JOIN_ALLOWANCE: Final = 15.0
#: A CloudEvent extension attribute naming the CLI run that published the event (a dead letter
#: written back to the topic, or a replay), so the run knows its own copies when it meets them.
RUN_ATTRIBUTE: Final = "tododlqrun"

DLQ_HELP = """\
list: show the dead letters; they stay dead letters. Through Dapr, each one read is
written back to the end of <topic>-dlq (same CloudEvent id and partition key) before it is
acknowledged, so the next `list` or `replay` sees it again (Kafka hands out a partition's
messages in order and waits for each answer: leaving them unacknowledged would hide all but
the first of each partition). replay: publish each dead letter back to <topic> and then
acknowledge it, so it leaves <topic>-dlq. Another dead letter of an event the run already
replayed (another consumer's, or another give-up of the same delivery) is acknowledged too.
What a run writes carries the CloudEvent attribute tododlqrun (the run's id), so a run knows
its own copies (and its replays dead-lettered again) and leaves them for the next. Through
Dapr the topic is read until --wait seconds pass without a dead letter; before the first one,
up to {join:.0f} s longer, while the CLI's consumer group joins."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="todo-agent events", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    tail = sub.add_parser("tail", help="print events as they are written (from the outbox)")
    tail.add_argument("--topic", default=None, help="task-events, task-updates or reminders")
    tail.add_argument("--since", type=int, default=None, help="start after this event id (default: now)")
    tail.add_argument("--once", action="store_true", help="print what is there and stop")
    dlq = sub.add_parser("dlq", help="dead letters: list or replay",
                         description=DLQ_HELP.format(join=JOIN_ALLOWANCE),
                         formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    dlq.add_argument("action", choices=("list", "replay"))
    dlq.add_argument("--topic", default="task-events", help="the topic whose dead letters to use")
    dlq.add_argument("--wait", type=float, default=5.0,
                     help="stop after this many seconds without a dead letter (through Dapr)")  # fmt: skip
    return parser


def main(args: list[str], settings: Any) -> int:
    options = _parser().parse_args(args)
    if options.command == "tail":
        return tail(settings, topic=options.topic, since=options.since, once=options.once)
    if settings.dapr_enabled:
        return dlq_through_dapr(settings, options.action, topic=options.topic, wait=options.wait)
    return dlq_embedded(settings, options.action, topic=options.topic)


def tail(settings: Any, *, topic: str | None, since: int | None, once: bool) -> int:
    engine = make_engine(settings.effective_database_url)
    last = since if since is not None else (0 if once else _last_id(engine))
    try:
        while True:
            with Session(engine) as session:
                rows = session.exec(
                    select(OutboxEvent)
                    .where(col(OutboxEvent.id) > last)
                    .order_by(col(OutboxEvent.id))
                    .limit(500)
                ).all()
            for row in rows:
                last = row.id or last
                topics = target_topics(row)
                if topic is None or topic in topics:
                    line = {
                        "topics": list(topics),
                        "published": row.published_at is not None,
                        "failed": row.failed_at is not None,
                        **({"last_error": row.last_error} if row.last_error else {}),
                        **cloud_event(row),
                    }
                    print(json.dumps(line), flush=True)
            if once and not rows:
                return 0
            if not rows:
                time.sleep(0.5)
    except KeyboardInterrupt:
        return 0
    finally:
        engine.dispose()


def _last_id(engine: Any) -> int:
    with Session(engine) as session:
        newest = session.exec(select(OutboxEvent.id).order_by(col(OutboxEvent.id).desc())).first()
    return int(newest or 0)


def dlq_through_dapr(settings: Any, action: str, *, topic: str, wait: float) -> int:
    from dapr.clients import DaprClient

    dead_letter_topic = f"{topic}-dlq"
    run = uuid.uuid4().hex[:12]  # tags what this run publishes (RUN_ATTRIBUTE)
    count = left = 0
    replayed: set[str] = set()
    with DaprClient(address=f"127.0.0.1:{settings.dapr_grpc_port}") as client:

        def publish(target: str, event: dict[str, Any]) -> None:
            client.publish_event(settings.pubsub_name, target, json.dumps({**event, RUN_ATTRIBUTE: run}),
                                 data_content_type=CLOUDEVENT_CONTENT_TYPE,
                                 publish_metadata=_partition(event))  # fmt: skip

        subscription = client.subscribe(settings.pubsub_name, dead_letter_topic)
        idle = IdleClose(subscription.close, idle=wait, first=wait + JOIN_ALLOWANCE)
        try:
            while True:
                try:
                    message = subscription.next_message()
                except Exception:  # closed once idle: we have read what there is
                    break
                if message is None:
                    continue
                with idle.busy():
                    if (message.extensions() or {}).get(RUN_ATTRIBUTE) == run:
                        continue  # this run's own copy, or its replay dead-lettered again: the
                        # rest of its partition came after it; unacknowledged, it stays for later
                    event = _as_cloud_event(message)
                    key = dead_letter_key(event)  # the event id (and the channel a delivery gave up)
                    if action == "replay" and key in replayed:
                        # Another dead letter of an event this run replayed (another consumer's,
                        # or another give-up of the same delivery): the replay reached every
                        # consumer, so it is acknowledged. Left unanswered, it would hold up
                        # its partition (and daprd answers a stream's messages by event id).
                        subscription.respond_success(message)
                        left += 1
                        continue
                    replayed.add(key)
                    print(json.dumps({"dead_letter_topic": dead_letter_topic, **_reason(event), **event}),
                          flush=True)  # fmt: skip
                    publish(topic if action == "replay" else dead_letter_topic, event)
                    subscription.respond_success(message)  # only once it is safely published
                    count += 1
        finally:
            idle.cancel()
            subscription.close()
    what = f"replayed to {topic}" if action == "replay" else f"on {dead_letter_topic}"
    kept = f"; {left} more dead letter(s) of the same event(s) acknowledged" if left else ""
    print(f"{count} dead letter(s) {what}{kept}", file=sys.stderr)
    return 0


class IdleClose:
    """Calls ``close`` once ``idle`` seconds pass without activity (``first`` seconds before the
    first), never while a message is being handled (``with busy():``)."""

    def __init__(self, close: Callable[[], Any], *, idle: float, first: float) -> None:
        self._close, self._idle = close, idle
        self._deadline = time.monotonic() + first
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="dlq-idle", daemon=True)
        self._thread.start()

    @contextlib.contextmanager
    def busy(self) -> Iterator[None]:
        with self._lock:
            self._deadline = math.inf
        try:
            yield
        finally:
            with self._lock:
                self._deadline = time.monotonic() + self._idle

    def cancel(self) -> None:
        self._stopped.set()
        self._thread.join()

    def _watch(self) -> None:
        while not self._stopped.wait(0.1):
            with self._lock:
                due = time.monotonic() >= self._deadline
            if due:
                self._close()
                return


def _as_cloud_event(message: Any) -> dict[str, Any]:
    data = message.data()
    if data is None:  # a content type the SDK does not parse: keep the raw bytes
        data = message.raw_data()
    if isinstance(data, bytes | str):
        try:
            data = json.loads(data)
        except ValueError:
            data = data.decode() if isinstance(data, bytes) else data
    return {"specversion": "1.0", "id": message.id(), "source": message.source(), "type": message.type(),
            "datacontenttype": "application/json", "data": data}  # fmt: skip


def _reason(event: dict[str, Any]) -> dict[str, str]:
    """``{"reason": ...}`` for a dead letter that says why it is one (a delivery given up)."""
    data = event.get("data")
    held = data.get("dead_letter") if isinstance(data, dict) else None
    if not isinstance(held, dict) or "channel" not in held:
        return {}
    return {"reason": f"{held.get('consumer')} gave up {held['channel']}: {held.get('error')}"}


def _partition(event: dict[str, Any]) -> dict[str, str]:
    data = event.get("data")
    user = data.get("user_id") if isinstance(data, dict) else None
    return {"partitionKey": str(user)} if user else {}


def dlq_embedded(settings: Any, action: str, *, topic: str) -> int:
    base = f"http://{settings.host}:{settings.port}"
    try:
        with httpx.Client(base_url=base, timeout=30) as client:
            if action == "list":
                reply = client.get("/events/dead-letters", params={"topic": topic})
            else:
                reply = client.post("/events/dead-letters/replay", params={"topic": topic})
    except httpx.HTTPError as exc:
        print(f"todo-agent events: no embedded server answers at {base} ({exc}); start it with "
              "`todo-agent run`.", file=sys.stderr)  # fmt: skip
        return 1
    if reply.status_code != 200:
        print(f"todo-agent events: {reply.status_code} {reply.text}", file=sys.stderr)
        return 1
    body = reply.json()
    for item in body.get("dead_letters", []):
        print(json.dumps(item))
    print(f"{body.get('count', 0)} dead letter(s) {body.get('what', '')}".rstrip(), file=sys.stderr)
    return 0
