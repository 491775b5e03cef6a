"""``todo-agent chat``: talk to the assistant in a terminal, with streamed replies.

    todo-agent chat                                  # the local embedded default (started if not running)
    todo-agent chat --url https://todo.example.com --token "$TOKEN"
    todo-agent chat -m "what's due this week?"       # one message, then exit
    todo-agent chat --conversation 3f2a...           # continue a conversation

In the session: ``/new`` starts a conversation, ``/list`` shows yours, ``/open ID`` continues
one, ``/quit`` (or Ctrl-D) leaves.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from datetime import datetime
from typing import Any, TextIO
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import httpx


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="todo-agent chat", description="Chat with the task assistant.")
    parser.add_argument("--url", help="a running server (default: the local embedded default)")
    parser.add_argument("--token", help="bearer token for --url (default: $TODO_TOKEN)")
    parser.add_argument("--conversation", help="continue this conversation id")
    parser.add_argument("-m", "--message", action="append", help="send this message and exit (repeatable)")
    return parser


def main(args: list[str], *, local_server: Callable[[ExitStack], str], out: TextIO | None = None) -> int:
    """Run the chat; ``local_server(stack)`` gives the embedded default's URL when no --url is given
    (the composition root starts one if none answers, stopped when ``stack`` closes)."""
    options = _parser().parse_args(args[1:] if args[:1] == ["--"] else args)
    out = out or sys.stdout
    with ExitStack() as stack:
        try:
            url = options.url or local_server(stack)
        except RuntimeError as exc:
            print(f"todo-agent chat: {exc}", file=sys.stderr)
            return 2
        token = options.token or _env_token()
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        client = stack.enter_context(httpx.Client(base_url=url.rstrip("/"), headers=headers, timeout=120))
        session = TerminalChat(client, out, conversation_id=options.conversation)
        if options.message:
            return 0 if all(session.send(text) for text in options.message) else 1
        return session.repl()
    return 0


def _env_token() -> str | None:
    import os

    return os.environ.get("TODO_TOKEN") or None


class TerminalChat:
    def __init__(self, client: httpx.Client, out: TextIO, *, conversation_id: str | None = None) -> None:
        self.client, self.out, self.conversation_id = client, out, conversation_id
        self.zone = _user_zone(client)

    def repl(self) -> int:
        self._say("Talk to your task list. /new, /list, /open ID, /quit.")
        while True:
            try:
                text = input("you> ").strip()
            except (EOFError, KeyboardInterrupt):
                self._say("")
                return 0
            if not text:
                continue
            if text in ("/quit", "/exit"):
                return 0
            if not self._command(text):
                self.send(text)

    def _command(self, text: str) -> bool:
        if text == "/new":
            self.conversation_id = None
            self._say("(new conversation)")
        elif text == "/list":
            for item in self._get("/api/conversations").get("items", []):
                self._say(f"  {item['id']}  {_local(item['updated_at'], self.zone)}  {item['title']}")
        elif text.startswith("/open "):
            self.conversation_id = text.split(maxsplit=1)[1].strip()
            for message in self._get(f"/api/conversations/{self.conversation_id}").get("messages", []):
                if message["role"] in ("user", "assistant"):
                    self._say(f"{'you' if message['role'] == 'user' else 'assistant'}> {message['content']}")
        else:
            return False
        return True

    def send(self, text: str) -> bool:
        """Send one message and print the streamed reply; False when it failed."""
        body: dict[str, Any] = {"message": text, "conversation_id": self.conversation_id}
        with self.client.stream("POST", "/api/chat/stream", json=body) as response:
            if response.status_code != 200:
                response.read()
                self._say(f"error: {_detail(response)}")
                return False
            return self._render(_events(response.iter_lines()))

    def _render(self, events: Iterator[tuple[str, Any]]) -> bool:
        writing = False
        asked: list[str] = []
        for name, data in events:
            if name == "start":
                self.conversation_id = data["conversation_id"]
            elif name == "tool_call":
                self._say(f"  · {data['name']}({_arguments(data['arguments'])})")
            elif name == "tool_result":
                self._tool_result(data)
            elif name == "delta":
                if not writing:
                    self.out.write("assistant> ")
                    writing = True
                self.out.write(data["text"])
                self.out.flush()
            elif name == "confirm":
                asked.append(data["question"])
            elif name == "done":
                self._say("" if writing else f"assistant> {data['reply']}")
                for question in asked:  # the terminal has no buttons: a typed yes or no answers
                    self._say(f"  ? {question} (answer yes or no)")
                return True
            elif name == "error":
                self._say(f"{chr(10) if writing else ''}error: {data['detail']}")
                return False
        return False

    def _tool_result(self, data: dict[str, Any]) -> None:
        output = data.get("output")
        if data.get("is_error"):
            self._say(f"    ! {output}")
        elif isinstance(output, dict) and isinstance(output.get("items"), list):
            for line in task_table(output["items"], self.zone):
                self._say(f"    {line}")

    def _get(self, path: str) -> dict[str, Any]:
        response = self.client.get(path)
        if response.status_code != 200:
            self._say(f"error: {_detail(response)}")
            return {}
        return response.json()  # type: ignore[no-any-return]

    def _say(self, text: str) -> None:
        self.out.write(text + "\n")
        self.out.flush()


def task_table(items: list[dict[str, Any]], zone: ZoneInfo) -> list[str]:
    """Aligned lines: done mark, id, title, due (local time), priority, tags."""
    if not items:
        return ["(no tasks)"]
    rows = [
        (
            "✓" if task.get("completed") else " ",
            f"#{task.get('id')}",
            str(task.get("title", "")),
            _local(task["due_at"], zone) if task.get("due_at") else "",
            "" if task.get("priority") in (None, "none") else str(task["priority"]),
            " ".join(f"#{tag}" for tag in task.get("tags") or []),
        )
        for task in items
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(6)]
    return ["  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip() for row in rows]


def _local(stamp: str, zone: ZoneInfo) -> str:
    try:
        return (
            datetime.fromisoformat(stamp.replace("Z", "+00:00")).astimezone(zone).strftime("%a %d %b %H:%M")
        )
    except ValueError:
        return stamp


def _user_zone(client: httpx.Client) -> ZoneInfo:
    """The zone the server reads this user's times in (``GET /api/me``), else UTC."""
    try:
        return ZoneInfo(client.get("/api/me").json()["effective_timezone"])
    except (httpx.HTTPError, ValueError, KeyError, ZoneInfoNotFoundError):
        return ZoneInfo("UTC")


def _arguments(arguments: dict[str, Any]) -> str:
    return ", ".join(f"{key}={json.dumps(value, ensure_ascii=False)}" for key, value in arguments.items())


def _detail(response: httpx.Response) -> str:
    try:
        return str(response.json().get("detail", response.text))
    except ValueError:
        return f"HTTP {response.status_code}"


def _events(lines: Iterator[str]) -> Iterator[tuple[str, Any]]:
    name, data = "message", []
    for line in lines:
        if line.startswith("event:"):
            name = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].lstrip())
        elif not line and data:
            yield name, json.loads("\n".join(data))
            name, data = "message", []
