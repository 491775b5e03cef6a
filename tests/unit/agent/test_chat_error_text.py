"""A failing database never shows its own text to the chat's caller (issue 14, finding 6).

The reply says plainly what failed; the database's message (which quotes SQL and the values
in it) goes to the server's log only.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest
from sqlalchemy.exc import DataError

from tests.conftest import JWT_SECRET
from tests.unit.agent.support import running_app, settings_on_free_port, token

SQL = "INSERT INTO conversations (id, user_id, title) VALUES (%(id)s, %(user_id)s, %(title)s)"


def database_error() -> DataError:
    return DataError(SQL, {"id": "c-1", "user_id": "alice", "title": "secret"}, Exception("value too long"))


@pytest.mark.parametrize("operation", ["load", "append"])
async def test_a_database_error_in_chat_memory_answers_502_without_its_sql(
    make_settings: Any, verifier: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
    operation: str,
) -> None:  # fmt: skip
    with running_app(settings_on_free_port(make_settings, jwt_secret=JWT_SECRET)) as app:
        async with app.client(token(verifier, "alice")) as alice:
            first = await alice.post("/api/chat", json={"message": "add water the plants"})
            assert first.status_code == 200, first.text
            cid = first.json()["conversation_id"]

            async def failing(*args: Any, **kwargs: Any) -> Any:
                raise database_error()

            monkeypatch.setattr(app.chat.store, operation, failing)
            with caplog.at_level(logging.WARNING, logger="agent.chat"):
                failed = await alice.post(
                    "/api/chat", json={"message": "show my tasks", "conversation_id": cid}
                )
                streamed = await alice.post(
                    "/api/chat/stream", json={"message": "show my tasks", "conversation_id": cid}
                )
    assert failed.status_code == 502, failed.text
    detail = failed.json()["detail"]
    assert "database refused the request" in detail, detail
    assert "database refused the request" in streamed.text, streamed.text
    for shown in (detail, streamed.text):
        assert "INSERT" not in shown and "user_id" not in shown and "value too long" not in shown, shown
    assert "INSERT INTO conversations" in caplog.text, "the details stay in the server's log"
