"""The task use cases against both databases the product runs on: PostgreSQL and SQLite.

Every write is checked together with the outbox row it must leave behind.
"""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from sqlmodel import Session, col, select

from tasks.errors import InvalidInput, TaskNotFound, VersionConflict
from tasks.inputs import TaskChanges, TaskDraft, TaskQuery
from tasks.models import OutboxEvent, Task
from tasks.schemas import DeletedTask, TaskView
from tasks.service import Actor
from tasks.unit_of_work import UnitOfWorkFactory

pytestmark = pytest.mark.integration


@pytest.fixture
def other() -> Actor:
    return Actor(user_id=f"bob-{uuid.uuid4().hex[:8]}", timezone="America/New_York")


def outbox(uow: UnitOfWorkFactory, user_id: str) -> list[OutboxEvent]:
    with Session(uow.engine) as session:
        return list(
            session.exec(
                select(OutboxEvent).where(OutboxEvent.user_id == user_id).order_by(col(OutboxEvent.id))
            )
        )


def test_adding_a_task_reads_words_in_the_users_zone_and_records_one_event(backend, actor) -> None:
    service, uow = backend
    view = service.add(
        actor,
        TaskDraft(
            title="  Buy   milk ",
            due="tomorrow 5pm",
            priority="high",
            tags=["#Groceries", "shop"],
            remind_before_minutes=30,
        ),
    )
    assert view.title == "Buy milk"
    assert view.due_at is not None and view.due_at.isoformat() == "2026-11-27T16:00:00+00:00"
    assert view.remind_at is not None and view.remind_at.isoformat() == "2026-11-27T15:30:00+00:00"
    assert view.tags == ["groceries", "shop"]
    assert view.priority == "high" and view.version == 1
    [row] = outbox(uow, actor.user_id)
    assert (row.topic, row.event_type, row.task_id) == ("task-events", "todo.task.created.v1", view.id)
    assert row.payload["event_type"] == "created"
    assert row.payload["user_id"] == actor.user_id
    assert row.payload["schema_version"] == 1
    assert row.payload["task_data"]["title"] == "Buy milk"
    assert row.published_at is None


def test_update_records_what_changed(backend, actor, clock) -> None:
    service, uow = backend
    view = service.add(actor, TaskDraft(title="Report", due="friday 9am"))
    clock.now += timedelta(minutes=5)
    updated = service.update(actor, view.id, TaskChanges(title="Quarterly report", priority="medium"))
    assert updated.version == 2 and updated.updated_at == clock.now
    row = outbox(uow, actor.user_id)[-1]
    assert row.event_type == "todo.task.updated.v1"
    assert row.payload["changes"] == {"title": ["Report", "Quarterly report"], "priority": ["none", "medium"]}


def test_an_update_that_changes_nothing_records_nothing(backend, actor) -> None:
    service, uow = backend
    view = service.add(actor, TaskDraft(title="Same"))
    service.update(actor, view.id, TaskChanges(title="Same"))
    assert len(outbox(uow, actor.user_id)) == 1


def test_complete_and_reopen(backend, actor, clock) -> None:
    service, uow = backend
    view = service.add(actor, TaskDraft(title="Call mom", due="friday 8pm", remind_before_minutes=30))
    done = service.complete(actor, view.id)
    assert done.completed and done.completed_at == clock.now
    assert done.remind_at is None  # a completed task has no pending reminder
    again = service.reopen(actor, view.id)
    assert not again.completed and again.completed_at is None
    assert again.remind_at is not None
    types = [row.event_type for row in outbox(uow, actor.user_id)]
    assert types == ["todo.task.created.v1", "todo.task.completed.v1", "todo.task.uncompleted.v1"]


def test_delete_records_the_last_snapshot(backend, actor) -> None:
    service, uow = backend
    view = service.add(
        actor, TaskDraft(title="Old", due="friday 9am", tags=["home"], remind_before_minutes=5)
    )
    changed = service.update(actor, view.id, TaskChanges(priority="high"))
    gone = service.delete(actor, view.id)
    assert gone.deleted and gone.title == "Old"
    with pytest.raises(TaskNotFound):
        service.get(actor, view.id)
    with pytest.raises(TaskNotFound):
        service.delete(actor, view.id)
    row = outbox(uow, actor.user_id)[-1]
    assert row.event_type == "todo.task.deleted.v1" and row.payload["task_data"]["title"] == "Old"
    assert row.payload["task_data"] == changed.view().model_dump(mode="json")  # every field as it was last


