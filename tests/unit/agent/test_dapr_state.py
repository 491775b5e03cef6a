"""daprd's state API over HTTP on the wire: what a sidecar receives, and how its answers are
classified. A small aiohttp server answers as daprd 1.18 does; the same calls against a real
daprd and PostgreSQL are in tests/integration/agent/test_dapr_memory.py."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web

from agent.dapr_state import DaprStateClient, StateConflict, StateStoreError, upsert_operation
from devstack.procs import free_port
from sidecar import Sidecar
from tests.unit.http_support import serving_posts


@dataclass
class FakeSidecar:
    url: str = ""
    requests: list[tuple[str, dict[str, str], dict[str, str], Any]] = field(default_factory=list)
    answer: tuple[int, str] = (204, "")
    stall: bool = False


@pytest.fixture
async def sidecar() -> AsyncIterator[FakeSidecar]:
    recorded = FakeSidecar()

    async def handle(request: web.Request) -> web.Response:
        recorded.requests.append(
            (request.path, dict(request.query), dict(request.headers), json.loads(await request.read()))
        )
        if recorded.stall:
            await asyncio.sleep(30)
        status, text = recorded.answer
        return web.Response(status=status, text=text or None, content_type="application/json")

    async with serving_posts(handle) as url:
        recorded.url = url
        yield recorded


async def test_a_bulk_read_is_strongly_consistent_carries_the_token_and_leaves_missing_keys_out(
    sidecar: FakeSidecar,
) -> None:
    sidecar.answer = (200, json.dumps([{"key": "a", "data": ["x"], "etag": "e1"}, {"key": "b"}]))
    state = DaprStateClient(Sidecar.at(sidecar.url, api_token="secret"), store_name="statestore")
    try:
        assert await state.get_bulk(["a", "b"]) == {"a": (["x"], "e1")}
    finally:
        await state.aclose()
    path, query, headers, body = sidecar.requests[0]
    assert (path, query, body) == (
        "/v1.0/state/statestore/bulk",
        {"metadata.consistency": "strong"},
        {"keys": ["a", "b"]},
    )
    assert headers["dapr-api-token"] == "secret"


async def test_writes_carry_etag_first_write_and_ttl(sidecar: FakeSidecar) -> None:
    state = DaprStateClient(Sidecar.at(sidecar.url), store_name="statestore")
    try:
        await state.save("k", [], etag="e1", first_write=True, metadata={"ttlInSeconds": "60"})
        await state.transact([upsert_operation("k", ["x"], etag="e2", metadata={"ttlInSeconds": "60"})])
    finally:
        await state.aclose()
    (save_path, _, headers, saved), (transaction_path, _, _, transaction) = sidecar.requests
    assert "dapr-api-token" not in headers
    assert (save_path, saved) == (
        "/v1.0/state/statestore",
        [{"key": "k", "value": [], "etag": "e1", "options": {"concurrency": "first-write"},
          "metadata": {"ttlInSeconds": "60"}}],
    )  # fmt: skip
    request = {"key": "k", "value": ["x"], "etag": "e2", "metadata": {"ttlInSeconds": "60"}}
    assert (transaction_path, transaction) == (
        "/v1.0/state/statestore/transaction",
        {"operations": [{"operation": "upsert", "request": request}]},
    )


@pytest.mark.parametrize(
    ("status", "code", "message", "conflict"),
    [
        (
            409,
            "ERR_STATE_SAVE",
            "failed saving state in state store statestore: possible etag mismatch",
            True,
        ),
        (500, "ERR_STATE_SAVE", "failed saving state in state store statestore: no item was updated", True),
        (
            500,
            "ERR_STATE_TRANSACTION",
            "error while executing state transaction: possible etag mismatch",
            True,
        ),
        (
            500,
            "ERR_STATE_TRANSACTION",
            "error while executing state transaction: failed to begin transaction",
            False,
        ),
        (503, "ERR_STATE_STORE_NOT_CONFIGURED", "state store is not configured", False),
    ],
)
async def test_only_a_lost_etag_or_first_write_race_is_a_conflict(
    sidecar: FakeSidecar, status: int, code: str, message: str, conflict: bool
) -> None:
    sidecar.answer = (status, json.dumps({"errorCode": code, "message": message}))
    state = DaprStateClient(Sidecar.at(sidecar.url), store_name="statestore")
    try:
        with pytest.raises(StateStoreError) as raised:
            await state.transact([upsert_operation("k", ["x"], etag="e1")])
    finally:
        await state.aclose()
    assert isinstance(raised.value, StateConflict) is conflict
    assert (
        str(raised.value)
        == f"The state store statestore refused to apply a transaction: {status} {code}: {message}"
    )


async def test_a_sidecar_that_does_not_answer_fails_the_call_after_the_timeout(sidecar: FakeSidecar) -> None:
    sidecar.stall = True
    state = DaprStateClient(Sidecar.at(sidecar.url, timeout=0.5), store_name="statestore")
    started = time.monotonic()
    try:
        with pytest.raises(StateStoreError) as raised:
            await state.get_bulk(["a"])
    finally:
        await state.aclose()
    assert time.monotonic() - started < 3
    assert str(raised.value) == (
        f"Could not read keys in the state store statestore: the Dapr sidecar at {sidecar.url} "
        "did not answer within 0.5 s."
    )


async def test_a_sidecar_that_is_down_fails_at_once() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    state = DaprStateClient(Sidecar.at(url), store_name="statestore")
    started = time.monotonic()
    try:
        with pytest.raises(StateStoreError, match=f"the Dapr sidecar at {url} is unreachable \\("):
            await state.save("k", [])
    finally:
        await state.aclose()
    assert time.monotonic() - started < 3
