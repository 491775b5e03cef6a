"""The unit of work: one transaction that writes task rows and their outbox events together.

with uow_factory() as uow:
    task = uow.tasks.locked(task_id)            # the queries consumers need: tasks/repositories.py
    if uow.first_time("recurrence", event_id):  # an idempotent consumer's question
        uow.record(TaskChanged(...))
        uow.mark_processed("recurrence", event_id)
    uow.commit()   # rows + outbox + processed mark in one commit, then after-commit listeners run
"""

from __future__ import annotations

import functools
import itertools
import logging
from collections.abc import Callable, Collection, Sequence
from types import TracebackType
from typing import Any, Final, Self

from sqlalchemy import (
    Connection,
    Engine,
    Insert,
    Integer,
    Table,
    Text,
    Update,
    bindparam,
    func,
    insert,
    inspect,
    select,
    text,
    true,
    update,
)
from sqlalchemy.orm import configure_mappers
from sqlalchemy.orm.exc import StaleDataError
from sqlmodel import Session, SQLModel

from tasks.clock import utc_now
from tasks.events import DomainEvent
from tasks.models import OutboxEvent, ProcessedEvent
from tasks.repositories import OutboxRows, TaskRows, processed_among

log = logging.getLogger(__name__)

AfterCommit = Callable[[Sequence[OutboxEvent]], None]


