"""Hypothesis over every MCP tool's arguments, through the real MCP client and /mcp on PostgreSQL.

Arguments are drawn from each tool's own input schema, widened on purpose: hostile strings
(NUL, RTL marks, 10,000 characters...), integers far beyond 64 bits, wrong types and
unknown names. Whatever comes in, a call answers with a result or a tool error that says what
is wrong: never a crash (the SDK's bare ``Error executing tool <name>``) or a protocol error.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import httpx2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from tests.conftest import JWT_SECRET
from tests.integration.hostile_strings import HOSTILE
from todo_agent.api import app_for
from todo_agent.bootstrap import bootstrap

pytestmark = pytest.mark.integration

#: Calls per tool.
EXAMPLES = 100
_ODD_INTS = [0, -1, 1, 2, 2**31 - 1, 2**31, 2**53 + 1, 2**63, 2**64, -(2**63) - 1, 10**30]
_WORDS = [
    "tomorrow 5pm", "next friday", "in 2 hours", "0001-01-01T00:00+01:00", "9999-12-31T23:59-01:00",
    "daily", "every weekday", "FREQ=WEEKLY;BYDAY=MO", "high", "groceries", "*", "W/\"1\"",
]  # fmt: skip
#: The client sends JSON as UTF-8 without NaN: lone surrogates and NaN cannot leave it (the
#: REST corpus in ``test_hostile_text`` sends those).
_SENDABLE = [text for text in HOSTILE.values() if not any("\ud800" <= ch <= "\udfff" for ch in text)]
_ANY_TEXT = st.text() | st.sampled_from(_SENDABLE + _WORDS)
_WRONG: st.SearchStrategy[Any] = (
    st.none()
    | st.booleans()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.lists(st.integers(), max_size=2)
    | st.just({})
)


def value_for(schema: dict[str, Any]) -> st.SearchStrategy[Any]:
    """A value the schema allows, or near it: the bounds and types are only a starting point."""
    if "anyOf" in schema:
        return st.one_of([value_for(option) for option in schema["anyOf"]])
    if "enum" in schema:
        return st.sampled_from(schema["enum"]) | _ANY_TEXT
    kind = schema.get("type")
    if kind == "string":
        return _ANY_TEXT | _WRONG
    if kind == "integer":
        return st.integers() | st.sampled_from(_ODD_INTS) | _WRONG | _ANY_TEXT
    if kind == "boolean":
        return st.booleans() | _WRONG
    if kind == "array":
        return st.lists(value_for(schema.get("items", {})), max_size=25) | _WRONG
    if kind == "null":
        return st.none()
    return _WRONG


def arguments_for(schema: dict[str, Any]) -> st.SearchStrategy[dict[str, Any]]:
    properties = schema.get("properties", {})
    required = set(schema.get("required", []))
    known = st.fixed_dictionaries(
        {n: value_for(properties[n]) for n in properties if n in required},
        optional={n: value_for(properties[n]) for n in properties if n not in required},
    )
    unknown = st.dictionaries(st.sampled_from(["user_id", "owner_id", "id", "x"]), _ANY_TEXT, max_size=1)
    return st.builds(lambda a, b: b | a, known, unknown)


def drawn(schema: dict[str, Any]) -> list[dict[str, Any]]:
    """``EXAMPLES`` argument sets for one tool, drawn by hypothesis (reproducibly)."""
    examples: list[dict[str, Any]] = []

    @settings(
        max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
        suppress_health_check=list(HealthCheck),
    )  # fmt: skip
    @given(arguments_for(schema))
    def collect(arguments: dict[str, Any]) -> None:
        examples.append(arguments)

    collect()
    return examples


async def test_no_tool_arguments_crash_a_tool(
    make_settings, pg_url: str, app_server_factory, verifier
) -> None:
    container = bootstrap("api", make_settings(jwt_secret=JWT_SECRET, database_url=pg_url))
    server = app_server_factory(app_for(container))
    headers = {"Authorization": f"Bearer {verifier.issue('mcp-fuzz', ttl=3600)}"}
    http = httpx2.AsyncClient(headers=headers, timeout=60)
    crashes: list[str] = []
    counts: Counter[str] = Counter()
    started = time.perf_counter()
    async with Client(streamable_http_client(f"{server.url}/mcp", http_client=http)) as client:
        for title in ("first", "second"):  # tasks 1 and 2 of this user exist for the id tools
            assert not (await client.call_tool("add_task", {"title": title})).is_error
        for tool in (await client.list_tools()).tools:
            for arguments in drawn(tool.input_schema):
                result = await client.call_tool(tool.name, arguments)  # a protocol error raises
                counts[tool.name] += 1
                text = " ".join(getattr(c, "text", "") for c in result.content)
                if result.is_error and text.strip() == f"Error executing tool {tool.name}":
                    crashes.append(f"{tool.name}({_short(arguments)})")
    print(
        f"\nmcp fuzz: {sum(counts.values())} calls in {time.perf_counter() - started:.1f} s: {dict(counts)}"
    )
    assert set(counts) == {
        "add_task",
        "update_task",
        "complete_task",
        "delete_task",
        "list_tasks",
        "set_reminder",
        "add_tasks",
        "change_tasks",
        "delete_tasks",
        "lists",
        "edit_list",
        "undo",
    }
    assert not crashes, "tools crashed on:\n" + "\n".join(crashes[:20])


def _short(arguments: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v!r}"[:120] for k, v in arguments.items())
