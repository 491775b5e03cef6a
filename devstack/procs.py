"""Process and port helpers: start detached, remember by pid file, stop by pid, wait for health;
``ManagedProcess``, the base of the servers the stack runs (Kafka, the scheduler, Jaeger, Keycloak).

Nothing here finds processes by name: a component is stopped through the pid this stack
recorded when it started it (checked against the process start time, so a recycled pid is
never signalled).
"""

from __future__ import annotations

import collections
import contextlib
import os
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from devstack.errors import StackError


# -- ports --------------------------------------------------------------------------------
def port_open(port: int, host: str = "127.0.0.1", timeout: float = 0.5) -> bool:
    """True when something accepts TCP connections on host:port."""
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=timeout):
        return True
    return False


_HANDED_OUT: collections.deque[int] = collections.deque(maxlen=256)
_HANDED_OUT_LOCK = threading.Lock()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now and that this process has not
    handed out recently: a port is only taken once its server starts, so two calls in a row
    (an app's port, then its daprd's) could otherwise get the same one."""
    with _HANDED_OUT_LOCK:
        for _ in range(50):
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                s.bind(("127.0.0.1", 0))
                port = int(s.getsockname()[1])
            if port not in _HANDED_OUT:
                break
        _HANDED_OUT.append(port)
        return port


_RESERVED_PORTS = Path("/proc/sys/net/ipv4/ip_local_reserved_ports")


def reserve_ports(ports: Iterable[int]) -> None:
    """Keep the stack's fixed ports out of the kernel's automatic assignment (they lie in its
    ephemeral range, so a test server on an OS-chosen port could hold one just when the stack
    starts that component). Explicit binds still work. Best effort: it needs root; elsewhere,
    or where the file is read-only, nothing changes."""
    try:
        current = _RESERVED_PORTS.read_text().strip()
        have: set[int] = set()
        for part in filter(None, current.split(",")):
            low, _, high = part.partition("-")
            have.update(range(int(low), int(high or low) + 1))
        missing = sorted(set(ports) - have)
        if missing:
            _RESERVED_PORTS.write_text(",".join([*filter(None, [current]), *map(str, missing)]))
    except (OSError, ValueError):
        return


def require_free(port: int, what: str, env_var: str | None = None) -> None:
    """Raise an actionable error when ``port`` is already taken."""
    if port_open(port):
        hint = f" or choose another port with {env_var}=..." if env_var else ""
        raise StackError(
            f"port {port} for {what} is already in use by another process: "
            f"stop it (see `ss -ltnp 'sport = :{port}'`){hint}"
        )


# -- process identity ---------------------------------------------------------------------
def _start_time(pid: int) -> str | None:
    """The process start time in clock ticks (field 22 of /proc/PID/stat), or None."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rfind(")") + 2 :].split()
    if fields and fields[0] == "Z":  # a zombie is as good as gone
        _reap(pid)
        return None
    return fields[19] if len(fields) > 19 else None


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def pid_alive(pid: int) -> bool:
    return _start_time(pid) is not None


@dataclass(frozen=True)
class PidFile:
    """``<run_dir>/<name>.pid`` holding ``pid start_time`` of a process this stack started.

    ``marker`` is an argument unique to this stack's process (e.g. its config file path): when
    the file is missing or stale, a live process with that argument is adopted.
    """

    path: Path
    marker: str | None = None

    def write(self, pid: int) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(f"{pid} {_start_time(pid) or ''}\n")

    def read(self) -> int | None:
        """The recorded pid when that very process still runs, else None (stale file removed)."""
        try:
            parts = self.path.read_text().split()
        except OSError:
            parts = []
        if parts and parts[0].isdigit():
            pid = int(parts[0])
            started = _start_time(pid)
            if started is not None and (len(parts) < 2 or parts[1] == started):
                return pid
        self.clear()
        if self.marker:
            found = find_by_argument(self.marker)
            if found is not None:
                self.write(found)
                return found
        return None

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)


def find_by_argument(argument: str) -> int | None:
    """The pid of a live process with ``argument`` as one of its arguments (exact match).

    Used with arguments unique to one stack folder (a config file path), to recover a
    component whose pid file was lost; never with a program name.
    """
    wanted = argument.encode()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            args = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if wanted in args and pid_alive(int(entry)):
            return int(entry)
    return None


