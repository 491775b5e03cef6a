"""Conversation memory in the Dapr state store (``statestore``: PostgreSQL v2) in Dapr mode.

Each conversation's items are the SDK's ``DaprSession`` under ``conversation:<user>:<id>``; the
user's index of conversations is the key ``conversations:<user>``. Every key names its user, so
one user's ids never reach another user's data. All writes are guarded by etags and retried on
conflict; a key's first write is insert-only, so two first writes cannot overwrite each other.

Round trips per chat turn: ``load`` reads the index and the items in one bulk read; ``append``
writes the index's ``updated_at``, the items and the session's metadata in one state
transaction guarded by the etags that load read, so it either all lands or, when another turn
wrote in between, is retried from a fresh (bulk) read: two calls per turn, four for a new
conversation. The layout is ``DaprSession``'s (a JSON list of serialized items under
``<session>:messages``, ``created_at``/``updated_at`` under ``<session>:metadata``), so the
SDK's session reads and clears what this store writes.

    client = DaprClient(address="127.0.0.1:50001")
    store = DaprConversationStore(client, store_name="statestore", ttl_seconds=30 * 86400)
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final, TypeVar
from urllib.parse import quote

from agents.extensions.memory.dapr_session import DaprSession
from dapr.aio.clients import DaprClient
from dapr.clients.grpc._request import TransactionalStateOperation, TransactionOperationType
from dapr.clients.grpc._state import Concurrency, StateOptions

from agent.memory import ConversationInfo, ConversationNotFound, Item, new_conversation_id, now

T = TypeVar("T")
Index = dict[str, dict[str, str]]
log = logging.getLogger(__name__)

_MAX_ATTEMPTS: Final = 12
_CONFLICT_MARKERS: Final = ("etag mismatch", "no item was updated", "etag does not match")
_FIRST_WRITE: Final = StateOptions(concurrency=Concurrency.first_write)


def _is_conflict(error: Exception) -> bool:
    message = str(error).lower()
    return any(marker in message for marker in _CONFLICT_MARKERS)


_STRONG_READ: Final = {"consistency": "strong"}
_MAX_SNAPSHOTS: Final = 256


@dataclass
class _Both:
    index: Index
    index_etag: str | None
    items: list[str]
    items_etag: str | None


def _index_of(data: bytes | str | None) -> Index:
    return json.loads(data)["conversations"] if data else {}  # type: ignore[no-any-return]


def _stored_items(data: bytes | str | None) -> list[str]:
    """The stored list of serialized items (``DaprSession``'s layout); refuses anything else,
    since an append rewrites the whole list."""
    if not data:
        return []
    stored = json.loads(data)
    if not isinstance(stored, list):
        raise ValueError("The stored conversation items are not a JSON list.")
    return stored


def _decoded(stored: list[str], limit: int | None) -> list[Item]:
    """The items, the last ``limit`` of them when given (unreadable entries skipped)."""
    items: list[Item] = []
    for raw in reversed(stored):
        if limit is not None and len(items) >= limit:
            break
        try:
            items.append(json.loads(raw) if isinstance(raw, str) else raw)
        except (json.JSONDecodeError, TypeError):
            log.warning("skipping an unreadable conversation item")
    items.reverse()
    return items


async def _backoff(attempt: int) -> None:
    await asyncio.sleep(random.uniform(0.001, 0.005 * attempt))


def _info(conversation_id: str, entry: dict[str, str]) -> ConversationInfo:
    return ConversationInfo(
        id=conversation_id,
        title=entry["title"],
        created_at=datetime.fromisoformat(entry["created_at"]),
        updated_at=datetime.fromisoformat(entry["updated_at"]),
    )


class DaprConversationStore:
    def __init__(
        self,
        client: DaprClient | Callable[[], DaprClient],
        *,
        store_name: str,
        ttl_seconds: int | None = None,
    ) -> None:
        # A factory defers the client (whose constructor waits for the sidecar) to first use.
        self._client_or_factory = client
        self._made: DaprClient | None = client if isinstance(client, DaprClient) else None
        self._store = store_name
        self._ttl = ttl_seconds
        self._metadata = {"ttlInSeconds": str(ttl_seconds)} if ttl_seconds else {}
        # What the last load of a conversation read (values and etags), for the append that
        # follows it in the same turn: the write is guarded by those etags, so a snapshot that
        # another writer made stale only costs a conflict and a fresh read.
        self._loaded: dict[tuple[str, str], _Both] = {}

    @property
    def _client(self) -> DaprClient:
        if self._made is None:
            factory = self._client_or_factory
            assert callable(factory)
            self._made = factory()
        return self._made

    # -- keys --------------------------------------------------------------------------
    @staticmethod
    def _user(user_id: str) -> str:
        return quote(user_id, safe="")

    def _index_key(self, user_id: str) -> str:
        return f"conversations:{self._user(user_id)}"

    def session(self, user_id: str, conversation_id: str) -> DaprSession:
        """The SDK session holding one conversation's items."""
        return DaprSession(
            f"conversation:{self._user(user_id)}:{conversation_id}",
            state_store_name=self._store,
            dapr_client=self._client,
            ttl=self._ttl,
            consistency="strong",
        )

    # -- the index -----------------------------------------------------------------------
    async def _read_index(self, user_id: str) -> tuple[Index, str | None]:
        response = await self._client.get_state(self._store, self._index_key(user_id))
        return _index_of(response.data), response.etag or None

    async def _read_both(self, user_id: str, session: DaprSession) -> _Both:
        """The user's index and one conversation's stored items, in one bulk read."""
        index_key, items_key = self._index_key(user_id), session._messages_key
        response = await self._client.get_bulk_state(
            self._store, [index_key, items_key], states_metadata=_STRONG_READ
        )
        found = {item.key: item for item in response.items}
        for item in found.values():
            if item.error:
                raise RuntimeError(f"Reading conversation state failed: {item.error}")
        index, items = found.get(index_key), found.get(items_key)
        return _Both(
            index=_index_of(index.data if index else b""),
            index_etag=(index.etag or None) if index else None,
            items=_stored_items(items.data if items else b""),
            items_etag=(items.etag or None) if items else None,
        )

    async def _update_index(self, user_id: str, change: Callable[[Index], T]) -> T:
        """Read, change and write the index under its etag; retry when another writer won."""
        for attempt in range(1, _MAX_ATTEMPTS + 1):
            index, etag = await self._read_index(user_id)
            result = change(index)
            try:
                await self._client.save_state(
                    self._store,
                    self._index_key(user_id),
                    json.dumps({"conversations": index}, separators=(",", ":")),
                    etag=etag,
                    options=_FIRST_WRITE,
                    state_metadata=self._metadata,
                )
                return result
            except Exception as error:
                if not _is_conflict(error) or attempt == _MAX_ATTEMPTS:
                    raise
                await _backoff(attempt)
        raise AssertionError("unreachable")

    @staticmethod
    def _entry(index: Index, conversation_id: str) -> dict[str, str]:
        entry = index.get(conversation_id)
        if entry is None:
            raise ConversationNotFound(conversation_id)
        return entry

    # -- the store protocol ----------------------------------------------------------------
    async def create(
        self, user_id: str, *, title: str, conversation_id: str | None = None
    ) -> ConversationInfo:
        cid = conversation_id or new_conversation_id()
        stamp = now().isoformat()

        def add(index: Index) -> ConversationInfo:
            index[cid] = {"title": title[:200], "created_at": stamp, "updated_at": stamp}
            return _info(cid, index[cid])

        session = self.session(user_id, cid)
        for attempt in range(1, _MAX_ATTEMPTS + 1):
            index, etag = await self._read_index(user_id)
            if etag is None or conversation_id is not None:
                break  # the user's first conversation (insert-only index write) or a given id
            info = add(index)
            try:  # the index entry and the empty item list appear together
                await self._transact(
                    [self._index_op(user_id, index, etag), self._op(session._messages_key, "[]")]
                )
                return info
            except Exception as error:
                if not _is_conflict(error) or attempt == _MAX_ATTEMPTS:
                    raise
                await _backoff(attempt)
        info = await self._update_index(user_id, add)
        await self._start_items(session)
        return info

    async def _start_items(self, session: DaprSession) -> None:
        """Write an empty item list so every later append is etag-guarded (and retried)."""
        try:
            await self._client.save_state(
                self._store, session._messages_key, "[]", options=_FIRST_WRITE, state_metadata=self._metadata
            )
        except Exception as error:
            if not _is_conflict(error):
                raise

    async def get(self, user_id: str, conversation_id: str) -> ConversationInfo:
        index, _etag = await self._read_index(user_id)
        return _info(conversation_id, self._entry(index, conversation_id))

    async def recent(self, user_id: str) -> list[ConversationInfo]:
        index, _etag = await self._read_index(user_id)
        infos = [_info(cid, entry) for cid, entry in index.items()]
        return sorted(infos, key=lambda info: info.updated_at, reverse=True)

    async def rename(self, user_id: str, conversation_id: str, title: str) -> ConversationInfo:
        def change(index: Index) -> ConversationInfo:
            entry = self._entry(index, conversation_id)
            entry.update(title=title[:200], updated_at=now().isoformat())
            return _info(conversation_id, entry)

        return await self._update_index(user_id, change)

    async def delete(self, user_id: str, conversation_id: str) -> None:
        def remove(index: Index) -> None:
            self._entry(index, conversation_id)
            del index[conversation_id]

        session = self.session(user_id, conversation_id)
        for attempt in range(1, _MAX_ATTEMPTS + 1):
            index, etag = await self._read_index(user_id)
            remove(index)
            try:  # the index entry, the items and the session metadata go together
                await self._transact(
                    [
                        self._index_op(user_id, index, etag),
                        self._op(session._messages_key, None, delete=True),
                        self._op(session._metadata_key, None, delete=True),
                    ]
                )
                return
            except Exception as error:
                if not _is_conflict(error) or attempt == _MAX_ATTEMPTS:
                    raise
                await _backoff(attempt)

    async def load(self, user_id: str, conversation_id: str, *, limit: int | None = None) -> list[Item]:
        both = await self._read_both(user_id, self.session(user_id, conversation_id))
        self._entry(both.index, conversation_id)
        if len(self._loaded) >= _MAX_SNAPSHOTS:  # turns that never appended (failures): start over
            self._loaded.clear()
        self._loaded[(user_id, conversation_id)] = both
        return _decoded(both.items, limit)

    async def append(self, user_id: str, conversation_id: str, items: Sequence[Item]) -> None:
        """Add a turn's items in one transaction (on what ``load`` read, else on a bulk read),
        retried from a fresh read when another writer won."""
        if not items:
            return
        session = self.session(user_id, conversation_id)
        serialized = [json.dumps(item, separators=(",", ":")) for item in items]
        snapshot = self._loaded.pop((user_id, conversation_id), None)
        for attempt in range(1, _MAX_ATTEMPTS + 1):
            both = snapshot if attempt == 1 and snapshot else await self._read_both(user_id, session)
            entry = self._entry(both.index, conversation_id)  # also proves it is the user's
            entry["updated_at"] = now().isoformat()
            if both.items_etag is None:  # written by an older version: no item list yet
                await self._start_items(session)
                continue
            created = str(int(datetime.fromisoformat(entry["created_at"]).timestamp()))
            metadata = {
                "session_id": session.session_id,
                "created_at": created,
                "updated_at": str(int(time.time())),
            }
            try:
                await self._transact(
                    [
                        self._index_op(user_id, both.index, both.index_etag),
                        self._op(
                            session._messages_key,
                            json.dumps(both.items + serialized, separators=(",", ":")),
                            both.items_etag,
                        ),
                        self._op(session._metadata_key, json.dumps(metadata)),
                    ]
                )
                return
            except Exception as error:
                if not _is_conflict(error) or attempt == _MAX_ATTEMPTS:
                    raise
                await _backoff(attempt)

    # -- transactions ----------------------------------------------------------------------
    def _op(
        self, key: str, value: str | None, etag: str | None = None, *, delete: bool = False
    ) -> TransactionalStateOperation:
        return TransactionalStateOperation(
            key=key,
            data=value if value is not None else "",
            etag=etag,
            operation_type=TransactionOperationType.delete if delete else TransactionOperationType.upsert,
            metadata=None if delete else (self._metadata or None),
        )

    def _index_op(self, user_id: str, index: Index, etag: str | None) -> TransactionalStateOperation:
        return self._op(
            self._index_key(user_id), json.dumps({"conversations": index}, separators=(",", ":")), etag
        )

    async def _transact(self, operations: list[TransactionalStateOperation]) -> None:
        await self._client.execute_state_transaction(self._store, operations)

    async def close(self) -> None:
        if self._made is not None:
            await self._made.close()
