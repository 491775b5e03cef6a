"""The outbox relay in a process of its own, beside a role's app (Dapr mode).

    child = RelayProcess(RelaySettings(database_url=..., log_level="INFO", sidecar=address, pubsub=...))
    async with relay_process(child, uow) as relay:  # started; every commit on ``uow`` wakes it
        relay.prometheus()                           # the child's relay metrics, for GET /metrics

In the app's process each of the relay's I/O waits per round would have to win the GIL back
from the request threads, so a busy api would publish late (and its rounds take CPU from the
requests). Here the relay runs ``OutboxRelay`` in a child process with its own database pool and its own
client to the same sidecar, on its own CPU:

- **Wake-ups**: after every commit the app writes one byte to a pipe (non-blocking; a full pipe
  means wake-ups are already pending). The relay also polls, so rows written by other
  processes or replicas are published too (``SKIP LOCKED`` keeps relays from publishing a row
  twice at once).
- **Metrics**: ``prometheus()`` asks the child over a second pipe for its relay metrics, which
  ``GET /metrics`` appends to the app's (left out while the child is down or busy; the backlog
  is read from the database and the child's up/restarts/pid by the app). Benchmarks read the
  same text (``observability.scrape.Scrape``).
- **Supervision**: a child that dies is started again within a second (its claimed rows were
  released with its connections, so nothing is lost; a row it published but had not marked is
  published again, and consumers ignore repeats). The child exits when the app closes the
  wake-up pipe, also when the app dies (the pipe reads end-of-file) or its interpreter exits
  without having stopped it (an exit handler stops it); it ignores SIGTERM and SIGINT, which a
  signal to the whole process group also delivers to the app, so the app stops it in order
  instead of restarting it on its way out.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import gc
import logging
import multiprocessing
import os
import signal
import threading
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any, Final

from events.publishers import DaprPublisher
from events.relay import OutboxRelay, new_event_loop
from observability import tracing
from observability.logs import configure_logging
from observability.metrics import relay_exposition
from sidecar import Sidecar, SidecarAddress
from tasks.models import OutboxEvent
from tasks.unit_of_work import UnitOfWorkFactory

log = logging.getLogger(__name__)

_SUPERVISE_EVERY: Final = 1.0
_METRICS_TIMEOUT: Final = 5.0
_STOP_GRACE: Final = 5.0  # seconds a stopping relay may take to finish its round
_CONTEXT: Final = multiprocessing.get_context("spawn")  # no fork of a process with threads


@dataclass(frozen=True)
class RelaySettings:
    """What the child needs to relay on its own (sent to it, so plain values only)."""

    database_url: str
    log_level: str
    sidecar: SidecarAddress
    pubsub: str
    #: The service name of the child's spans when tracing is on (``<the app's service>-relay``).
    service_name: str = "todo-relay"


class RelayProcess:
    """A supervised child process running the outbox relay for ``settings``."""

    def __init__(self, settings: RelaySettings) -> None:
        self._settings = settings
        self._process: Any = None
        self._wake_fd: int | None = None
        self._control: Connection | None = None
        self._control_lock = threading.Lock()
        self.restarts = 0
        #: Inside ``relay_process``: the app relies on this child (alive or being restarted).
        self.supervised = False

    # -- the child's life ------------------------------------------------------------------
    def start(self) -> None:
        wake_read, wake_write = _CONTEXT.Pipe(duplex=False)
        control_here, control_there = _CONTEXT.Pipe(duplex=True)
        self._process = _CONTEXT.Process(
            target=_child_main,
            args=(self._settings, wake_read, control_there),
            name="outbox-relay",
            daemon=True,
        )
        self._process.start()
        wake_read.close()
        control_there.close()
        os.set_blocking(wake_write.fileno(), False)
        self._wake_fd = wake_write.fileno()
        self._wake_conn = wake_write  # keeps the descriptor open
        self._control = control_here
        # Stopped on the interpreter's way out too, if nothing stopped it before (a KeyboardInterrupt
        # past the app's shutdown, an app served in a thread): else multiprocessing's own exit
        # handler sends the child a SIGTERM, which it ignores, and waits for it without a limit
        # while this process still holds the wake-up pipe open.
        atexit.register(self.stop)
        log.info("outbox relay process %s started", self._process.pid)

    def alive(self) -> bool:
        return self._process is not None and self._process.is_alive()

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def stop(self, timeout: float = 15.0) -> None:
        """Ask the child to finish its round and exit; kill it if it does not."""
        atexit.unregister(self.stop)
        process, self._process = self._process, None
        if process is None:
            return
        self._wake_fd = None
        for conn in (getattr(self, "_wake_conn", None), self._control):
            if conn is not None:
                conn.close()
        if process.is_alive():
            process.join(timeout)  # the closed pipe stops it (it ignores SIGTERM)
            if process.is_alive():
                log.warning("outbox relay process %s did not stop in %.0fs: killed", process.pid, timeout)
                process.kill()
                process.join(5)

    # -- talking to it ---------------------------------------------------------------------
    def wake(self, _rows: Sequence[OutboxEvent] = ()) -> None:
        """After-commit listener: one byte down the pipe (never blocks a request)."""
        fd = self._wake_fd
        if fd is None:
            return
        with contextlib.suppress(BlockingIOError, BrokenPipeError, OSError):
            os.write(fd, b"\0")

    def prometheus(self) -> bytes:
        """The child's relay metrics in Prometheus text (blocking: call it from a worker thread)."""
        answer = self._ask("prometheus")
        if not isinstance(answer, bytes):
            raise RuntimeError(f"The outbox relay process answered {type(answer).__name__}, not metrics.")
        return answer

    def _ask(self, request: str) -> Any:
        with self._control_lock:
            control = self._control
            if control is None or not self.alive():
                code = self._process.exitcode if self._process is not None else None
                raise RuntimeError(f"The outbox relay process is not running (exit code {code}).")
            try:
                while control.poll(0):  # a late answer to an earlier call that timed out
                    control.recv()
                control.send(request)
                if not control.poll(_METRICS_TIMEOUT):
                    raise RuntimeError(f"The outbox relay process did not answer in {_METRICS_TIMEOUT:.0f}s.")
                return control.recv()
            except (EOFError, OSError) as exc:  # it died since alive() was checked (or while asked)
                raise RuntimeError(f"The outbox relay process went away ({type(exc).__name__}).") from exc

    def status(self) -> dict[str, Any]:
        return {"pid": self.pid, "alive": self.alive(), "restarts": self.restarts}


