"""The outbox relay: publishes committed outbox rows, marks them sent, and never loses one.

    relay = OutboxRelay(engine, publisher)
    async with relay.running(container.uow):     # wakes after every commit, polls as well
        ...
    relay.metrics()                              # backlog, failed rows, counters, last error

A round claims the oldest pending rows, publishes each as a CloudEvent to its target topics (one
request per topic; the partition key is the user), and marks them sent in the same transaction.
On PostgreSQL several relays (every role and replica runs one) take turns: a round holds a
transaction-level advisory lock, and a relay that finds another in its round tries again a few
milliseconds later. So rounds never overlap, rows reach the broker in id order, and one user's
events keep their order on their partition (rows are also claimed ``FOR UPDATE SKIP LOCKED``, so
no row is ever published by two relays at once). One user's ids also follow commit order: the
unit of work takes the user's outbox lock before it writes the rows (``tasks.unit_of_work``), so
a row with a smaller id of that user is always committed, and claimable, before a larger one is
written. A failed publish leaves the rows pending,
notes the error, and backs off (doubling up to ``max_backoff``) until the sidecar or broker is
back. A batch the bus refuses for good (``PublishError.permanent``: Dapr answered 4xx) is
published again row by row: a row refused on its own is marked failed (``failed_at``,
``last_error``, logged) and never retried, and the rows after it go on, so one bad row does
not block its user's partition. Failed rows show in ``metrics()`` and ``todo-agent events tail``.

A backlog (a broker outage piles up pending rows) does not starve new writes: when a round's
batch of oldest rows is full, the round also claims the newest pending rows (up to
``fresh_size``) of users who have no other pending row between the batch and them: their
earlier rows are all sent or in this round, so publishing them now, after the batch, keeps
every user's order. A new write of a user with a backlog still waits behind that user's own
earlier rows. The partial index ``ix_outbox_pending_user`` (pending rows by user and id,
migration 0020) answers "has this user an earlier pending row" without reading the backlog.

A round costs CPU in a process that shares its machine with the database and the broker, so it
stays off the ORM: Core statements on one connection (no Session, no entity per row), and on
PostgreSQL the turn and the claim are one statement (the lock's answer comes back beside the
rows, so "another relay is in its round" still differs from "nothing pending").
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from datetime import datetime
from typing import Any, Final, NamedTuple, TypeVar

from opentelemetry.trace import SpanKind
from sqlalchemy import BigInteger, Connection, Engine, Select, Table, bindparam, func, literal, true, update
from sqlalchemy import select as core_select

from events.contracts import cloud_event, target_topics
from events.ports import EventPublisher, PublishError
from events.waiting import wait_at_most
from observability import tracing
from observability.metrics import (
    RELAY_BACKOFF,
    RELAY_FAILURES,
    RELAY_LAG,
    RELAY_PUBLISH,
    RELAY_PUBLISHED,
    RELAY_ROUND_PHASES,
    RELAY_ROUND_ROWS,
)
from tasks.clock import Clock, as_utc, utc_now
from tasks.models import OutboxEvent, UTCDateTime
from tasks.unit_of_work import UnitOfWorkFactory

log = logging.getLogger(__name__)

# One relay at a time publishes (PostgreSQL): its round holds this transaction-level advisory
# lock, so rounds never overlap and rows reach the broker in id order, which keeps one user's
# events in order on their partition. Rows are still locked (SKIP LOCKED) as a second guard.
_RELAY_LOCK: Final = 0x7D0_0E7B0  # an arbitrary key of this application
_TURN_WAIT: Final = 0.002  # then doubling: how soon a relay that found another in its round retries
_TURN_WAIT_MAX: Final = 0.1
_MAX_LINKS: Final = 32  # links from one publish span to the traces of the other rows in its batch
T = TypeVar("T")


class ClaimedRow(NamedTuple):
    """An outbox row as a round reads it (an ``events.contracts.OutboxRecord``): a plain tuple
    from a Core row, not an ORM entity."""

    id: int
    topic: str
    event_type: str
    user_id: str
    task_id: int | None
    payload: dict[str, Any]
    created_at: datetime
    trace_context: str | None


_OUTBOX: Final[Table] = OutboxEvent.__table__  # type: ignore[attr-defined]
_IDS: Final = _OUTBOX.c.id.in_(bindparam("ids", expanding=True))
_NOW: Final = bindparam("now", type_=UTCDateTime())
_ATTEMPTED: Final = _OUTBOX.c.attempts + 1
_MARK_SENT: Final = (
    update(_OUTBOX).where(_IDS).values(published_at=_NOW, attempts=_ATTEMPTED, last_error=None)
)
_MARK_FAILED: Final = (
    update(_OUTBOX)
    .where(_OUTBOX.c.id == bindparam("row_id"))
    .values(failed_at=_NOW, attempts=_ATTEMPTED, last_error=bindparam("error"))
)
_MARK_UNSENT: Final = update(_OUTBOX).where(_IDS).values(attempts=_ATTEMPTED, last_error=bindparam("reason"))


# Pending rows in id order, said as the order of ``ix_outbox_pending`` (``published_at`` is NULL
# in every pending row, so this is id order): the planner then reads that index, which skips
# the rows already sent. Ordered by ``id`` alone it read the primary key, whose stale
# statistics after a backlog piled up made it walk every row the drain had sent so far (37 ms
# per claim at 25,000 sent rows), so a drain's claims grew with its progress.
_PENDING_ORDER: Final = (_OUTBOX.c.published_at, _OUTBOX.c.id)


def _claim_statement(*, batch_size: int, locks_rows: bool) -> Select[Any]:
    """The oldest pending rows (``ClaimedRow`` columns). On PostgreSQL, in one round trip: take
    the turn (the advisory lock), then, only if it was ours, lock the rows (SKIP LOCKED); every
    result row starts with the lock's answer, and a turn with nothing pending is one row of NULLs."""
    columns = [_OUTBOX.c[name] for name in ClaimedRow._fields]
    pending = _OUTBOX.c.published_at.is_(None) & _OUTBOX.c.failed_at.is_(None)
    oldest = core_select(*columns).where(pending).order_by(*_PENDING_ORDER).limit(batch_size)
    if not locks_rows:
        return oldest
    turn = core_select(func.pg_try_advisory_xact_lock(literal(_RELAY_LOCK, BigInteger)).label("ours")).cte(
        "turn"
    )
    claimed = oldest.where(turn.c.ours).with_for_update(skip_locked=True).lateral("claimed")
    return (
        core_select(turn.c.ours, *claimed.c)
        .select_from(turn.outerjoin(claimed, true()))
        .order_by(claimed.c.id)
    )


