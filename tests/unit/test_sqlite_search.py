"""SQLite finds the tasks with a rare tag or phrase through its trigram index (``tasks_fts``,
migration 0020), and finds exactly what the plain filter finds.

The listing asks the index only for a user with at least ``WALK_ALL`` tasks; the comparisons
lower that to 0 (every listing asks the index) or raise it out of reach (none does) and expect
the same tasks in the same order. The plans come from ``EXPLAIN QUERY PLAN`` of the statement
the use case sent (captured, never retyped here); timings belong to ``benchmarks/growth.py``.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, event, text

import tasks.listing
from tasks.db import make_engine, migrate
from tasks.inputs import TaskChanges, TaskDraft, TaskQuery
from tasks.models import Task
from tasks.service import Actor, TaskService
from tasks.unit_of_work import UnitOfWorkFactory
from tests.conftest import FixedClock

NOW = datetime(2026, 11, 26, 16, 0, tzinfo=UTC)
BIG = Actor("search-big", "Europe/Berlin")
OTHER = Actor("search-other", "Europe/Berlin")

#: Titles, descriptions and tags that test the edges of "contains, ignoring ASCII case":
#: non-ASCII case (SQLite's ``lower`` and ``LIKE`` fold ASCII only), characters that are
#: special to ``LIKE`` or to FTS5 queries, needles of fewer than three characters.
HOSTILE = [
    ("Buy ÄPFEL at the market", "", ["Groceries"]),
    ("buy äpfel", 'say "hi" to Bob', ["groceries", "to_do"]),
    ("İstanbul trip", "STRASSE and straße", ["travel"]),
    ("50% off sale", "a_b and axb", ["50%"]),
    ('Quote "this" AND that', "NEAR(a b) OR c*", ["x-y"]),
    ("emoji 🎉 party", "x", ["tod0"]),
    ("ab", "", []),
    ("Semicolon; and colon: here", "tags_text : nothing", ["home"]),
]
NEEDLES = [
    "äpfel", "ÄPFEL", "apfel", "buy", "bu", "b", "i̇stanbul", "istanbul", "straße", "strasse",
    '"hi"', '"', "50%", "a_b", "%", "_", "near(a", "c*", "and", "🎉", "🎉 p", "tags_text",
    ": n", "colon:", "this\" and", "zzz-nothing",
]  # fmt: skip
TAGS = ["groceries", "to_do", "to-do", "50%", "x-y", "tod0", "home", "travel", "nobody", "%", "_"]


@pytest.fixture
def engine(sqlite_url: str) -> Iterator[Engine]:
    engine = make_engine(sqlite_url)
    migrate(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def service(engine: Engine) -> TaskService:
    return TaskService(UnitOfWorkFactory(engine), clock=FixedClock(NOW))


@pytest.fixture
def always_index(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every listing asks the trigram index, whatever the user's task count."""
    monkeypatch.setattr(tasks.listing, "WALK_ALL", 0)


def ids(service: TaskService, actor: Actor, **query: Any) -> list[int]:
    return [task.id for task in service.list(actor, TaskQuery(**query)).items]


def listings(service: TaskService, actor: Actor) -> dict[str, list[int]]:
    found = {}
    for needle in NEEDLES:
        for status in ("all", "pending"):
            found[f"search {needle!r} {status}"] = ids(service, actor, search=needle, status=status)
    for tag in TAGS:
        found[f"tag {tag!r}"] = ids(service, actor, tag=tag, status="all")
        found[f"tag {tag!r} and 'and'"] = ids(service, actor, tag=tag, search="and", status="all")
    return found


def test_the_trigram_index_finds_what_the_plain_filter_finds(
    service: TaskService, monkeypatch: pytest.MonkeyPatch
) -> None:
    for copy in range(3):
        for title, description, tags in HOSTILE:
            due = NOW + timedelta(days=copy) if copy else None
            service.add(BIG, TaskDraft(title=title, description=description, tags=tags, due=due))
    service.add(OTHER, TaskDraft(title="buy äpfel", tags=["groceries"]))
    monkeypatch.setattr(tasks.listing, "WALK_ALL", 10**9)
    plain = listings(service, BIG)
    monkeypatch.setattr(tasks.listing, "WALK_ALL", 0)
    assert listings(service, BIG) == plain
    assert plain["search 'äpfel' all"] and plain["tag '50%'"]  # the corpus does match things


