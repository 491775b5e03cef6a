"""The unit of work on both databases: rows and their outbox events commit together, and the
after-commit listeners see the outbox rows exactly as they were stored."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from tasks.db import make_engine, migrate
from tasks.events import ReminderDue, TaskChanged
from tasks.inputs import TaskDraft, TaskQuery
from tasks.models import OutboxEvent, Task
from tasks.schemas import TaskView
from tasks.service import Actor, TaskService
from tasks.unit_of_work import UnitOfWorkFactory
from tests.conftest import FixedClock, service_on

pytestmark = pytest.mark.integration


@pytest.fixture
def committed(backend: tuple[TaskService, UnitOfWorkFactory]) -> list[OutboxEvent]:
    """The outbox rows every commit handed to its after-commit listeners."""
    seen: list[OutboxEvent] = []

    def listener(rows: Sequence[OutboxEvent]) -> None:
        seen.extend(rows)

    backend[1].after_commit.append(listener)
    return seen


def stored(uow: UnitOfWorkFactory, user_id: str) -> tuple[list[Task], list[OutboxEvent]]:
    with Session(uow.engine) as session:
        tasks = session.exec(select(Task).where(Task.owner_id == user_id).order_by(col(Task.id)))
        rows = session.exec(
            select(OutboxEvent).where(OutboxEvent.user_id == user_id).order_by(col(OutboxEvent.id))
        )
        return list(tasks), list(rows)


def new_task(actor: Actor, clock: FixedClock, title: str = "Buy milk") -> Task:
    return Task(owner_id=actor.user_id, title=title, created_at=clock.now, updated_at=clock.now)


def created(actor: Actor, task: Task, clock: FixedClock) -> TaskChanged:
    """The ``created`` event of a task already inserted (it has its id)."""
    view = TaskView.of(task)
    return TaskChanged(
        event_type="created", user_id=actor.user_id, task_id=view.id, task_data=view, timestamp=clock.now
    )


def test_listeners_see_the_created_task_and_its_outbox_row_as_stored(
    backend: tuple[TaskService, UnitOfWorkFactory], committed: list[OutboxEvent], actor: Actor
) -> None:
    service, uow = backend
    view = service.add(actor, TaskDraft(title="Buy milk", due="tomorrow 5pm", tags=["shop"]))

    [task], rows = stored(uow, actor.user_id)
    assert TaskView.of(task) == view.view()
    assert [row.model_dump() for row in committed] == [row.model_dump() for row in rows]
    [row] = rows
    assert (row.task_id, row.payload["task_data"]["id"]) == (view.id, view.id)
    assert row.created_at.tzinfo is not None and row.published_at is None and row.attempts == 0


def test_events_recorded_together_get_ids_in_the_order_they_were_recorded(
    backend: tuple[TaskService, UnitOfWorkFactory],
    committed: list[OutboxEvent],
    actor: Actor,
    clock: FixedClock,
) -> None:
    _service, uow = backend
    with uow() as unit:
        tasks = [new_task(actor, clock, title) for title in ("first", "second")]
        unit.insert(tasks)
        for task in tasks:
            unit.record(created(actor, task, clock))
        assert tasks[1].id is not None
        unit.record(
            ReminderDue(
                user_id=actor.user_id, task_id=tasks[1].id, title="second",
                remind_at=clock.now + timedelta(hours=1), timestamp=clock.now,
            )
        )  # fmt: skip
        returned = unit.commit()

    stored_tasks, rows = stored(uow, actor.user_id)
    assert [task.id for task in stored_tasks] == [task.id for task in tasks]
    assert [t.title for t in stored_tasks] == ["first", "second"]
    assert returned == committed
    assert [row.model_dump() for row in committed] == [row.model_dump() for row in rows]
    assert [(row.task_id, row.event_type) for row in rows] == [
        (tasks[0].id, "todo.task.created.v1"),
        (tasks[1].id, "todo.task.created.v1"),
        (tasks[1].id, "todo.reminder.due.v1"),
    ]


def test_a_task_and_its_event_commit_together_or_not_at_all(
    backend: tuple[TaskService, UnitOfWorkFactory],
    committed: list[OutboxEvent],
    actor: Actor,
    clock: FixedClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _service, uow = backend
    with pytest.raises(RuntimeError, match="commit failed"), uow() as unit:
        task = new_task(actor, clock)
        unit.insert([task])
        unit.record(created(actor, task, clock))

        def failing_commit() -> None:
            raise RuntimeError("commit failed")

        monkeypatch.setattr(unit.session, "commit", failing_commit)
        unit.commit()

    assert stored(uow, actor.user_id) == ([], [])
    assert committed == []


def test_a_failure_after_the_insert_leaves_nothing_behind(
    backend: tuple[TaskService, UnitOfWorkFactory], actor: Actor, clock: FixedClock
) -> None:
    _service, uow = backend
    with pytest.raises(RuntimeError, match="changed my mind"), uow() as unit:
        unit.insert([new_task(actor, clock)])
        raise RuntimeError("changed my mind")

    assert stored(uow, actor.user_id) == ([], [])


def test_on_a_sqlite_without_returning_the_ids_come_from_the_cursor(
    sqlite_url: str, clock: FixedClock, actor: Actor, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = make_engine(sqlite_url)
    migrate(engine)
    monkeypatch.setattr(engine.dialect, "insert_returning", False)  # SQLite before 3.35
    monkeypatch.setattr(engine.dialect, "insert_executemany_returning_sort_by_parameter_order", False)
    uow = UnitOfWorkFactory(engine)
    seen: list[OutboxEvent] = []
    uow.after_commit.append(seen.extend)
    try:
        views = [TaskService(uow, clock=clock).add(actor, TaskDraft(title=t)) for t in ("one", "two")]
        with uow() as unit:
            tasks = [new_task(actor, clock, title) for title in ("three", "four")]
            unit.insert(tasks)
            unit.commit()

        stored_tasks, rows = stored(uow, actor.user_id)
    finally:
        engine.dispose()
    assert [task.id for task in stored_tasks] == [views[0].id, views[1].id, tasks[0].id, tasks[1].id]
    assert [row.model_dump() for row in seen] == [row.model_dump() for row in rows]
    assert [row.task_id for row in rows] == [views[0].id, views[1].id]


def test_one_users_outbox_ids_follow_commit_order_on_postgres(pg_url: str, clock: FixedClock) -> None:
    """While one of alice's transactions is between writing its outbox row and committing (here:
    another connection holding her outbox lock with a row written), her next write waits and
    gets a later id; bob's write does not wait. Without the lock her second row would take a
    later id but commit first, and the relay (committed rows in id order) would publish it first."""
    from concurrent.futures import ThreadPoolExecutor

    service, uow = next(services := service_on(pg_url, clock))
    alice = Actor(user_id=f"alice-{uuid.uuid4().hex[:8]}", timezone="Europe/Berlin")
    bob = Actor(user_id=f"bob-{uuid.uuid4().hex[:8]}", timezone="Europe/Berlin")
    with uow.engine.connect() as first, ThreadPoolExecutor(2) as pool:
        early_id = _take_turn_and_write_an_event(first, alice.user_id)
        hers = pool.submit(service.add, alice, TaskDraft(title="second"))
        with pytest.raises(TimeoutError):
            hers.result(timeout=0.5)  # alice's write waits for her first transaction
        his = pool.submit(service.add, bob, TaskDraft(title="his"))
        his.result(timeout=10)  # bob is not held up by alice's lock
        first.commit()
        hers.result(timeout=10)
    _, rows = stored(uow, alice.user_id)
    _, bobs = stored(uow, bob.user_id)
    assert [row.id for row in rows][0] == early_id and len(rows) == 2
    # her waiting write drew its id only once her turn came: after bob's, written meanwhile
    assert rows[1].id is not None and bobs[0].id is not None
    assert rows[1].id > bobs[0].id > early_id
    services.close()


def test_a_commit_with_several_users_events_takes_each_users_turn(pg_url: str, clock: FixedClock) -> None:
    """Reminder firing commits many users' events at once: each user's lock, in one statement,
    held until the transaction ends."""
    from sqlalchemy import text

    from tasks.unit_of_work import OUTBOX_USER_LOCK_SPACE

    _, uow = next(services := service_on(pg_url, clock))
    held = text(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND classid = :space"
        " AND objsubid = 2 AND pid = pg_backend_pid()"
    )
    three = [f"u{n}-{uuid.uuid4().hex[:6]}" for n in (3, 1, 2)]
    users = [*three, three[1]]  # one user twice: one lock
    rows = [OutboxEvent(topic="task-events", event_type="todo.task.updated.v1", user_id=u, payload={})
            for u in users]  # fmt: skip
    with uow() as unit:
        connection = unit.session.connection()
        assert connection.execute(held, {"space": OUTBOX_USER_LOCK_SPACE}).scalar_one() == 0
        unit._take_users_turn(rows)
        assert connection.execute(held, {"space": OUTBOX_USER_LOCK_SPACE}).scalar_one() == 3
        unit.session.rollback()
        connection = unit.session.connection()
        assert connection.execute(held, {"space": OUTBOX_USER_LOCK_SPACE}).scalar_one() == 0
    services.close()


def test_a_read_only_unit_reads_outside_a_transaction_and_cannot_commit(
    backend: tuple[TaskService, UnitOfWorkFactory], actor: Actor, clock: FixedClock
) -> None:
    service, uow = backend
    view = service.add(actor, TaskDraft(title="Buy milk"))
    with uow(read_only=True) as unit:
        assert unit.session.get(Task, view.id) is not None
        if unit.is_postgres:  # no BEGIN was sent: each statement is its own transaction
            dbapi = unit.session.connection().connection.dbapi_connection
            assert dbapi is not None and dbapi.info.transaction_status.name == "IDLE"
        unit.record(
            ReminderDue(
                user_id=actor.user_id, task_id=view.id, title="x", remind_at=clock.now, timestamp=clock.now
            )
        )
        with pytest.raises(RuntimeError, match="read-only"):
            unit.commit()
    assert len(stored(uow, actor.user_id)[1]) == 1


def test_a_write_after_a_read_only_unit_is_one_transaction_again(
    backend: tuple[TaskService, UnitOfWorkFactory], actor: Actor, clock: FixedClock
) -> None:
    """The pooled connection a read-only unit used is back in transaction mode for the next unit:
    a write that fails part-way leaves nothing behind."""
    service, uow = backend
    for _ in range(3):
        with uow(read_only=True) as unit:
            unit.session.exec(select(Task).where(Task.owner_id == actor.user_id)).all()
            read_on = unit.session.connection().connection.dbapi_connection
        with pytest.raises(RuntimeError, match="changed my mind"), uow() as unit:
            assert unit.session.connection().connection.dbapi_connection is read_on  # pooled
            unit.insert([new_task(actor, clock)])
            raise RuntimeError("changed my mind")
    assert stored(uow, actor.user_id) == ([], [])
    assert service.list(actor, TaskQuery(status="all")).items == []


def test_an_update_writes_only_the_columns_that_changed_and_only_once(
    backend: tuple[TaskService, UnitOfWorkFactory], actor: Actor
) -> None:
    from sqlalchemy import event

    service, uow = backend
    view = service.add(actor, TaskDraft(title="Buy milk", priority="high"))
    statements: list[str] = []

    def seen(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement)

    event.listen(uow.engine, "before_cursor_execute", seen)
    try:
        with uow() as unit:
            task = unit.session.get(Task, view.id)
            assert task is not None
            task.title, task.priority, task.version = "Buy oat milk", "high", task.version + 1
            unit.update(task)
            unit.commit()
    finally:
        event.remove(uow.engine, "before_cursor_execute", seen)
    [written] = [s for s in statements if s.startswith("UPDATE")]
    assert written.split(" WHERE")[0].replace("::VARCHAR", "").replace("::INTEGER", "") in (
        "UPDATE tasks SET title=%(title)s, version=%(version)s",
        "UPDATE tasks SET title=?, version=?",
    )
    [stored_task], _ = stored(uow, actor.user_id)
    assert (stored_task.title, stored_task.priority, stored_task.version) == ("Buy oat milk", "high", 2)


@pytest.mark.parametrize("with_event", [False, True], ids=["alone", "with-an-event"])
def test_an_update_of_a_row_deleted_meanwhile_is_stale_and_commits_nothing(
    backend: tuple[TaskService, UnitOfWorkFactory], actor: Actor, clock: FixedClock, with_event: bool
) -> None:
    """The update is written at commit (on PostgreSQL in the outbox row's statement when there
    is one event): a row gone by then raises as the ORM's flush did, and nothing is written."""
    from sqlalchemy import text
    from sqlalchemy.orm.exc import StaleDataError

    service, uow = backend
    view = service.add(actor, TaskDraft(title="Buy milk"))
    with uow() as unit:
        task = unit.session.get(Task, view.id)
        assert task is not None
        with uow.engine.connect() as other:
            other.execute(text("DELETE FROM tasks WHERE id = :id"), {"id": view.id})
            other.commit()
        task.title = "Gone"
        unit.update(task)
        if with_event:
            unit.record(created(actor, task, clock))
        with pytest.raises(StaleDataError, match="expected to update 1 row"):
            unit.commit()
    tasks, rows = stored(uow, actor.user_id)
    assert tasks == [] and [row.event_type for row in rows] == ["todo.task.created.v1"]  # the add's


