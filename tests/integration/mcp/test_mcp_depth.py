"""The MCP server beyond tools, through the official Python client: instructions, prompts,
completion, resources with paging, live subscriptions (2026-07-28 listen streams and
handshake-era sessions, over streamable HTTP and stdio), a delete that asks first, scopes and
the OAuth protected resource metadata."""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import anyio
import httpx
import httpx2
import mcp_types
import pytest
from mcp import Client, StdioServerParameters
from mcp.client.session import MessageHandlerFnT
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPDeprecationWarning

from auth.tokens import JwtVerifier
from tasks.inputs import TaskChanges, TaskDraft, TaskQuery
from tasks.service import Actor
from tests.conftest import JWT_SECRET
from tests.integration.mcp.support import prompt_text, updated_uri
from todo_agent.api import app_for
from todo_agent.bootstrap import Container, bootstrap
from todo_agent.local_server import free_port

pytestmark = pytest.mark.integration


def structured(result: Any) -> dict[str, Any]:
    assert not result.is_error, result.content
    return result.structured_content


def error_text(result: Any) -> str:
    assert result.is_error, result.structured_content
    return " ".join(c.text for c in result.content)


def text_of(result: Any) -> str:
    return str(result.contents[0].text)


def http_client(url: str, token: str | None, **kwargs: Any) -> Client:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    transport = streamable_http_client(
        f"{url}/mcp", http_client=httpx2.AsyncClient(headers=headers, timeout=30)
    )
    return Client(transport, **kwargs)


@pytest.fixture
def local(make_settings):
    """The stdio server's container (acting for the local user), built in-process."""
    return bootstrap("mcp", make_settings())


@dataclass
class Served:
    url: str
    container: Container


@pytest.fixture
def http_server(make_settings, app_server_factory) -> Served:
    """The api role (in-process bus, as the embedded default) with HS256 sign-in, at its public URL."""
    port = free_port()
    settings = make_settings(jwt_secret=JWT_SECRET, public_url=f"http://127.0.0.1:{port}")
    container = bootstrap("api", settings)
    return Served(app_server_factory(app_for(container), port).url, container)


# -- instructions, prompts, completion ------------------------------------------------------
async def test_instructions_tell_a_model_about_time_zones_ids_batches_and_deleting(local) -> None:
    async with Client(local.build_mcp(stdio=True)) as client:
        text = client.instructions or ""
    for needed in (
        "time zone",
        "UTC",
        "task_id",
        "list_tasks with search",
        "change_tasks",
        "undo",
        "idempotency_key",
        "confirm: true",
    ):
        assert needed in text, needed


async def test_prompts_have_descriptions_and_described_arguments(local) -> None:
    async with Client(local.build_mcp(stdio=True)) as client:
        prompts = {p.name: p for p in (await client.list_prompts()).prompts}
    assert set(prompts) >= {"plan_my_day", "weekly_review", "triage_my_inbox", "break_down_task"}
    for prompt in prompts.values():
        assert prompt.title and prompt.description and len(prompt.description) > 30, prompt.name
        assert prompt.arguments, prompt.name
        assert all(a.description for a in prompt.arguments), prompt.name
    assert [a.name for a in prompts["break_down_task"].arguments or [] if a.required] == ["task"]


async def test_prompts_carry_the_callers_real_tasks(local) -> None:
    me = local.actor_for_identity(None)
    due_today = local.tasks.add(me, TaskDraft(title="Call the plumber", due="today 23:00", tags=["home"]))
    undated = local.tasks.add(me, TaskDraft(title="Sort the garage"))
    done = local.tasks.add(me, TaskDraft(title="File the taxes", tags=["admin"]))
    local.tasks.complete(me, done.id)
    async with Client(local.build_mcp(stdio=True)) as client:
        plan = prompt_text(await client.get_prompt("plan_my_day", {"hours_available": "3"}))
        review = prompt_text(await client.get_prompt("weekly_review", {}))
        inbox = prompt_text(await client.get_prompt("triage_my_inbox", {"how_many": "5"}))
        steps = prompt_text(await client.get_prompt("break_down_task", {"task": "sort the GARAGE"}))
        by_id = prompt_text(await client.get_prompt("break_down_task", {"task": str(due_today.id)}))
        with pytest.raises(Exception, match="no task is titled 'Nope'"):
            await client.get_prompt("break_down_task", {"task": "Nope"})
    assert "Call the plumber" in plan and "3 hours" in plan and "Sort the garage" not in plan
    assert "File the taxes" in review.split("completed_last_7_days")[1]
    assert "Sort the garage" in inbox and "update_task" in inbox
    assert f'"id": {undated.id}' in steps and "Call the plumber" in by_id