@contextlib.asynccontextmanager
async def relay_process(relay: RelayProcess, uow: UnitOfWorkFactory) -> AsyncIterator[RelayProcess]:
    """Run the relay in a supervised child while the app runs; commits on ``uow`` wake it."""
    await asyncio.to_thread(relay.start)
    relay.supervised = True
    uow.after_commit.append(relay.wake)
    supervisor = asyncio.create_task(_supervise(relay), name="outbox-relay-supervisor")
    try:
        yield relay
    finally:
        relay.supervised = False
        supervisor.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await supervisor
        with contextlib.suppress(ValueError):
            uow.after_commit.remove(relay.wake)
        await asyncio.to_thread(relay.stop)


async def _supervise(relay: RelayProcess) -> None:
    while True:
        await asyncio.sleep(_SUPERVISE_EVERY)
        if not relay.alive():
            code = relay._process.exitcode if relay._process is not None else None
            log.error("outbox relay process exited (code %s): starting it again", code)
            await asyncio.to_thread(relay.stop, 1.0)
            await asyncio.to_thread(relay.start)
            relay.restarts += 1
            relay.wake()  # whatever was committed meanwhile


# -- in the child ----------------------------------------------------------------------------
def _child_main(settings: RelaySettings, wake: Connection, control: Connection) -> None:
    from tasks.db import make_engine

    configure_logging(settings.log_level)
    tracing.configure(settings.service_name, exact_name=True)  # the environment's switch, as the app
    # Signals to the whole process group (Ctrl-C, ``kill -- -<pgid>``, a service manager) reach
    # the app too, which stops us in order by closing the wake-up pipe. Stopping here on our own
    # would only have the app's supervisor start us again while it shuts down.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    # A stale connection fails one round, which the relay retries after a short backoff: no
    # pre-ping round trip per round. Two connections: a round uses one at a time.
    engine = make_engine(settings.database_url, pool_size=2, pre_ping=False)
    publisher = DaprPublisher(Sidecar(settings.sidecar), pubsub=settings.pubsub)
    relay = OutboxRelay(engine, publisher, inline_db=True)  # alone on this loop: no thread hops
    loop = new_event_loop()
    asyncio.set_event_loop(loop)
    gc.collect()
    gc.freeze()  # what start-up allocated stays out of later full collections (shorter pauses)
    try:
        loop.run_until_complete(_child_run(relay, publisher, wake, control))
    finally:
        loop.close()
        engine.dispose()
        tracing.flush()


async def _child_run(
    relay: OutboxRelay, publisher: DaprPublisher, wake: Connection, control: Connection
) -> None:
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None

    def stop() -> None:
        # Finish the round in progress first: cancelled between publishing and marking, a
        # relay leaves rows that the next one publishes again (a graceful stop never should).
        relay.stop()
        loop.call_later(_STOP_GRACE, task.cancel)  # a round stuck on a down sidecar: cancel it

    wake_fd = wake.fileno()
    os.set_blocking(wake_fd, False)

    def on_wake() -> None:
        try:
            data = os.read(wake_fd, 4096)
        except BlockingIOError:
            return
        if not data:  # the app closed the pipe or died
            loop.remove_reader(wake_fd)
            stop()
            return
        relay.wake()

    def on_control() -> None:
        try:
            request = control.recv()
        except (EOFError, OSError):
            loop.remove_reader(control.fileno())
            return
        if request == "prometheus":
            control.send(relay_exposition())

    loop.add_reader(wake_fd, on_wake)
    loop.add_reader(control.fileno(), on_control)
    try:
        await relay.run()
    except asyncio.CancelledError:
        pass
    finally:
        await publisher.aclose()
