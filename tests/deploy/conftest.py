"""Fixtures for the deployment tests: the rendered overlays of k8s/."""

from __future__ import annotations

import pytest

from tests.deploy.deploy_support import APP_OVERLAYS, K8S, KAFKA_OVERLAYS
from tests.deploy.k8s_render import Manifest, render


@pytest.fixture(scope="session", params=APP_OVERLAYS)
def app_overlay(request: pytest.FixtureRequest) -> list[Manifest]:
    return render(K8S / request.param)


@pytest.fixture(scope="session", params=KAFKA_OVERLAYS)
def kafka_overlay(request: pytest.FixtureRequest) -> list[Manifest]:
    return render(K8S / request.param)