async def test_completion_suggests_tags_task_ids_and_titles(local) -> None:
    me = local.actor_for_identity(None)
    for title, tags in [
        ("Buy milk", ["home", "shopping"]),
        ("Write report", ["work"]),
        ("Book hotel", ["holiday"]),
    ]:
        local.tasks.add(me, TaskDraft(title=title, tags=tags))
    plan = mcp_types.PromptReference(name="plan_my_day")
    task = mcp_types.ResourceTemplateReference(uri="todo://tasks/{task_id}")
    async with Client(local.build_mcp(stdio=True)) as client:

        async def complete(ref: Any, name: str, value: str) -> list[str]:
            return list((await client.complete(ref, {"name": name, "value": value})).completion.values)

        assert await complete(plan, "focus_tag", "ho") == ["holiday", "home", "shopping"]  # prefix first
        assert await complete(plan, "focus_tag", "OP") == ["shopping"]  # contains, any case
        assert await complete(task, "task_id", "report") == ["2"]
        assert await complete(task, "task_id", "") == ["1", "2", "3"]
        titles = await complete(mcp_types.PromptReference(name="break_down_task"), "task", "b")
        assert titles == ["Book hotel", "Buy milk"]
        assert await complete(plan, "hours_available", "1") == []  # no completer: nothing


def test_a_part_can_add_a_completer_for_its_own_argument_name(local) -> None:
    from mcp_server.completions import default_completers

    completers = default_completers(local.tasks)
    completers["list"] = lambda actor, typed: [
        n for n in ("Groceries", "Work") if n.lower().startswith(typed)
    ]
    assert completers["list"](Actor("local"), "g") == ["Groceries"]


# -- resources -----------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_resources_list_pages_through_the_users_tasks(local, mode: str) -> None:
    me = local.actor_for_identity(None)
    for n in range(130):
        local.tasks.add(me, TaskDraft(title=f"Task {n:03}"))
    async with Client(local.build_mcp(stdio=True), mode=mode) as client:
        first = await client.list_resources()
        second = await client.list_resources(cursor=first.next_cursor)
        templates = (await client.list_resource_templates()).resource_templates
    assert first.resources[0].uri == "todo://today" and len(first.resources) == 101
    assert first.next_cursor and second.next_cursor is None and len(second.resources) == 30
    uris = [r.uri for r in first.resources[1:] + second.resources]
    assert len(set(uris)) == 130 and all(u.startswith("todo://tasks/") for u in uris)
    assert first.resources[1].mime_type == "application/json" and first.resources[1].name.startswith("Task ")
    assert [t.uri_template for t in templates] == ["todo://tasks/{task_id}", "todo://lists/{list_id}"]


async def test_reading_a_task_and_today_gives_json_and_bad_uris_a_clear_error(local) -> None:
    me = local.actor_for_identity(None)
    soon = local.tasks.add(me, TaskDraft(title="Pay rent", due="today 23:30"))
    local.tasks.add(me, TaskDraft(title="Next week", due="in 8 days"))
    async with Client(local.build_mcp(stdio=True)) as client:
        task = json.loads(text_of(await client.read_resource(f"todo://tasks/{soon.id}")))
        today = json.loads(text_of(await client.read_resource("todo://today")))
        for uri, message in [("todo://tasks/999", "Task 999 not found"), ("todo://tasks/abc", "no task id")]:
            with pytest.raises(Exception, match=message):
                await client.read_resource(uri)
    assert task["title"] == "Pay rent" and task["id"] == soon.id
    assert today["timezone"] == "Europe/Berlin" and [i["title"] for i in today["items"]] == ["Pay rent"]


