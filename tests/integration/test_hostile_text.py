"""A corpus of hostile strings through every text field, on SQLite and on PostgreSQL.

Each value is either stored and read back exactly as the field's documented cleaning leaves it
(titles collapse whitespace, tags are lower-cased words...) or refused with a 4xx that names
the field: never a 500, and the same on both databases. Requests go through the real app
(uvicorn, the ``all`` role, chat on the offline model) with a signed-in user.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from agent.chat import MAX_MESSAGE_LENGTH
from auth.tokens import JwtVerifier
from tasks.errors import InvalidInput
from tasks.inputs import clean_description, clean_tags, clean_title
from tests.conftest import JWT_SECRET
from tests.integration.hostile_strings import HOSTILE
from tests.unit.agent.support import RunningApp, app_on_each_database

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def app(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningApp]:
    """One app per database for the whole corpus (each test signs in as a new user)."""
    yield from app_on_each_database(request, tmp_path_factory, "hostile")


@pytest.fixture
def client(app: RunningApp) -> Iterator[httpx.Client]:
    token = JwtVerifier(secret=JWT_SECRET, audience="todo-agent").issue(f"hostile-{uuid.uuid4().hex[:8]}")
    with httpx.Client(base_url=app.url, headers={"Authorization": f"Bearer {token}"}, timeout=60) as c:
        yield c


def send(client: httpx.Client, method: str, path: str, body: dict[str, Any]) -> httpx.Response:
    """JSON with ``\\uXXXX`` escapes, so lone surrogates travel as JSON allows them to."""
    content = json.dumps(body).encode()
    return client.request(method, path, content=content, headers={"Content-Type": "application/json"})


def expect(response: httpx.Response, field: str, what: str) -> Any:
    """The JSON of a 2xx answer; a 4xx must name ``field``; anything else fails."""
    assert response.status_code < 500, f"{what}: {response.status_code} {response.text[:300]}"
    if response.status_code >= 400:
        assert field in response.text, f"{what}: the refusal does not name {field}: {response.text[:300]}"
        return None
    return response.json()


def unstorable(value: str) -> bool:
    """NUL (PostgreSQL refuses it) or a lone surrogate (not UTF-8): refused in every field."""
    return "\x00" in value or any("\ud800" <= ch <= "\udfff" for ch in value)


def cleaned(clean: Callable[[Any], Any], value: Any) -> Any:
    try:
        return clean(value)
    except InvalidInput:
        return InvalidInput


@pytest.mark.parametrize("name", list(HOSTILE))
def test_hostile_text_in_task_fields_is_stored_exactly_or_refused_naming_the_field(
    client: httpx.Client, name: str
) -> None:
    value = HOSTILE[name]
    fields: list[tuple[str, Any, Callable[[dict[str, Any]], Any], Any]] = [
        ("title", value, lambda t: t["title"], cleaned(clean_title, value)),
        ("description", value, lambda t: t["description"], cleaned(clean_description, value)),
        ("tags", [value], lambda t: t["tags"], cleaned(clean_tags, [value])),
        ("recurrence", value, lambda t: t["recurrence"], None),
        ("due", value, lambda t: t["due_at"], None),
    ]
    for field, given, read, want in fields:
        body = {"title": "hostile"} | {field: given}
        created = expect(send(client, "POST", "/api/tasks", body), field, f"add with {field}={name}")
        if want is not None and not unstorable(value):  # text the field's cleaning keeps
            assert (created is None) == (want is InvalidInput), f"{field}={name}: {want!r}"
        if created is None:
            continue
        assert not unstorable(value), f"{field}={name} was stored"
        if want is not None:
            assert read(created) == want, f"{field}={name} came back changed"
            again = client.get(f"/api/tasks/{created['id']}").json()
            assert read(again) == want, f"{field}={name} came back changed from the database"
        changed = expect(
            send(client, "PATCH", f"/api/tasks/{created['id']}", {field: given}),
            field,
            f"change {field}={name}",
        )
        if changed is not None and want is not None:
            assert read(changed) == want


@pytest.mark.parametrize("name", list(HOSTILE))
def test_hostile_text_in_reminders_and_filters_is_never_a_server_error(
    client: httpx.Client, name: str
) -> None:
    value = HOSTILE[name]
    task = send(client, "POST", "/api/tasks", {"title": "filters", "due": "tomorrow 5pm"}).json()
    expect(
        send(client, "PUT", f"/api/tasks/{task['id']}/reminder", {"at": value}), "at", f"reminder at={name}"
    )
    for param in ("search", "tag", "cursor", "due_before", "due_after", "priority", "status"):
        encoded = quote(value, safe="", errors="surrogatepass")
        response = client.get(f"/api/tasks?{param}={encoded}")
        listed = expect(response, param, f"list with {param}={name}")
        if listed is not None:
            assert isinstance(listed["items"], list)


@pytest.mark.parametrize("name", list(HOSTILE))
def test_hostile_text_in_settings_is_stored_exactly_or_refused_naming_the_field(
    client: httpx.Client, name: str
) -> None:
    value = HOSTILE[name]
    for field in ("email", "webhook_url", "timezone"):
        saved = expect(send(client, "PATCH", "/api/me", {field: value}), field, f"settings {field}={name}")
        if saved is not None:
            assert not unstorable(value), f"{field}={name} was stored"
            assert saved[field] == (value or None), f"{field}={name} came back changed"
            assert client.get("/api/me").json()[field] == (value or None)


@pytest.mark.parametrize("name", list(HOSTILE))
def test_hostile_text_in_chat_is_kept_exactly_or_refused_naming_the_field(
    client: httpx.Client, name: str
) -> None:
    value = HOSTILE[name]
    reply = expect(send(client, "POST", "/api/chat", {"message": value}), "message", f"chat message={name}")
    if reply is None:
        assert unstorable(value) or not value or len(value) > MAX_MESSAGE_LENGTH, f"message={name} refused"
        return
    transcript = client.get(f"/api/conversations/{reply['conversation_id']}").json()
    assert transcript["messages"][0]["content"] == value, f"message={name} came back changed"
    renamed = send(client, "PATCH", f"/api/conversations/{reply['conversation_id']}", {"title": value})
    if expect(renamed, "title", f"conversation title={name}") is not None:
        assert renamed.json()["title"] == (value.strip() or value)
    path = quote(value, safe="", errors="surrogatepass")
    looked_up = client.get(f"/api/conversations/{path}")
    assert looked_up.status_code < 500, (
        f"conversation id={name}: {looked_up.status_code} {looked_up.text[:200]}"
    )