def test_the_trigram_index_follows_edits_and_deletes(
    service: TaskService, engine: Engine, always_index: None
) -> None:
    task = service.add(BIG, TaskDraft(title="Water the ferns", tags=["garden"]))
    assert ids(service, BIG, search="ferns") == [task.id]
    service.update(BIG, task.id, TaskChanges(title="Water the cactus", tags=["desert"]))
    assert ids(service, BIG, search="ferns") == []
    assert ids(service, BIG, tag="garden") == []
    assert ids(service, BIG, search="cactus") == [task.id]
    assert ids(service, BIG, tag="desert") == [task.id]
    service.delete(BIG, task.id)
    assert ids(service, BIG, search="cactus", status="all") == []
    with engine.begin() as connection:  # the index agrees with ``tasks`` row for row
        connection.execute(text("INSERT INTO tasks_fts (tasks_fts) VALUES ('integrity-check')"))


def test_tasks_written_before_the_migration_are_found_through_the_index(
    sqlite_url: str, always_index: None
) -> None:
    engine = make_engine(sqlite_url)
    migrate(engine, "0010_outbox_trace_context")  # the revision before 0020_sqlite_search
    old = TaskService(UnitOfWorkFactory(engine), clock=FixedClock(NOW)).add(
        BIG, TaskDraft(title="Renew the passport", tags=["papers"])
    )
    migrate(engine)
    service = TaskService(UnitOfWorkFactory(engine), clock=FixedClock(NOW))
    assert ids(service, BIG, search="passport") == [old.id]
    assert ids(service, BIG, tag="papers") == [old.id]
    engine.dispose()


# -- plans -------------------------------------------------------------------------------
def seed(engine: Engine, count: int) -> None:
    """``count`` tasks of BIG: one in 1,000 tagged "errand" with "quokka" in its title."""
    rows = []
    for i in range(count):
        task = Task(
            owner_id=BIG.user_id,
            title=f"Seeded chore {i}" + (" quokka" if i % 1000 == 7 else ""),
            due_at=NOW + timedelta(minutes=i) if i % 3 else None,
            timezone=BIG.timezone,
            created_at=NOW,
            updated_at=NOW,
        )
        task.tags = ["home", "errand"] if i % 1000 == 7 else ["home"]
        rows.append(task)
    uow_factory = UnitOfWorkFactory(engine)
    with uow_factory() as uow:
        uow.insert(rows)
        uow.commit()


def plan_of_listing(engine: Engine, service: TaskService, query: TaskQuery) -> str:
    """SQLite's plan for the statement ``service.list`` sends for ``query`` (the listing itself,
    not the index lookups before it), one line per step."""
    sent: list[tuple[str, Any]] = []

    def capture(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        sent.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", capture)
    try:
        service.list(BIG, query)
    finally:
        event.remove(engine, "before_cursor_execute", capture)
    [(statement, parameters)] = [(s, p) for s, p in sent if "ORDER BY" in s]
    with engine.connect() as connection:
        rows = connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", parameters).all()
    return "\n".join(row[-1] for row in rows)


@pytest.mark.parametrize(
    "query",
    [
        TaskQuery(tag="errand"),
        TaskQuery(tag="nobody-uses-this"),
        TaskQuery(status="all", search="quokka"),
        TaskQuery(status="all", search="chore 1007 quokka"),
        TaskQuery(search="no such phrase"),
    ],
    ids=["rare tag", "absent tag", "rare word", "rare phrase", "absent phrase"],
)
def test_a_rare_tag_or_phrase_of_a_big_user_is_read_by_id_not_by_walking_their_tasks(
    engine: Engine, service: TaskService, query: TaskQuery
) -> None:
    seed(engine, 3_000)
    plan = plan_of_listing(engine, service, query)
    assert "USING INTEGER PRIMARY KEY" in plan, plan
    assert "ix_tasks_owner" not in plan, plan


def test_a_common_tag_of_a_big_user_walks_their_tasks_in_order_and_stops(
    engine: Engine, service: TaskService
) -> None:
    seed(engine, 3_000)
    plan = plan_of_listing(engine, service, TaskQuery(tag="home"))
    assert "ix_tasks_owner_status_order" in plan and "TEMP B-TREE" not in plan, plan
    assert len(service.list(BIG, TaskQuery(tag="home")).items) == 50
