"""The REST task API through the ASGI app: auth, isolation, clear errors, health, OpenAPI."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import AsyncIterator
from unittest.mock import ANY

import httpx
import pytest

from tests.conftest import JWT_SECRET
from todo_agent.api import app_for
from todo_agent.bootstrap import bootstrap

pytestmark = pytest.mark.integration


@contextlib.asynccontextmanager
async def running(app) -> AsyncIterator[httpx.AsyncClient]:
    """The app with its lifespan, entered and left in the test's own task (anyio needs that)."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8000") as client:
            yield client


@pytest.fixture
def api_app(make_settings):
    return app_for(bootstrap("api", make_settings(jwt_secret=JWT_SECRET)))


def auth(verifier, user: str, **claims) -> dict[str, str]:
    return {"Authorization": f"Bearer {verifier.issue(user, **claims)}"}


async def test_crud_through_rest(api_app, verifier) -> None:
    async with running(api_app) as api:
        alice = auth(verifier, "alice", zoneinfo="Europe/Berlin")
        body = {"title": "Buy milk", "due": "2026-12-01T17:00", "tags": ["shop"]}
        created = await api.post("/api/tasks", json=body, headers=alice)
        assert created.status_code == 201, created.text
        task = created.json()
        assert task["due_at"] == "2026-12-01T16:00:00Z"
        patched = await api.patch(f"/api/tasks/{task['id']}", json={"priority": "high"}, headers=alice)
        assert patched.json()["priority"] == "high" and patched.json()["version"] == 2
        stale = await api.patch(
            f"/api/tasks/{task['id']}", json={"title": "x"}, headers={**alice, "If-Match": "1"}
        )
        assert stale.status_code == 409 and "changed by someone else" in stale.json()["detail"]
        done = await api.post(f"/api/tasks/{task['id']}/complete", headers=alice)
        assert done.json()["completed"] is True
        listed = await api.get("/api/tasks", params={"status": "completed"}, headers=alice)
        assert [t["id"] for t in listed.json()["items"]] == [task["id"]]
        reopened = await api.post(f"/api/tasks/{task['id']}/reopen", headers=alice)
        assert reopened.json()["completed"] is False
        reminder = await api.put(
            f"/api/tasks/{task['id']}/reminder", json={"minutes_before_due": 60}, headers=alice
        )
        assert reminder.json()["remind_at"] == "2026-12-01T15:00:00Z"
        cleared = await api.delete(f"/api/tasks/{task['id']}/reminder", headers=alice)
        assert cleared.json()["remind_at"] is None
        deleted = await api.delete(f"/api/tasks/{task['id']}", headers=alice)
        assert deleted.json() == {"id": task["id"], "title": "Buy milk", "deleted": True, "change_id": ANY}
        assert (await api.get(f"/api/tasks/{task['id']}", headers=alice)).status_code == 404


async def test_another_users_task_is_a_404(api_app, verifier) -> None:
    async with running(api_app) as api:
        alice, bob = auth(verifier, "alice"), auth(verifier, "bob")
        task = (await api.post("/api/tasks", json={"title": "Mine"}, headers=alice)).json()
        for method, path, body in [
            ("GET", f"/api/tasks/{task['id']}", None),
            ("PATCH", f"/api/tasks/{task['id']}", {"title": "Theirs"}),
            ("DELETE", f"/api/tasks/{task['id']}", None),
            ("POST", f"/api/tasks/{task['id']}/complete", None),
        ]:
            response = await api.request(method, path, json=body, headers=bob)
            assert response.status_code == 404, (method, path)
            assert response.json() == {"detail": f"Task {task['id']} not found."}
        assert (await api.get("/api/tasks", params={"status": "all"}, headers=bob)).json()["items"] == []
        assert (await api.get(f"/api/tasks/{task['id']}", headers=alice)).json()["title"] == "Mine"


async def test_bad_input_is_explained_and_nothing_is_written(api_app, verifier) -> None:
    async with running(api_app) as api:
        alice = auth(verifier, "alice")
        cases = [
            ({"title": ""}, "title", "title is empty"),
            ({"title": "ok", "due": "tomorow 5pm"}, "due", "Could not understand 'tomorow 5pm'"),
            ({"title": "ok", "priority": "extreme"}, "priority", "use none, low, medium or high"),
            ({"title": "ok", "recurrence": "every blue moon"}, "recurrence", "every weekday"),
        ]
        for body, field, text in cases:
            response = await api.post("/api/tasks", json=body, headers=alice)
            assert response.status_code == 422
            assert response.json()["field"] == field and text in response.json()["detail"]
        missing = await api.post("/api/tasks", json={"due": "tomorrow"}, headers=alice)
        assert missing.status_code == 422 and "title" in missing.json()["detail"]
        wrong_type = await api.get("/api/tasks", params={"limit": "lots"}, headers=alice)
        assert wrong_type.status_code == 422 and "limit" in wrong_type.json()["detail"]
        assert (await api.get("/api/tasks", params={"status": "all"}, headers=alice)).json()["items"] == []


async def test_me_and_settings(api_app, verifier) -> None:
    async with running(api_app) as api:
        alice = auth(verifier, "alice")
        me = (await api.get("/api/me", headers=alice)).json()
        assert (
            me["user_id"] == "alice"
            and me["auth_required"] is True
            and me["effective_timezone"] == "Europe/Berlin"
        )
        changed = await api.patch(
            "/api/me", json={"timezone": "Asia/Tokyo", "email": "a@example.com"}, headers=alice
        )
        assert changed.json()["effective_timezone"] == "Asia/Tokyo"
        task = (
            await api.post("/api/tasks", json={"title": "Tokyo", "due": "2026-12-01T09:00"}, headers=alice)
        ).json()
        assert task["due_at"] == "2026-12-01T00:00:00Z"
        bad = await api.patch("/api/me", json={"timezone": "Mars/Base"}, headers=alice)
        assert bad.status_code == 422 and "IANA" in bad.json()["detail"]


async def test_health_and_openapi(api_app) -> None:
    async with running(api_app) as api:
        assert (await api.get("/healthz")).json()["status"] == "ok"
        assert (await api.get("/readyz")).json()["database"] == "ok"
        spec = (await api.get("/openapi.json")).json()
        for path in ("/api/tasks", "/api/tasks/{task_id}", "/api/tasks/{task_id}/complete", "/api/me"):
            assert path in spec["paths"], path


async def test_without_a_secret_the_embedded_default_acts_for_the_local_user(make_settings) -> None:
    async with running(app_for(bootstrap("all", make_settings()))) as client:
        me = (await client.get("/api/me")).json()
        assert me["user_id"] == "local" and me["auth_required"] is False


def test_the_server_refuses_a_public_host_without_auth(tmp_path) -> None:
    env = {
        "PATH": "/usr/bin:/bin",
        "TODO_DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}",
        "HOME": str(tmp_path),
    }
    result = subprocess.run(
        [sys.executable, "-m", "todo_agent.cli", "run", "--host", "0.0.0.0"],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2
    assert "refusing to listen on 0.0.0.0 without authentication" in result.stderr