class UnitOfWork:
    """One transaction; ``read_only`` units (see ``UnitOfWorkFactory``) cannot commit."""

    def __init__(
        self,
        engine: Engine,
        *,
        after_commit: Sequence[AfterCommit] = (),
        bind: Engine | None = None,
        read_only: bool = False,
    ) -> None:
        self._engine = engine
        self._bind = bind or engine
        self._after_commit = after_commit
        self._pending: list[DomainEvent] = []
        self.read_only = read_only
        self._session: Session | None = None
        self._connection: Connection | None = None
        self._updates: list[tuple[Table, int, dict[str, Any]]] = []

    def __enter__(self) -> Self:
        self._session, self._connection, self._pending, self._updates = None, None, [], []
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._session is not None:
            self._session.rollback()
            self._session.close()
        if self._connection is not None:
            self._connection.close()

    @property
    def session(self) -> Session:
        """The unit's ORM session, made when first used."""
        if self._session is None:
            bind = self.connection() if self.read_only else self._bind
            self._session = Session(bind, expire_on_commit=False)
        return self._session

    def connection(self) -> Connection:
        """The unit's Core connection, in its transaction. A read-only unit's is a connection of
        its own (its session, if used, runs on it): Core reads skip the session's bookkeeping."""
        if not self.read_only:
            return self.session.connection()
        if self._connection is None:
            self._connection = self._bind.connect()
        return self._connection

    @property
    def tasks(self) -> TaskRows:
        """Task rows by id, read in this unit (see ``tasks/repositories.py``)."""
        return TaskRows(self.session, can_lock=self.is_postgres)

    @property
    def outbox(self) -> OutboxRows:
        """Outbox rows already committed, read in this unit."""
        return OutboxRows(self.session)

    @property
    def is_postgres(self) -> bool:
        return self._engine.dialect.name == "postgresql"

    def first_time(self, consumer: str, event_id: str) -> bool:
        """True when ``consumer`` has not processed ``event_id`` in an earlier, committed unit."""
        return self.session.get(ProcessedEvent, (consumer, event_id)) is None

    def processed_among(self, consumer: str, event_ids: Collection[str]) -> set[str]:
        """Those of ``event_ids`` that ``consumer`` has already processed."""
        return processed_among(self.session, consumer, event_ids) if event_ids else set()

    def mark_processed(self, consumer: str, event_id: str) -> None:
        """Record that ``consumer`` processed ``event_id``, written by ``commit`` with the effect;
        a concurrent unit that marked it first makes the commit fail (``IntegrityError``)."""
        self.session.add(ProcessedEvent(consumer=consumer, event_id=event_id))

    def serialize_writes(self) -> None:
        """On SQLite, take the database's write lock now (as ``BEGIN IMMEDIATE`` would): what
        this unit reads next cannot change before it commits. A read-check-write that must be
        exact (an undo) calls it first; on PostgreSQL such a unit locks its rows instead."""
        if not self.is_postgres:
            self.session.execute(_TAKE_WRITE_LOCK)

    def record(self, event: DomainEvent) -> None:
        """Collect an event; it is written to the outbox by ``commit``."""
        self._pending.append(event)

    @property
    def recorded(self) -> Sequence[DomainEvent]:
        """The events recorded so far in this unit (``commit`` writes them), to complete them
        with what is known only at the end (the change id of the write they belong to)."""
        return tuple(self._pending)

    def insert(self, rows: Sequence[SQLModel]) -> None:
        """Write new rows of one table at once and give them their ids, in order.

        One Core ``INSERT ... RETURNING id`` in this transaction, cheaper than the ORM's flush;
        the rows stay outside the session (nothing tracks them afterwards). Every column is
        written as the row holds it, so the rows must be complete, as SQLModel builds them.
        """
        if not rows:
            return
        table: Table = type(rows[0]).__table__  # type: ignore[attr-defined]
        for row, row_id in zip(rows, self._insert(table, _values(table, rows)), strict=True):
            row.id = row_id

    def update(self, row: SQLModel) -> None:
        """Have the changes made to ``row``, read in this unit's session (and locked), written at
        ``commit`` with one Core ``UPDATE ... WHERE id`` instead of the ORM's flush, and take the
        row out of the session. On PostgreSQL, a commit with one such update and one outbox row
        writes both in one statement.

        The columns written are the ones a flush would write: those set since the row was read
        to a value that differs. As with a flush, a row that is gone raises ``StaleDataError``.
        """
        state = inspect(row)
        values = {}
        for key, old in state.committed_state.items():
            new = getattr(row, key)
            if new != old:
                values[key] = new
        self.session.expunge(row)
        if values:
            self._updates.append((type(row).__table__, row.id, values))  # type: ignore[attr-defined]

    def _write_updates(self) -> None:
        """The pending updates; a run of updates to the same columns of one table (a batch
        call's) goes as one executemany, a round trip for all on PostgreSQL (psycopg pipelines)."""
        connection = self.session.connection()
        for (table, _columns), group in itertools.groupby(
            self._updates, key=lambda update: (update[0], tuple(sorted(update[2])))
        ):
            rows = [values | {"row_id": row_id} for _table, row_id, values in group]
            result = connection.execute(_update_by_id(table), rows)
            if result.rowcount != len(rows):
                raise _stale(table, result.rowcount)
        self._updates = []

    def _insert(self, table: Table, values: list[dict[str, Any]]) -> list[int]:
        """``insert``'s statements: the new rows' ids, in order."""
        connection = self.session.connection()
        dialect = connection.dialect
        if dialect.insert_executemany_returning_sort_by_parameter_order or (
            len(values) == 1 and dialect.insert_returning
        ):
            return list(connection.execute(_insert_returning_id(table), values).scalars())
        ids = []  # SQLite before 3.35: no RETURNING; one INSERT per row, its id from the cursor
        for one in values:
            key = connection.execute(insert(table), one).inserted_primary_key
            assert key is not None
            ids.append(key[0])
        return ids

    def commit(self) -> list[OutboxEvent]:
        """Write the recorded events to the outbox, commit, and hand the outbox rows (with their
        ids) to the after-commit listeners, which read them: they are built without ORM state
        (``model_construct``, a seventh of ``OutboxEvent()``'s cost) and belong to no session."""
        if self.read_only:
            raise RuntimeError("A read-only unit of work cannot commit; open one with read_only=False.")
        rows = [_outbox_row(event) for event in self._pending]
        self.session.flush()  # the unit's own changes first, as one flush at commit would
        if rows:
            table: Table = OutboxEvent.__table__  # type: ignore[attr-defined]
            values = _values(table, rows)
            if self.is_postgres and len(rows) == 1:  # the common case: one round trip for all
                ids = [self._insert_taking_turn(values[0])]
            else:
                self._write_updates()
                if self.is_postgres:
                    self._take_users_turn(rows)
                ids = self._insert(table, values)
            rows = [row.model_copy(update={"id": row_id}) for row, row_id in zip(rows, ids, strict=True)]
        self._write_updates()
        self.session.commit()
        self._pending = []
        for listener in self._after_commit:
            try:
                listener(rows)
            except Exception:  # a listener's failure must not undo a committed change
                log.exception("after-commit listener %r failed", listener)
        return rows

    def _insert_taking_turn(self, values: dict[str, Any]) -> int:
        """``_take_users_turn`` and ``insert`` of one outbox row in one statement (PostgreSQL):
        the lock is taken in a CTE the row's SELECT reads, so before the row's id is drawn. A
        pending ``update`` of one row goes in the same statement (a CTE the SELECT reads too:
        no outbox row if it updated nothing); more than one are written before it."""
        outbox: Table = OutboxEvent.__table__  # type: ignore[attr-defined]
        params = {f"outbox_{key}": value for key, value in values.items()}
        params |= {"outbox_lock_space": OUTBOX_USER_LOCK_SPACE, "outbox_lock_user": values["user_id"]}
        connection = self.session.connection()
        if len(self._updates) != 1:
            self._write_updates()
            row_id: int = connection.execute(_insert_after_turn(outbox), params).scalar_one()
            return row_id
        [(table, changed_id, changes)] = self._updates
        self._updates = []
        params |= {f"changed_{key}": value for key, value in changes.items()}
        params["changed_row_id"] = changed_id
        statement = _insert_after_turn(outbox, table, tuple(changes))
        written = connection.execute(statement, params).scalar_one_or_none()
        if written is None:  # the UPDATE matched no row, so the SELECT gave no outbox row
            raise _stale(table, 0)
        return int(written)

    def _take_users_turn(self, rows: Sequence[OutboxEvent]) -> None:
        """Hold each of the rows' users' outbox lock until this transaction ends, before the
        rows get their ids: one user's outbox ids then follow commit order (an id is taken when
        the row is written, and two of a user's transactions could otherwise commit in the
        opposite order of their ids). So the relay, which publishes committed rows in id order,
        never publishes a user's later event first, and a socket resuming "after event N" never
        misses one that committed late. Taken last in the transaction (nothing is waited for
        while it is held) and in key order, so it cannot deadlock."""
        users = sorted({row.user_id for row in rows})
        connection = self.session.connection()
        if len(users) == 1:
            connection.execute(_USER_TURN, {"space": OUTBOX_USER_LOCK_SPACE, "user": users[0]})
        else:
            connection.execute(_USERS_TURNS, {"space": OUTBOX_USER_LOCK_SPACE, "users": users})