async def test_a_task_of_another_user_is_not_found_over_http(http_server, verifier: JwtVerifier) -> None:
    container = http_server.container
    bobs = container.tasks.add(Actor("bob"), TaskDraft(title="Bob's secret"))
    async with http_client(http_server.url, verifier.issue("alice")) as alice:
        with pytest.raises(Exception, match=f"Task {bobs.id} not found"):
            await alice.read_resource(f"todo://tasks/{bobs.id}")
        listed = await alice.list_resources()
    assert [r.uri for r in listed.resources] == ["todo://today"]


# -- live subscriptions --------------------------------------------------------------------
async def _rest_patch(url: str, token: str, task_id: int, changes: dict[str, Any]) -> float:
    async with httpx.AsyncClient(timeout=10) as rest:
        sent = time.perf_counter()
        reply = await rest.patch(
            f"{url}/api/tasks/{task_id}", json=changes, headers={"Authorization": f"Bearer {token}"}
        )
        assert reply.status_code == 200, reply.text
    return sent


async def test_a_listen_stream_hears_a_rest_write_and_nothing_of_another_user(
    http_server, verifier: JwtVerifier
) -> None:
    container = http_server.container
    mine = container.tasks.add(Actor("alice"), TaskDraft(title="Water plants"))
    bobs = container.tasks.add(Actor("bob"), TaskDraft(title="Bob's"))
    alice, bob = verifier.issue("alice"), verifier.issue("bob")
    uri = f"todo://tasks/{mine.id}"
    async with http_client(http_server.url, alice) as client:
        assert client.protocol_version == "2026-07-28"
        async with client.listen(resource_subscriptions=[uri, "todo://today"]) as stream:
            await _quiet(stream)  # alice's own task was created just before: its events may trail
            await _rest_patch(http_server.url, bob, bobs.id, {"title": "Bob's, renamed"})
            leaked = None
            with anyio.move_on_after(1.5):  # bob's change is delivered in milliseconds, if at all
                leaked = await stream.__anext__()
            assert leaked is None, f"alice heard of bob's change: {leaked}"
            sent = await _rest_patch(http_server.url, alice, mine.id, {"title": "Water the plants"})
            seen: list[str] = []
            with anyio.fail_after(10):
                async for event in stream:
                    seen.append(updated_uri(event))
                    if uri in seen:
                        break
            latency = time.perf_counter() - sent
            reread = json.loads(text_of(await client.read_resource(uri)))
    print(f"\nREST write -> listen stream notification: {latency * 1000:.0f} ms")
    assert uri in seen and reread["title"] == "Water the plants"
    # The stream's watch ends with it: the server notices the closed stream on its own task.
    for _ in range(100):
        if not container.mcp_live.watcher_count():
            break
        await anyio.sleep(0.05)
    assert container.mcp_live.watcher_count() == 0, "the closed stream's watch is still there"


async def _quiet(stream: Any, quiet_for: float = 1.5) -> None:
    """Read events until none comes for ``quiet_for`` seconds (at most 20 s)."""
    with anyio.fail_after(20):
        while True:
            with anyio.move_on_after(quiet_for) as waited:
                await stream.__anext__()
            if waited.cancelled_caught:
                return


