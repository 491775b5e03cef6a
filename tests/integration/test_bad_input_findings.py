"""Inputs that used to answer 500 now get a clear 4xx, on SQLite and on PostgreSQL (issue 14,
finding 5): ids and cursors beyond the database's integers, times at the calendar's edges, odd
``If-Match`` headers and job names, NUL and lone surrogates, values longer than their columns.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from auth.tokens import JwtVerifier
from tests.unit.agent.support import RunningApp, app_on_each_database

pytestmark = pytest.mark.integration

BEYOND = [2**31, 2**63, 2**64, 10**30]


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def app(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningApp]:
    yield from app_on_each_database(request, tmp_path_factory, "findings")


@pytest.fixture
def client(app: RunningApp, verifier: JwtVerifier) -> Iterator[httpx.Client]:
    token = verifier.issue(f"edge-{uuid.uuid4().hex[:8]}")
    with httpx.Client(base_url=app.url, headers={"Authorization": f"Bearer {token}"}, timeout=60) as c:
        yield c


def refused(response: httpx.Response, field: str) -> None:
    assert response.status_code == 422, f"{response.status_code} {response.text[:300]}"
    assert field in response.text, response.text[:300]
    assert "Traceback" not in response.text and "SELECT" not in response.text


def send(client: httpx.Client, method: str, path: str, body: dict[str, Any]) -> httpx.Response:
    return client.request(
        method, path, content=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )


@pytest.mark.parametrize("task_id", BEYOND)
def test_task_ids_beyond_the_databases_integers_get_422(client: httpx.Client, task_id: int) -> None:
    for method, path in [
        ("GET", f"/api/tasks/{task_id}"), ("DELETE", f"/api/tasks/{task_id}"),
        ("POST", f"/api/tasks/{task_id}/complete"), ("POST", f"/api/notifications/{task_id}/read"),
    ]:  # fmt: skip
        refused(client.request(method, path), "id")
    refused(send(client, "PATCH", f"/api/tasks/{task_id}", {"title": "x"}), "task_id")
    refused(client.get("/api/audit", params={"task_id": task_id}), "task_id")
    refused(client.get("/api/audit", params={"before_id": task_id}), "before_id")


@pytest.mark.parametrize("last_id", [*BEYOND, -1])
def test_a_cursor_naming_an_impossible_id_gets_422(client: httpx.Client, last_id: object) -> None:
    cursor = base64.urlsafe_b64encode(json.dumps([None, last_id]).encode()).decode().rstrip("=")
    refused(client.get("/api/tasks", params={"cursor": cursor}), "cursor")
    dated = base64.urlsafe_b64encode(json.dumps(["0001-01-01T00:00:00+01:00", 1]).encode()).decode()
    refused(client.get("/api/tasks", params={"cursor": dated}), "cursor")


@pytest.mark.parametrize(
    "field, value",
    [
        ("due", "0001-01-01T00:00+01:00"),
        ("due", "9999-12-31T23:59-01:00"),
        ("due", "0001-01-01T00:00:00Z"),
        ("remind_at", "0001-01-01T00:30+00:30"),
    ],
)
def test_times_at_the_calendars_edges_get_422(client: httpx.Client, field: str, value: str) -> None:
    refused(send(client, "POST", "/api/tasks", {"title": "edge", field: value}), field)
    refused(client.get("/api/tasks", params={"due_before": value}), "due_before")


def test_a_reminder_before_year_one_gets_422(client: httpx.Client) -> None:
    body = {"title": "edge", "due": "0001-01-01T00:10:00Z", "remind_before_minutes": 60}
    refused(send(client, "POST", "/api/tasks", body), "due")
    task = send(client, "POST", "/api/tasks", {"title": "edge"}).json()
    refused(send(client, "PUT", f"/api/tasks/{task['id']}/reminder", {"at": "0001-01-01T00:00+05:00"}), "at")


#: Header bytes are read as Latin-1: b"\xb2" arrives as "²", which ``str.isdigit`` calls a digit.
@pytest.mark.parametrize("header", [b"\xb2", b"\xb9\xb2", b"9" * 5000, b"abc", b"-1"])
def test_an_if_match_that_is_not_a_version_gets_422(client: httpx.Client, header: bytes) -> None:
    task = send(client, "POST", "/api/tasks", {"title": "versioned"}).json()
    response = client.patch(f"/api/tasks/{task['id']}", json={"title": "y"}, headers=[(b"If-Match", header)])
    refused(response, "If-Match")
    ok = client.patch(f"/api/tasks/{task['id']}", json={"title": "y"}, headers={"If-Match": 'W/"1"'})
    assert ok.status_code == 200, ok.text


@pytest.mark.parametrize(
    "name", ["reminder-task-²", "reminder-task-" + "9" * 5000, "reminder-task-99999999999"]
)
def test_a_job_name_that_names_no_task_is_stale_not_a_crash(client: httpx.Client, name: str) -> None:
    response = client.post(f"/job/{name}", json={})
    assert response.status_code == 200 and response.json() == {"status": "stale"}, response.text[:300]


@pytest.mark.parametrize("text", ["a\x00b", "bad \ud800 text"])
def test_nul_and_lone_surrogates_get_422_naming_the_field(client: httpx.Client, text: str) -> None:
    refused(send(client, "POST", "/api/tasks", {"title": text}), "title")
    refused(send(client, "POST", "/api/tasks", {"title": "ok", "tags": [text]}), "tags")
    refused(send(client, "PATCH", "/api/me", {"email": f"a{text}@example.org"}), "email")
    refused(send(client, "POST", "/api/chat", {"message": text}), "message")


@pytest.mark.parametrize(
    "field, value",
    [
        ("email", "a" * 310 + "@example.org"),
        ("webhook_url", "https://93.184.216.34/" + "a" * 2000),
        ("timezone", "Europe/" + "B" * 60),
    ],
)
def test_settings_longer_than_their_columns_get_422(client: httpx.Client, field: str, value: str) -> None:
    refused(send(client, "PATCH", "/api/me", {field: value}), field)


def test_a_recurrence_longer_than_its_column_gets_422(client: httpx.Client) -> None:
    rule = "FREQ=DAILY;BYHOUR=" + ",".join(["1"] * 300)
    refused(send(client, "POST", "/api/tasks", {"title": "long rule", "recurrence": rule}), "recurrence")
    task = send(client, "POST", "/api/tasks", {"title": "short rule", "recurrence": "daily"}).json()
    refused(send(client, "PATCH", f"/api/tasks/{task['id']}", {"recurrence": rule}), "recurrence")


def test_a_token_whose_subject_is_longer_than_the_user_column_gets_401(
    app: RunningApp, verifier: JwtVerifier
) -> None:
    token = verifier.issue("u" * 201)
    response = httpx.post(
        f"{app.url}/api/tasks", json={"title": "x"}, headers={"Authorization": f"Bearer {token}"}, timeout=30
    )
    assert response.status_code == 401 and "'sub'" in response.json()["detail"], response.text[:300]