def test_an_update_and_its_event_are_one_statement_on_postgres(pg_url: str, clock: FixedClock) -> None:
    """One changed row and one outbox row: the UPDATE runs in the outbox row's statement, after
    the user's turn; two changed rows are written before it, as one executemany (a batch's
    updates of the same columns go together)."""
    from sqlalchemy import event

    service, uow = next(services := service_on(pg_url, clock))
    alice = Actor(user_id=f"alice-{uuid.uuid4().hex[:8]}", timezone="Europe/Berlin")
    first, second = (service.add(alice, TaskDraft(title=title)) for title in ("first", "second"))
    statements: list[str] = []

    def seen(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement)

    event.listen(uow.engine, "before_cursor_execute", seen)
    try:
        for ids in ([first.id], [first.id, second.id]):
            with uow() as unit:
                for task_id in ids:
                    task = unit.session.get(Task, task_id)
                    assert task is not None
                    task.title, task.version = f"{task.title}!", task.version + 1
                    unit.update(task)
                assert task is not None
                unit.record(created(alice, task, clock))
                unit.commit()
    finally:
        event.remove(uow.engine, "before_cursor_execute", seen)

    def kind(statement: str) -> str:
        return " and ".join(part for part in ("UPDATE tasks", "INSERT INTO outbox") if part in statement)

    writes = [kind(s) for s in statements if kind(s)]
    assert writes == [
        "UPDATE tasks and INSERT INTO outbox",
        "UPDATE tasks",
        "INSERT INTO outbox",
    ]
    tasks, rows = stored(uow, alice.user_id)
    assert [t.title for t in tasks] == ["first!!", "second!"] and [t.version for t in tasks] == [3, 2]
    assert len(rows) == 4
    services.close()