async def test_a_session_subscription_hears_a_rest_write_over_streamable_http(
    http_server, verifier: JwtVerifier
) -> None:
    container = http_server.container
    mine = container.tasks.add(Actor("alice"), TaskDraft(title="Renew passport"))
    alice = verifier.issue("alice")
    uri = f"todo://tasks/{mine.id}"
    updated = anyio.Event()
    seen: list[str] = []

    async def on_message(message: Any) -> None:
        if isinstance(message, mcp_types.ResourceUpdatedNotification):
            seen.append(str(message.params.uri))
            updated.set()

    async with http_client(http_server.url, alice, mode="legacy", message_handler=on_message) as client:
        resources = client.server_capabilities.resources
        assert resources is not None and resources.subscribe is True
        with pytest.warns(MCPDeprecationWarning):
            await client.subscribe_resource(uri)
        with pytest.raises(Exception, match="Task 424242 not found"), pytest.warns(MCPDeprecationWarning):
            await client.subscribe_resource("todo://tasks/424242")
        await anyio.sleep(0.3)  # the session's GET stream opens after the handshake
        sent = await _rest_patch(http_server.url, alice, mine.id, {"priority": "high"})
        with anyio.fail_after(10):
            await updated.wait()
        latency = time.perf_counter() - sent
        with pytest.warns(MCPDeprecationWarning):
            await client.unsubscribe_resource(uri)
    print(f"\nREST write -> session notification: {latency * 1000:.0f} ms")
    assert seen == [uri]
    assert container.mcp_live.watcher_count() == 0


async def test_stdio_subscription_hears_a_write_made_by_another_process(tmp_path: Path) -> None:
    db = tmp_path / "shared.db"
    env = {**os.environ, "TODO_DATABASE_URL": f"sqlite:///{db}", "TODO_USER": "carol",
           "TODO_TIMEZONE": "Europe/Berlin", "TODO_LOG_LEVEL": "WARNING"}  # fmt: skip
    env.pop("TODO_JWT_SECRET", None)
    params = StdioServerParameters(command=sys.executable, args=["-m", "todo_agent.cli", "mcp"], env=env)
    from todo_agent.settings import Settings

    other = bootstrap("api", Settings(database_url=f"sqlite:///{db}"))  # the web UI's process, say
    seen: list[str] = []
    heard = anyio.Event()
    async with Client(params, mode="legacy", message_handler=_collect(seen, heard)) as client:
        added = structured(await client.call_tool("add_task", {"title": "Stdio task"}))
        uri = f"todo://tasks/{added['id']}"
        with pytest.warns(MCPDeprecationWarning):
            await client.subscribe_resource(uri)
        sent = time.perf_counter()
        await anyio.to_thread.run_sync(
            lambda: other.tasks.update(Actor("carol"), added["id"], TaskChanges(title="Changed elsewhere"))
        )
        with anyio.fail_after(10):
            await heard.wait()
        latency = time.perf_counter() - sent
    print(f"\nwrite in another process -> stdio notification: {latency * 1000:.0f} ms")
    other.engine.dispose()
    assert set(seen) == {uri}  # a level trigger: a write just before subscribing may also ring


def _collect(into: list[str], heard: anyio.Event) -> MessageHandlerFnT:
    async def on_message(message: Any) -> None:
        if isinstance(message, mcp_types.ResourceUpdatedNotification):
            into.append(str(message.params.uri))
            heard.set()

    return on_message


# -- a delete that asks first --------------------------------------------------------------
#: How the test's user answers an elicitation.
Answer = Literal["accept", "decline", "cancel"]


def _answering(action: Answer, delete: bool | None = None, asked: list[str] | None = None) -> Any:
    async def answer(_ctx: Any, params: Any) -> mcp_types.ElicitResult:
        if asked is not None:
            asked.append(params.message)
        return mcp_types.ElicitResult(
            action=action, content={"delete": delete} if delete is not None else None
        )

    return answer


