"""The Dapr Scheduler control-plane service (serves the Jobs API), single node, standalone.

Its embedded etcd keeps data under ``<state>/scheduler/etcd`` so jobs survive a restart.
"""

from __future__ import annotations

import os

from devstack import dapr_bin
from devstack.component import ComponentStatus
from devstack.config import StackConfig
from devstack.procs import ManagedProcess, PidFile, http_status, require_free

SCHEDULER_ID = "devstack-scheduler"


class Scheduler(ManagedProcess):
    name = "scheduler"
    stop_timeout = 20.0

    def __init__(self, cfg: StackConfig) -> None:
        self.cfg = cfg
        self.home = cfg.state_dir / "scheduler"
        super().__init__(
            PidFile(cfg.run_dir / "scheduler.pid", marker=str(self.home / "etcd")),
            cfg.log_dir / "scheduler.log",
        )

    def _healthy(self) -> bool:
        return http_status(f"http://127.0.0.1:{self.cfg.scheduler_healthz_port}/healthz") == 200

    def command(self, binary: str) -> list[str]:
        c = self.cfg
        return [
            binary,
            "--mode",
            "standalone",
            "--id",
            SCHEDULER_ID,
            "--listen-address",
            "127.0.0.1",
            "--port",
            str(c.scheduler_port),
            "--healthz-listen-address",
            "127.0.0.1",
            "--healthz-port",
            str(c.scheduler_healthz_port),
            "--override-broadcast-host-port",
            c.scheduler_address,
            "--enable-metrics=false",
            "--etcd-data-dir",
            str(self.home / "etcd"),
            "--etcd-initial-cluster",
            f"{SCHEDULER_ID}=http://127.0.0.1:{c.scheduler_etcd_peer_port}",
            "--etcd-client-listen-address",
            "127.0.0.1",
            "--etcd-client-port",
            str(c.scheduler_etcd_client_port),
            "--identity-directory-write",
            str(self.home / "identity"),
            "--log-level",
            "info",
        ]

    def up(self) -> None:
        if self.running():
            return
        binary = dapr_bin.ensure(self.cfg).scheduler
        for port, what, var in [
            (self.cfg.scheduler_port, "the Dapr scheduler", "TODO_STACK_SCHEDULER_PORT"),
            (self.cfg.scheduler_healthz_port, "the scheduler healthz", "TODO_STACK_SCHEDULER_HEALTHZ_PORT"),
            (
                self.cfg.scheduler_etcd_client_port,
                "the scheduler etcd client",
                "TODO_STACK_SCHEDULER_ETCD_PORT",
            ),
            (
                self.cfg.scheduler_etcd_peer_port,
                "the scheduler etcd peer",
                "TODO_STACK_SCHEDULER_ETCD_PEER_PORT",
            ),
        ]:
            require_free(port, what, var)
        self.home.mkdir(parents=True, exist_ok=True)
        self.start(self.command(str(binary)), env=dict(os.environ), cwd=self.home, timeout=90)

    def status(self) -> ComponentStatus:
        pid = self.pidfile.read()
        binary = dapr_bin.find("scheduler", self.cfg)
        healthy = self._healthy()
        if pid:
            detail = f"address={self.cfg.scheduler_address}"
        else:
            detail = "running, not from this stack folder" if healthy else "not running"
        detail += f" binary={binary}" if binary else " (binary not built yet)"
        return ComponentStatus(
            self.name,
            pid,
            self.cfg.scheduler_port,
            self.cfg.dapr_version if binary else None,
            healthy,
            detail,
        )