def test_another_users_task_is_not_found_and_untouched(backend, actor, other) -> None:
    service, uow = backend
    view = service.add(actor, TaskDraft(title="Private"))
    for attempt in (
        lambda: service.get(other, view.id),
        lambda: service.update(other, view.id, TaskChanges(title="Hacked")),
        lambda: service.complete(other, view.id),
        lambda: service.delete(other, view.id),
        lambda: service.set_reminder(other, view.id, at="tomorrow 9am"),
    ):
        with pytest.raises(TaskNotFound):
            attempt()
    assert service.get(actor, view.id).title == "Private"
    assert service.list(other, TaskQuery(status="all")).items == []
    assert outbox(uow, other.user_id) == []


@pytest.mark.parametrize(
    ("draft", "field"),
    [
        ({"title": ""}, "title"),
        ({"title": "x" * 201}, "title"),
        ({"title": "ok", "description": "d" * 4001}, "description"),
        ({"title": "ok", "tags": [f"t{i}" for i in range(21)]}, "tags"),
        ({"title": "ok", "due": "tomorow 5pm"}, "due"),
        ({"title": "ok", "priority": "extreme"}, "priority"),
        ({"title": "ok", "recurrence": "every blue moon"}, "recurrence"),
    ],
)
def test_bad_input_is_refused_and_writes_nothing(backend, actor, draft, field) -> None:
    service, uow = backend
    with pytest.raises(InvalidInput) as caught:
        service.add(actor, TaskDraft(**draft))
    assert caught.value.field == field
    assert outbox(uow, actor.user_id) == []
    assert service.list(actor, TaskQuery(status="all")).items == []


def test_a_failed_update_leaves_the_task_as_it_was(backend, actor) -> None:
    service, uow = backend
    view = service.add(actor, TaskDraft(title="Keep"))
    with pytest.raises(InvalidInput):
        service.update(actor, view.id, TaskChanges(title="New", due="not a date at all"))
    assert service.get(actor, view.id).title == "Keep"
    assert len(outbox(uow, actor.user_id)) == 1


def test_stale_version_is_a_conflict(backend, actor) -> None:
    service, _ = backend
    view = service.add(actor, TaskDraft(title="Shared"))
    service.update(actor, view.id, TaskChanges(title="First"), expected_version=1)
    with pytest.raises(VersionConflict):
        service.update(actor, view.id, TaskChanges(title="Second"), expected_version=1)


def test_reminders_absolute_relative_and_cancelled(backend, actor) -> None:
    service, uow = backend
    view = service.add(actor, TaskDraft(title="Call mom", due="friday 8pm"))
    at = service.set_reminder(actor, view.id, at="friday 7pm")
    assert at.remind_at is not None and at.remind_at.isoformat() == "2026-11-27T18:00:00+00:00"
    rel = service.set_reminder(actor, view.id, minutes_before_due=30)
    assert rel.remind_at is not None and rel.remind_at.isoformat() == "2026-11-27T18:30:00+00:00"
    moved = service.update(actor, view.id, TaskChanges(due="saturday 8pm"))
    assert moved.remind_at is not None and moved.remind_at.isoformat() == "2026-11-28T18:30:00+00:00"
    cancelled = service.cancel_reminder(actor, view.id)
    assert cancelled.remind_at is None and cancelled.remind_before_minutes is None
    assert [r.payload["changes"].get("remind_at") is not None for r in outbox(uow, actor.user_id)[1:]] == [
        True
    ] * 4


def test_reminder_mistakes_are_explained(backend, actor) -> None:
    service, _ = backend
    undated = service.add(actor, TaskDraft(title="Someday"))
    with pytest.raises(InvalidInput, match="no due time"):
        service.set_reminder(actor, undated.id, minutes_before_due=10)
    with pytest.raises(InvalidInput, match="not in the future"):
        service.set_reminder(actor, undated.id, at="2020-01-01T00:00:00Z")
    with pytest.raises(InvalidInput, match="either"):
        service.set_reminder(actor, undated.id)