_PENDING: Final = _OUTBOX.c.published_at.is_(None) & _OUTBOX.c.failed_at.is_(None)
_AFTER: Final = bindparam("after", type_=BigInteger())
_FRESH_FROM: Final = bindparam("fresh_from", type_=BigInteger())


def _newest_statement(*, fresh_size: int, locks_rows: bool) -> Select[Any]:
    """The newest ``fresh_size`` pending rows after the batch (ids above ``after``), newest first
    (``ClaimedRow`` columns), locked on PostgreSQL (SKIP LOCKED)."""
    columns = [_OUTBOX.c[name] for name in ClaimedRow._fields]
    statement = (
        core_select(*columns)
        .where(_PENDING, _OUTBOX.c.id > _AFTER)
        .order_by(*(key.desc() for key in _PENDING_ORDER))
        .limit(fresh_size)
    )
    return statement.with_for_update(skip_locked=True) if locks_rows else statement


# One user's earlier pending row between the batch and the fresh rows, if any: one probe of
# ``ix_outbox_pending_user`` per user. (Asked for all users at once, as a NOT EXISTS, the
# planner sometimes chose to scan the backlog instead: claims of 1-3 s in a drain.)
_EARLIER: Final = (
    core_select(_OUTBOX.c.id)
    .where(_PENDING, _OUTBOX.c.user_id == bindparam("user"))
    .where(_OUTBOX.c.id > _AFTER, _OUTBOX.c.id < _FRESH_FROM)
    .limit(1)
)


