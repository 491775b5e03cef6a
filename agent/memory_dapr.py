"""Conversation memory in the Dapr state store (``statestore``: PostgreSQL v2) in Dapr mode.

Each conversation is the SDK's ``DaprSession`` under ``conversation:<user>:<id>``: its items (a
JSON list of serialized items) under ``<session>:messages`` and ``created_at``/``updated_at``
under ``<session>:metadata``, so the SDK's session reads and clears what this store writes. The
metadata also holds ``updated_at_iso``, the precise time of the last append (the SDK's own
``updated_at`` is whole seconds); the session ignores it. The user's index ``conversations:<user>``
holds only what changes on create, rename and delete: each conversation's title and creation time.

A long conversation keeps its cost per turn flat: the items key holds at most ``recent_max``
items (100 by default). An append that would pass that moves all but the newest
``recent_keep`` (50) into a new archive key, ``<session>:archive:<n>`` (n = 1, 2, ... oldest
first), in the same transaction, and the metadata counts them (``archived``). So a turn reads
and rewrites at most ``recent_max`` items whatever the conversation's length (a turn's model
sees the last ``conversation_item_limit`` items, 40 by default, all in the items key); a load
of more items than the items key holds (the transcript, ``limit=None``) reads the archive keys
too. Archive keys are written once, with the TTL, and deleted with their conversation. The
SDK's own ``DaprSession`` on these keys sees only the items key, the recent part.

Every key names its user, so one user's ids never reach another user's data: a conversation
exists when its items key does (create writes it together with the index entry). All writes are
guarded by etags (the metadata by the items' etag, in the same transaction) and retried on
conflict; a key's first write is insert-only, so two first writes cannot overwrite each other.

Round trips per chat turn: ``load`` reads the conversation's items and metadata in one bulk read;
``append`` writes both in one state transaction guarded by the items' etag that load read, and is
retried from a fresh bulk read when another turn of the same conversation wrote in between: one
read and one transaction, and a turn touches no other conversation's keys (turns in different
conversations of one user never conflict). A new conversation costs two calls more (create reads
the index and writes it with the empty item list; its first append reads before it writes).
``recent`` reads the index, then the metadata of its conversations in one bulk read.

With a TTL, every write carries ``ttlInSeconds`` except the index's: appends do not rewrite it,
so it must not expire under conversations in use (``recent`` rewrites, once, an index that the
previous layout wrote with a TTL). Expired conversations are left out of ``recent`` and are not
found; create drops their index entries. Index entries written by the previous layout carry an
``updated_at`` of their own, which still counts (new entries keep one, the creation time, so that
version can still read the index after a rollback).

Transport: daprd's HTTP state API (:class:`agent.dapr_state.DaprStateClient` over
``sidecar.Sidecar``), not the SDK's gRPC client: cheaper per call and it does not hold the event
loop (figures: ``benchmarks/README.md``, "Conversation memory: HTTP against gRPC").

Values go as JSON and daprd stores them re-encoded (compact, object keys sorted): JSON equal to
what the SDK writes, though not byte for byte, and its session reads them like its own. An etag
or first-write conflict is :class:`agent.dapr_state.StateConflict` (daprd answers 409, or 500
with "possible etag mismatch" / "no item was updated"); a sidecar that is down, slow or failing
is :class:`agent.dapr_state.StateStoreError` with the reason. The SDK's ``DaprSession`` that
:meth:`DaprConversationStore.session` returns still talks gRPC: its client is made when such a
session is first used, never for the key names, which the store takes from the session.

    state = DaprStateClient(Sidecar.at("http://127.0.0.1:3500"), store_name="statestore")
    store = DaprConversationStore(
        state, ttl_seconds=30 * 86400, grpc_client=lambda: DaprClient(address="127.0.0.1:50001")
    )
    ...
    await store.close()   # the HTTP connections, and the gRPC client if a session made one
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final, TypeVar, cast
from urllib.parse import quote

from agents.extensions.memory.dapr_session import DaprSession

from agent.dapr_state import DaprStateClient, Operation, StateConflict, delete_operation, upsert_operation
from agent.memory import ConversationInfo, ConversationNotFound, Item, new_conversation_id, now
from tasks.clock import as_utc

if TYPE_CHECKING:  # the gRPC client is only made for the SDK's own session operations
    from dapr.aio.clients import DaprClient

T = TypeVar("T")
Index = dict[str, dict[str, str]]
log = logging.getLogger(__name__)

_MAX_ATTEMPTS: Final = 12
RECENT_MAX: Final = 100  # items in the items key before an append archives the older ones
RECENT_KEEP: Final = 50  # items the items key keeps when it archives
_MAX_SNAPSHOTS: Final = 256
# Marks an index written by this layout, without a TTL (the previous one wrote it with one).
_LAYOUT: Final = 2


def _is_conflict(error: Exception) -> bool:
    """Another writer won (an etag or first-write check failed): read again and retry."""
    return isinstance(error, StateConflict)


@dataclass
class _Index:
    entries: Index
    etag: str | None
    lasting: bool  # written by this layout, so without a TTL


@dataclass
class _Snapshot:
    """What a load read of one conversation, for the append that follows in the same turn."""

    items: list[str]
    items_etag: str | None
    created_at: str | None  # the metadata's, in DaprSession's whole seconds
    archived: int = 0  # archive keys written so far (``<session>:archive:1`` ... ``:<archived>``)


def _index_of(stored: Any, etag: str | None) -> _Index:
    stored = {} if stored is None else stored
    if not isinstance(stored, dict):
        raise ValueError("The stored conversation index is not a JSON object.")
    return _Index(stored.get("conversations", {}), etag, stored.get("layout") == _LAYOUT)


def _index_value(entries: Index) -> dict[str, Any]:
    return {"layout": _LAYOUT, "conversations": entries}


def _metadata_of(stored: Any) -> dict[str, Any]:
    """A session's metadata; empty when missing or unreadable (it is bookkeeping)."""
    return stored if isinstance(stored, dict) else {}


