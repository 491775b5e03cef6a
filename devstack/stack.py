"""The whole local stack: PostgreSQL, Kafka, the Dapr scheduler and Jaeger (plus the daprd binary).

>>> stack = Stack(StackConfig.from_env())
>>> started = stack.up()      # names of the components this call started
>>> stack.down()              # stops every component of the stack (by pid)
"""

from __future__ import annotations

import contextlib
import fcntl
import shutil
from collections.abc import Iterator

from devstack import dapr_bin, jaeger
from devstack.component import Component, ComponentStatus
from devstack.config import StackConfig
from devstack.jaeger import Jaeger
from devstack.kafka import Kafka, ensure_libs
from devstack.keycloak import ensure_dist
from devstack.postgres import Postgres, find_bindir
from devstack.procs import reserve_ports
from devstack.scheduler import Scheduler
from devstack.tools import java


class Stack:
    def __init__(self, cfg: StackConfig | None = None) -> None:
        self.cfg = cfg or StackConfig.from_env()
        self.postgres = Postgres(self.cfg)
        self.kafka = Kafka(self.cfg)
        self.scheduler = Scheduler(self.cfg)
        self.jaeger = Jaeger(self.cfg)

    @property
    def components(self) -> list[Component]:
        return [self.postgres, self.kafka, self.scheduler, self.jaeger]

    def running(self) -> set[str]:
        """Names of the managed components whose process runs now."""
        return {s.name for s in self.statuses() if s.pid is not None}

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """One start/stop at a time per stack folder (across processes)."""
        self.cfg.run_dir.mkdir(parents=True, exist_ok=True)
        with open(self.cfg.run_dir / "stack.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    def up(self, *, progress: bool = True) -> set[str]:
        """Start what is not running (idempotent); returns the names this call started.

        The Dapr and Jaeger binaries are resolved (built once, if need be) before anything
        starts, so a missing toolchain fails fast.
        """
        dapr_bin.ensure(self.cfg, progress=progress)
        jaeger.ensure(self.cfg, progress=progress)
        reserve_ports(self.cfg.fixed_ports())
        with self.locked():
            before = self.running()
            for c in self.components:
                c.up()
            return {c.name for c in self.components if c.status().pid is not None} - before

    def prepare(self, *, progress: bool = True) -> list[str]:
        """Check the host tools and fetch/build every artefact; start nothing."""
        find_bindir()
        java()
        bins = dapr_bin.ensure(self.cfg, progress=progress)
        libs = ensure_libs(self.cfg, progress=progress)
        keycloak = ensure_dist(self.cfg, progress=progress)
        tracer = jaeger.ensure(self.cfg, progress=progress)
        return [
            f"daprd      {bins.version}  {bins.daprd}",
            f"scheduler  {bins.version}  {bins.scheduler}",
            f"kafka      {self.cfg.kafka_version}  {libs}",
            f"keycloak   {self.cfg.keycloak_version}  {keycloak}",
            f"postgres   {self.postgres.version()}  {find_bindir()}",
            f"jaeger     {self.cfg.jaeger_version}  {tracer}",
        ]

    def down(self, only: set[str] | None = None) -> None:
        """Stop the components (all, or those named in ``only``), in reverse start order."""
        with self.locked():
            for c in reversed(self.components):
                if only is None or c.name in only:
                    c.down()

    def purge(self) -> None:
        """Stop everything and delete the stack folder (data, logs, pid files)."""
        self.down()
        self.postgres.purge()
        shutil.rmtree(self.cfg.state_dir, ignore_errors=True)

    def statuses(self) -> list[ComponentStatus]:
        return [c.status() for c in self.components]

    def daprd_status(self) -> ComponentStatus:
        path = dapr_bin.find("daprd", self.cfg)
        return ComponentStatus(
            "daprd",
            None,
            None,
            self.cfg.dapr_version if path else None,
            path is not None,
            str(path) if path else f"not built yet (cache {self.cfg.dapr_cache})",
        )

    def status(self) -> list[ComponentStatus]:
        return [*self.statuses(), self.daprd_status()]
