"""daprd's state API over HTTP: bulk reads, etag-guarded saves and transactions on one store.

    state = DaprStateClient(Sidecar.at("http://127.0.0.1:3500"), store_name="statestore")
    found = await state.get_bulk(["a", "b"])              # {key: (value, etag)}, missing keys left out
    await state.save("a", [], first_write=True, metadata={"ttlInSeconds": "60"})
    await state.transact([upsert_operation("a", ["x"], etag=found["a"][1]), delete_operation("b")])
    await state.aclose()

Values travel as JSON and are stored as daprd re-encodes them (compact, object keys sorted), the
same JSON a gRPC client's bytes would be; reads give them back decoded. It talks to the sidecar
through ``sidecar.Sidecar`` (as the event publisher and the job scheduler do), with a timeout on
every call, so a sidecar that is down or stuck fails the call instead of holding it.

An etag or first-write check that fails raises :class:`StateConflict`. daprd 1.18 reports it as
409 ``ERR_STATE_SAVE`` for a save with a stale etag; as 500 ``ERR_STATE_SAVE`` "no item was
updated" for a first write of a key that exists (state.postgresql v2); and as 500
``ERR_STATE_TRANSACTION`` "possible etag mismatch" for a transaction. Any other failure raises
:class:`StateStoreError` naming what failed.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, Final
from urllib.parse import quote

from yarl import URL

from sidecar import Sidecar, SidecarUnreachable

_JSON_HEADERS: Final = {"content-type": "application/json"}
_CONFLICT_CODES: Final = frozenset({"ERR_STATE_SAVE", "ERR_STATE_TRANSACTION"})
_CONFLICT_MARKERS: Final = ("possible etag mismatch", "no item was updated")

Found = dict[str, tuple[Any, str | None]]
Operation = dict[str, Any]


class StateStoreError(RuntimeError):
    """The state store could not be read or written; the message says what and why."""

    def __init__(self, message: str, *, status: int | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class StateConflict(StateStoreError):
    """Another writer won: an etag no longer matches, or a first write found the key taken."""


def upsert_operation(
    key: str, value: Any, *, etag: str | None = None, metadata: Mapping[str, str] | None = None
) -> Operation:
    """A transaction's write of ``key`` (guarded by ``etag`` when given)."""
    request: dict[str, Any] = {"key": key, "value": value}
    if etag is not None:
        request["etag"] = etag
    if metadata:
        request["metadata"] = dict(metadata)
    return {"operation": "upsert", "request": request}


def delete_operation(key: str, *, etag: str | None = None) -> Operation:
    """A transaction's removal of ``key`` (guarded by ``etag`` when given)."""
    request: dict[str, Any] = {"key": key}
    if etag is not None:
        request["etag"] = etag
    return {"operation": "delete", "request": request}


def is_conflict(status: int, code: str | None, message: str) -> bool:
    """Whether daprd's error answer reports a failed etag or first-write check."""
    if status == 409:
        return True
    lowered = message.lower()
    return code in _CONFLICT_CODES and any(marker in lowered for marker in _CONFLICT_MARKERS)


class DaprStateClient:
    """The state store ``store_name`` through the sidecar."""

    def __init__(self, sidecar: Sidecar, *, store_name: str) -> None:
        self.store_name = store_name
        self._sidecar = sidecar
        root = f"/v1.0/state/{quote(store_name, safe='')}"
        self._save_url = sidecar.url(root)
        self._bulk_url = sidecar.url(f"{root}/bulk").with_query({"metadata.consistency": "strong"})
        self._transaction_url = sidecar.url(f"{root}/transaction")
        self._span_attributes = {"db.system.name": "dapr", "db.namespace": store_name}

    async def get_bulk(self, keys: Sequence[str]) -> Found:
        """The keys that exist, with their values and etags, in one strongly consistent read."""
        if not keys:
            return {}
        body = await self._post(self._bulk_url, {"keys": list(keys)}, "read keys", span="dapr state read")
        try:
            items = json.loads(body)
        except ValueError as exc:
            raise StateStoreError(
                f"The state store {self.store_name} answered a read with invalid JSON."
            ) from exc
        found: Found = {}
        for item in items:
            if item.get("error"):
                raise StateStoreError(
                    f"Reading {item.get('key')} from {self.store_name} failed: {item['error']}"
                )
            if item.get("data") is not None:
                found[item["key"]] = (item["data"], item.get("etag") or None)
        return found

    async def get(self, key: str) -> tuple[Any, str | None]:
        """One key's value and etag; ``(None, None)`` when it does not exist."""
        return (await self.get_bulk([key])).get(key, (None, None))

    async def save(
        self,
        key: str,
        value: Any,
        *,
        etag: str | None = None,
        first_write: bool = False,
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        """Write one key: over ``etag`` when given; with ``first_write``, only if it does not exist
        (or still has ``etag``)."""
        item: dict[str, Any] = {"key": key, "value": value}
        if etag is not None:
            item["etag"] = etag
        if first_write:
            item["options"] = {"concurrency": "first-write"}
        if metadata:
            item["metadata"] = dict(metadata)
        await self._post(self._save_url, [item], f"save {key}", span="dapr state save")

    async def transact(self, operations: Sequence[Operation]) -> None:
        """Apply the operations (see :func:`upsert_operation`, :func:`delete_operation`) all or none."""
        await self._post(
            self._transaction_url, {"operations": list(operations)}, "apply a transaction",
            span="dapr state transaction",
        )  # fmt: skip

    async def aclose(self) -> None:
        await self._sidecar.aclose()

    async def _post(self, url: URL, payload: Any, what: str, *, span: str) -> bytes:
        """POST ``payload``; with tracing on, a client span named ``span`` (daprd's joins it)."""
        data = json.dumps(payload).encode()
        try:
            status, body = await self._sidecar.call(
                "POST", url, data=data, headers=_JSON_HEADERS, span=span, attributes=self._span_attributes
            )
        except SidecarUnreachable as exc:
            raise StateStoreError(f"Could not {what} in the state store {self.store_name}: {exc}.") from exc
        if status < 300:
            return body
        raise self._refusal(status, body, what)

    def _refusal(self, status: int, body: bytes, what: str) -> StateStoreError:
        text = body.decode("utf-8", "replace")
        try:
            answer = json.loads(text)
        except ValueError:
            answer = None
        code = answer.get("errorCode") if isinstance(answer, dict) else None
        message = str(answer.get("message", text)) if isinstance(answer, dict) else text
        kind = StateConflict if is_conflict(status, code, message) else StateStoreError
        said = f"{code}: {message[:300]}" if code else message[:300]
        return kind(
            f"The state store {self.store_name} refused to {what}: {status} {said}".rstrip(),
            status=status,
            code=code,
        )
