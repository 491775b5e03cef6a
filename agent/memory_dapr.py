"""Conversation memory in the Dapr state store (``statestore``: PostgreSQL v2) in Dapr mode.

Each conversation's items are the SDK's ``DaprSession`` under ``conversation:<user>:<id>``; the
user's index of conversations is the key ``conversations:<user>``. Every key names its user, so
one user's ids never reach another user's data. All writes are guarded by etags and retried on
conflict; a key's first write is insert-only, so two first writes cannot overwrite each other.

    client = DaprClient(address="127.0.0.1:50001")
    store = DaprConversationStore(client, store_name="statestore", ttl_seconds=30 * 86400)
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Final, TypeVar
from urllib.parse import quote

from agents.extensions.memory.dapr_session import DaprSession
from dapr.aio.clients import DaprClient
from dapr.clients.grpc._state import Concurrency, StateOptions

from agent.memory import ConversationInfo, ConversationNotFound, Item, new_conversation_id, now

T = TypeVar("T")
Index = dict[str, dict[str, str]]

_MAX_ATTEMPTS: Final = 12
_CONFLICT_MARKERS: Final = ("etag mismatch", "no item was updated", "etag does not match")
_FIRST_WRITE: Final = StateOptions(concurrency=Concurrency.first_write)


def _is_conflict(error: Exception) -> bool:
    message = str(error).lower()
    return any(marker in message for marker in _CONFLICT_MARKERS)


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
        index: Index = json.loads(response.data)["conversations"] if response.data else {}
        return index, response.etag or None

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
                await asyncio.sleep(random.uniform(0.001, 0.005 * attempt))
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

        info = await self._update_index(user_id, add)
        await self._start_items(self.session(user_id, cid))
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

        await self._update_index(user_id, remove)
        await self.session(user_id, conversation_id).clear_session()

    async def load(self, user_id: str, conversation_id: str, *, limit: int | None = None) -> list[Item]:
        await self.get(user_id, conversation_id)
        return await self.session(user_id, conversation_id).get_items(limit=limit)

    async def append(self, user_id: str, conversation_id: str, items: Sequence[Item]) -> None:
        def touch(index: Index) -> None:
            self._entry(index, conversation_id)["updated_at"] = now().isoformat()

        await self._update_index(user_id, touch)  # also proves the conversation is the user's
        await self.session(user_id, conversation_id).add_items(list(items))

    async def close(self) -> None:
        if self._made is not None:
            await self._made.close()
