"""``todo-agent chat``: streamed replies, readable task lists, the embedded default, clear errors."""

from __future__ import annotations

import io
from typing import Any

import anyio

from agent.terminal import main
from tests.conftest import JWT_SECRET
from tests.unit.agent.support import running_app, settings_on_free_port, token
from todo_agent.cli import local_server_for


async def run_chat(args: list[str], settings: Any) -> tuple[int, str]:
    out = io.StringIO()
    start = local_server_for(settings)
    code = await anyio.to_thread.run_sync(lambda: main(args, local_server=start, out=out))
    return code, out.getvalue()


async def test_a_remote_server_with_a_token_streams_replies_and_shows_task_lists(
    make_settings: Any, verifier: Any
) -> None:
    settings = settings_on_free_port(make_settings, jwt_secret=JWT_SECRET)
    with running_app(settings) as app:
        args = ["--url", app.url, "--token", token(verifier, "erin")]
        code, out = await run_chat(
            [*args, "-m", "add pay rent friday 9am high priority", "-m", "show my tasks"], settings
        )
    assert code == 0, out
    lines = out.splitlines()
    assert lines[0] == '  · add_task(title="Pay rent", due="friday 9am", priority="high")'
    assert lines[1].startswith("assistant> Added #")
    assert "  · list_tasks(" in out
    [row] = [line for line in lines if line.lstrip().startswith("#1 ")]
    assert (
        row.split()[:3] == ["#1", "Pay", "rent"] and row.endswith("09:00  high") and row.split()[3] == "Fri"
    )


async def test_without_a_url_it_starts_the_embedded_default(make_settings: Any) -> None:
    code, out = await run_chat(["-m", "add water plants"], settings_on_free_port(make_settings))
    assert code == 0, out
    assert "assistant> Added #1 Water plants" in out


async def test_a_refused_token_is_reported_not_raised(make_settings: Any) -> None:
    settings = settings_on_free_port(make_settings, jwt_secret=JWT_SECRET)
    with running_app(settings) as app:
        code, out = await run_chat(["--url", app.url, "--token", "not-a-jwt", "-m", "hi"], settings)
    assert code == 1
    assert out.startswith("error: The token is not valid")


async def test_a_delete_shows_the_question_to_answer_and_a_typed_yes_deletes(make_settings: Any) -> None:
    code, out = await run_chat(
        ["-m", "add water plants", "-m", "delete water plants", "-m", "yes"],
        settings_on_free_port(make_settings),
    )
    assert code == 0, out
    assert "  ? Delete task #1 'Water plants' and its subtasks? (answer yes or no)" in out.splitlines()
    assert "assistant> Deleted #1 Water plants." in out