@pytest.mark.parametrize("mode", ["auto", "legacy"])
@pytest.mark.parametrize(
    ("action", "delete", "said"),
    [("cancel", None, "cancelled"), ("decline", None, "declined"), ("accept", False, "chose not to")],
)
async def test_a_delete_the_user_does_not_confirm_deletes_nothing(local, mode, action, delete, said) -> None:
    task = local.tasks.add(local.actor_for_identity(None), TaskDraft(title="Keep me"))
    asked: list[str] = []
    server = local.build_mcp(stdio=True)
    async with Client(server, mode=mode, elicitation_callback=_answering(action, delete, asked)) as client:
        text = error_text(await client.call_tool("delete_task", {"task_id": task.id}))
    assert asked == [f"Delete task {task.id} 'Keep me' and its subtasks? (undo brings them back)"]
    assert "Nothing was deleted" in text and said in text
    assert local.tasks.get(local.actor_for_identity(None), task.id).title == "Keep me"


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_a_delete_the_user_confirms_deletes_the_task(local, mode: str) -> None:
    task = local.tasks.add(local.actor_for_identity(None), TaskDraft(title="Old idea"))
    async with Client(
        local.build_mcp(stdio=True), mode=mode, elicitation_callback=_answering("accept", True)
    ) as client:
        deleted = structured(await client.call_tool("delete_task", {"task_id": task.id}))
        listed = structured(await client.call_tool("list_tasks", {"status": "all"}))
    assert isinstance(deleted.pop("change_id"), int)  # for undo
    assert deleted == {"id": task.id, "title": "Old idea", "deleted": True} and listed["items"] == []


async def test_a_client_that_cannot_be_asked_gets_the_confirm_contract(http_server, verifier) -> None:
    """A stateless HTTP request of a handshake-era client cannot carry a question back; neither
    can a client without elicitation: both must pass confirm: true."""
    task = http_server.container.tasks.add(Actor("alice"), TaskDraft(title="Draft"))
    async with http_client(http_server.url, verifier.issue("alice")) as client:  # no elicitation
        refused = error_text(await client.call_tool("delete_task", {"task_id": task.id}))
        missing = error_text(await client.call_tool("delete_task", {"task_id": 424242, "confirm": False}))
        assert "Task 424242 not found" in missing
        assert http_server.container.tasks.get(Actor("alice"), task.id).title == "Draft"
        deleted = structured(await client.call_tool("delete_task", {"task_id": task.id, "confirm": True}))
    assert "call delete_task again with confirm: true" in refused and "Nothing was deleted" in refused
    assert deleted["deleted"] is True


# -- scopes and OAuth metadata -------------------------------------------------------------
async def test_a_read_only_token_reads_but_cannot_write(http_server, verifier: JwtVerifier) -> None:
    task = http_server.container.tasks.add(Actor("alice"), TaskDraft(title="Read me"))
    reader = verifier.issue("alice", scope="openid tasks:read")
    async with http_client(http_server.url, reader) as client:
        listed = structured(await client.call_tool("list_tasks", {}))
        read = json.loads(text_of(await client.read_resource(f"todo://tasks/{task.id}")))
        refusals = [
            error_text(await client.call_tool(tool, args))
            for tool, args in [
                ("add_task", {"title": "Sneaky"}),
                ("update_task", {"task_id": task.id, "title": "Changed"}),
                ("complete_task", {"task_id": task.id}),
                ("set_reminder", {"task_id": task.id, "minutes_before_due": 5}),
                ("delete_task", {"task_id": task.id, "confirm": True}),
            ]
        ]
    assert [t["title"] for t in listed["items"]] == ["Read me"] and read["title"] == "Read me"
    for text in refusals:
        assert "may only read tasks (scope tasks:read)" in text and "tasks:write" in text
    after = http_server.container.tasks.list(Actor("alice"), TaskQuery(status="all"))
    assert [(t.title, t.completed, t.remind_at) for t in after.items] == [("Read me", False, None)]


async def test_a_token_without_the_read_scope_is_refused_with_403(http_server, verifier: JwtVerifier) -> None:
    token = verifier.issue("alice", scope="openid profile")
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
    headers = {"Accept": "application/json, text/event-stream", "Authorization": f"Bearer {token}",
               "MCP-Protocol-Version": "2025-11-25"}  # fmt: skip
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.post(f"{http_server.url}/mcp", headers=headers, json=body)
    assert response.status_code == 403
    assert 'error="insufficient_scope"' in response.headers["www-authenticate"]


