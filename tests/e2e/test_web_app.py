"""The web app in a real browser against a real server: chat, the live task list, users kept apart."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.e2e.chat_page import ask

pytestmark = pytest.mark.e2e

Server = Any  # tests/e2e/conftest.py: Server (a running `todo-agent run`)

BUY_MILK = re.compile(r"buy milk", re.IGNORECASE)


def task_row(page: Any, title: re.Pattern[str] | str) -> Any:
    return page.locator("#task-list .task").filter(has_text=title)


def expect_live(page: Any, *, timeout: float = 10_000) -> None:
    expect(page.locator("#connection")).to_have_attribute("data-state", "live", timeout=timeout)


def no_page_errors(*pages: Any) -> None:
    for page in pages:
        assert page.page_errors == [], page.page_errors


def test_a_task_added_in_chat_appears_in_the_list_and_live_in_another_tab(
    server: Server, new_page: Any
) -> None:
    first = new_page(server.url)
    second = new_page(server.url)
    expect_live(first)
    expect_live(second)
    expect(second.locator("#task-empty")).to_be_visible()
    box = first.get_by_role("textbox", name="Message")
    box.type("first line")
    box.press("Shift+Enter")
    box.type("second line")
    expect(box).to_have_value("first line\nsecond line")  # Shift+Enter is a new line, not "send"
    expect(first.locator(".message")).to_have_count(0)

    reply = ask(first, "add buy milk tomorrow at 5pm")

    expect(reply.locator(".chip")).to_contain_text(re.compile(r"Added: buy milk — tomorrow 17:00", re.I))
    row = task_row(first, BUY_MILK)
    expect(row).to_have_count(1)
    expect(row.locator(".due")).to_have_text("tomorrow 17:00")
    live_row = task_row(second, BUY_MILK)
    expect(live_row).to_have_count(1)  # no reload: it came over /ws
    expect(live_row.locator(".due")).to_have_text("tomorrow 17:00")
    no_page_errors(first, second)


def test_another_user_never_sees_my_tasks(auth_server: Server, new_page: Any) -> None:
    alice = new_page(auth_server.url)
    expect(alice.get_by_role("heading", name="Sign in")).to_be_visible()
    alice.get_by_label("Access token").fill(auth_server.token("alice"))
    alice.get_by_role("button", name="Sign in").click()
    expect(alice.locator("#whoami")).to_have_text("alice")
    alice_elsewhere = new_page(f"{auth_server.url}/#access_token={auth_server.token('alice')}")
    bob = new_page(f"{auth_server.url}/#access_token={auth_server.token('bob')}")
    expect(bob.locator("#whoami")).to_have_text("bob")
    assert "access_token" not in bob.url  # the token left the address bar
    for page in (alice, alice_elsewhere, bob):
        expect_live(page)

    ask(alice, "add buy milk tomorrow at 5pm")

    expect(task_row(alice, BUY_MILK)).to_have_count(1)
    expect(task_row(alice_elsewhere, BUY_MILK)).to_have_count(1)
    time.sleep(2)  # ample time for a wrongly routed event to arrive
    expect(bob.locator("#task-list .task")).to_have_count(0)
    expect(bob.locator("#task-empty")).to_be_visible()
    bob.reload()
    expect_live(bob)
    expect(bob.locator("#task-empty")).to_be_visible()
    assert auth_server.api("GET", "/api/tasks", user="bob").json()["items"] == []
    no_page_errors(alice, alice_elsewhere, bob)


def test_completing_from_the_list_is_reflected_in_the_next_chat_answer(
    server: Server, new_page: Any, artifacts: Path
) -> None:
    for draft in (
        {"title": "Pay rent", "due": "yesterday 9am", "priority": "high"},
        {"title": "Call mum", "due": "sunday 6pm", "recurrence": "every sunday"},
        {"title": "Book the dentist", "tags": ["health"], "priority": "medium"},
    ):
        assert server.api("POST", "/api/tasks", json=draft).status_code == 201
    page = new_page(server.url)
    expect_live(page)
    ask(page, "add buy milk tomorrow at 5pm")
    expect(task_row(page, BUY_MILK)).to_have_count(1)
    expect(ask(page, "show my tasks").locator(".bubble")).to_contain_text(BUY_MILK)
    expect(task_row(page, "Pay rent")).to_have_class(re.compile("overdue"))
    page.screenshot(path=artifacts / "main-screen.png")

    task_row(page, BUY_MILK).get_by_role("checkbox").click()

    expect(task_row(page, BUY_MILK).get_by_role("checkbox")).to_be_checked()
    expect(task_row(page, BUY_MILK)).to_have_count(0)  # then it leaves "pending"
    answer = ask(page, "show my tasks").locator(".bubble")
    expect(answer).to_contain_text("Pay rent")
    expect(answer).not_to_contain_text(BUY_MILK)
    page.get_by_role("radio", name="Completed").check()
    expect(task_row(page, BUY_MILK)).to_have_count(1)
    expect(task_row(page, BUY_MILK).get_by_role("checkbox")).to_be_checked()
    no_page_errors(page)


def test_tasks_are_added_edited_inline_and_deleted_with_undo(server: Server, new_page: Any) -> None:
    page = new_page(server.url)
    other = new_page(server.url)
    expect_live(page)
    page.get_by_label("New task").fill("Water the plants")
    page.get_by_label("Due (optional)").fill("tomorrow 8am")
    page.get_by_role("button", name="Add", exact=True).click()
    expect(task_row(page, "Water the plants").locator(".due")).to_have_text("tomorrow 08:00")
    task_id = task_row(page, "Water the plants").get_attribute("data-id")
    row = page.locator(f'#task-list .task[data-id="{task_id}"]')  # stays put while its text is edited

    row.get_by_role("button", name="Edit title: Water the plants").click()
    title = row.get_by_role("textbox", name="Task title")
    title.fill("Water the orchids")
    title.press("Enter")
    expect(row.locator(".task-title")).to_have_text("Water the orchids")
    row.locator(".due").click()
    due = row.get_by_role("textbox", name=re.compile("Due time"))
    due.fill("tomorrow 19:30")
    due.press("Enter")
    expect(row.locator(".due")).to_have_text("tomorrow 19:30")
    expect(task_row(other, "Water the orchids").locator(".due")).to_have_text("tomorrow 19:30")

    row.get_by_role("button", name="Delete Water the orchids").click()
    expect(row).to_have_count(0)
    deleted = page.locator("#toasts .toast", has_text="Deleted “Water the orchids”.")
    deleted.get_by_role("button", name="Undo").click()  # every write has its undo toast: this one
    expect(row).to_have_count(1)
    expect(row.get_by_role("checkbox")).to_be_focused()

    row.get_by_role("button", name="Delete Water the orchids").click()
    expect(task_row(other, "Water the orchids")).to_have_count(0)  # deleted at once; undo restores it
    assert server.api("GET", f"/api/tasks/{task_id}").status_code == 404
    no_page_errors(page, other)


# Records browser notifications instead of showing them; permission counts as granted.
FAKE_NOTIFICATIONS = """
window.shownNotifications = [];
window.Notification = class {
  static permission = "granted";
  static requestPermission() { return Promise.resolve("granted"); }
  constructor(title, options) { window.shownNotifications.push({ title, ...options }); }
};
"""


def test_a_due_reminder_shows_as_a_toast_and_a_browser_notification(server: Server, new_page: Any) -> None:
    page = new_page(server.url, init_script=FAKE_NOTIFICATIONS)
    expect_live(page)
    task = server.api("POST", "/api/tasks", json={"title": "Stretch", "due": "tomorrow 9am"}).json()
    soon = (datetime.now(UTC) + timedelta(seconds=3)).isoformat()
    assert server.api("PUT", f"/api/tasks/{task['id']}/reminder", json={"at": soon}).status_code == 200

    toast = page.locator("#toasts .toast", has_text="Reminder")
    expect(toast).to_contain_text("Stretch — Due tomorrow 09:00", timeout=20_000)
    shown = page.evaluate("window.shownNotifications")
    assert [n["title"] for n in shown] == ["Reminder: Stretch"]
    no_page_errors(page)


def test_the_page_recovers_after_a_server_restart_without_reload(server: Server, new_page: Any) -> None:
    page = new_page(server.url)
    expect_live(page)
    server.stop()
    expect(page.locator("#connection")).to_have_attribute("data-state", "reconnecting")
    expect(page.locator("#connection")).to_have_text("Reconnecting…")
    server.start()
    expect_live(page, timeout=20_000)  # the next reconnect attempt is at most 10 s away
    assert server.api("POST", "/api/tasks", json={"title": "Added after the restart"}).status_code == 201
    expect(task_row(page, "Added after the restart")).to_have_count(1)
    ask(page, "add buy milk tomorrow at 5pm")
    expect(task_row(page, BUY_MILK)).to_have_count(1)
    no_page_errors(page)


def test_on_a_phone_chat_and_tasks_are_tabs(server: Server, new_page: Any, artifacts: Path) -> None:
    rent = {"title": "Pay rent", "due": "friday 9am"}
    assert server.api("POST", "/api/tasks", json=rent).status_code == 201
    page = new_page(server.url, width=360, height=740)
    expect_live(page)
    assert page.evaluate("document.documentElement.scrollWidth") <= 360
    expect(page.get_by_role("textbox", name="Message")).to_be_visible()
    expect(page.locator("#tasks-panel")).to_be_hidden()
    ask(page, "add buy milk tomorrow at 5pm")

    page.get_by_role("tab", name=re.compile("Tasks")).click()
    expect(page.locator("#chat-panel")).to_be_hidden()
    expect(task_row(page, BUY_MILK)).to_be_visible()
    expect(page.get_by_role("tab", name=re.compile("Tasks"))).to_contain_text("2")
    assert page.evaluate("document.documentElement.scrollWidth") <= 360
    page.screenshot(path=artifacts / "main-screen-phone.png")
    no_page_errors(page)
