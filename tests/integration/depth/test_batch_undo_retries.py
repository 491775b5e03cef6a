"""Batch calls, undo and idempotent retries, through the use cases on SQLite and PostgreSQL."""

from __future__ import annotations

import threading

import pytest
from sqlmodel import Session, col, select

from tasks.errors import InvalidInput, NeedsConfirmation, UndoRefused
from tasks.inputs import TaskChanges, TaskDraft, TaskFilter
from tasks.models import ChangeRecord, OutboxEvent, Task
from tasks.schemas import BatchResult, TaskView, TaskWritten
from tasks.unit_of_work import UnitOfWorkFactory

pytestmark = pytest.mark.integration


def outbox(uow: UnitOfWorkFactory, user_id: str) -> list[OutboxEvent]:
    with Session(uow.engine) as session:
        statement = select(OutboxEvent).where(OutboxEvent.user_id == user_id).order_by(col(OutboxEvent.id))
        return list(session.exec(statement))


def rows(uow: UnitOfWorkFactory, user_id: str) -> list[Task]:
    with Session(uow.engine) as session:
        return list(session.exec(select(Task).where(Task.owner_id == user_id).order_by(col(Task.id))))


def state(uow: UnitOfWorkFactory, user_id: str) -> list[tuple]:
    """What a person sees of their tasks: everything but bookkeeping (version, updated_at)."""
    return [
        (t.id, t.title, t.completed, t.completed_at, t.tags_text, t.due_at, t.list_id, t.parent_id)
        for t in rows(uow, user_id)
    ]


def test_several_tasks_are_added_in_one_call_with_one_event_each(backend, actor) -> None:
    service, uow = backend
    service.create_list(actor, "Groceries")
    result = service.add_many(
        actor, [TaskDraft(title=t, list="Groceries") for t in ("Milk", "Eggs", "Bread")]
    )
    assert [v.title for v in result.changed] == ["Milk", "Eggs", "Bread"] and result.change_id
    created = [r for r in outbox(uow, actor.user_id) if r.event_type == "todo.task.created.v1"]
    assert len(created) == 3
    assert {r.payload["change_id"] for r in created} == {result.change_id}
    assert {r.payload["batch_size"] for r in created} == {3}


def test_a_batch_over_the_cap_or_with_one_bad_task_adds_nothing(backend, actor) -> None:
    service, uow = backend
    with pytest.raises(InvalidInput, match="51 tasks given; one call adds at most 50") as refused:
        service.add_many(actor, [TaskDraft(title=f"T{i}") for i in range(51)])
    assert refused.value.field == "tasks"
    with pytest.raises(InvalidInput, match="Task 2 \\('Bad'\\)") as refused:
        service.add_many(actor, [TaskDraft(title="Good"), TaskDraft(title="Bad", due="tomorow")])
    assert refused.value.field == "tasks[1].due"
    assert rows(uow, actor.user_id) == [] and outbox(uow, actor.user_id) == []


def test_completing_by_filter_changes_the_matching_tasks_in_one_transaction(backend, actor) -> None:
    service, uow = backend
    home = [service.add(actor, TaskDraft(title=f"Home {i}", tags=["home"])) for i in range(3)]
    work = service.add(actor, TaskDraft(title="Work", tags=["work"]))
    result = service.change_many(actor, "complete", filter=TaskFilter(tag="home"))
    assert result.matched == 3 and sorted(v.id for v in result.changed) == sorted(t.id for t in home)
    assert not service.get(actor, work.id).completed
    done = [r for r in outbox(uow, actor.user_id) if r.event_type == "todo.task.completed.v1"]
    assert len(done) == 3 and {r.payload["change_id"] for r in done} == {result.change_id}


def test_a_batch_by_filter_over_the_threshold_needs_confirmation_and_writes_nothing_first(
    backend, actor
) -> None:
    service, uow = backend
    service.add_many(actor, [TaskDraft(title=f"Chore {i}", tags=["chores"]) for i in range(25)])
    before = len(outbox(uow, actor.user_id))
    with pytest.raises(NeedsConfirmation) as asked:
        service.change_many(actor, "delete", filter=TaskFilter(tag="chores"))
    assert (asked.value.count, asked.value.action) == (25, "delete") and "confirm=true" in asked.value.message
    assert len(rows(uow, actor.user_id)) == 25 and len(outbox(uow, actor.user_id)) == before
    result = service.change_many(actor, "delete", filter=TaskFilter(tag="chores"), confirm=True)
    assert len(result.deleted) == 25 and rows(uow, actor.user_id) == []