async def test_mcp_is_an_oauth_protected_resource(http_server) -> None:
    url = http_server.url
    async with httpx.AsyncClient(timeout=10) as client:
        refused = await client.post(f"{url}/mcp", json={"jsonrpc": "2.0", "id": 1, "method": "ping"})
        root = await client.get(f"{url}/.well-known/oauth-protected-resource")
        for_mcp = await client.get(f"{url}/.well-known/oauth-protected-resource/mcp")
    assert refused.status_code == 401
    challenge = refused.headers["www-authenticate"]
    assert (
        challenge.startswith("Bearer ")
        and f'resource_metadata="{url}/.well-known/oauth-protected-resource/mcp"' in challenge
    )
    assert root.status_code == 200 and root.json() == for_mcp.json()
    metadata = root.json()
    assert metadata["resource"] == f"{url}/mcp"
    assert metadata["scopes_supported"] == ["tasks:read", "tasks:write"]
    assert metadata["authorization_servers"] and metadata["bearer_methods_supported"] == ["header"]


async def test_a_session_lives_on_its_replica_and_another_replica_answers_404(
    make_settings, app_server_factory, verifier: JwtVerifier
) -> None:
    """A handshake-era session is held in the memory of the replica that answered initialize; on
    any other replica (or after a restart) its id is unknown: 404, and the client (per the spec)
    initializes a new session and subscribes again."""
    settings = make_settings(jwt_secret=JWT_SECRET)
    first, second = (app_server_factory(app_for(bootstrap("api", settings))) for _ in range(2))
    headers = {
        "Accept": "application/json, text/event-stream",
        "Authorization": f"Bearer {verifier.issue('alice')}",
    }
    params = {
        "protocolVersion": "2025-11-25",
        "capabilities": {},
        "clientInfo": {"name": "t", "version": "1"},
    }
    hello = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": params}
    ask = {"jsonrpc": "2.0", "id": 2, "method": "tools/list", "params": {}}
    async with httpx.AsyncClient(timeout=10) as http:
        opened = await http.post(f"{first.url}/mcp", headers=headers, json=hello)
        session = {
            **headers,
            "Mcp-Session-Id": opened.headers["mcp-session-id"],
            "MCP-Protocol-Version": "2025-11-25",
        }
        await http.post(
            f"{first.url}/mcp",
            headers=session,
            json={"jsonrpc": "2.0", "method": "notifications/initialized"},
        )
        same = await http.post(f"{first.url}/mcp", headers=session, json=ask)
        elsewhere = await http.post(f"{second.url}/mcp", headers=session, json=ask)
    assert opened.status_code == 200 and same.status_code == 200
    assert elsewhere.status_code == 404 and elsewhere.json()["error"]["message"] == "Session not found"


async def test_a_session_client_over_http_is_asked_before_a_delete(http_server, verifier) -> None:
    task = http_server.container.tasks.add(Actor("alice"), TaskDraft(title="Ask me over HTTP"))
    asked: list[str] = []
    answer = _answering("cancel", asked=asked)
    async with http_client(
        http_server.url, verifier.issue("alice"), mode="legacy", elicitation_callback=answer
    ) as client:
        text = error_text(await client.call_tool("delete_task", {"task_id": task.id}))
    assert asked, text
    assert "Nothing was deleted" in text and "cancelled" in text
    assert http_server.container.tasks.get(Actor("alice"), task.id).title == "Ask me over HTTP"


# -- lists as resources ----------------------------------------------------------------------
async def test_reading_a_list_gives_its_open_tasks_and_another_users_list_is_not_found(local) -> None:
    me = local.actor_for_identity(None)
    groceries = local.tasks.create_list(me, "Groceries")
    milk = local.tasks.add(me, TaskDraft(title="Milk", list="groceries"))
    bread = local.tasks.add(me, TaskDraft(title="Bread", list="Groceries"))
    local.tasks.complete(me, bread.id)
    local.tasks.add(me, TaskDraft(title="In the Inbox"))
    bobs = local.tasks.create_list(Actor("bob"), "Bob's list")
    async with Client(local.build_mcp(stdio=True)) as client:
        shown = json.loads(text_of(await client.read_resource(f"todo://lists/{groceries.id}")))
        templates = [t.uri_template for t in (await client.list_resource_templates()).resource_templates]
        for uri, message in [
            (f"todo://lists/{bobs.id}", f"List {bobs.id} not found"),
            ("todo://lists/abc", "no list id"),
        ]:
            with pytest.raises(Exception, match=message):
                await client.read_resource(uri)
    assert "todo://lists/{list_id}" in templates
    assert (shown["name"], shown["id"]) == ("Groceries", groceries.id)
    assert [item["id"] for item in shown["items"]] == [milk.id]  # open tasks of this list only


