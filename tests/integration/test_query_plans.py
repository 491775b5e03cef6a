"""The task listings neither scan ``tasks`` nor sort all of a user's tasks: PostgreSQL's plans
at 100,000 tasks of one user.

Each test runs a listing through the real use case (``TaskService.list``), captures the SQL and
parameters it sent (a SQLAlchemy ``before_cursor_execute`` listener: the statement is never
retyped here), and asks PostgreSQL for that statement's plan (``EXPLAIN (FORMAT JSON)``, after
``ANALYZE``). A sequential scan of ``tasks`` there, or a sort of thousands of rows to give the
first 50, means the listing's cost grows with the table or with the user's tasks, which the
indexes of migration 0005 exist to prevent. Plans are deterministic for the
same data and statistics; timings belong to ``benchmarks/growth.py``.

A plan can be right and still read far more than it needs: a trigram GIN index with a pending
list (``fastupdate``, PostgreSQL's default) makes every tag or phrase search read the whole list
of entries written since the last vacuum. So a listing that finds at most one task is also held
to the pages it reads (``EXPLAIN (ANALYZE, BUFFERS)``: a count of pages, as deterministic as the
plan for the same data; autovacuum is off for the seeded table, so the index stays as seeding
left it, as it would between two vacuums).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, event, text

from tasks.db import make_engine, migrate, normalise_url
from tasks.inputs import TaskQuery
from tasks.service import Actor, TaskService
from tasks.unit_of_work import UnitOfWorkFactory
from tests.conftest import FixedClock

pytestmark = pytest.mark.integration

NOW = datetime(2026, 11, 26, 16, 0, tzinfo=UTC)
BIG = Actor("plans-big", "Europe/Berlin")
SMALL = Actor("plans-small", "Europe/Berlin")
TASKS = 100_000
#: The most rows a listing's plan may sort (a tag or a word that few tasks have: found through
#: an index, then sorted); more means the page's cost grows with the user's tasks.
MAX_SORTED = 1_000
#: The most pages (8 kB, shared buffers hit or read) a listing that finds at most one of the
#: 100,000 tasks may read: the index's entries for the needle and the row. Measured: a tag no
#: task has 35 pages, the phrase of one task 170-180 (trigrams every title has are part of it);
#: with the GIN pending lists that seeding leaves (migration 0030 turns them off) 334 and 742.
MAX_PAGES_FOR_ONE = 250

#: One user's 100,000 tasks as the growth benchmark seeds them: a third undated (their titles
#: say "someday"), due from 60 days ago to 300 days ahead, 30 % completed, a tag on one in 50,
#: a word ("quokka") in one title in 100, priorities in turn, one in ten in an archived list and
#: the rest in the Inbox; ten tasks of another user.
_SEED = """
INSERT INTO tasks (owner_id, title, description, completed, completed_at, priority, tags_text,
                   due_at, repeat_from, timezone, occurrence, created_at, updated_at, version, list_id)
SELECT :owner,
       'Seeded chore ' || i || CASE WHEN i % 100 = 37 THEN ' quokka' ELSE '' END
           || CASE WHEN i % 3 = 2 THEN ' someday' ELSE '' END,
       CASE WHEN i % 4 = 0 THEN 'Something to do around the house' ELSE '' END,
       i % 10 < 3,
       CASE WHEN i % 10 < 3 THEN CAST(:now AS timestamptz) - (i % 30) * interval '1 day' END,
       (ARRAY['none', 'low', 'medium', 'high'])[i % 4 + 1],
       ',' || CASE WHEN i % 2 = 0 THEN 'home,' ELSE '' END || CASE WHEN i % 50 = 7 THEN 'errand,' ELSE '' END,
       CASE WHEN i % 3 <> 2 THEN CAST(:now AS timestamptz)
           + ((i * 7919) % 360 - 60) * interval '1 day' + (i % 1440) * interval '1 minute' END,
       'due', 'Europe/Berlin', 1, CAST(:now AS timestamptz), CAST(:now AS timestamptz), 1,
       CASE WHEN i % 10 = 9 THEN :archived ELSE :inbox END