def test_an_update_waits_for_its_users_turn_on_postgres(pg_url: str, clock: FixedClock) -> None:
    """The update written in the outbox row's statement takes the user's turn as an add does: while
    another transaction holds it, the change waits, and its event gets the later id."""
    from concurrent.futures import ThreadPoolExecutor

    from tasks.inputs import TaskChanges

    service, uow = next(services := service_on(pg_url, clock))
    alice = Actor(user_id=f"alice-{uuid.uuid4().hex[:8]}", timezone="Europe/Berlin")
    view = service.add(alice, TaskDraft(title="Report"))
    with uow.engine.connect() as first, ThreadPoolExecutor(1) as pool:
        early_id = _take_turn_and_write_an_event(first, alice.user_id)
        change = pool.submit(service.update, alice, view.id, TaskChanges(title="Final report"))
        with pytest.raises(TimeoutError):
            change.result(timeout=0.5)
        first.commit()
        assert change.result(timeout=10).title == "Final report"
    [task], rows = stored(uow, alice.user_id)
    assert task.title == "Final report"
    assert rows[-1].id is not None
    assert [row.id for row in rows][1:] == [early_id, rows[-1].id] and rows[-1].id > early_id
    services.close()


def _take_turn_and_write_an_event(connection: Any, user_id: str) -> int:
    """In ``connection``'s open transaction: take ``user_id``'s outbox turn and write one event
    row, as a commit of that user does; the id of the row."""
    from sqlalchemy import text

    from tasks.unit_of_work import OUTBOX_USER_LOCK_SPACE

    connection.execute(
        text("SELECT pg_advisory_xact_lock(:space, hashtext(:user))"),
        {"space": OUTBOX_USER_LOCK_SPACE, "user": user_id},
    )
    return int(
        connection.execute(
            text(
                "INSERT INTO outbox (topic, event_type, user_id, task_id, payload, created_at, attempts)"
                " VALUES ('task-events', 'todo.task.created.v1', :user, NULL, '{}', now(), 0) RETURNING id"
            ),
            {"user": user_id},
        ).scalar_one()
    )


def test_a_consumer_sees_an_event_for_the_first_time_until_its_mark_commits(
    backend: tuple[TaskService, UnitOfWorkFactory],
) -> None:
    _, uow_factory = backend
    event_id = f"event-{uuid.uuid4().hex}"
    with uow_factory() as uow:
        assert uow.first_time("audit", event_id)
        uow.mark_processed("audit", event_id)  # rolled back: never committed
    with uow_factory() as uow:
        assert uow.first_time("audit", event_id)
        uow.mark_processed("audit", event_id)
        uow.commit()
    with uow_factory() as uow:
        assert not uow.first_time("audit", event_id)
        assert uow.first_time("recurrence", event_id)  # each consumer keeps its own marks
        assert uow.processed_among("audit", [event_id, "never-seen"]) == {event_id}
        uow.mark_processed("audit", event_id)
        with pytest.raises(IntegrityError):  # a second mark of one event cannot commit
            uow.commit()
