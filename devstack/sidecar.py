"""Start one ``daprd`` beside an app (tests, ``python -m devstack serve``).

>>> with start_sidecar(app_id="todo-api", app_port=8000, resources_path=res.path,
...                    scheduler_address="127.0.0.1:50006", log_dir=Path("logs"),
...                    extra_env=res.env) as sc:
...     httpx.get(f"{sc.http_url}/v1.0/metadata")

Ports are picked free (HTTP, gRPC, internal gRPC); metrics are off; it listens on 127.0.0.1
only. It is stopped by pid: SIGTERM, then SIGKILL.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Literal

from devstack import dapr_bin
from devstack.config import StackConfig
from devstack.errors import StackError
from devstack.procs import free_port, http_status, log_tail, spawn, stop_pid, wait_until

#: ``outbound``: components loaded (``/v1.0/healthz/outbound`` 204), the app may still be down;
#: ``app``: the app answers too (``/v1.0/healthz`` 204); ``none``: return at once.
WaitFor = Literal["outbound", "app", "none"]


@dataclass
class Sidecar:
    app_id: str
    app_port: int | None
    http_port: int
    grpc_port: int
    internal_grpc_port: int
    log_path: Path
    proc: subprocess.Popen[bytes] = field(repr=False)
    dapr_api_token: str | None = None

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def grpc_address(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def app_env(self) -> dict[str, str]:
        """What the app beside it needs to reach it (``DAPR_HTTP_PORT`` etc.)."""
        env = {
            "DAPR_HTTP_PORT": str(self.http_port),
            "DAPR_GRPC_PORT": str(self.grpc_port),
            "DAPR_HTTP_ENDPOINT": self.http_url,
            "DAPR_GRPC_ENDPOINT": self.grpc_address,
        }
        if self.dapr_api_token:
            env["DAPR_API_TOKEN"] = self.dapr_api_token
        return env

    def running(self) -> bool:
        return self.proc.poll() is None

    def wait_ready(self, wait_for: WaitFor = "outbound", timeout: float = 60.0) -> None:
        if wait_for == "none":
            return
        path = "/v1.0/healthz/outbound" if wait_for == "outbound" else "/v1.0/healthz"
        wait_until(
            lambda: http_status(self.http_url + path) == 204,
            what=f"daprd for {self.app_id} ({path})",
            timeout=timeout,
            log_path=self.log_path,
            proc=self.proc,
        )

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout``; returns when the process is gone."""
        if self.proc.poll() is None:
            stop_pid(self.proc.pid, timeout=timeout)
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:  # pragma: no cover - stop_pid already SIGKILLed
            pass

    def __enter__(self) -> Sidecar:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def pod_name(app_id: str, app_port: int | None, http_port: int) -> str:
    """``POD_NAME`` of a local daprd (components' ``{podName}``): one per app instance, the
    same when its sidecar restarts beside it (the app keeps its port), as a pod's name does
    in Kubernetes. The per-replica broadcast consumer group is named after it, so a restarted
    sidecar resumes that group where it stopped instead of skipping to the newest offset."""
    return f"{app_id}-{app_port if app_port is not None else http_port}"


