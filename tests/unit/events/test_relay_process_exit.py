"""A process whose relay child nobody stopped still exits: a Ctrl-C that ends it before the app's
shutdown (or an app served in a thread) must not leave it waiting for the child for ever."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tasks.db import make_engine, migrate
from tests.unit.process_support import exit_of

ROOT = Path(__file__).resolve().parents[3]

#: Starts the relay's child process, says its pid, and is interrupted as Ctrl-C would.
INTERRUPTED_APP = """
import sys
from events.relay_process import RelayProcess, RelaySettings
from sidecar import SidecarAddress

if __name__ == "__main__":
    child = RelayProcess(RelaySettings(database_url=sys.argv[1], log_level="WARNING",
                                       sidecar=SidecarAddress("http://127.0.0.1:9"), pubsub="pubsub"))
    child.start()
    child.prometheus()  # it answers once it runs (ignoring SIGTERM and SIGINT by then)
    print(child.pid, flush=True)
    raise KeyboardInterrupt
"""


def test_an_interrupted_process_exits_and_stops_the_relay_child_it_did_not_stop(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'todo.db'}"
    engine = make_engine(url)
    migrate(engine)
    engine.dispose()
    script = tmp_path / "interrupted_app.py"
    script.write_text(INTERRUPTED_APP)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    app = subprocess.Popen([sys.executable, str(script), url], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True)  # fmt: skip
    _, out = exit_of(app, what="the interrupted process (its relay child running)")
    assert "KeyboardInterrupt" in out, out[-2000:]
    child = int(out.split()[0])
    with pytest.raises(ProcessLookupError):
        os.kill(child, 0)  # stopped (and reaped) before its parent exited
