"""Conversation memory in the application's own database (the embedded default).

The index is the ``conversations`` table; the items are rows of ``conversation_items``, one per
SDK input item, in insertion order. Appends are inserts, so concurrent turns lose nothing.
A turn's load reads the last ``limit`` items through the ``(conversation_id, id)`` index and
its append inserts its own: neither grows with the conversation's length.

    store = SqlConversationStore(engine)   # creates conversation_items if it is missing
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import anyio
from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    Engine,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    delete,
    func,
    select,
)
from sqlmodel import Session, col

from agent.memory import ConversationInfo, ConversationNotFound, Item, new_conversation_id, now
from tasks.models import Conversation, UTCDateTime

T = TypeVar("T")

metadata = MetaData()
conversation_items = Table(
    "conversation_items",
    metadata,
    Column("id", BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True),
    Column("conversation_id", String(64), nullable=False),
    Column("item", JSON, nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    # A turn reads its conversation's last items newest first and stops (migration 0020): the
    # cost does not grow with the conversation's length.
    Index("ix_conversation_items_conversation_order", "conversation_id", "id"),
)


def _info(row: Conversation) -> ConversationInfo:
    return ConversationInfo(id=row.id, title=row.title, created_at=row.created_at, updated_at=row.updated_at)


class SqlConversationStore:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine  # the table comes from the Alembic migrations (revision 0002)

    async def _run(self, fn: Callable[[Session], T]) -> T:
        def work() -> T:
            with Session(self._engine, expire_on_commit=False) as session:
                return fn(session)

        return await anyio.to_thread.run_sync(work)

    @staticmethod
    def _owned(session: Session, user_id: str, conversation_id: str) -> Conversation:
        row = session.get(Conversation, conversation_id)
        if row is None or row.user_id != user_id:
            raise ConversationNotFound(conversation_id)
        return row

    async def create(
        self, user_id: str, *, title: str, conversation_id: str | None = None
    ) -> ConversationInfo:
        def work(session: Session) -> ConversationInfo:
            moment = now()
            row = Conversation(
                id=conversation_id or new_conversation_id(), user_id=user_id, title=title[:200],
                created_at=moment, updated_at=moment,
            )  # fmt: skip
            session.add(row)
            session.commit()
            return _info(row)

        return await self._run(work)

    async def get(self, user_id: str, conversation_id: str) -> ConversationInfo:
        return await self._run(lambda s: _info(self._owned(s, user_id, conversation_id)))

    async def recent(self, user_id: str) -> list[ConversationInfo]:
        def work(session: Session) -> list[ConversationInfo]:
            query = (
                select(Conversation)
                .where(col(Conversation.user_id) == user_id)
                .order_by(col(Conversation.updated_at).desc())
            )
            return [_info(row) for row in session.scalars(query)]

        return await self._run(work)

    async def rename(self, user_id: str, conversation_id: str, title: str) -> ConversationInfo:
        def work(session: Session) -> ConversationInfo:
            row = self._owned(session, user_id, conversation_id)
            row.title, row.updated_at = title[:200], now()
            session.commit()
            return _info(row)

        return await self._run(work)

    async def delete(self, user_id: str, conversation_id: str) -> None:
        def work(session: Session) -> None:
            row = self._owned(session, user_id, conversation_id)
            session.execute(delete(conversation_items).where(conversation_items.c.conversation_id == row.id))
            session.delete(row)
            session.commit()

        await self._run(work)

    async def load(self, user_id: str, conversation_id: str, *, limit: int | None = None) -> list[Item]:
        def work(session: Session) -> list[Item]:
            self._owned(session, user_id, conversation_id)
            query = (
                select(conversation_items.c.item)
                .where(conversation_items.c.conversation_id == conversation_id)
                .order_by(conversation_items.c.id.desc())
            )
            if limit is not None:
                query = query.limit(limit)
            return [_decoded(item) for item in reversed(list(session.scalars(query)))]

        return await self._run(work)

    async def append(self, user_id: str, conversation_id: str, items: Sequence[Item]) -> None:
        def work(session: Session) -> None:
            row = self._owned(session, user_id, conversation_id)
            moment = now()
            if items:
                session.execute(
                    conversation_items.insert(),
                    [{"conversation_id": row.id, "item": dict(item), "created_at": moment} for item in items],
                )
            row.updated_at = moment
            session.commit()

        await self._run(work)

    async def count(self, conversation_id: str) -> int:
        query = select(func.count()).where(conversation_items.c.conversation_id == conversation_id)
        return await self._run(lambda s: int(s.scalar(query) or 0))

    async def close(self) -> None:
        return None


def _decoded(value: Any) -> Item:
    return json.loads(value) if isinstance(value, str) else value  # type: ignore[no-any-return]