class OutboxRelay:
    def __init__(
        self,
        engine: Engine,
        publisher: EventPublisher,
        *,
        batch_size: int = 200,
        fresh_size: int = 50,
        poll_interval: float = 1.0,
        max_backoff: float = 10.0,
        clock: Clock = utc_now,
        inline_db: bool = False,
    ) -> None:
        self._engine = engine
        self._locks_rows = engine.dialect.name == "postgresql"
        self._claim_statement = _claim_statement(batch_size=batch_size, locks_rows=self._locks_rows)
        self._newest = _newest_statement(fresh_size=fresh_size, locks_rows=self._locks_rows)
        self._fresh_size = fresh_size
        self._publisher = publisher
        self._batch_size = batch_size
        self._poll_interval = poll_interval
        self._max_backoff = max_backoff
        self._clock = clock
        self._wakeup = asyncio.Event()
        self._stopping = asyncio.Event()
        self._backoff = 0.0
        self._db_inline = inline_db  # alone on its loop (relay process): no worker thread per query
        self._contended = False  # the last round found another relay publishing
        self.published = 0
        self.failed = 0
        self.failures = 0
        self.last_error: str | None = None

    # -- running -------------------------------------------------------------------------
    def wake(self) -> None:
        self._wakeup.set()

    def stop(self) -> None:
        """Make ``run`` return once the round in progress is over: rows it published are then
        marked sent, not published again by the next relay (cancelling ``run`` can't promise that)."""
        self._stopping.set()
        self._wakeup.set()

    @contextlib.asynccontextmanager
    async def running(self, uow_factory: UnitOfWorkFactory) -> AsyncIterator[OutboxRelay]:
        """Run on this event loop in the background; every commit on ``uow_factory`` wakes the
        relay. (With Dapr, ``events.relay_process`` runs it in a process of its own instead.)"""
        loop = asyncio.get_running_loop()
        uow_factory.after_commit.append(listener := self._waker(loop))
        task = asyncio.create_task(self.run(), name="outbox-relay")
        try:
            yield self
        finally:
            uow_factory.after_commit.remove(listener)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def _waker(self, loop: asyncio.AbstractEventLoop) -> Callable[[Sequence[OutboxEvent]], None]:
        def after_commit(rows: Sequence[OutboxEvent]) -> None:
            if rows and not loop.is_closed():
                loop.call_soon_threadsafe(self.wake)

        return after_commit

    async def run(self) -> None:
        waited = _TURN_WAIT
        while not self._stopping.is_set():
            self._wakeup.clear()
            count = await self._round()
            if self._contended:  # another relay's round: ours comes right after it
                await asyncio.sleep(waited)
                waited = min(waited * 2, _TURN_WAIT_MAX)
                continue
            waited = _TURN_WAIT
            if self._backoff:
                await wait_at_most(self._stopping, seconds=self._backoff)
            elif count < self._batch_size:
                await wait_at_most(self._wakeup, seconds=self._poll_interval)

    async def _round(self) -> int:
        try:
            count = await self.run_once()
        except PublishError as exc:
            self._failed(str(exc))
            return 0
        except Exception as exc:  # the database is down or similar: keep the relay alive
            log.exception("outbox relay round failed")
            self._failed(f"{type(exc).__name__}: {exc}")
            return 0
        if self._backoff:
            log.info("outbox relay publishing again after %d failure(s)", self.failures)
            RELAY_BACKOFF.set(0)
        self._backoff = 0.0
        return count

    def _failed(self, reason: str) -> None:
        self.failures += 1
        RELAY_FAILURES.inc()
        self.last_error = reason
        self._backoff = min(max(self._backoff * 2, 0.2), self._max_backoff)
        RELAY_BACKOFF.set(self._backoff)
        log.warning("outbox relay could not publish (retrying in %.1fs): %s", self._backoff, reason)

    # -- one round -----------------------------------------------------------------------
    async def run_once(self) -> int:
        """Publish one batch of pending rows; returns how many were sent (raises PublishError)."""
        opened = contextlib.ExitStack()  # the round's connection, closed if the round fails
        try:
            started = time.perf_counter()
            claim = await self._db(self._claim, opened)
            if claim is None:
                return 0
            conn, rows = claim
            claimed = time.perf_counter()
            done: set[tuple[int, str]] = set()  # (row id, topic) the bus took
            try:
                await self._publish(rows, done)
            except PublishError as exc:
                if not exc.permanent:
                    await self._db(self._note_failure, conn, rows, str(exc))
                    raise
                if len(rows) == 1:
                    await self._db(self._settle, conn, [], [(rows[0], str(exc))])
                    return 1
                return await self._row_by_row(conn, rows, done)
            published = time.perf_counter()
            await self._db(self._settle, conn, rows, [])
            self._timed_round(
                claimed - started, published - claimed, time.perf_counter() - published, len(rows)
            )
            return len(rows)
        except BaseException:
            await self._db(opened.close)
            raise

    def _timed_round(self, claim: float, publish: float, mark: float, rows: int) -> None:
        for phase, seconds in (("claim", claim), ("publish", publish), ("mark", mark)):
            RELAY_ROUND_PHASES.labels(phase=phase).observe(seconds)
        RELAY_ROUND_ROWS.observe(rows)

    async def _db(self, fn: Callable[..., T], *args: Any) -> T:
        """A blocking database call: inline when the relay is alone on its loop (its own process:
        a thread hop per call costs more than the call), else in a thread."""
        if self._db_inline:
            return fn(*args)
        return await _in_thread(fn, *args)

    async def _row_by_row(
        self, conn: Connection, rows: Sequence[ClaimedRow], done: set[tuple[int, str]]
    ) -> int:
        """A batch was refused for good: find the row(s) to blame, publish the others (only to
        the topics whose batch request failed: ``done`` holds what already went through)."""
        sent: list[ClaimedRow] = []
        failed: list[tuple[ClaimedRow, str]] = []
        for index, row in enumerate(rows):
            try:
                await self._publish([row], done)
            except PublishError as exc:
                if exc.permanent:
                    failed.append((row, str(exc)))
                    continue
                await self._db(self._settle, conn, sent, failed, rows[index:], str(exc))
                raise
            sent.append(row)
        await self._db(self._settle, conn, sent, failed)
        return len(rows)

    def _claim(self, opened: contextlib.ExitStack) -> tuple[Connection, list[ClaimedRow]] | None:
        """The oldest pending rows, locked in a transaction left open for the settle; ``None``
        when there are none or another relay is in its round (``_contended``)."""
        conn = opened.enter_context(self._engine.connect())
        found = conn.execute(self._claim_statement).all()
        if self._locks_rows:  # (our turn, *row) per row; one row of (turn, NULL, ...) if none
            self._contended = not found[0][0]
            rows = [ClaimedRow._make(r[1:]) for r in found if r[1] is not None]
        else:
            self._contended = False
            rows = [ClaimedRow._make(r) for r in found]
        if not rows:
            conn.close()  # nothing pending, or another relay's turn (then ``run`` retries shortly)
            return None
        if len(rows) == self._batch_size and self._fresh_size:  # a backlog: new writes too
            rows += self._fresh_rows(conn, after=rows[-1].id)
        if not self._locks_rows:
            conn.commit()  # SQLite: one relay per database; don't hold a read transaction
        return conn, rows

    def _fresh_rows(self, conn: Connection, *, after: int) -> list[ClaimedRow]:
        """The newest pending rows that can go in this round without passing an earlier row of
        their user (see the module's docstring), in id order; none when there are none after
        the batch. Rows looked at but left stay locked until the round ends, then pending."""
        newest = sorted(
            (ClaimedRow._make(row) for row in conn.execute(self._newest, {"after": after})), key=_row_id
        )
        if not newest:
            return []
        window = {"after": after, "fresh_from": newest[0].id}
        waiting = {
            user
            for user in {row.user_id for row in newest}
            if conn.execute(_EARLIER, window | {"user": user}).first() is not None
        }
        return [row for row in newest if row.user_id not in waiting]

    async def _publish(self, rows: Sequence[ClaimedRow], done: set[tuple[int, str]] | None = None) -> None:
        """Publish ``rows`` to their topics, skipping the (row id, topic) pairs in ``done`` and
        adding those that go through. The requests run at once; if some fail, the others still
        count (so a later row-by-row pass does not publish them twice) and a failure is raised:
        a transient one if any, else the first permanent one."""
        done = set() if done is None else done
        keyed: dict[str, list[tuple[dict[str, Any], str, int]]] = defaultdict(list)
        for row in rows:
            assert row.id is not None
            event = cloud_event(row)
            for topic in target_topics(row):
                if (row.id, topic) not in done:
                    keyed[topic].append((event, row.user_id, row.id))
        requests: list[tuple[Awaitable[None], list[tuple[int, str]]]] = []
        publish_keyed = getattr(self._publisher, "publish_keyed", None)
        if publish_keyed is not None:  # one request per topic, each event with its own key
            for topic, items in keyed.items():
                events = [(event, user) for event, user, _ in items]
                call = _traced_publish(topic, [e for e, _ in events], publish_keyed, topic, events)
                requests.append((call, [(row_id, topic) for _, _, row_id in items]))
        else:
            groups: dict[tuple[str, str], list[tuple[dict[str, Any], int]]] = defaultdict(list)
            for topic, items in keyed.items():
                for event, user, row_id in items:
                    groups[(topic, user)].append((event, row_id))
            for (topic, user), entries in groups.items():
                batch = [e for e, _ in entries]
                call = _traced_publish(
                    topic, batch, self._publisher.publish, topic, batch, partition_key=user
                )
                requests.append((call, [(row_id, topic) for _, row_id in entries]))
        outcomes = await asyncio.gather(*(call for call, _ in requests), return_exceptions=True)
        errors: list[BaseException] = []
        for (_, pairs), outcome in zip(requests, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                errors.append(outcome)
            else:
                done.update(pairs)
        if errors:
            transient = [e for e in errors if not (isinstance(e, PublishError) and e.permanent)]
            raise (transient or errors)[0]

    def _settle(
        self,
        conn: Connection,
        sent: Sequence[ClaimedRow],
        failed: Sequence[tuple[ClaimedRow, str]],
        unsent: Sequence[ClaimedRow] = (),
        reason: str = "",
    ) -> None:
        """One commit (the claim's transaction): sent rows, failed rows, rows left pending."""
        now = self._clock()
        if sent:
            conn.execute(_MARK_SENT, {"ids": [row.id for row in sent], "now": now})
        if failed:
            for row, error in failed:
                log.error("outbox event %s (%s) refused for good, marked failed and not retried: %s",
                          row.id, row.event_type, error)  # fmt: skip
            conn.execute(
                _MARK_FAILED, [{"row_id": row.id, "now": now, "error": error[:2000]} for row, error in failed]
            )
        if unsent:
            conn.execute(_MARK_UNSENT, {"ids": [row.id for row in unsent], "reason": reason[:2000]})
        conn.commit()
        conn.close()
        self.published += len(sent)
        self.failed += len(failed)
        RELAY_PUBLISHED.inc(len(sent))
        for row in sent:
            lag = (now - as_utc(row.created_at)).total_seconds()
            RELAY_LAG.observe(lag)

    def _note_failure(self, conn: Connection, rows: Sequence[ClaimedRow], reason: str) -> None:
        conn.rollback()
        conn.execute(_MARK_UNSENT, {"ids": [row.id for row in rows], "reason": reason[:2000]})
        conn.commit()
        conn.close()

    # -- metrics -------------------------------------------------------------------------
    def metrics(self) -> dict[str, Any]:
        """The outbox's state from the database and this relay's counters and last error (sync:
        DB calls). Timings (lag, round phases) are Prometheus histograms only: ``GET /metrics``."""
        backlog, age, failed = outbox_gauges(self._engine, self._clock)
        with self._engine.connect() as conn:
            last_failed = conn.execute(_LAST_FAILED).first()
        return {
            "backlog": backlog,
            "oldest_pending_age_s": round(age, 3),
            "published": self.published,
            "failures": self.failures,
            "failed": failed,  # rows refused for good (not retried; see last_failed)
            "last_failed": {"id": last_failed[0], "error": last_failed[1]} if last_failed else None,
            "backing_off_s": self._backoff,
            "last_error": self.last_error,
        }


_LAST_FAILED: Final = (
    core_select(_OUTBOX.c.id, _OUTBOX.c.last_error)
    .where(_OUTBOX.c.failed_at.is_not(None))
    .order_by(_OUTBOX.c.id.desc())
    .limit(1)
)


async def _traced_publish(
    topic: str,
    events: Sequence[Mapping[str, Any]],
    publish: Callable[..., Awaitable[None]],
    *args: Any,
    **kwargs: Any,
) -> None:
    """One publish request, timed (``todo_relay_publish_duration_seconds``) and, with tracing on,
    a PRODUCER span in the trace of the first event's writer, linked to the other writers' traces;
    the publisher sends its context to daprd (``traceparent`` header), so daprd's span joins it."""
    contexts = [event.get("traceparent") for event in events]
    parent = tracing.context_from(next((c for c in contexts if c), None))
    links = [link for c in contexts[1:_MAX_LINKS] if (link := tracing.link_to(c)) is not None]
    attributes = {"messaging.system": "dapr", "messaging.destination.name": topic,
                  "messaging.batch.message_count": len(events)}  # fmt: skip
    with tracing.span(f"{topic} publish", kind=SpanKind.PRODUCER, context=parent, links=links,
                      attributes=attributes):  # fmt: skip
        started = time.perf_counter()
        await publish(*args, **kwargs)
        RELAY_PUBLISH.labels(topic=topic).observe(time.perf_counter() - started)


def outbox_gauges(engine: Engine, clock: Clock = utc_now) -> tuple[int, float, int]:
    """``(backlog, age of the oldest pending row in seconds, rows failed for good)``, in one query."""
    failed = func.count().filter(_OUTBOX.c.failed_at.is_not(None))
    pending = _OUTBOX.c.published_at.is_(None) & _OUTBOX.c.failed_at.is_(None)
    statement = core_select(
        func.count().filter(pending), func.min(_OUTBOX.c.created_at).filter(pending), failed
    )
    with engine.connect() as conn:
        backlog, oldest, failures = conn.execute(statement).one()
    age = (clock() - as_utc(oldest)).total_seconds() if oldest else 0.0
    return int(backlog), max(age, 0.0), int(failures)


def _row_id(row: ClaimedRow) -> int:
    return row.id


def new_event_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:  # uvloop is optional (uvicorn[standard] brings it)
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


async def _in_thread(fn: Callable[..., T], *args: Any) -> T:
    """Run a blocking DB call in a thread; if cancelled, let it finish before re-raising, so
    nothing else touches the session while it runs."""
    future = asyncio.ensure_future(asyncio.to_thread(fn, *args))
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        with contextlib.suppress(Exception):
            await future
        raise