def _stored_items(stored: Any) -> list[str]:
    """The stored list of serialized items (``DaprSession``'s layout); refuses anything else,
    since an append rewrites the whole list."""
    if stored is None:
        return []
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


def _moment(value: Any) -> datetime | None:
    """An ISO 8601 time or DaprSession's whole epoch seconds; None when neither."""
    if not isinstance(value, str):
        return None
    try:
        if value.isdigit():
            return datetime.fromtimestamp(int(value), UTC)
        return as_utc(datetime.fromisoformat(value))
    except (ValueError, OverflowError):
        return None


def _last_write(entry: dict[str, str], metadata: dict[str, Any]) -> datetime:
    """When the conversation was last written: the latest of its index entry's times (creation;
    the previous layout's ``updated_at``) and its metadata's (ours, or the SDK's seconds)."""
    moments = (
        _moment(entry.get("created_at")),
        _moment(entry.get("updated_at")),
        _moment(metadata.get("updated_at_iso")),
        _moment(metadata.get("updated_at")),
    )
    return max(moment for moment in moments if moment is not None)


async def _backoff(attempt: int) -> None:
    await asyncio.sleep(random.uniform(0.001, 0.005 * attempt))


class _GrpcOnFirstUse:
    """Stands in for the SDK session's gRPC client and makes it on the session's first call:
    the store's own reads and writes go over HTTP, so a chat turn never makes one."""

    def __init__(self, client: DaprClient | Callable[[], DaprClient] | None) -> None:
        self._given = client if client is not None and not callable(client) else None
        self._factory = client if callable(client) else None
        self.made: DaprClient | None = None  # made here, so closed here

    def client(self) -> DaprClient:
        if self._given is not None:
            return self._given
        if self.made is None:
            if self._factory is not None:
                self.made = self._factory()
            else:
                from dapr.aio.clients import DaprClient  # the SDK's address: its settings/env

                self.made = DaprClient()
        return self.made

    def __getattr__(self, name: str) -> Any:
        return getattr(self.client(), name)


