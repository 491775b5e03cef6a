"""Fixtures for the deployment tests: the rendered overlays of k8s/."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

# The helpers next to these tests import as top-level modules whatever pytest's import mode.
sys.path.insert(0, str(Path(__file__).resolve().parent))

from deploy_support import APP_OVERLAYS, K8S, KAFKA_OVERLAYS  # noqa: E402
from k8s_render import Manifest, render  # noqa: E402


@pytest.fixture(scope="session", params=APP_OVERLAYS)
def app_overlay(request: pytest.FixtureRequest) -> list[Manifest]:
    return render(K8S / request.param)


@pytest.fixture(scope="session", params=KAFKA_OVERLAYS)
def kafka_overlay(request: pytest.FixtureRequest) -> list[Manifest]:
    return render(K8S / request.param)
