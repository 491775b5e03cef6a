"""SIGKILL to every process of the system in the middle of a stream of writes loses nothing and
applies nothing twice.

The scenario of ``benchmarks/chaos.py`` at a smaller scale (its docstring has the client
contract and what each figure means): on a private stack (Kafka is killed here, which must
never happen to the shared stack) the four roles run as processes beside their own daprds
while clients write over REST and MCP with two WebSockets per user open. One after the other,
with writes before, during and after each: SIGKILL to the api process, the api's daprd, the
recurrence, audit and notifications processes, and Kafka, each started again
after half a second; after each, a probe must come through end to end before the next.
Afterwards every key has exactly one task with every acknowledged change, one next occurrence
per completion, one audit entry per event, each reminder one in-app notification, every row
published, and every socket every update of its user (after ignoring repeated ids, as the
client contract says) without a reset.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.chaos import Settings, faults, figures, run, running_system
from devstack.stack import Stack

pytestmark = pytest.mark.integration

KINDS = ("api", "api-daprd", "recurrence", "audit", "notifications", "kafka")


@pytest.mark.timeout(480)
async def test_sigkill_of_api_sidecars_consumers_and_kafka_mid_stream_loses_and_repeats_nothing(
    isolated_stack: Stack, tmp_path: Path
) -> None:
    settings = Settings(
        writes=600, kinds=KINDS, rounds=1, users=2, writers=4, down=0.5, remind_in=8, settle=120
    )
    with running_system(isolated_stack, tmp_path / "logs") as system:
        outcome = await run(system, settings)
        result = figures(outcome)
    print(json.dumps(result))
    assert faults(result) == {}, json.dumps(result, indent=1)
    assert result["kills"] == len(KINDS) and result["acked"] == settings.writes
    assert result["refused_attempts"] > 0, (
        "no write met the api while it was down: the kill missed the stream"
    )
    assert result["socket_connections"] > result["sockets"], "the api's kill closed no socket"
