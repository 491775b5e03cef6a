"""A process a test started and expects to end by itself: its exit code and output, or a failure
that says what did not stop (the process is killed then)."""

from __future__ import annotations

import subprocess

import pytest


def exit_of(run: subprocess.Popen[str], *, what: str, read: str = "", timeout: float = 60) -> tuple[int, str]:
    """``run``'s exit code and its output (``read``: what the test already read of it); ``run``
    must merge stderr into stdout."""
    try:
        out, _ = run.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        run.kill()
        out, _ = run.communicate()
        pytest.fail(f"{what} did not stop in {timeout:.0f}s:\n{read}{out[-3000:]}")
    return run.returncode, read + out
