"""Jaeger (v2, the OpenTelemetry-collector-based ``cmd/jaeger``): the stack's trace backend.

Built once from its Go module through ``devstack/jaeger-build`` into
``${XDG_CACHE_HOME:-~/.cache}/todo-agent/jaeger/<version>/jaeger`` (minutes on 2 cores; the build
time is in the README), rebuilt when missing. It runs with an in-memory store (traces
go with a restart), everything on 127.0.0.1:

| what | default port | env |
|---|---|---|
| OTLP gRPC receiver (daprd sends here) | 54317 | ``TODO_STACK_JAEGER_OTLP_GRPC_PORT`` |
| OTLP HTTP receiver (the apps send here) | 54318 | ``TODO_STACK_JAEGER_OTLP_HTTP_PORT`` |
| UI and query API (``/api/traces``) | 56686 | ``TODO_STACK_JAEGER_UI_PORT`` |
| query gRPC | 56685 | ``TODO_STACK_JAEGER_QUERY_GRPC_PORT`` |
| health check (``/status``) | 53133 | ``TODO_STACK_JAEGER_HEALTH_PORT`` |

Apps reach it with ``OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:54318`` (see
:meth:`Jaeger.app_env`); daprd through ``dapr-components/config.yaml`` (``tracing.otel``).
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import time
from pathlib import Path

from devstack.component import ComponentStatus
from devstack.config import StackConfig, repo_root
from devstack.errors import StackError
from devstack.procs import ManagedProcess, PidFile, http_status, require_free
from devstack.tools import go

BUILD_DIR = repo_root() / "devstack" / "jaeger-build"
PACKAGE = "github.com/jaegertracing/jaeger/cmd/jaeger"


def binary(cfg: StackConfig) -> Path:
    return cfg.jaeger_cache / "jaeger"


def built(cfg: StackConfig) -> bool:
    return (cfg.jaeger_cache / ".built").is_file() and binary(cfg).is_file()


def ensure(cfg: StackConfig, *, progress: bool = True) -> Path:
    """The pinned ``jaeger`` binary, built once into the cache when missing."""
    if built(cfg):
        return binary(cfg)
    out = cfg.jaeger_cache
    out.mkdir(parents=True, exist_ok=True)
    with open(out / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one build at a time; a waiter reuses the result
        if built(cfg):
            return binary(cfg)
        _build(cfg, out, progress=progress)
    return binary(cfg)


def _build(cfg: StackConfig, out: Path, *, progress: bool) -> None:
    log = out / "build.log"
    gobin = go("1.25")
    env = dict(os.environ)
    env["PATH"] = f"{Path(gobin).parent}{os.pathsep}{env.get('PATH', '')}"
    env.update(GOTOOLCHAIN="local", CGO_ENABLED="0")
    env.setdefault("GOFLAGS", "-buildvcs=false")
    version = f"-X github.com/jaegertracing/jaeger/internal/version.latestVersion=v{cfg.jaeger_version}"
    jobs = os.environ.get("JAEGER_BUILD_JOBS", "2")
    command = ["go", "build", "-p", jobs, "-trimpath", "-ldflags", f"-s -w {version}"]
    command += ["-o", str(out / "jaeger.tmp"), PACKAGE]
    if progress:
        print(
            f"[devstack] building Jaeger {cfg.jaeger_version} (first time only, ~4 min); log {log}",
            flush=True,
        )
    started = time.monotonic()
    with open(log, "ab") as f:
        f.write(f"\n--- {time.strftime('%H:%M:%S')} {' '.join(command)}\n".encode())
        f.flush()
        rc = subprocess.run(
            command, stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, cwd=BUILD_DIR,
            check=False,
        ).returncode  # fmt: skip
    if rc != 0:
        raise StackError(f"building Jaeger {cfg.jaeger_version} failed (exit {rc}); log {log}")
    (out / "jaeger.tmp").rename(out / "jaeger")
    took = time.monotonic() - started
    (out / ".built").write_text(f"{cfg.jaeger_version} built in {took:.0f}s\n")
    if progress:
        print(f"[devstack] Jaeger built in {took:.0f}s", flush=True)


def config_yaml(cfg: StackConfig) -> str:
    """Jaeger's collector configuration: OTLP in, memory store, query API and UI, all loopback."""
    return f"""\
service:
  extensions: [jaeger_storage, jaeger_query, healthcheckv2]
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [jaeger_storage_exporter]
  telemetry:
    metrics:
      level: none
    logs:
      level: info
extensions:
  jaeger_query:
    enable_tracing: false
    storage:
      traces: memstore
    http:
      endpoint: 127.0.0.1:{cfg.jaeger_ui_port}
    grpc:
      endpoint: 127.0.0.1:{cfg.jaeger_query_grpc_port}
  jaeger_storage:
    backends:
      memstore:
        memory:
          max_traces: 50000
  healthcheckv2:
    use_v2: true
    http:
      endpoint: 127.0.0.1:{cfg.jaeger_health_port}
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:{cfg.jaeger_otlp_grpc_port}
      http:
        endpoint: 127.0.0.1:{cfg.jaeger_otlp_http_port}
processors:
  batch:
    timeout: 200ms
exporters:
  jaeger_storage_exporter:
    trace_storage: memstore
"""


