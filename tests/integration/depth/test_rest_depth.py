"""Lists, subtasks, history, batches, undo and Idempotency-Key through the REST API, on SQLite
and PostgreSQL."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from auth.tokens import JwtVerifier
from tests.conftest import JWT_SECRET
from todo_agent.api import app_for
from todo_agent.bootstrap import bootstrap
from todo_agent.settings import Settings

pytestmark = pytest.mark.integration


@pytest.fixture(params=["sqlite", "postgres"])
def api_app(request: pytest.FixtureRequest, make_settings: Callable[..., Settings]) -> Any:
    overrides: dict[str, Any] = {"jwt_secret": JWT_SECRET}
    if request.param == "postgres":
        overrides["database_url"] = request.getfixturevalue("pg_url")
    return app_for(bootstrap("api", make_settings(**overrides)))


@contextlib.asynccontextmanager
async def signed_in(app: Any, verifier: JwtVerifier) -> AsyncIterator[httpx.AsyncClient]:
    """A client for a user of the test's own, with the app's lifespan entered in this task."""
    headers = {"Authorization": f"Bearer {verifier.issue(f'rest-{uuid.uuid4().hex[:8]}')}"}
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://127.0.0.1:8000", headers=headers
        ) as c:
            yield c


async def titles(api: httpx.AsyncClient, **params: Any) -> list[str]:
    response = await api.get("/api/tasks", params=params)
    assert response.status_code == 200, response.text
    return [t["title"] for t in response.json()["items"]]


async def test_lists_subtasks_and_history_through_rest(api_app, verifier) -> None:
    async with signed_in(api_app, verifier) as api:
        made = await api.post("/api/lists", json={"name": "Groceries"})
        assert made.status_code == 201 and made.json()["name"] == "Groceries"
        milk = (await api.post("/api/tasks", json={"title": "Milk", "list": "groceries"})).json()
        oat = (await api.post("/api/tasks", json={"title": "Oat milk", "parent_id": milk["id"]})).json()
        assert oat["list_id"] == made.json()["id"]
        assert await titles(api, list="Groceries") == ["Milk", "Oat milk"]
        refused = await api.post(f"/api/tasks/{milk['id']}/complete")
        assert refused.status_code == 422 and refused.json()["field"] == "include_subtasks"
        done = await api.post(f"/api/tasks/{milk['id']}/complete", params={"include_subtasks": "true"})
        assert done.status_code == 200 and done.json()["completed_at"]
        assert sorted(await titles(api, status="completed", completed_after="today")) == ["Milk", "Oat milk"]
        unknown = await api.post("/api/tasks", json={"title": "Bread", "list": "bakery"})
        assert unknown.status_code == 422 and unknown.json()["field"] == "list"
        keep = await api.delete("/api/lists/Groceries")
        assert keep.status_code == 422 and "move_to_inbox" in keep.json()["detail"]
        gone = await api.delete("/api/lists/Groceries", params={"tasks": "move_to_inbox"})
        assert gone.json()["tasks_moved_to_inbox"] == 2
        shown = (await api.get("/api/lists")).json()["items"]
        assert [v["name"] for v in shown] == ["Inbox"]


async def test_tasks_of_an_archived_list_show_only_when_asked_for_through_rest(api_app, verifier) -> None:
    async with signed_in(api_app, verifier) as api:
        await api.post("/api/lists", json={"name": "Old job"})
        await api.post("/api/tasks", json={"title": "Hand in badge", "list": "Old job"})
        await api.post("/api/tasks", json={"title": "Milk"})
        archived = await api.patch("/api/lists/Old job", json={"archived": True})
        assert archived.status_code == 200 and archived.json()["archived"]
        assert await titles(api) == ["Milk"]
        assert await titles(api, list="Old job") == ["Hand in badge"]
        assert sorted(await titles(api, include_archived="true")) == ["Hand in badge", "Milk"]
        await api.patch("/api/lists/Old job", json={"archived": False})
        assert sorted(await titles(api)) == ["Hand in badge", "Milk"]


async def test_single_task_writes_give_the_change_id_that_undo_reverts_exactly(api_app, verifier) -> None:
    async with signed_in(api_app, verifier) as api:
        tea = (await api.post("/api/tasks", json={"title": "Tea"})).json()
        bread = (await api.post("/api/tasks", json={"title": "Bread"})).json()
        renamed = (await api.patch(f"/api/tasks/{tea['id']}", json={"title": "Green tea"})).json()
        done = (await api.post(f"/api/tasks/{bread['id']}/complete")).json()
        assert tea["change_id"] < bread["change_id"] < renamed["change_id"] < done["change_id"]
        undone = await api.post("/api/undo", json={"change_id": renamed["change_id"]})
        assert undone.status_code == 200, undone.text
        assert await titles(api) == ["Tea"]  # the rename reverted, the bread still done
        gone = (await api.delete(f"/api/tasks/{tea['id']}")).json()
        assert isinstance(gone["change_id"], int)
        assert (await api.post("/api/undo", json={"change_id": gone["change_id"]})).status_code == 200
        assert await titles(api) == ["Tea"]


async def test_bulk_changes_need_confirmation_over_the_threshold_and_undo_reverts_them(
    api_app, verifier
) -> None:
    async with signed_in(api_app, verifier) as api:
        added = await api.post(
            "/api/tasks/batch", json={"tasks": [{"title": f"T{i}", "tags": ["x"]} for i in range(22)]}
        )
        assert added.status_code == 201 and len(added.json()["changed"]) == 22
        over = await api.post("/api/tasks/bulk", json={"action": "delete", "filter": {"tag": "x"}})
        assert over.status_code == 409
        assert over.json() | {"detail": ""} == {
            "detail": "",
            "needs_confirmation": True,
            "count": 22,
            "action": "delete",
        }
        assert len(await titles(api)) == 22
        gone = await api.post(
            "/api/tasks/bulk", json={"action": "delete", "filter": {"tag": "x"}, "confirm": True}
        )
        assert len(gone.json()["deleted"]) == 22 and await titles(api) == []
        undone = await api.post("/api/undo", json={})
        assert undone.status_code == 200 and len(await titles(api)) == 22
        twice = await api.post("/api/undo", json={"change_id": gone.json()["change_id"]})
        assert twice.status_code == 409 and "already undone" in twice.json()["detail"]
        over_cap = await api.post("/api/tasks/batch", json={"tasks": [{"title": "t"}] * 51})
        assert over_cap.status_code == 422 and "at most 50" in over_cap.json()["detail"]


async def test_a_retried_write_with_the_same_idempotency_key_is_done_once(api_app, verifier) -> None:
    async with signed_in(api_app, verifier) as api:
        key = {"Idempotency-Key": str(uuid.uuid4())}
        first = await api.post("/api/tasks", json={"title": "Pay rent"}, headers=key)
        second = await api.post("/api/tasks", json={"title": "Pay rent"}, headers=key)
        assert first.status_code == second.status_code == 201 and first.json() == second.json()
        assert await titles(api) == ["Pay rent"]
        other = await api.post("/api/tasks", json={"title": "Pay gas"}, headers=key)
        assert other.status_code == 422 and other.json()["field"] == "idempotency_key"
        task_id = first.json()["id"]
        patch_key = {"Idempotency-Key": "rename-1"}
        renamed = [
            await api.patch(f"/api/tasks/{task_id}", json={"title": f"Rent {n}"}, headers=patch_key)
            for n in (1, 1)
        ]
        assert renamed[0].json() == renamed[1].json() and renamed[1].json()["version"] == 2
        undo_key = {"Idempotency-Key": "undo-1"}
        assert (await api.post("/api/undo", json={}, headers=undo_key)).status_code == 200
        assert (await api.post("/api/undo", json={}, headers=undo_key)).status_code == 200  # not a redo
        assert await titles(api) == ["Pay rent"]


async def test_hostile_list_names_and_keys_are_refused_plainly(api_app, verifier) -> None:
    async with signed_in(api_app, verifier) as api:
        for response in (
            await api.delete("/api/lists/a%00b"),
            await api.patch("/api/lists/a%00b", json={"name": "x"}),
            await api.post("/api/lists", json={"name": "a\u0000b"}),
            await api.get("/api/tasks", params={"list": "a\u0000b"}),
            await api.post("/api/tasks", json={"title": "x"}, headers={"Idempotency-Key": "bad key"}),
            await api.post("/api/lists", json={"name": "   "}),
        ):
            assert response.status_code == 422, response.text
            assert "Traceback" not in response.text and "SQL" not in response.text
        assert await titles(api, status="all") == []
