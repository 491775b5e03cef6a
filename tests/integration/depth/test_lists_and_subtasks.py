"""Lists, subtasks and the completed history, through the use cases on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlmodel import Session, select

from events.contracts import TaskEvent
from events.recurrence import NextOccurrence
from tasks.errors import InvalidInput
from tasks.inputs import TaskChanges, TaskDraft, TaskQuery
from tasks.models import OutboxEvent, Task
from tasks.unit_of_work import UnitOfWorkFactory

pytestmark = pytest.mark.integration


def outbox(uow: UnitOfWorkFactory, user_id: str) -> list[OutboxEvent]:
    with Session(uow.engine) as session:
        statement = select(OutboxEvent).where(OutboxEvent.user_id == user_id).order_by(OutboxEvent.id)  # type: ignore[arg-type]
        return list(session.exec(statement))


def count_tasks(uow: UnitOfWorkFactory, user_id: str) -> int:
    with Session(uow.engine) as session:
        return len(session.exec(select(Task).where(Task.owner_id == user_id)).all())


def titles(page) -> list[str]:
    return [t.title for t in page.items]


def test_every_user_has_an_inbox_and_a_task_without_a_list_goes_there(backend, actor) -> None:
    service, _ = backend
    task = service.add(actor, TaskDraft(title="Call mum"))
    [inbox] = service.lists(actor).items
    assert (inbox.name, inbox.is_inbox, inbox.open_tasks) == ("Inbox", True, 1)
    assert task.list_id == inbox.id


def test_a_task_goes_to_the_list_named_in_any_case_and_lists_filter_the_listing(backend, actor) -> None:
    service, _ = backend
    groceries = service.create_list(actor, "Groceries")
    service.add(actor, TaskDraft(title="Milk", list="groceries"))
    service.add(actor, TaskDraft(title="Report"))
    assert titles(service.list(actor, TaskQuery(list="GROCERIES"))) == ["Milk"]
    assert titles(service.list(actor, TaskQuery(list=str(groceries.id)))) == ["Milk"]
    assert titles(service.list(actor, TaskQuery(list="inbox"))) == ["Report"]
    assert sorted(titles(service.list(actor, TaskQuery()))) == ["Milk", "Report"]


def test_an_unknown_list_is_refused_naming_the_users_lists_and_nothing_is_written(backend, actor) -> None:
    service, uow = backend
    service.create_list(actor, "Work")
    before = len(outbox(uow, actor.user_id))
    with pytest.raises(InvalidInput) as refused:
        service.add(actor, TaskDraft(title="Milk", list="groceries"))
    assert refused.value.field == "list"
    assert "no list 'groceries'" in refused.value.message and "'Work'" in refused.value.message
    with pytest.raises(InvalidInput, match="no list 'home'"):
        service.list(actor, TaskQuery(list="home"))
    assert count_tasks(uow, actor.user_id) == 0 and len(outbox(uow, actor.user_id)) == before


def test_another_users_list_is_as_unknown_as_a_missing_one(backend, actor, other_actor) -> None:
    service, _ = backend
    theirs = service.create_list(other_actor, "Secret")
    with pytest.raises(InvalidInput, match="no list"):
        service.add(actor, TaskDraft(title="Peek", list=str(theirs.id)))


def test_deleting_a_list_with_tasks_needs_a_choice_then_moves_them_to_the_inbox(backend, actor) -> None:
    service, uow = backend
    work = service.create_list(actor, "Work")
    one = service.add(actor, TaskDraft(title="Slides", list="Work"))
    with pytest.raises(InvalidInput, match="has 1 tasks; say what happens") as refused:
        service.delete_list(actor, "work")
    assert refused.value.field == "tasks"
    assert [v.name for v in service.lists(actor).items] == ["Inbox", "Work"]
    gone = service.delete_list(actor, "work", tasks="move_to_inbox")
    assert (gone.id, gone.tasks_moved_to_inbox, gone.tasks_deleted) == (work.id, 1, 0)
    inbox = service.lists(actor).items[0]
    assert service.get(actor, one.id).list_id == inbox.id
    kinds = [row.event_type for row in outbox(uow, actor.user_id)]
    assert kinds[-2:] == ["todo.task.updated.v1", "todo.list.deleted.v1"]


def test_deleting_a_list_with_its_tasks_deletes_them_and_their_subtasks(backend, actor) -> None:
    service, uow = backend
    service.create_list(actor, "Trip")
    trip = service.add(actor, TaskDraft(title="Pack", list="Trip"))
    service.add(actor, TaskDraft(title="Passport", parent_id=trip.id))
    kept = service.add(actor, TaskDraft(title="Elsewhere"))
    gone = service.delete_list(actor, "Trip", tasks="delete")
    assert gone.tasks_deleted == 2
    assert count_tasks(uow, actor.user_id) == 1 and service.get(actor, kept.id)
    deleted = [r for r in outbox(uow, actor.user_id) if r.event_type == "todo.task.deleted.v1"]
    assert len(deleted) == 2


def test_lists_are_renamed_archived_and_the_inbox_stays_put(backend, actor) -> None:
    service, _ = backend
    service.create_list(actor, "Hobby")
    renamed = service.change_list(actor, "hobby", name="Hobbies")
    assert renamed.name == "Hobbies" and renamed.version == 2
    with pytest.raises(InvalidInput, match="already have a list named 'inbox'"):
        service.create_list(actor, "inbox")
    archived = service.change_list(actor, "Hobbies", archived=True)
    assert archived.archived
    assert [v.name for v in service.lists(actor).items] == ["Inbox"]
    assert [v.name for v in service.lists(actor, include_archived=True).items] == ["Inbox", "Hobbies"]
    with pytest.raises(InvalidInput, match="archived; unarchive it first"):
        service.add(actor, TaskDraft(title="Paint", list="Hobbies"))
    with pytest.raises(InvalidInput, match="Inbox cannot be deleted"):
        service.delete_list(actor, "Inbox", tasks="delete")
    with pytest.raises(InvalidInput, match="Inbox cannot be renamed"):
        service.change_list(actor, "Inbox", name="Tray")


def test_an_archived_lists_tasks_leave_the_default_views_and_come_back_when_unarchived(
    backend, actor
) -> None:
    service, _ = backend
    service.create_list(actor, "Garden")
    yesterday, today = "yesterday 9am", "today 23:00"
    weed = service.add(actor, TaskDraft(title="Weed beds", list="Garden", due=yesterday))
    service.add(actor, TaskDraft(title="Mulch", parent_id=weed.id))
    service.add(actor, TaskDraft(title="Rake", list="Garden"))
    service.add(actor, TaskDraft(title="Milk", due=today))
    service.change_list(actor, "Garden", archived=True)
    everything = {"Weed beds", "Mulch", "Rake", "Milk"}
    assert titles(service.list(actor, TaskQuery())) == ["Milk"]
    assert titles(service.list(actor, TaskQuery(overdue=True))) == []
    assert titles(service.list(actor, TaskQuery(due_before="tomorrow"))) == ["Milk"]
    assert titles(service.list(actor, TaskQuery(status="all", search="e"))) == []
    assert titles(service.list(actor, TaskQuery(list="garden"))) == ["Weed beds", "Mulch", "Rake"]
    assert titles(service.list(actor, TaskQuery(parent_id=weed.id))) == ["Mulch"]
    assert set(titles(service.list(actor, TaskQuery(include_archived=True)))) == everything
    assert titles(service.list(actor, TaskQuery(overdue=True, include_archived=True))) == ["Weed beds"]
    assert service.count_matching(actor, TaskQuery(status="all")) == 1  # batches by filter too
    service.change_list(actor, "Garden", archived=False)
    assert set(titles(service.list(actor, TaskQuery()))) == everything
    assert titles(service.list(actor, TaskQuery(overdue=True))) == ["Weed beds"]


def test_completing_a_parent_with_open_subtasks_is_refused_unless_asked(backend, actor) -> None:
    service, uow = backend
    trip = service.add(actor, TaskDraft(title="Trip"))
    passport = service.add(actor, TaskDraft(title="Pack passport", parent_id=trip.id))
    service.add(actor, TaskDraft(title="Book hotel", parent_id=trip.id))
    before = len(outbox(uow, actor.user_id))
    with pytest.raises(InvalidInput) as refused:
        service.complete(actor, trip.id)
    assert refused.value.field == "include_subtasks"
    assert "2 open subtasks" in refused.value.message and "'Pack passport'" in refused.value.message
    assert len(outbox(uow, actor.user_id)) == before and not service.get(actor, trip.id).completed
    service.complete(actor, passport.id)
    done = service.complete(actor, trip.id, include_subtasks=True)
    assert done.completed
    assert all(t.completed for t in service.list(actor, TaskQuery(status="all")).items)
    completions = [r for r in outbox(uow, actor.user_id) if r.event_type == "todo.task.completed.v1"]
    assert len(completions) == 3
    assert len({r.payload["change_id"] for r in completions[1:]}) == 1  # the parent and its subtask


def test_a_cycle_of_parents_is_refused_and_depth_is_bounded(backend, actor) -> None:
    service, _ = backend
    a = service.add(actor, TaskDraft(title="A"))
    b = service.add(actor, TaskDraft(title="B", parent_id=a.id))
    c = service.add(actor, TaskDraft(title="C", parent_id=b.id))
    with pytest.raises(InvalidInput, match="would be a cycle") as refused:
        service.update(actor, a.id, TaskChanges(parent_id=c.id))
    assert refused.value.field == "parent_id"
    with pytest.raises(InvalidInput, match="own parent"):
        service.update(actor, a.id, TaskChanges(parent_id=a.id))
    with pytest.raises(InvalidInput, match="at most 3 levels"):
        service.add(actor, TaskDraft(title="D", parent_id=c.id))
    with pytest.raises(InvalidInput, match="no task 999999 to be the parent"):
        service.add(actor, TaskDraft(title="E", parent_id=999999))
    assert service.get(actor, a.id).parent_id is None


def test_moving_a_parent_moves_its_subtasks_and_a_subtask_alone_cannot_move(backend, actor) -> None:
    service, _ = backend
    work = service.create_list(actor, "Work")
    parent = service.add(actor, TaskDraft(title="Launch"))
    child = service.add(actor, TaskDraft(title="Press release", parent_id=parent.id))
    with pytest.raises(InvalidInput, match="is a subtask of task"):
        service.update(actor, child.id, TaskChanges(list="Work"))
    service.update(actor, parent.id, TaskChanges(list="Work"))
    assert service.get(actor, child.id).list_id == work.id


def test_a_recurring_parents_next_occurrence_brings_fresh_copies_of_its_subtasks(backend, actor) -> None:
    service, uow = backend
    service.create_list(actor, "Home")
    weekly = service.add(actor, TaskDraft(title="Weekly clean", due="2026-11-30T09:00:00Z",
                                          recurrence="weekly", list="Home"))  # fmt: skip
    hoover = service.add(actor, TaskDraft(title="Hoover", due="2026-11-29T18:00:00Z", parent_id=weekly.id))
    service.add(actor, TaskDraft(title="Mop", parent_id=weekly.id))
    with pytest.raises(InvalidInput, match="repeats with its parent"):
        service.add(actor, TaskDraft(title="Dust", recurrence="daily", parent_id=weekly.id))
    service.complete(actor, hoover.id)
    service.complete(actor, weekly.id, include_subtasks=True)
    completion = outbox(uow, actor.user_id)[-1]
    assert completion.payload["task_id"] == weekly.id
    nxt = NextOccurrence(uow, service).apply(str(completion.id), TaskEvent.model_validate(completion.payload))
    assert nxt is not None and nxt.list_id == weekly.list_id
    copies = service.list(actor, TaskQuery(parent_id=nxt.id)).items
    assert sorted((c.title, c.completed) for c in copies) == [("Hoover", False), ("Mop", False)]
    hoover_copy = next(c for c in copies if c.title == "Hoover")
    assert hoover_copy.due_at is not None and hoover_copy.due_at.isoformat() == "2026-12-06T18:00:00+00:00"
    assert {c.list_id for c in copies} == {weekly.list_id}
    again = NextOccurrence(uow, service).apply(
        str(completion.id), TaskEvent.model_validate(completion.payload)
    )
    assert again is None and len(service.list(actor, TaskQuery(status="all")).items) == 6


def test_completed_tasks_carry_when_and_are_listed_by_a_completion_date_range(backend, actor, clock) -> None:
    service, _ = backend
    first = service.add(actor, TaskDraft(title="Monday thing"))
    second = service.add(actor, TaskDraft(title="Wednesday thing"))
    service.add(actor, TaskDraft(title="Still open"))
    start = clock.now
    service.complete(actor, first.id)
    clock.now = start + timedelta(days=2)
    done = service.complete(actor, second.id)
    assert done.completed_at == clock.now
    window = TaskQuery(status="completed", completed_after=start + timedelta(days=1),
                       completed_before=start + timedelta(days=3))  # fmt: skip
    assert titles(service.list(actor, window)) == ["Wednesday thing"]
    assert sorted(titles(service.list(actor, TaskQuery(status="all", completed_after=start)))) == [
        "Monday thing", "Wednesday thing"
    ]  # fmt: skip
    with pytest.raises(InvalidInput, match="use status 'completed'"):
        service.list(actor, TaskQuery(completed_after=start))