async def test_completion_suggests_list_names_and_list_ids(local) -> None:
    me = local.actor_for_identity(None)
    groceries = local.tasks.create_list(me, "Groceries")
    local.tasks.create_list(me, "Work")
    local.tasks.create_list(Actor("bob"), "Gardening")  # another user's: never suggested
    template = mcp_types.ResourceTemplateReference(uri="todo://lists/{list_id}")
    prompt = mcp_types.PromptReference(name="plan_my_day")
    async with Client(local.build_mcp(stdio=True)) as client:

        async def complete(ref: Any, name: str, value: str) -> list[str]:
            return list((await client.complete(ref, {"name": name, "value": value})).completion.values)

        assert await complete(prompt, "list", "g") == ["Groceries"]
        assert await complete(prompt, "list", "") == ["Inbox", "Groceries", "Work"]
        assert await complete(template, "list_id", "groc") == [str(groceries.id)]


async def test_a_listen_stream_on_a_list_hears_a_task_moved_into_it(
    http_server, verifier: JwtVerifier
) -> None:
    container = http_server.container
    alice = Actor("alice")
    errands = container.tasks.create_list(alice, "Errands")
    task = container.tasks.add(alice, TaskDraft(title="Post the letter"))
    uri = f"todo://lists/{errands.id}"
    token = verifier.issue("alice")
    async with http_client(http_server.url, token) as client:
        async with client.listen(resource_subscriptions=[uri]) as stream:
            await _quiet(stream)
            await _rest_patch(http_server.url, token, task.id, {"list": "Errands"})
            with anyio.fail_after(10):
                heard = await stream.__anext__()
            shown = json.loads(text_of(await client.read_resource(uri)))
    assert updated_uri(heard) == uri
    assert [item["id"] for item in shown["items"]] == [task.id]


# -- a wide batch that asks first ----------------------------------------------------------------
def _answering_batch(action: Answer, go_ahead: bool | None, asked: list[str]) -> Any:
    async def answer(_ctx: Any, params: Any) -> mcp_types.ElicitResult:
        asked.append(params.message)
        return mcp_types.ElicitResult(
            action=action, content={"go_ahead": go_ahead} if go_ahead is not None else None
        )

    return answer


@pytest.mark.parametrize("mode", ["auto", "legacy"])
@pytest.mark.parametrize(
    ("action", "go_ahead", "said"),
    [("cancel", None, "cancelled"), ("decline", None, "declined"), ("accept", False, "chose not to")],
)
async def test_a_wide_batch_the_user_does_not_confirm_changes_nothing(
    local, mode, action, go_ahead, said
) -> None:
    me = local.actor_for_identity(None)
    for i in range(22):
        local.tasks.add(me, TaskDraft(title=f"Chore {i}", tags=["home"]))
    asked: list[str] = []
    server = local.build_mcp(stdio=True)
    async with Client(
        server, mode=mode, elicitation_callback=_answering_batch(action, go_ahead, asked)
    ) as client:
        completing = error_text(
            await client.call_tool("change_tasks", {"action": "complete", "filter": {"tag": "home"}})
        )
        deleting = error_text(await client.call_tool("delete_tasks", {"filter": {"tag": "home"}}))
    assert asked == [
        "Complete 22 tasks matching the filter? (undo reverts the whole batch)",
        "Delete (with their subtasks) 22 tasks matching the filter? (undo reverts the whole batch)",
    ]
    assert "Nothing was changed" in completing and said in completing and said in deleting
    assert len(local.tasks.list(me, TaskQuery(status="pending", tag="home", limit=50)).items) == 22


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_a_wide_batch_the_user_confirms_goes_ahead_and_a_small_one_is_not_asked(local, mode) -> None:
    me = local.actor_for_identity(None)
    for i in range(21):
        local.tasks.add(me, TaskDraft(title=f"Old {i}", tags=["old"]))
    for i in range(3):
        local.tasks.add(me, TaskDraft(title=f"Few {i}", tags=["few"]))
    asked: list[str] = []
    async with Client(
        local.build_mcp(stdio=True), mode=mode, elicitation_callback=_answering_batch("accept", True, asked)
    ) as client:
        done = structured(
            await client.call_tool("change_tasks", {"action": "complete", "filter": {"tag": "old"}})
        )
        few = structured(await client.call_tool("delete_tasks", {"filter": {"tag": "few"}}))
    assert asked == ["Complete 21 tasks matching the filter? (undo reverts the whole batch)"]
    assert len(done["changed"]) == 21 and len(few["deleted"]) == 3