def test_listing_filters(backend, actor, clock) -> None:
    service, _ = backend
    milk = service.add(
        actor, TaskDraft(title="Buy milk", due="tomorrow 5pm", tags=["groceries"], priority="high")
    )
    late = service.add(actor, TaskDraft(title="Pay rent", due="2026-11-20T10:00:00Z"))
    later = service.add(
        actor, TaskDraft(title="Dentist", due="2026-12-10T10:00:00Z", description="bring MILK card")
    )
    none = service.add(actor, TaskDraft(title="Read a book"))
    service.complete(actor, late.id)
    old = service.add(actor, TaskDraft(title="Old bill", due="2026-11-01T10:00:00Z"))

    def ids(**query: object) -> list[int]:
        return [t.id for t in service.list(actor, TaskQuery(**query)).items]  # type: ignore[arg-type]

    assert ids() == [old.id, milk.id, later.id, none.id]
    assert ids(status="completed") == [late.id]
    assert ids(status="all") == [old.id, late.id, milk.id, later.id, none.id]
    assert ids(overdue=True) == [old.id]
    assert ids(tag="#Groceries") == [milk.id]
    assert ids(priority="high") == [milk.id]
    assert ids(search="milk") == [milk.id, later.id]
    assert ids(due_before="2026-11-30T00:00:00Z") == [old.id, milk.id]
    assert ids(due_after="2026-12-01T00:00:00Z") == [later.id]


def test_search_takes_percent_underscore_and_slash_literally(backend, actor) -> None:
    service, _ = backend
    made = {
        title: service.add(actor, TaskDraft(title=title)).id
        for title in ("50% off", "500 off", "a_b", "axb", "and/or", "and or", "Sale 50% OFF/a_b")
    }

    def found(text: str) -> set[str]:
        items = service.list(actor, TaskQuery(status="all", search=text)).items
        return {title for title, task_id in made.items() if task_id in {t.id for t in items}}

    assert found("50%") == {"50% off", "Sale 50% OFF/a_b"}
    assert found("a_b") == {"a_b", "Sale 50% OFF/a_b"}
    assert found("d/o") == {"and/or"}
    assert found("% OFF/A_") == {"Sale 50% OFF/a_b"}


def test_paging_is_stable_and_complete(backend, actor) -> None:
    service, _ = backend
    made = [
        service.add(actor, TaskDraft(title=f"T{i}", due="2026-12-01T10:00:00Z" if i % 2 else None))
        for i in range(7)
    ]
    seen, cursor = [], None
    while True:
        page = service.list(actor, TaskQuery(status="all", limit=2, cursor=cursor))
        seen += [t.id for t in page.items]
        cursor = page.next_cursor
        if cursor is None:
            break
    dated = [t.id for t in made if t.due_at is not None]
    undated = [t.id for t in made if t.due_at is None]
    assert seen == dated + undated


def test_a_forged_cursor_is_refused(backend, actor) -> None:
    service, _ = backend
    with pytest.raises(InvalidInput) as caught:
        service.list(actor, TaskQuery(cursor="not-a-cursor"))
    assert caught.value.field == "cursor"


def test_recurring_task_next_occurrence(backend, actor, clock) -> None:
    service, uow = backend
    view = service.add(
        actor,
        TaskDraft(
            title="Water the plants",
            due="tomorrow 9am",
            recurrence="every 3 days",
            remind_before_minutes=15,
            tags=["home"],
        ),
    )
    assert view.recurrence == "FREQ=DAILY;INTERVAL=3"
    service.complete(actor, view.id)
    assert service.preview_next_due(actor, view.id) is not None
    with uow() as unit:
        done = unit.session.get(Task, view.id)
        assert done is not None
        nxt = service.add_next_occurrence(unit, done, now=clock.now)
        unit.commit()
    assert nxt is not None
    fresh = service.get(actor, nxt.id)
    assert fresh.due_at is not None and view.due_at is not None
    assert fresh.due_at - view.due_at == timedelta(days=3)
    assert (fresh.title, fresh.tags, fresh.remind_before_minutes) == ("Water the plants", ["home"], 15)
    assert fresh.remind_at == fresh.due_at - timedelta(minutes=15)
    assert outbox(uow, actor.user_id)[-1].event_type == "todo.task.created.v1"


