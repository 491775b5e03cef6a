"""Fixtures for the lists, subtasks, batch, undo and retry tests."""

from __future__ import annotations

import uuid

import pytest

from tasks.service import Actor


@pytest.fixture
def other_actor() -> Actor:
    return Actor(user_id=f"bob-{uuid.uuid4().hex[:8]}", timezone="America/New_York")
