"""Safe retries: a write sent with an idempotency key is done once per user and key.

The service stores the key with the write's result in the write's own transaction
(``TaskService._commit`` reads ``pending()``); a retry with the same key and the same request
gets that result back and writes nothing; the same key with a different request is refused.
Two retries at once: the second's commit fails on the key's primary key, and it returns the
first's result. Keys are kept at least ``KEEP_KEYS``; older ones are purged as new ones come.

    view = service.once(actor, "3f1c…", "add_task", draft.model_dump(mode="json"),
                        lambda: service.add(actor, draft), TaskView)
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Final

from tasks.errors import InvalidInput

#: How long a key is kept: a day is the promise; keys go at twice that.
KEEP_KEYS: Final = timedelta(hours=48)
MAX_KEY: Final = 200
_KEY: Final = re.compile(r"[\x21-\x7e]{1,200}")


@dataclass(frozen=True)
class PendingKey:
    owner_id: str
    key: str
    request_hash: str


_PENDING: ContextVar[PendingKey | None] = ContextVar("idempotency_key", default=None)


def clean_key(key: str) -> str:
    if not _KEY.fullmatch(key):
        raise InvalidInput(
            "idempotency_key",
            f"An idempotency key is 1 to {MAX_KEY} printable ASCII characters without spaces, e.g. a UUID.",
        )
    return key


def request_hash(operation: str, arguments: Any) -> str:
    """What identifies a request: the operation and its arguments, canonical JSON, SHA-256."""
    text = json.dumps([operation, arguments], sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def pending() -> PendingKey | None:
    """The key the current write must store with its result (None: sent without one)."""
    return _PENDING.get()


@contextlib.contextmanager
def storing(key: PendingKey) -> Iterator[None]:
    token = _PENDING.set(key)
    try:
        yield
    finally:
        _PENDING.reset(token)


def mismatch(key: str) -> InvalidInput:
    return InvalidInput(
        "idempotency_key",
        f"The idempotency key '{key}' was already used for a different request; nothing was "
        "written. Use a new key for a new request (the same key only to retry the same one).",
    )
