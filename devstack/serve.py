"""``python -m devstack serve ROLE``: one role of the product with a daprd beside it.

Dapr mode without the Dapr CLI, for development: the daprd comes from the local stack (which
must be up: ``python -m devstack up``) and uses its PostgreSQL, Kafka and scheduler. In
Kubernetes the sidecar injector does this; the product itself never starts a daprd.
"""

from __future__ import annotations

import os
import signal
import sys
from types import FrameType

from devstack.config import StackConfig
from devstack.errors import StackError
from devstack.sidecar import start_stack_sidecar
from todo_agent.bootstrap import Role
from todo_agent.cli import ROLE_PORTS, load_settings, serve_role


def serve_with_sidecar(role: Role, *, host: str | None, port: int | None) -> int:
    """Start daprd for ``role`` and serve the role until stopped; returns the exit code."""
    settings = load_settings("devstack serve")
    if settings is None:
        return 2
    # uvicorn re-raises the SIGTERM it caught once the role has shut down. Its default action
    # would end this process on the spot and leave the daprd running; as an exception it
    # unwinds through the ``with sidecar`` below, which stops the daprd.
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    app_port = port or ROLE_PORTS[role]
    cfg = StackConfig.from_env()
    if not settings.database_url:
        settings.database_url = cfg.database_url
    token = settings.app_api_token.get_secret_value() if settings.app_api_token else None
    try:
        sidecar = start_stack_sidecar(f"todo-{role}", app_port, cfg=cfg, app_api_token=token)
    except StackError as exc:
        print(f"devstack serve: could not start daprd: {exc}", file=sys.stderr)
        return 2
    with sidecar:
        os.environ.update(sidecar.app_env())
        settings.dapr_http_port, settings.dapr_grpc_port = sidecar.http_port, sidecar.grpc_port
        return serve_role(role, settings, host=host, port=app_port)


def _exit_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)