class DaprConversationStore:
    def __init__(
        self,
        state: DaprStateClient,
        *,
        ttl_seconds: int | None = None,
        grpc_client: DaprClient | Callable[[], DaprClient] | None = None,
        recent_max: int = RECENT_MAX,
        recent_keep: int = RECENT_KEEP,
    ) -> None:
        """``state`` does every read and write; ``grpc_client`` (a client, or a factory called
        on first use: the client's constructor waits for the sidecar) serves only the SDK
        sessions that :meth:`session` returns, when they are used. The items key holds at most
        ``recent_max`` items; past that, an append archives all but the newest ``recent_keep``."""
        self._state = state
        self._store = state.store_name
        self._grpc = _GrpcOnFirstUse(grpc_client)
        self._ttl = ttl_seconds
        self._metadata = {"ttlInSeconds": str(ttl_seconds)} if ttl_seconds else {}
        self._recent_max, self._recent_keep = recent_max, min(recent_keep, recent_max)
        # What the last load of a conversation read (values and etag), for the append that
        # follows it in the same turn: the write is guarded by that etag, so a snapshot that
        # another writer made stale only costs a conflict and a fresh read.
        self._loaded: dict[tuple[str, str], _Snapshot] = {}

    # -- keys --------------------------------------------------------------------------
    @staticmethod
    def _session_id(user_id: str, conversation_id: str) -> str:
        return f"conversation:{quote(user_id, safe='')}:{conversation_id}"

    @staticmethod
    def _index_key(user_id: str) -> str:
        return f"conversations:{quote(user_id, safe='')}"

    def _metadata_key(self, user_id: str, conversation_id: str) -> str:
        return f"{self._session_id(user_id, conversation_id)}:metadata"

    def session(self, user_id: str, conversation_id: str) -> DaprSession:
        """The SDK session holding one conversation's items; its key names are the store's (its
        gRPC client is made when the session first calls it, never for the names)."""
        return DaprSession(
            self._session_id(user_id, conversation_id),
            state_store_name=self._store,
            dapr_client=cast("DaprClient", self._grpc),
            ttl=self._ttl,
            consistency="strong",
        )

    # -- reads -----------------------------------------------------------------------------
    async def _read(self, keys: list[str]) -> dict[str, tuple[Any, str | None]]:
        """The keys that exist, with their values (decoded JSON) and etags, in one bulk read."""
        return await self._state.get_bulk(keys)

    async def _read_index(self, user_id: str) -> _Index:
        return _index_of(*await self._state.get(self._index_key(user_id)))

    async def _read_snapshot(self, session: DaprSession) -> _Snapshot:
        """One conversation's stored items and its metadata's creation time, in one bulk read."""
        found = await self._read([session._messages_key, session._metadata_key])
        items, items_etag = found.get(session._messages_key, (None, None))
        metadata = _metadata_of(found.get(session._metadata_key, (None, None))[0])
        created_at = metadata.get("created_at")
        archived = metadata.get("archived")
        return _Snapshot(
            _stored_items(items),
            items_etag,
            created_at if isinstance(created_at, str) else None,
            archived if isinstance(archived, int) and archived > 0 else 0,
        )

    @staticmethod
    def _archive_key(session: DaprSession, number: int) -> str:
        return f"{session.session_id}:archive:{number}"

    async def _with_archive(self, session: DaprSession, snapshot: _Snapshot, limit: int | None) -> list[str]:
        """The stored items with as many archived ones before them as ``limit`` needs (all when
        None), newest archive first; an archive key that expired is skipped."""
        stored = list(snapshot.items)
        numbers = list(range(snapshot.archived, 0, -1))
        while numbers and (limit is None or len(stored) < limit):
            batch = numbers if limit is None else numbers[:1]
            numbers = numbers[len(batch) :]
            found = await self._read([self._archive_key(session, n) for n in batch])
            for n in batch:  # newest first, each before what is already there
                value = found.get(self._archive_key(session, n), (None, None))[0]
                stored = (value if isinstance(value, list) else []) + stored
        return stored

    def _expired(self, last_write: datetime) -> bool:
        return self._ttl is not None and now() - last_write >= timedelta(seconds=self._ttl)

    def _live_info(
        self, conversation_id: str, entry: dict[str, str], metadata: Any
    ) -> ConversationInfo | None:
        """The conversation as listed; None when its keys expired (its metadata is kept as long
        as its items, so a conversation without metadata is judged by its index entry)."""
        updated_at = _last_write(entry, _metadata_of(metadata))
        if metadata is None and self._expired(updated_at):
            return None
        return ConversationInfo(
            id=conversation_id,
            title=entry["title"],
            created_at=datetime.fromisoformat(entry["created_at"]),
            updated_at=updated_at,
        )

    async def _check_listed(self, user_id: str, conversation_id: str) -> None:
        """For a conversation without an item list: it is an empty one when the user's index
        lists it and it has not expired (written by an older version, or cleared by the SDK);
        otherwise it does not exist, or is another user's."""
        entry = self._entry(await self._read_index(user_id), conversation_id)
        if self._expired(_last_write(entry, {})):
            raise ConversationNotFound(conversation_id)

    @staticmethod
    def _entry(index: _Index, conversation_id: str) -> dict[str, str]:
        entry = index.entries.get(conversation_id)
        if entry is None:
            raise ConversationNotFound(conversation_id)
        return entry

    # -- the index -------------------------------------------------------------------------
    async def _update_index(self, user_id: str, change: Callable[[_Index], T]) -> T:
        """Read, change and write the index under its etag; retry when another writer won."""
        for attempt in range(1, _MAX_ATTEMPTS + 1):
            index = await self._read_index(user_id)
            result = change(index)
            try:
                await self._save_index(user_id, index)
                return result
            except Exception as error:
                if not _is_conflict(error) or attempt == _MAX_ATTEMPTS:
                    raise
                await _backoff(attempt)
        raise AssertionError("unreachable")

    async def _drop_expired(self, user_id: str, index: _Index) -> None:
        """Remove the entries of conversations whose keys expired, so the index does not grow
        with them (it has no TTL of its own). Reads only entries old enough to have expired."""
        if self._ttl is None:
            return
        old = [cid for cid, entry in index.entries.items() if self._expired(_last_write(entry, {}))]
        found = await self._read([self._metadata_key(user_id, cid) for cid in old])
        for cid in old:
            if self._metadata_key(user_id, cid) not in found:
                del index.entries[cid]

    async def _make_lasting(self, user_id: str, index: _Index) -> None:
        """Rewrite an index the previous layout wrote with a TTL, once, without one: appends no
        longer refresh it. A conflict means another writer rewrote it already."""
        try:
            await self._save_index(user_id, index)
        except Exception as error:
            if not _is_conflict(error):
                raise

    async def _save_index(self, user_id: str, index: _Index) -> None:
        """Write the index under the etag it was read with (insert-only when new), no TTL."""
        await self._state.save(
            self._index_key(user_id), _index_value(index.entries), etag=index.etag, first_write=True
        )

    # -- the store protocol ----------------------------------------------------------------
    async def create(
        self, user_id: str, *, title: str, conversation_id: str | None = None
    ) -> ConversationInfo:
        cid = conversation_id or new_conversation_id()
        stamp = now()
        info = ConversationInfo(id=cid, title=title[:200], created_at=stamp, updated_at=stamp)
        # ``updated_at`` is only the creation time here, kept so the previous version can read it.
        entry = {"title": info.title, "created_at": stamp.isoformat(), "updated_at": stamp.isoformat()}
        session = self.session(user_id, cid)
        for attempt in range(1, _MAX_ATTEMPTS + 1):
            index = await self._read_index(user_id)
            if index.etag is None or conversation_id is not None:
                break  # the user's first conversation (insert-only index write) or a given id
            await self._drop_expired(user_id, index)
            index.entries[cid] = entry
            try:  # the index entry and the empty item list appear together
                await self._transact([self._index_op(user_id, index), self._op(session._messages_key, [])])
                return info
            except Exception as error:
                if not _is_conflict(error) or attempt == _MAX_ATTEMPTS:
                    raise
                await _backoff(attempt)
        await self._update_index(user_id, lambda index: index.entries.__setitem__(cid, entry))
        await self._start_items(session)
        return info

    async def _start_items(self, session: DaprSession) -> None:
        """Write an empty item list so every later append is etag-guarded (and retried)."""
        try:
            await self._state.save(session._messages_key, [], first_write=True, metadata=self._metadata)
        except Exception as error:
            if not _is_conflict(error):
                raise

    async def get(self, user_id: str, conversation_id: str) -> ConversationInfo:
        index_key, metadata_key = self._index_key(user_id), self._metadata_key(user_id, conversation_id)
        found = await self._read([index_key, metadata_key])
        index = _index_of(*found.get(index_key, (None, None)))
        entry = self._entry(index, conversation_id)
        info = self._live_info(conversation_id, entry, found.get(metadata_key, (None, None))[0])
        if info is None:
            raise ConversationNotFound(conversation_id)
        return info

    async def recent(self, user_id: str) -> list[ConversationInfo]:
        index = await self._read_index(user_id)
        if self._ttl is not None and index.entries and not index.lasting:
            await self._make_lasting(user_id, index)
        keys = {cid: self._metadata_key(user_id, cid) for cid in index.entries}
        found = await self._read(list(keys.values()))
        infos = [
            self._live_info(cid, entry, found.get(keys[cid], (None, None))[0])
            for cid, entry in index.entries.items()
        ]
        listed = [info for info in infos if info is not None]
        return sorted(listed, key=lambda info: info.updated_at, reverse=True)

    async def rename(self, user_id: str, conversation_id: str, title: str) -> ConversationInfo:
        """A new title; when it was last written stays the last turn's time."""
        current = await self.get(user_id, conversation_id)  # not found when missing or expired

        def change(index: _Index) -> None:
            self._entry(index, conversation_id)["title"] = title[:200]

        await self._update_index(user_id, change)
        return replace(current, title=title[:200])

    async def delete(self, user_id: str, conversation_id: str) -> None:
        session = self.session(user_id, conversation_id)
        for attempt in range(1, _MAX_ATTEMPTS + 1):
            index = await self._read_index(user_id)
            self._entry(index, conversation_id)
            del index.entries[conversation_id]
            snapshot = await self._read_snapshot(session)
            archives = [
                delete_operation(self._archive_key(session, n)) for n in range(1, snapshot.archived + 1)
            ]
            try:  # the index entry, the items, the metadata and the archive go together; the
                # items' etag makes an append that archived meanwhile a conflict (read again)
                await self._transact(
                    [
                        self._index_op(user_id, index),
                        delete_operation(session._messages_key, etag=snapshot.items_etag),
                        delete_operation(session._metadata_key),
                        *archives,
                    ]
                )
                return
            except Exception as error:
                if not _is_conflict(error) or attempt == _MAX_ATTEMPTS:
                    raise
                await _backoff(attempt)

    async def load(self, user_id: str, conversation_id: str, *, limit: int | None = None) -> list[Item]:
        session = self.session(user_id, conversation_id)
        snapshot = await self._read_snapshot(session)
        if snapshot.items_etag is None:  # no item list: only an older version's entry is one
            await self._check_listed(user_id, conversation_id)
        if len(self._loaded) >= _MAX_SNAPSHOTS:  # turns that never appended (failures): start over
            self._loaded.clear()
        self._loaded[(user_id, conversation_id)] = snapshot
        if snapshot.archived and (limit is None or len(snapshot.items) < limit):
            return _decoded(await self._with_archive(session, snapshot, limit), limit)
        return _decoded(snapshot.items, limit)

    async def append(self, user_id: str, conversation_id: str, items: Sequence[Item]) -> None:
        """Add a turn's items and bump the metadata in one transaction (on what ``load`` read,
        else on a bulk read), retried from a fresh read when another writer won."""
        if not items:
            return
        session = self.session(user_id, conversation_id)
        serialized = [json.dumps(item, separators=(",", ":")) for item in items]
        snapshot = self._loaded.pop((user_id, conversation_id), None)
        for attempt in range(1, _MAX_ATTEMPTS + 1):
            seen = snapshot if attempt == 1 and snapshot else await self._read_snapshot(session)
            if seen.items_etag is None:  # written by an older version: no item list yet
                await self._check_listed(user_id, conversation_id)
                await self._start_items(session)
                continue
            stamp = now()
            seconds = str(int(stamp.timestamp()))
            kept, archived, archive = self._windowed(session, seen, serialized)
            metadata = {
                "session_id": session.session_id,
                "created_at": seen.created_at or seconds,
                "updated_at": seconds,
                "updated_at_iso": stamp.isoformat(),
                "archived": archived,
            }
            try:  # the items' etag proves the conversation exists and is the user's
                await self._transact(
                    [
                        *archive,
                        self._op(session._messages_key, kept, seen.items_etag),
                        self._op(session._metadata_key, metadata),
                    ]
                )
                return
            except Exception as error:
                if not _is_conflict(error) or attempt == _MAX_ATTEMPTS:
                    raise
                await _backoff(attempt)
        raise RuntimeError(f"Could not append to conversation {conversation_id}; try again.")

    def _windowed(
        self, session: DaprSession, seen: _Snapshot, serialized: list[str]
    ) -> tuple[list[str], int, list[Operation]]:
        """The items key's new list, the archive count and the archive write (if any): past
        ``recent_max`` items, all but the newest ``recent_keep`` go to the next archive key."""
        items = seen.items + serialized
        if len(items) <= self._recent_max:
            return items, seen.archived, []
        cut = len(items) - self._recent_keep
        number = seen.archived + 1
        return items[cut:], number, [self._op(self._archive_key(session, number), items[:cut])]

    # -- transactions ----------------------------------------------------------------------
    def _op(self, key: str, value: Any, etag: str | None = None, *, lasting: bool = False) -> Operation:
        """An upsert of ``key`` (with the TTL unless ``lasting``), guarded by ``etag`` when given."""
        return upsert_operation(key, value, etag=etag, metadata=None if lasting else self._metadata)

    def _index_op(self, user_id: str, index: _Index) -> Operation:
        return self._op(self._index_key(user_id), _index_value(index.entries), index.etag, lasting=True)

    async def _transact(self, operations: list[Operation]) -> None:
        await self._state.transact(operations)

    async def close(self) -> None:
        await self._state.aclose()
        made, self._grpc.made = self._grpc.made, None
        if made is not None:
            await made.close()