def test_a_second_next_occurrence_for_the_same_task_is_refused_by_the_database(backend, actor, clock) -> None:
    from sqlalchemy.exc import IntegrityError

    service, uow = backend
    view = service.add(actor, TaskDraft(title="Daily", due="tomorrow 9am", recurrence="daily"))
    service.complete(actor, view.id)
    for attempt in range(2):
        with uow() as unit:
            done = unit.session.get(Task, view.id)
            assert done is not None
            if attempt == 0:
                service.add_next_occurrence(unit, done, now=clock.now)
                unit.commit()
            else:
                with pytest.raises(IntegrityError):
                    service.add_next_occurrence(unit, done, now=clock.now)
    assert len(service.list(actor, TaskQuery(status="pending")).items) == 1


def test_repeat_from_completion_and_ended_rules(backend, actor, clock) -> None:
    service, uow = backend
    from_done = service.add(
        actor,
        TaskDraft(
            title="Haircut", due="2026-11-01T09:00:00Z", recurrence="every 2 weeks", repeat_from="completion"
        ),
    )
    ended = service.add(actor, TaskDraft(title="Course", due="tomorrow 9am", recurrence="daily for 1 times"))
    service.complete(actor, from_done.id)
    service.complete(actor, ended.id)
    with uow() as unit:
        a = service.add_next_occurrence(unit, unit.session.get(Task, from_done.id), now=clock.now)
        b = service.add_next_occurrence(unit, unit.session.get(Task, ended.id), now=clock.now)
        unit.commit()
    assert a is not None and a.due_at is not None
    assert a.due_at.date() == (clock.now + timedelta(days=14)).date()
    assert b is None


def test_the_complete_task_tool_reads_the_next_occurrence_only_for_a_repeating_task(
    backend, actor, clock
) -> None:
    from mcp_server.server import complete_task_for

    service, uow = backend
    reads: list[bool] = []

    class CountingReads(UnitOfWorkFactory):
        def __call__(self, *, read_only: bool = False):
            reads.append(read_only)
            return uow(read_only=read_only)

    counted = type(service)(CountingReads(uow.engine), clock=clock)
    once = service.add(actor, TaskDraft(title="Post the letter", due="tomorrow 9am"))
    daily = service.add(actor, TaskDraft(title="Stretch", due="tomorrow 9am", recurrence="daily"))
    last = service.add(actor, TaskDraft(title="Course", due="tomorrow 9am", recurrence="daily for 1 times"))

    done = complete_task_for(counted, actor, once.id)
    assert done.completed and (done.next_occurrence_due_at, done.note) == (None, None)
    assert reads == [False]  # the completion only: no read for a task that does not repeat
    repeating = complete_task_for(counted, actor, daily.id)
    assert repeating.next_occurrence_due_at == once.due_at + timedelta(days=1)
    assert (
        repeating.note == f"The next occurrence will be due {repeating.next_occurrence_due_at.isoformat()}."
    )
    ended = complete_task_for(counted, actor, last.id)
    assert (ended.next_occurrence_due_at, ended.note) == (None, "The repeat rule has ended.")
    assert reads == [False, False, True, False, True]


@pytest.mark.parametrize(
    ("change", "version"),
    [
        (lambda service, actor, task_id: service.update(actor, task_id, TaskChanges(title="Mine")), 3),
        (lambda service, actor, task_id: service.complete(actor, task_id), 3),
        (lambda service, actor, task_id: service.set_reminder(actor, task_id, at="tomorrow 9am"), 3),
        (lambda service, actor, task_id: service.delete(actor, task_id), 2),
    ],
    ids=["update", "complete", "set_reminder", "delete"],
)
def test_a_change_waits_for_another_transaction_holding_the_task_on_postgres(
    pg_url, clock, actor, change, version
) -> None:
    """Each write locks its task's row (FOR UPDATE) before reading it: a change made meanwhile
    by another transaction is waited for and then seen, never overwritten."""
    from concurrent.futures import ThreadPoolExecutor

    from sqlalchemy import text

    from tests.conftest import service_on

    service, uow = next(services := service_on(pg_url, clock))
    view = service.add(actor, TaskDraft(title="Shared", due="friday 9am"))
    with uow.engine.connect() as other, ThreadPoolExecutor(1) as pool:
        other.execute(
            text("UPDATE tasks SET version = version + 1, priority = 'high' WHERE id = :id"), {"id": view.id}
        )
        pending = pool.submit(change, service, actor, view.id)
        with pytest.raises(TimeoutError):
            pending.result(timeout=0.5)
        other.commit()
        pending.result(timeout=10)
    row = outbox(uow, actor.user_id)[-1]
    assert row.payload["task_data"]["priority"] == "high"  # the other transaction's change, kept
    assert row.payload["task_data"]["version"] == version  # deleted: as last seen; changed: one more
    services.close()