def test_move_tag_untag_and_reschedule_by_ids_say_what_changed(backend, actor) -> None:
    service, _ = backend
    work = service.create_list(actor, "Work")
    a = service.add(actor, TaskDraft(title="A", tags=["x"]))
    b = service.add(actor, TaskDraft(title="B"))
    moved = service.change_many(actor, "move", task_ids=[a.id, b.id], to_list="work")
    assert {v.list_id for v in moved.changed} == {work.id}
    tagged = service.change_many(actor, "tag", task_ids=[a.id, b.id], tags=["urgent", "x"])
    assert sorted(tuple(v.tags) for v in tagged.changed) == [("urgent", "x"), ("x", "urgent")]
    untagged = service.change_many(actor, "untag", task_ids=[a.id, b.id], tags=["x"])
    assert {v.id for v in untagged.changed} == {a.id, b.id}
    again = service.change_many(actor, "untag", task_ids=[a.id], tags=["x"])
    assert again.changed == [] and again.unchanged_ids == [a.id] and again.change_id is None
    later = service.change_many(actor, "reschedule", task_ids=[a.id], due="2030-01-01T09:00:00Z")
    assert later.changed[0].due_at is not None and later.changed[0].due_at.year == 2030


def test_a_batch_naming_an_unknown_or_foreign_task_changes_nothing(backend, actor, other_actor) -> None:
    service, uow = backend
    mine = service.add(actor, TaskDraft(title="Mine"))
    theirs = service.add(other_actor, TaskDraft(title="Theirs"))
    with pytest.raises(InvalidInput, match=f"Tasks not found: {theirs.id}"):
        service.change_many(actor, "complete", task_ids=[mine.id, theirs.id])
    with pytest.raises(InvalidInput, match="either task_ids"):
        service.change_many(actor, "complete", task_ids=[mine.id], filter=TaskFilter())
    assert not service.get(actor, mine.id).completed and not service.get(other_actor, theirs.id).completed


def test_undo_reverts_the_last_write_exactly_and_undo_of_the_undo_redoes_it(backend, actor, clock) -> None:
    service, uow = backend
    task = service.add(actor, TaskDraft(title="Report", due="friday 9am", tags=["work"]))
    original = state(uow, actor.user_id)
    service.update(actor, task.id, TaskChanges(title="Final report", tags=["done"], due=None))
    changed = state(uow, actor.user_id)
    undone = service.undo(actor)
    assert state(uow, actor.user_id) == original
    assert undone.summary.startswith("Undid: Changed task") and undone.changed[0].title == "Report"
    redone = service.undo(actor)  # the last write is the undo: undoing it redoes
    assert state(uow, actor.user_id) == changed and redone.undone_change_id == undone.change_id
    kinds = [r.event_type for r in outbox(uow, actor.user_id)]
    assert kinds == ["todo.task.created.v1"] + ["todo.task.updated.v1"] * 3


def test_undo_of_a_batch_reverts_the_whole_batch(backend, actor) -> None:
    service, uow = backend
    added = service.add_many(actor, [TaskDraft(title=f"T{i}", tags=["home"]) for i in range(4)])
    original = state(uow, actor.user_id)
    done = service.change_many(actor, "complete", filter=TaskFilter(tag="home"))
    gone = service.change_many(actor, "delete", task_ids=[v.id for v in added.changed[:2]])
    service.undo(actor, gone.change_id)
    service.undo(actor, done.change_id)
    assert state(uow, actor.user_id) == original
    with pytest.raises(UndoRefused, match="changed since"):  # completed and reopened since: not as added
        service.undo(actor, added.change_id)
    assert state(uow, actor.user_id) == original