#: A write that changes nothing: SQLite takes its write lock for it (see ``serialize_writes``).
_TAKE_WRITE_LOCK: Final = text("UPDATE outbox SET id = id WHERE 0 = 1")
#: The first key of the per-user outbox locks (``pg_advisory_xact_lock(space, hashtext(user))``;
#: two-key advisory locks never collide with the relay's one-key lock).
OUTBOX_USER_LOCK_SPACE: Final = 0x7D0_0B0C
_USER_TURN: Final = text("SELECT pg_advisory_xact_lock(:space, hashtext(:user))")
_USERS_TURNS: Final = text(
    "SELECT pg_advisory_xact_lock(:space, k) FROM "
    "(SELECT DISTINCT hashtext(u) AS k FROM unnest(CAST(:users AS text[])) AS u ORDER BY k) AS keys"
)


@functools.cache
def _written_columns(table: Table) -> tuple[str, ...]:
    """Every column of ``table`` but the generated ``id``."""
    return tuple(column.key for column in table.columns if column.key != "id")


def _values(table: Table, rows: Sequence[SQLModel]) -> list[dict[str, Any]]:
    return [{name: getattr(row, name) for name in _written_columns(table)} for row in rows]


@functools.cache
def _insert_after_turn(table: Table, changed: Table | None = None, columns: tuple[str, ...] = ()) -> Insert:
    """``WITH turn AS (SELECT pg_advisory_xact_lock(space, hashtext(user))) INSERT INTO table
    SELECT <a parameter outbox_<column> per column> FROM turn RETURNING id``; with ``changed``,
    also the CTE ``changed AS (UPDATE changed SET <column> = :changed_<column>, ... WHERE id =
    :changed_row_id RETURNING id)`` joined in the FROM. No parameter is named as a column: an
    UPDATE would take a parameter named as one of its table's columns as a value to set."""
    turn = select(
        func.pg_advisory_xact_lock(
            bindparam("outbox_lock_space", type_=Integer()),
            func.hashtext(bindparam("outbox_lock_user", type_=Text())),
        )
    ).cte("turn")
    columns_written = [column for column in table.columns if column.key != "id"]
    # typed parameters (psycopg renders ``%(x)s::TYPE``) and no CAST to the column's type: an
    # explicit cast to varchar(n) would cut an overlong value where an insert refuses it
    row = select(*(bindparam(f"outbox_{c.key}", type_=c.type) for c in columns_written))
    if changed is None:
        row = row.select_from(turn)
    else:
        update_row = (
            update(changed)
            .where(changed.c.id == bindparam("changed_row_id"))
            .values({key: bindparam(f"changed_{key}", type_=changed.c[key].type) for key in columns})
            .returning(changed.c.id)
            .cte("changed")
        )
        row = row.select_from(turn.join(update_row, true()))
    return insert(table).from_select([c.key for c in columns_written], row).returning(table.c.id)


