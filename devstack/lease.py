"""Sharing one running stack between concurrent test sessions.

A session takes a lease (a pid file under ``<state>/run/leases``) and brings the stack up;
the components it had to start are remembered in ``<state>/run/session-started``. When a
session releases its lease and no other live session holds one, the components some session
started are stopped; a stack that was already running before any session (``stack up`` by a
person) is never stopped by tests.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator

from devstack.procs import pid_alive
from devstack.stack import Stack


class SessionLease:
    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.run = stack.cfg.run_dir
        self.leases = self.run / "leases"
        self.marker = self.run / "session-started"
        self.mine = self.leases / str(os.getpid())

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.leases.mkdir(parents=True, exist_ok=True)
        with open(self.run / "lease.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    def _started(self) -> set[str]:
        try:
            return set(self.marker.read_text().split())
        except OSError:
            return set()

    def holders(self) -> list[int]:
        """Pids of live sessions holding a lease now."""
        if not self.leases.is_dir():
            return []
        return sorted(
            int(p.name) for p in self.leases.iterdir() if p.name.isdigit() and pid_alive(int(p.name))
        )

    def _others_alive(self) -> bool:
        for lease in self.leases.iterdir():
            if lease == self.mine:
                continue
            if lease.name.isdigit() and pid_alive(int(lease.name)):
                return True
            lease.unlink(missing_ok=True)  # a session that died without releasing
        return False

    def acquire(self, *, progress: bool = True) -> set[str]:
        """Bring the stack up and hold a lease; returns what this call started."""
        with self._locked():
            started = self.stack.up(progress=progress)
            if started:
                self.marker.write_text(" ".join(sorted(self._started() | started)) + "\n")
            self.mine.write_text(f"{os.getpid()}\n")
            return started

    def release(self) -> set[str]:
        """Drop the lease; the last session out stops what sessions started. Returns those."""
        with self._locked():
            self.mine.unlink(missing_ok=True)
            if self._others_alive():
                return set()
            started = self._started()
            if started:
                self.stack.down(only=started)
            self.marker.unlink(missing_ok=True)
            return started
