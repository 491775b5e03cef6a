"""State save/get/delete through daprd lands in PostgreSQL; etag conflicts are conflicts."""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx
import psycopg
import pytest

pytestmark = pytest.mark.integration

STORE = "statestore"
TABLE = "dapr_state"  # tablePrefix "dapr_" + "state" (state.postgresql v2)


def _row(pg_libpq_url: str, key: str) -> tuple[bytes, str] | None:
    with psycopg.connect(pg_libpq_url) as conn:
        row = conn.execute(f"select value, etag::text from {TABLE} where key = %s", (key,)).fetchone()
    return (bytes(row[0]), row[1]) if row else None


async def test_state_round_trip_lands_in_postgres_with_etag_conflicts(
    sidecar_factory: Any, pg_libpq_url: str, session_id: str
) -> None:
    app_id = f"stack-state-{session_id}"
    sidecar = sidecar_factory(app_id)
    db_key = f"{app_id}||task-1"  # Dapr stores keys as "<app-id>||<key>"
    async with httpx.AsyncClient(base_url=f"{sidecar.http_url}/v1.0/state", timeout=20) as c:
        resp = await c.post(f"/{STORE}", json=[{"key": "task-1", "value": {"title": "milk"}}])
        assert resp.status_code == 204, resp.text

        resp = await c.get(f"/{STORE}/task-1")
        assert resp.status_code == 200
        assert resp.json() == {"title": "milk"}
        etag = resp.headers["etag"]

        row = _row(pg_libpq_url, db_key)
        assert row is not None
        assert json.loads(row[0]) == {"title": "milk"}
        assert row[1] == etag

        # A write with a stale etag is a conflict and changes nothing.
        stale = str(uuid.uuid4())
        resp = await c.post(
            f"/{STORE}",
            json=[{"key": "task-1", "value": {"title": "eggs"}, "etag": stale,
                   "options": {"concurrency": "first-write"}}],
        )  # fmt: skip
        assert resp.status_code == 409, resp.text
        assert _row(pg_libpq_url, db_key) == row

        # With the current etag it succeeds and the etag moves on.
        resp = await c.post(
            f"/{STORE}",
            json=[{"key": "task-1", "value": {"title": "eggs"}, "etag": etag,
                   "options": {"concurrency": "first-write"}}],
        )  # fmt: skip
        assert resp.status_code == 204, resp.text
        new = _row(pg_libpq_url, db_key)
        assert new is not None and json.loads(new[0]) == {"title": "eggs"}
        assert new[1] != etag

        # Delete: stale etag conflicts, current etag deletes the row.
        resp = await c.delete(f"/{STORE}/task-1", headers={"If-Match": etag})
        assert resp.status_code == 409, resp.text
        assert _row(pg_libpq_url, db_key) is not None
        resp = await c.delete(f"/{STORE}/task-1", headers={"If-Match": new[1]})
        assert resp.status_code == 204, resp.text
        assert _row(pg_libpq_url, db_key) is None
        resp = await c.get(f"/{STORE}/task-1")
        assert resp.status_code == 204  # no content: the key is gone