async def test_a_client_that_cannot_be_asked_gets_the_batch_confirm_contract(http_server, verifier) -> None:
    alice = Actor("alice")
    for i in range(21):
        http_server.container.tasks.add(alice, TaskDraft(title=f"Chore {i}", tags=["home"]))
    async with http_client(http_server.url, verifier.issue("alice")) as client:  # no elicitation
        refused = error_text(
            await client.call_tool("change_tasks", {"action": "complete", "filter": {"tag": "home"}})
        )
    assert "needs_confirmation:" in refused and "confirm=true" in refused
    pending = http_server.container.tasks.list(alice, TaskQuery(status="pending", tag="home", limit=50))
    assert len(pending.items) == 21


# -- deleting a list with its tasks asks first ---------------------------------------------------
@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_deleting_a_list_with_its_tasks_asks_and_a_no_deletes_nothing(local, mode) -> None:
    me = local.actor_for_identity(None)
    local.tasks.create_list(me, "Trip")
    for title in ("Pack", "Book hotel"):
        local.tasks.add(me, TaskDraft(title=title, list="Trip"))
    asked: list[str] = []
    delete = {"action": "delete", "list": "Trip", "tasks": "delete"}
    async with Client(
        local.build_mcp(stdio=True), mode=mode, elicitation_callback=_answering("accept", False, asked)
    ) as client:
        kept = error_text(await client.call_tool("edit_list", delete))
    assert asked == ["Delete the list 'Trip' and its 2 tasks? (undo brings them back)"]
    assert "Nothing was deleted" in kept and "chose not to" in kept
    assert [v.name for v in local.tasks.lists(me).items] == ["Inbox", "Trip"]
    async with Client(
        local.build_mcp(stdio=True), mode=mode, elicitation_callback=_answering("accept", True)
    ) as client:
        gone = structured(await client.call_tool("edit_list", delete))
    assert gone["deleted"]["tasks_deleted"] == 2 and [v.name for v in local.tasks.lists(me).items] == [
        "Inbox"
    ]


async def test_a_client_that_cannot_be_asked_confirms_deleting_a_list_with_its_tasks(
    http_server, verifier
) -> None:
    alice = Actor("alice")
    container = http_server.container
    for name in ("Trip", "Work"):
        container.tasks.create_list(alice, name)
        container.tasks.add(alice, TaskDraft(title=f"In {name}", list=name))
    async with http_client(http_server.url, verifier.issue("alice")) as client:  # no elicitation
        refused = error_text(
            await client.call_tool("edit_list", {"action": "delete", "list": "Trip", "tasks": "delete"})
        )
        moved = structured(
            await client.call_tool(
                "edit_list", {"action": "delete", "list": "Work", "tasks": "move_to_inbox"}
            )
        )
        confirmed = structured(
            await client.call_tool(
                "edit_list", {"action": "delete", "list": "Trip", "tasks": "delete", "confirm": True}
            )
        )
    assert "confirm: true" in refused and "Nothing was deleted" in refused
    assert moved["deleted"]["tasks_moved_to_inbox"] == 1  # moving the tasks needs no question
    assert confirmed["deleted"]["tasks_deleted"] == 1