# -- start / stop -------------------------------------------------------------------------
def spawn(
    args: Sequence[str],
    *,
    log_path: Path,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> subprocess.Popen[bytes]:
    """Start ``args`` in its own session, stdout+stderr appended to ``log_path``."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        log.write(f"\n--- {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(args)}\n".encode())
        log.flush()
        try:
            return subprocess.Popen(
                list(args),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=dict(env) if env is not None else None,
                cwd=str(cwd) if cwd else None,
                start_new_session=True,
            )
        except FileNotFoundError as exc:
            raise StackError(f"cannot run {args[0]!r}: {exc.strerror}") from exc


def stop_pid(pid: int, *, timeout: float = 15.0, sig: int = signal.SIGTERM) -> None:
    """Send ``sig`` to ``pid`` (to its whole group when it leads one), then SIGKILL after timeout.

    Returns once the process is gone.
    """

    def send(s: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if os.getpgid(pid) == pid:
                os.killpg(pid, s)
            else:
                os.kill(pid, s)

    if not pid_alive(pid):
        return
    send(sig)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _reap(pid)
        if not pid_alive(pid):
            return
        time.sleep(0.1)
    send(signal.SIGKILL)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and pid_alive(pid):
        _reap(pid)
        time.sleep(0.05)


# -- waiting ------------------------------------------------------------------------------
def log_tail(path: Path, lines: int = 25) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return "(no log)"
    return "\n".join(text[-lines:])


def wait_until(
    check: Callable[[], bool],
    *,
    what: str,
    timeout: float,
    log_path: Path | None = None,
    proc: subprocess.Popen[bytes] | None = None,
    interval: float = 0.2,
) -> None:
    """Poll ``check`` until it is true; fail with the log's tail on timeout or early exit."""
    deadline = time.monotonic() + timeout
    while True:
        if check():
            return
        if proc is not None and proc.poll() is not None:
            raise StackError(
                f"{what} exited with code {proc.returncode} before becoming ready; "
                f"log {log_path}:\n{log_tail(log_path) if log_path else ''}"
            )
        if time.monotonic() > deadline:
            tail = f"; log {log_path}:\n{log_tail(log_path)}" if log_path else ""
            raise StackError(f"{what} not ready after {timeout:.0f}s{tail}")
        time.sleep(interval)


def http_status(url: str, timeout: float = 1.0) -> int | None:
    """The HTTP status of a GET, or None when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except (OSError, ValueError):
        return None


# -- a server this stack runs ------------------------------------------------------------------
class ManagedProcess:
    """A server this stack starts as a child process and remembers by its pid file.

    Subclasses name it, say when it is healthy, and call ``start`` with their command; ``up``
    of each first asks ``running`` (this stack's own copy, waited for until healthy, or another
    stack folder's on the same ports, which is reused and never stopped).
    """

    name: str
    #: How long ``down`` waits after SIGTERM before SIGKILL.
    stop_timeout: float = 10.0

    def __init__(self, pidfile: PidFile, log: Path) -> None:
        self.pidfile = pidfile
        self.log = log

    def _healthy(self) -> bool:
        raise NotImplementedError

    def running(self, *, timeout: float = 60.0) -> bool:
        """True when it runs already: this stack's (once healthy, within ``timeout``) or another's."""
        if self.pidfile.read() is not None:
            wait_until(self._healthy, what=self.name, timeout=timeout, log_path=self.log)
            return True
        return self._healthy()

    def start(self, command: Sequence[str], *, env: Mapping[str, str], cwd: Path, timeout: float) -> None:
        """Spawn ``command``, record its pid, and wait until healthy; a start that fails stops it."""
        proc = spawn(command, log_path=self.log, env=env, cwd=cwd)
        self.pidfile.write(proc.pid)
        try:
            wait_until(self._healthy, what=self.name, timeout=timeout, log_path=self.log, proc=proc)
        except StackError:
            stop_pid(proc.pid)
            self.pidfile.clear()
            raise

    def down(self) -> None:
        """Stop it when this stack started it."""
        pid = self.pidfile.read()
        if pid is not None:
            stop_pid(pid, timeout=self.stop_timeout)
        self.pidfile.clear()
