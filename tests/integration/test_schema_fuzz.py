"""Schemathesis over the whole OpenAPI schema, signed in, against the app on PostgreSQL.

Every operation gets a bounded number of generated requests (``EXAMPLES`` each, positive and
negative data: wrong types, out-of-range numbers, odd strings) through a real server
(uvicorn, the ``all`` role, chat on the offline model). Any 5xx answer is a failure: bad input
must get a 4xx that says what is wrong. The run prints how many requests each operation got.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.core.result import Ok
from schemathesis.generation import GenerationMode

from auth.tokens import JwtVerifier
from tests.conftest import JWT_SECRET
from tests.unit.agent.support import running_app, settings_on_free_port

pytestmark = pytest.mark.integration

#: Generated requests per operation (each mode): enough to reach odd corners, a minute or two in all.
EXAMPLES = 25


def operations_of(url: str) -> list[Any]:
    schema = schemathesis.openapi.from_url(f"{url}/openapi.json")
    operations = []
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), result  # a schema error fails the test, saying which
        operations.append(result.ok())
    return operations


def test_no_generated_request_gets_a_server_error(make_settings, pg_url: str) -> None:
    verifier = JwtVerifier(secret=JWT_SECRET, audience="todo-agent")
    settings_ = settings_on_free_port(make_settings, jwt_secret=JWT_SECRET, database_url=pg_url)
    token = verifier.issue("schemathesis", ttl=3600, zoneinfo="Europe/Berlin")
    headers = {"Authorization": f"Bearer {token}"}
    with running_app(settings_) as app:
        with httpx.Client(base_url=app.url, headers=headers, timeout=60) as client:
            for title in ("first", "second"):  # ids 1 and 2 exist, so some requests reach a task
                assert client.post("/api/tasks", json={"title": title}).status_code == 201
        operations = operations_of(app.url)
        assert len(operations) >= 10, [op.label for op in operations]
        errors: list[str] = []
        counts: Counter[str] = Counter()
        started = time.perf_counter()
        for operation in operations:
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                _fuzz(operation, mode, app.url, headers, errors, counts)
        elapsed = time.perf_counter() - started
    print(f"\nschemathesis: {sum(counts.values())} requests over {len(operations)} operations "
          f"in {elapsed:.1f} s")  # fmt: skip
    for label, count in sorted(counts.items()):
        print(f"  {count:4d}  {label}")
    assert not errors, "server errors:\n" + "\n".join(errors[:20])


def _fuzz(
    operation: Any, mode: GenerationMode, url: str, headers: dict[str, str], errors: list[str],
    counts: Counter[str],
) -> None:  # fmt: skip
    try:
        strategy = operation.as_strategy(generation_mode=mode)
    except Exception as exc:  # an operation with nothing to make negative, e.g. no parameters
        if mode is GenerationMode.NEGATIVE:
            return
        raise AssertionError(f"{operation.label}: no strategy ({exc})") from exc

    @settings(
        max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
        suppress_health_check=list(HealthCheck),
    )  # fmt: skip
    @given(case=strategy)
    def run(case: Any) -> None:
        response = case.call(base_url=url, headers=headers)
        counts[operation.label] += 1
        if response.status_code >= 500:
            errors.append(
                f"{operation.label} [{mode.value}] -> {response.status_code}: "
                f"{case.as_curl_command(headers=headers)}\n    {response.text[:200]}"
            )

    try:
        run()
    except Unsatisfiable:  # nothing of this operation can be made invalid (no parameters)
        if mode is not GenerationMode.NEGATIVE:
            raise