def _stale(table: Table, count: int) -> StaleDataError:
    """The error the ORM's flush raises for an UPDATE that did not match its one row."""
    return StaleDataError(
        f"UPDATE statement on table '{table.description}' expected to update 1 row(s); {count} were matched."
    )


@functools.cache
def _update_by_id(table: Table) -> Update:
    """``UPDATE table SET <the columns given> WHERE id = :row_id``."""
    return update(table).where(table.c.id == bindparam("row_id"))


@functools.cache
def _insert_returning_id(table: Table) -> Insert:
    """``INSERT ... RETURNING id``; with many rows, the ids come back in the rows' order."""
    return insert(table).returning(table.c.id, sort_by_parameter_order=True)


def _outbox_row(event: DomainEvent) -> OutboxEvent:
    """The event's outbox row, to read and insert with Core (no ORM state: ``model_construct``)."""
    configure_mappers()  # a no-op once done; without it a constructed row's fields can't be read
    return OutboxEvent.model_construct(
        topic=event.topic,
        event_type=event.kind,
        user_id=event.user_id,
        task_id=event.task_id,
        payload=event.model_dump(mode="json"),
        created_at=utc_now(),  # given, not the default factory: pydantic inspects that per call
    )


class UnitOfWorkFactory:
    """Makes units of work on one engine; listeners added later apply to new units.

    ``uow_factory(read_only=True)`` makes a unit for a read of one statement: on PostgreSQL
    its statements run outside a transaction block (autocommit, each its own transaction), which
    spares the BEGIN and ROLLBACK round trips a transaction would cost around one SELECT. Two
    statements in such a unit do not share a snapshot, and it cannot commit.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.after_commit: list[AfterCommit] = []
        self._reads = (
            engine.execution_options(isolation_level="AUTOCOMMIT")
            if engine.dialect.name == "postgresql"
            else engine
        )

    def __call__(self, *, read_only: bool = False) -> UnitOfWork:
        if read_only:
            return UnitOfWork(self.engine, bind=self._reads, read_only=True)
        return UnitOfWork(self.engine, after_commit=self.after_commit)
