"""daprd's state API over HTTP: bulk reads, etag-guarded saves and transactions on one store.

    state = DaprStateClient(base_url="http://127.0.0.1:3500", store_name="statestore")
    found = await state.get_bulk(["a", "b"])              # {key: (value, etag)}, missing keys left out
    await state.save("a", [], first_write=True, metadata={"ttlInSeconds": "60"})
    await state.transact([upsert_operation("a", ["x"], etag=found["a"][1]), delete_operation("b")])
    await state.aclose()

Values travel as JSON and are stored as daprd re-encodes them (compact, object keys sorted), the
same JSON a gRPC client's bytes would be; reads give them back decoded. It talks aiohttp over one
pool of keep-alive connections, opened on first use in the running loop (as the event
publisher does), with a timeout on every call, so a sidecar that is down or stuck fails the call
instead of holding it.

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

import aiohttp
from yarl import URL

_JSON_HEADERS: Final = {"content-type": "application/json"}
_KEEP_ALIVE: Final = 5.0  # seconds an idle connection to the sidecar stays open
_CONNECT_TIMEOUT: Final = 2.0  # the sidecar is on this host: a longer wait means it is not there
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
    def __init__(
        self, *, base_url: str, store_name: str, api_token: str | None = None, timeout: float = 10.0
    ) -> None:
        self.store_name = store_name
        self._base_url = base_url.rstrip("/")
        root = f"{self._base_url}/v1.0/state/{quote(store_name, safe='')}"
        self._save_url = URL(root)
        self._bulk_url = URL(f"{root}/bulk").with_query({"metadata.consistency": "strong"})
        self._transaction_url = URL(f"{root}/transaction")
        self._headers = {"dapr-api-token": api_token} if api_token else {}
        self._timeout = timeout
        self._session: aiohttp.ClientSession | None = None

    async def get_bulk(self, keys: Sequence[str]) -> Found:
        """The keys that exist, with their values and etags, in one strongly consistent read."""
        if not keys:
            return {}
        body = await self._post(self._bulk_url, {"keys": list(keys)}, "read keys")
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
        await self._post(self._save_url, [item], f"save {key}")

    async def transact(self, operations: Sequence[Operation]) -> None:
        """Apply the operations (see :func:`upsert_operation`, :func:`delete_operation`) all or none."""
        await self._post(self._transaction_url, {"operations": list(operations)}, "apply a transaction")

    async def aclose(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    async def _post(self, url: URL, payload: Any, what: str) -> bytes:
        data = json.dumps(payload).encode()
        try:
            async with self._client().post(url, data=data, headers=_JSON_HEADERS) as response:
                status, body = response.status, await response.read()
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            if isinstance(exc, TimeoutError):
                reason = f"did not answer within {self._timeout:g} s"
            else:
                reason = f"is unreachable ({type(exc).__name__}: {exc})" if str(exc) else "is unreachable"
            raise StateStoreError(
                f"Could not {what} in the state store {self.store_name}: the Dapr sidecar at "
                f"{self._base_url} {reason}."
            ) from exc
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

    def _client(self) -> aiohttp.ClientSession:
        """The session, opened on first use: it belongs to the loop that runs the calls (the
        client itself may be built before any loop runs)."""
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(keepalive_timeout=_KEEP_ALIVE),
                headers=self._headers,
                timeout=aiohttp.ClientTimeout(total=self._timeout, sock_connect=_CONNECT_TIMEOUT),
                cookie_jar=aiohttp.DummyCookieJar(),  # the sidecar sets none; skip the jar's work
            )
        return self._session