def test_undo_is_refused_when_a_task_changed_since_or_it_was_already_undone(backend, actor) -> None:
    service, uow = backend
    task = service.add(actor, TaskDraft(title="Plan"))
    renamed = service.update(actor, task.id, TaskChanges(title="Plan B"))
    service.update(actor, task.id, TaskChanges(priority="high"))
    with Session(uow.engine) as session:
        rename_change = session.exec(
            select(ChangeRecord).where(ChangeRecord.owner_id == actor.user_id).order_by(col(ChangeRecord.id))
        ).all()[1]
    before = state(uow, actor.user_id), len(outbox(uow, actor.user_id))
    with pytest.raises(UndoRefused, match="changed since") as refused:
        service.undo(actor, rename_change.id)
    assert f"version {renamed.version + 1}" in refused.value.message
    assert (state(uow, actor.user_id), len(outbox(uow, actor.user_id))) == before
    last = service.undo(actor)
    with pytest.raises(UndoRefused, match=f"already undone by change {last.change_id}"):
        service.undo(actor, last.undone_change_id)
    with pytest.raises(InvalidInput, match="no change 999999"):
        service.undo(actor, 999999)


def test_undo_of_a_deleted_list_brings_back_the_list_and_its_tasks(backend, actor) -> None:
    service, uow = backend
    work = service.create_list(actor, "Work")
    service.add(actor, TaskDraft(title="Deck", list="Work"))
    original = state(uow, actor.user_id)
    service.delete_list(actor, "Work", tasks="delete")
    result = service.undo(actor)
    assert state(uow, actor.user_id) == original
    assert [v.name for v in result.lists] == ["Work"] and result.lists[0].id == work.id
    assert outbox(uow, actor.user_id)[-1].event_type in {"todo.list.restored.v1", "todo.task.created.v1"}


def test_a_retry_with_the_same_key_returns_the_first_result_and_writes_nothing(backend, actor) -> None:
    service, uow = backend
    draft = TaskDraft(title="Pay rent")

    def add() -> TaskWritten:
        return service.once(actor, "key-1", "add_task", draft.model_dump(mode="json"),
                            lambda: service.add(actor, draft), TaskWritten)  # fmt: skip

    first, second = add(), add()
    assert first.change_id is not None  # the retry answers with the first write's change too
    assert first == second and len(rows(uow, actor.user_id)) == 1 and len(outbox(uow, actor.user_id)) == 1
    other = TaskDraft(title="Pay the rent")
    with pytest.raises(InvalidInput, match="already used for a different request") as refused:
        service.once(actor, "key-1", "add_task", other.model_dump(mode="json"),
                     lambda: service.add(actor, other), TaskView)  # fmt: skip
    assert refused.value.field == "idempotency_key" and len(rows(uow, actor.user_id)) == 1


def test_keys_belong_to_one_user(backend, actor, other_actor) -> None:
    service, uow = backend
    for who in (actor, other_actor):
        service.once(who, "shared", "add_task", {"title": "X"},
                     lambda who=who: service.add(who, TaskDraft(title="X")), TaskView)  # fmt: skip
    assert len(rows(uow, actor.user_id)) == len(rows(uow, other_actor.user_id)) == 1


def test_concurrent_retries_of_one_batch_write_it_once(backend, actor) -> None:
    service, uow = backend
    drafts = [TaskDraft(title=f"Item {i}") for i in range(10)]
    results: list[BatchResult] = []
    errors: list[BaseException] = []

    def send() -> None:
        try:
            arguments = [d.model_dump(mode="json") for d in drafts]
            results.append(service.once(actor, "batch-1", "add_tasks", arguments,
                                        lambda: service.add_many(actor, drafts), BatchResult))  # fmt: skip
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=send) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == [], errors
    assert len(rows(uow, actor.user_id)) == 10 and len(outbox(uow, actor.user_id)) == 10
    assert len({tuple(v.id for v in r.changed) for r in results}) == 1


def test_two_undos_of_one_change_at_once_revert_it_once(backend, actor) -> None:
    service, uow = backend
    added = service.add_many(actor, [TaskDraft(title=f"T{i}") for i in range(5)])
    done = service.change_many(actor, "complete", task_ids=[v.id for v in added.changed])
    outcomes: list[str] = []

    def undo() -> None:
        try:
            service.undo(actor, done.change_id)
            outcomes.append("undone")
        except UndoRefused as exc:
            outcomes.append(exc.message)
        except Exception as exc:  # noqa: BLE001 - reported by the assertion below
            outcomes.append(f"error: {exc}")

    threads = [threading.Thread(target=undo) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(o[:6] for o in outcomes) == ["Change", "undone"], outcomes
    assert "already undone" in next(o for o in outcomes if o != "undone")
    uncompleted = [r for r in outbox(uow, actor.user_id) if r.event_type == "todo.task.uncompleted.v1"]
    assert len(uncompleted) == 5 and not any(t.completed for t in rows(uow, actor.user_id))