def start_sidecar(
    *,
    app_id: str,
    app_port: int | None,
    resources_path: Path,
    scheduler_address: str,
    log_dir: Path,
    config: Path | None = None,
    app_api_token: str | None = None,
    dapr_api_token: str | None = None,
    extra_env: Mapping[str, str] | None = None,
    extra_args: list[str] | None = None,
    wait_for: WaitFor = "outbound",
    timeout: float = 60.0,
    daprd: Path | None = None,
    log_level: str = "info",
) -> Sidecar:
    """Start ``daprd`` for ``app_id`` and wait (see :data:`WaitFor`); returns the handle.

    ``app_port=None`` runs a sidecar without an app (publish/state/invoke client only).
    ``app_api_token`` is sent by daprd to the app in the ``dapr-api-token`` header;
    ``dapr_api_token`` is required from callers of daprd's API.
    The daprd binary defaults to the pinned one (built on first use).
    """
    binary = daprd or dapr_bin.ensure(StackConfig.from_env()).daprd
    log_dir.mkdir(parents=True, exist_ok=True)
    last_error: StackError | None = None
    for _attempt in range(3):  # a picked port can be taken before daprd binds it
        http_port, grpc_port, internal_port = free_port(), free_port(), free_port()
        log_path = log_dir / f"daprd-{app_id}-{http_port}.log"
        args = [
            str(binary),
            "--mode", "standalone",
            "--app-id", app_id,
            "--dapr-http-port", str(http_port),
            "--dapr-grpc-port", str(grpc_port),
            "--dapr-internal-grpc-port", str(internal_port),
            "--dapr-listen-addresses", "127.0.0.1",
            "--dapr-internal-grpc-listen-address", "127.0.0.1",
            "--resources-path", str(resources_path),
            "--scheduler-host-address", scheduler_address,
            "--enable-metrics=false",
            "--dapr-graceful-shutdown-seconds", "2",
            "--log-level", log_level,
        ]  # fmt: skip
        if app_port is not None:
            args += ["--app-port", str(app_port), "--app-protocol", "http",
                     "--app-channel-address", "127.0.0.1"]  # fmt: skip
        if config is not None:
            args += ["--config", str(config)]
        args += extra_args or []
        # The app's own OTEL_SERVICE_NAME would rename daprd's spans too: daprd names them by app id.
        dropped = ("APP_API_TOKEN", "DAPR_API_TOKEN", "OTEL_SERVICE_NAME")
        env = {k: v for k, v in os.environ.items() if k not in dropped}
        env["POD_NAME"] = pod_name(app_id, app_port, http_port)  # unless extra_env names one
        env.update(extra_env or {})
        env["DAPR_HOST_IP"] = "127.0.0.1"
        if app_api_token:
            env["APP_API_TOKEN"] = app_api_token
        if dapr_api_token:
            env["DAPR_API_TOKEN"] = dapr_api_token
        proc = spawn(args, log_path=log_path, env=env)
        sidecar = Sidecar(
            app_id=app_id,
            app_port=app_port,
            http_port=http_port,
            grpc_port=grpc_port,
            internal_grpc_port=internal_port,
            log_path=log_path,
            proc=proc,
            dapr_api_token=dapr_api_token,
        )
        try:
            sidecar.wait_ready(wait_for, timeout=timeout)
            return sidecar
        except StackError as exc:
            sidecar.stop()
            if "address already in use" not in log_tail(log_path, 60):
                raise
            last_error = exc
    assert last_error is not None
    raise last_error


def start_stack_sidecar(
    app_id: str,
    app_port: int | None,
    *,
    cfg: StackConfig | None = None,
    pg_url: str | None = None,
    app_api_token: str | None = None,
    dapr_api_token: str | None = None,
    wait_for: WaitFor = "outbound",
    timeout: float = 60.0,
) -> Sidecar:
    """A daprd for ``app_id`` wired to the local stack (``python -m devstack serve``).

    Renders ``dapr-components/`` for the stack's Kafka and database (``pg_url``, default the
    stack's ``todo`` database) into ``<state>/dapr-resources/<app_id>`` and logs to
    ``<state>/logs``. The stack must be up (``python -m devstack up``).
    """
    from devstack.components import render

    cfg = cfg or StackConfig.from_env()
    resources = render(
        cfg.state_dir / "dapr-resources" / app_id,
        kafka_brokers=cfg.kafka_brokers,
        pg_url=pg_url or cfg.database_url,
    )
    return start_sidecar(
        app_id=app_id,
        app_port=app_port,
        resources_path=resources.path,
        config=resources.config,
        scheduler_address=cfg.scheduler_address,
        log_dir=cfg.log_dir,
        app_api_token=app_api_token,
        dapr_api_token=dapr_api_token,
        extra_env=resources.env,
        wait_for=wait_for,
        timeout=timeout,
    )
