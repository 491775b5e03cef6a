"""A long conversation's turn in the SQL store reads its last items through an index and stops:
PostgreSQL's plan for the load of a conversation with 500 items (and 100,000 newer items of
1,000 other conversations after them) sorts none of them and walks no other conversation's items.
(PostgreSQL's LIMIT estimate assumes a conversation's items spread evenly over the table: for a
conversation holding a large share of a small table, walking the primary key can look cheaper
to it. A conversation that is a small share of the table, as in any real deployment, is
the case held here.)

The statement is the one ``SqlConversationStore.load`` sends (captured with a SQLAlchemy
``before_cursor_execute`` listener), explained after ``ANALYZE``; timings belong to
``benchmarks/chat.py --history``.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy import event, text

from agent.memory_sql import SqlConversationStore
from tasks.db import make_engine, migrate
from tests.unit.agent.support import content

pytestmark = pytest.mark.integration

ITEMS = 500
NEWER = 100_000
_SEED = """
INSERT INTO conversation_items (conversation_id, item, created_at)
SELECT CASE WHEN :others THEN :cid || (i % 1000) ELSE :cid END,
       json_build_object('role', 'user', 'content', 'm' || i), now()
FROM generate_series(0, :count - 1) AS i
"""


def nodes(plan: dict[str, Any]) -> list[dict[str, Any]]:
    return [plan, *(node for child in plan.get("Plans", []) for node in nodes(child))]


async def test_a_turn_of_a_long_conversation_reads_its_last_items_without_sorting_them(pg_url: str) -> None:
    engine = make_engine(pg_url)
    migrate(engine)
    store = SqlConversationStore(engine)
    info = await store.create("plan-user", title="long")
    other = await store.create("plan-user", title="another")
    with engine.begin() as connection:
        connection.execute(text(_SEED), {"cid": info.id, "count": ITEMS, "others": False})
        connection.execute(text(_SEED), {"cid": other.id, "count": NEWER, "others": True})
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(text("ANALYZE conversation_items"))
    sent: list[tuple[str, Any]] = []

    def capture(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        sent.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", capture)
    try:
        items = await store.load("plan-user", info.id, limit=40)
    finally:
        event.remove(engine, "before_cursor_execute", capture)
    assert [content(item) for item in items] == [f"m{n}" for n in range(ITEMS - 40, ITEMS)]
    [(statement, parameters)] = [(s, p) for s, p in sent if "FROM conversation_items" in s]
    with engine.connect() as connection:
        raw = connection.exec_driver_sql(f"EXPLAIN (FORMAT JSON) {statement}", parameters).scalar_one()
    plan = (raw if isinstance(raw, list) else json.loads(raw))[0]["Plan"]
    shown = json.dumps(plan, indent=1)
    assert not [n for n in nodes(plan) if n["Node Type"] in ("Sort", "Incremental Sort")], shown
    scans = [n for n in nodes(plan) if n.get("Relation Name") == "conversation_items"]
    assert scans and all("conversation_id" in n.get("Index Cond", "") for n in scans), shown
    engine.dispose()