class Jaeger(ManagedProcess):
    name = "jaeger"

    def __init__(self, cfg: StackConfig) -> None:
        self.cfg = cfg
        self.home = cfg.state_dir / "jaeger"
        super().__init__(
            PidFile(cfg.run_dir / "jaeger.pid", marker=str(self.home / "config.yaml")),
            cfg.log_dir / "jaeger.log",
        )

    @property
    def ui_url(self) -> str:
        return f"http://127.0.0.1:{self.cfg.jaeger_ui_port}"

    @property
    def otlp_http_url(self) -> str:
        return f"http://127.0.0.1:{self.cfg.jaeger_otlp_http_port}"

    def app_env(self) -> dict[str, str]:
        """What an app needs to send its spans here (``observability.tracing``)."""
        return {"OTEL_EXPORTER_OTLP_ENDPOINT": self.otlp_http_url, "TODO_TRACING": "on"}

    def _healthy(self) -> bool:
        return http_status(f"{self.ui_url}/api/services") == 200

    def up(self) -> None:
        if self.running():
            return
        path = ensure(self.cfg)
        c = self.cfg
        for port, var in [
            (c.jaeger_otlp_grpc_port, "TODO_STACK_JAEGER_OTLP_GRPC_PORT"),
            (c.jaeger_otlp_http_port, "TODO_STACK_JAEGER_OTLP_HTTP_PORT"),
            (c.jaeger_ui_port, "TODO_STACK_JAEGER_UI_PORT"),
            (c.jaeger_query_grpc_port, "TODO_STACK_JAEGER_QUERY_GRPC_PORT"),
            (c.jaeger_health_port, "TODO_STACK_JAEGER_HEALTH_PORT"),
        ]:
            require_free(port, "Jaeger", var)
        self.home.mkdir(parents=True, exist_ok=True)
        config = self.home / "config.yaml"
        config.write_text(config_yaml(c))
        self.start([str(path), "--config", str(config)], env=dict(os.environ), cwd=self.home, timeout=60)

    def status(self) -> ComponentStatus:
        pid = self.pidfile.read()
        healthy = self._healthy()
        c = self.cfg
        if pid or healthy:
            grpc = f"127.0.0.1:{c.jaeger_otlp_grpc_port}"
            detail = f"ui={self.ui_url} otlp-grpc={grpc} otlp-http={self.otlp_http_url}"
            detail += "" if pid else " (running, not from this stack folder)"
        else:
            detail = "not running"
        detail += "" if built(c) else f" (binary not built yet: cache {c.jaeger_cache})"
        return ComponentStatus(
            self.name, pid, c.jaeger_ui_port, c.jaeger_version if built(c) else None, healthy, detail
        )
