"""The chat's Confirm and Cancel buttons in a real browser against a real server (offline model):
a delete asked in the chat waits for the button, Cancel keeps the task, Confirm deletes it once."""

from __future__ import annotations

import re
import time
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.e2e.chat_page import ask

pytestmark = pytest.mark.e2e

Server = Any  # tests/e2e/conftest.py: Server (a running `todo-agent run`)


def task_row(page: Any, title: str) -> Any:
    return page.locator("#task-list .task").filter(has_text=title)


def deleted_entries(server: Server, task_id: int) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = server.api("GET", f"/api/audit?task_id={task_id}").json()["items"]
    return [item for item in items if item["action"] == "deleted"]


def test_a_delete_asked_in_chat_is_cancelled_then_confirmed_once_with_the_buttons(
    server: Server, new_page: Any
) -> None:
    created = server.api("POST", "/api/tasks", json={"title": "Buy milk"})
    assert created.status_code == 201, created.text
    task_id = created.json()["id"]
    page = new_page(server.url)
    expect(page.locator("#connection")).to_have_attribute("data-state", "live")
    expect(task_row(page, "Buy milk")).to_have_count(1)
    question = re.compile(rf"^Delete task #{task_id} 'Buy milk' and its subtasks\?$")

    asked = ask(page, "delete buy milk")
    first = asked.get_by_role("group", name=question)
    expect(first).to_be_visible()
    expect(asked.locator('.chip[data-kind="asking"]')).to_have_text("Waiting for your answer")
    cancel = first.get_by_role("button", name="Cancel")
    expect(cancel).to_be_focused()  # the safe choice has the focus: Enter cancels
    page.keyboard.press("Enter")
    expect(first.get_by_role("status")).to_have_text("Cancelled.")
    expect(cancel).to_be_disabled()
    expect(first.get_by_role("button", name="Confirm")).to_be_disabled()
    expect(page.locator(".message-assistant").last).to_contain_text("nothing was changed")
    expect(page.get_by_role("textbox", name="Message")).to_be_focused()
    time.sleep(0.5)  # nothing may arrive late: the task stays
    expect(task_row(page, "Buy milk")).to_have_count(1)
    assert server.api("GET", f"/api/tasks/{task_id}").status_code == 200

    again = ask(page, "delete buy milk")
    second = again.get_by_role("group", name=question)
    expect(second).to_be_visible()
    # The same conversation in a second tab shows the open question too.
    tab = page.context.new_page()
    tab.goto(server.url)
    other = tab.get_by_role("group", name=question)
    expect(other.get_by_role("button", name="Confirm")).to_be_enabled()

    second.get_by_role("button", name="Confirm").dblclick()
    expect(second.get_by_role("status")).to_have_text("Confirmed.")
    expect(page.locator(".message-assistant").last).to_contain_text(f"Deleted task #{task_id} 'Buy milk'.")
    expect(task_row(page, "Buy milk")).to_have_count(0)
    expect(task_row(tab, "Buy milk")).to_have_count(0)  # live over /ws
    other.get_by_role("button", name="Confirm").click()  # the other tab's press comes too late
    expect(other.get_by_role("status")).to_contain_text("no longer pending")
    assert server.api("GET", f"/api/tasks/{task_id}").status_code == 404

    deadline = time.monotonic() + 10
    while not deleted_entries(server, task_id) and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(1.0)  # a second delete, if there were one, would be recorded by now
    assert len(deleted_entries(server, task_id)) == 1
    assert page.page_errors == [], page.page_errors
