"""The one exception type the local stack raises: its message says what to do."""

from __future__ import annotations


class StackError(RuntimeError):
    """A component could not be prepared or started; the message is actionable."""
