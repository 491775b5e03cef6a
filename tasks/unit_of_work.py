"""The unit of work: one transaction that writes task rows and their outbox events together.

with uow_factory() as uow:
    task = uow.tasks.get(...)
    uow.record(TaskChanged(...))
    uow.commit()   # rows + outbox in one commit, then after-commit listeners run
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Self

from sqlalchemy import Engine
from sqlmodel import Session

from tasks.events import DomainEvent
from tasks.models import OutboxEvent

log = logging.getLogger(__name__)

AfterCommit = Callable[[Sequence[OutboxEvent]], None]


class UnitOfWork:
    def __init__(self, engine: Engine, *, after_commit: Sequence[AfterCommit] = ()) -> None:
        self._engine = engine
        self._after_commit = after_commit
        self._pending: list[DomainEvent] = []
        self.session: Session

    def __enter__(self) -> Self:
        self.session = Session(self._engine, expire_on_commit=False)
        self._pending = []
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.session.rollback()
        self.session.close()

    @property
    def is_postgres(self) -> bool:
        return self._engine.dialect.name == "postgresql"

    def record(self, event: DomainEvent) -> None:
        """Collect an event; it is written to the outbox by ``commit``."""
        self._pending.append(event)

    def commit(self) -> list[OutboxEvent]:
        rows = [_outbox_row(event) for event in self._pending]
        self.session.add_all(rows)
        self.session.commit()
        self._pending = []
        for listener in self._after_commit:
            try:
                listener(rows)
            except Exception:  # a listener's failure must not undo a committed change
                log.exception("after-commit listener %r failed", listener)
        return rows


def _outbox_row(event: DomainEvent) -> OutboxEvent:
    return OutboxEvent(
        topic=event.topic,
        event_type=event.kind,
        user_id=event.user_id,
        task_id=event.task_id,
        payload=event.model_dump(mode="json"),
    )


class UnitOfWorkFactory:
    """Makes units of work on one engine; listeners added later apply to new units."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.after_commit: list[AfterCommit] = []

    def __call__(self) -> UnitOfWork:
        return UnitOfWork(self.engine, after_commit=self.after_commit)