FROM generate_series(1, :count) AS i
"""
_LIST = """
INSERT INTO task_lists (owner_id, name, name_key, is_inbox, archived_at, created_at, updated_at, version)
VALUES (:owner, :name, :key, :is_inbox, CAST(:archived_at AS timestamptz), CAST(:now AS timestamptz),
        CAST(:now AS timestamptz), 1)
RETURNING id
"""


@pytest.fixture(scope="module")
def engine(pg_url: str) -> Iterator[Engine]:
    """A database of its own with the seeded tasks, migrated to head and analysed."""
    name = f"todo_plans_{uuid.uuid4().hex[:10]}"
    admin = create_engine(normalise_url(pg_url), isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    engine = make_engine(pg_url.rsplit("/", 1)[0] + f"/{name}")
    migrate(engine)
    with engine.begin() as connection:
        # autovacuum would merge GIN pending lists and re-sample statistics at a time of its own
        connection.execute(text("ALTER TABLE tasks SET (autovacuum_enabled = false)"))
        for actor, count in ((BIG, TASKS), (SMALL, 10)):
            lists = {
                name: connection.execute(
                    text(_LIST),
                    {
                        "owner": actor.user_id,
                        "name": name,
                        "key": name.lower(),
                        "is_inbox": name == "Inbox",
                        "archived_at": archived,
                        "now": NOW,
                    },  # fmt: skip
                ).scalar_one()
                for name, archived in (("Inbox", None), ("Old", NOW))
            }
            seed = {"owner": actor.user_id, "now": NOW, "count": count, "inbox": lists["Inbox"]}
            connection.execute(text(_SEED), seed | {"archived": lists["Old"]})
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(text("ANALYZE tasks"))
        connection.execute(text("ANALYZE task_lists"))
    yield engine
    engine.dispose()
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(scope="module")
def service(engine: Engine) -> TaskService:
    return TaskService(UnitOfWorkFactory(engine), clock=FixedClock(NOW))


def plan_of_listing(
    engine: Engine, service: TaskService, actor: Actor, query: TaskQuery, *, run: bool = False
) -> dict[str, Any]:
    """The plan PostgreSQL makes for the statement ``service.list`` sends for ``query`` (with
    ``run``, as executed: with the rows and pages each node read)."""
    sent: list[tuple[str, Any]] = []

    def capture(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        sent.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", capture)
    try:
        service.list(actor, query)
    finally:
        event.remove(engine, "before_cursor_execute", capture)
    [(statement, parameters)] = [(s, p) for s, p in sent if "FROM tasks" in s]
    with engine.connect() as connection:
        options = "ANALYZE, BUFFERS, FORMAT JSON" if run else "FORMAT JSON"
        raw = connection.exec_driver_sql(f"EXPLAIN ({options}) {statement}", parameters).scalar_one()
    plan = raw if isinstance(raw, list) else json.loads(raw)
    return dict(plan[0]["Plan"])


def nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from nodes(child)


def assert_no_sequential_scan_of_tasks(plan: dict[str, Any]) -> None:
    """No ``Seq Scan`` of ``tasks``, and no sort of more rows than ``MAX_SORTED`` (the planner's
    estimate): a listing that sorts all of a user's matching tasks to give the first page costs
    as much as their number, even when an index found them."""
    shown = json.dumps(plan, indent=1)
    scans = [n for n in nodes(plan) if n["Node Type"] == "Seq Scan" and n.get("Relation Name") == "tasks"]
    assert not scans, f"the listing reads all of tasks (Seq Scan); plan: {shown}"
    sorts = [n for n in nodes(plan) if n["Node Type"] in ("Sort", "Incremental Sort")]
    sorted_rows = [child["Plan Rows"] for n in sorts for child in n.get("Plans", [])]
    assert max(sorted_rows, default=0) <= MAX_SORTED, f"the listing sorts {sorted_rows} rows; plan: {shown}"


def cursor_after_first_page(service: TaskService, actor: Actor, query: TaskQuery) -> str:
    page = service.list(actor, query)
    assert page.next_cursor is not None
    return page.next_cursor


QUERIES = {
    "default_page": TaskQuery(),
    "completed": TaskQuery(status="completed"),
    "all": TaskQuery(status="all"),
    "due_this_week": TaskQuery(due_after=NOW, due_before=NOW + timedelta(days=7)),
    "due_before": TaskQuery(due_before=NOW + timedelta(days=30)),
    "due_after": TaskQuery(due_after=NOW + timedelta(days=200)),
    "overdue": TaskQuery(overdue=True),
    "tag": TaskQuery(tag="errand"),
    "rare_tag": TaskQuery(tag="nobody-uses-this"),
    "priority": TaskQuery(priority="high"),
    "search": TaskQuery(status="all", search="quokka"),
    "rare_search": TaskQuery(status="all", search="chore 31337 "),
    "include_archived": TaskQuery(include_archived=True),
    "archived_list": TaskQuery(list="Old"),
}


@pytest.mark.parametrize("name", sorted(QUERIES))
def test_a_big_users_listing_does_not_scan_or_sort_all_their_tasks(
    engine: Engine, service: TaskService, name: str
) -> None:
    assert_no_sequential_scan_of_tasks(plan_of_listing(engine, service, BIG, QUERIES[name]))


def test_the_page_after_a_dated_task_does_not_scan_or_sort_all_their_tasks(
    engine: Engine, service: TaskService
) -> None:
    cursor = cursor_after_first_page(service, BIG, TaskQuery())
    assert_no_sequential_scan_of_tasks(plan_of_listing(engine, service, BIG, TaskQuery(cursor=cursor)))


def test_the_page_after_an_undated_task_does_not_scan_or_sort_all_their_tasks(
    engine: Engine, service: TaskService
) -> None:
    cursor = cursor_after_first_page(service, BIG, TaskQuery(status="all", search="someday", limit=1))
    query = TaskQuery(cursor=cursor)
    assert_no_sequential_scan_of_tasks(plan_of_listing(engine, service, BIG, query))


@pytest.mark.parametrize("name", ["default_page", "tag", "search"])
def test_a_small_users_listing_beside_a_big_one_does_not_scan_or_sort_the_big_ones_tasks(
    engine: Engine, service: TaskService, name: str
) -> None:
    assert_no_sequential_scan_of_tasks(plan_of_listing(engine, service, SMALL, QUERIES[name]))


@pytest.mark.parametrize("name", ["rare_tag", "rare_search"])
def test_a_listing_that_finds_at_most_one_task_reads_few_pages(
    engine: Engine, service: TaskService, name: str
) -> None:
    plan = plan_of_listing(engine, service, BIG, QUERIES[name], run=True)
    assert plan["Actual Rows"] <= 1, (
        "the seeded data changed: this test is about a needle (almost) no task has"
    )
    pages = plan["Shared Hit Blocks"] + plan["Shared Read Blocks"]
    shown = json.dumps(plan, indent=1)
    assert pages <= MAX_PAGES_FOR_ONE, (
        f"finding at most one task read {pages} pages (a GIN pending list?): {shown}"
    )


def test_the_trigram_indexes_keep_no_pending_list(engine: Engine) -> None:
    """Every GIN index of ``tasks`` has ``fastupdate = off`` (migration 0030): with a pending
    list, each search through it reads all that was written since the last vacuum."""
    with engine.connect() as connection:
        indexes: dict[str, list[str]] = dict(
            connection.execute(
                text(
                    "SELECT i.relname, coalesce(i.reloptions, '{}') FROM pg_index x"
                    " JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_am a ON a.oid = i.relam"
                    " WHERE x.indrelid = 'tasks'::regclass AND a.amname = 'gin'"
                )
            ).all()
        )
    assert len(indexes) >= 3, f"the trigram indexes of migration 0005 are missing: {indexes}"
    pending = {name: options for name, options in indexes.items() if "fastupdate=off" not in options}
    assert not pending, f"GIN indexes of tasks with a pending list: {pending}"
