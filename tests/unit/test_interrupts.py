"""The test run stops on Ctrl-C (``tests/conftest.py:pytest_configure``), also when it was started
with SIGINT ignored and when the KeyboardInterrupt lands in a finalizer.

Each case runs pytest in a process of its own on a small test file, with this suite's conftest
as a plugin, and reads its exit code: 2 is pytest's "interrupted".
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from tests.unit.process_support import exit_of

ROOT = Path(__file__).resolve().parents[2]
INTERRUPTED = 2  # pytest.ExitCode.INTERRUPTED

#: Runs the rest of its arguments with SIGINT ignored, as ``command &`` in a script starts it.
WITH_SIGINT_IGNORED = (
    "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_IGN); "
    "os.execv(sys.argv[1], sys.argv[1:])"
)

WAITING = """
import time

def test_waits_for_ctrl_c():
    print("waiting", flush=True)
    time.sleep(120)
"""

CTRL_C_IN_A_FINALIZER = """
import os, signal, time

class Resource:
    def __del__(self):
        os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C, just as garbage collection runs this
        time.sleep(1)

def test_ctrl_c_lands_in_a_finalizer():
    resource = Resource()
    del resource
    time.sleep(5)
    print("still running", flush=True)
"""


def _pytest(tmp_path: Path, test_text: str, *, prefix: tuple[str, ...] = ()) -> subprocess.Popen[str]:
    (tmp_path / "test_case.py").write_text(test_text)
    args = [*prefix, sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider",
            "-p", "tests.conftest", "-c", os.devnull, "--rootdir", str(tmp_path), "test_case.py"]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        args, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def test_a_run_started_with_sigint_ignored_still_stops_on_sigint(tmp_path: Path) -> None:
    run = _pytest(tmp_path, WAITING, prefix=(sys.executable, "-c", WITH_SIGINT_IGNORED))
    assert run.stdout is not None
    read = ""
    while "waiting" not in read:
        line = run.stdout.readline()
        assert line, f"the run ended before its test started:\n{read}"
        read += line
    run.send_signal(signal.SIGINT)
    code, out = exit_of(run, what="the run (SIGINT ignored at its start)", read=read)
    assert code == INTERRUPTED, out[-3000:]


def test_a_ctrl_c_that_lands_in_a_finalizer_still_stops_the_run(tmp_path: Path) -> None:
    code, out = exit_of(_pytest(tmp_path, CTRL_C_IN_A_FINALIZER), what="the run (Ctrl-C in a finalizer)")
    assert code == INTERRUPTED and "still running" not in out, out[-3000:]