def test_delete_without_delete_returning_reads_then_deletes(sqlite_url, clock, actor, monkeypatch) -> None:
    """SQLite before 3.35 has no DELETE ... RETURNING: the task is read, then deleted, with the
    same snapshot in the event."""
    from tests.conftest import service_on

    service, uow = next(services := service_on(sqlite_url, clock))
    monkeypatch.setattr(uow.engine.dialect, "delete_returning", False)
    view = service.add(actor, TaskDraft(title="Old", tags=["home"]))
    with pytest.raises(TaskNotFound):
        service.delete(Actor(user_id="mallory"), view.id)
    gone = service.delete(actor, view.id)
    assert gone == DeletedTask(id=view.id, title="Old", change_id=gone.change_id) and gone.change_id
    with pytest.raises(TaskNotFound):
        service.delete(actor, view.id)
    row = outbox(uow, actor.user_id)[-1]
    assert row.event_type == "todo.task.deleted.v1"
    assert row.payload["task_data"] == view.view().model_dump(mode="json")
    assert service.list(actor, TaskQuery(status="all")).items == []
    services.close()


@pytest.mark.parametrize("first", ["list", "delete"])
def test_a_fresh_process_can_list_or_delete_first(backend, actor, first) -> None:
    """Listing and deleting read rows without the ORM; they must work as a process's first use of
    the tasks table too (before anything made the ORM set up its mappings)."""
    import subprocess
    import sys

    service, uow = backend
    view = service.add(actor, TaskDraft(title="Buy milk", due="tomorrow 5pm", tags=["shop"]))
    script = (
        "import sys\n"
        "from tasks.db import make_engine\n"
        "from tasks.inputs import TaskQuery\n"
        "from tasks.service import Actor, TaskService\n"
        "from tasks.unit_of_work import UnitOfWorkFactory\n"
        "url, user, task_id, first = sys.argv[1:]\n"
        "service = TaskService(UnitOfWorkFactory(make_engine(url)))\n"
        "if first == 'list':\n"
        "    print(service.list(Actor(user), TaskQuery(status='all')).items[0].model_dump_json())\n"
        "else:\n"
        "    print(service.delete(Actor(user), int(task_id)).model_dump_json())\n"
    )
    url = uow.engine.url.render_as_string(hide_password=False)
    done = subprocess.run(
        [sys.executable, "-c", script, url, actor.user_id, str(view.id), first],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    if first == "list":
        assert TaskView.model_validate_json(done.stdout) == view.view()
    else:
        gone = DeletedTask.model_validate_json(done.stdout)
        assert gone == DeletedTask(id=view.id, title="Buy milk", change_id=gone.change_id) and gone.change_id
        assert outbox(uow, actor.user_id)[-1].payload["task_data"] == view.view().model_dump(mode="json")


def test_completing_a_task_whose_saved_rule_cannot_be_stepped_answers_at_once_and_ends_the_series(
    backend, actor
) -> None:
    """A rule saved before rules were checked ("every 0 days") once made complete_task spin forever."""
    from mcp_server.server import complete_task_for

    service, uow = backend
    view = service.add(actor, TaskDraft(title="Spin", due="tomorrow 9am", recurrence="daily"))
    with uow() as unit:
        row = unit.session.get(Task, view.id)
        assert row is not None
        row.recurrence = "FREQ=DAILY;INTERVAL=0"
        unit.session.add(row)
        unit.commit()
    done = complete_task_for(service, actor, view.id)
    assert done.completed and (done.next_occurrence_due_at, done.note) == (None, "The repeat rule has ended.")
    with pytest.raises(InvalidInput) as caught:
        service.update(actor, view.id, TaskChanges(recurrence="every 0 days"))
    assert caught.value.field == "recurrence" and "INTERVAL" in caught.value.message
