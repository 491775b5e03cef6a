"""The web app's lists, subtasks, batch actions, undo, history and safe retries, in a real browser
against a real server (the REST API of issue 16 underneath)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

pytestmark = pytest.mark.e2e

Server = Any  # tests/e2e/conftest.py: Server (a running `todo-agent run`)


def expect_live(page: Any) -> None:
    expect(page.locator("#connection")).to_have_attribute("data-state", "live")


def open_tasks(new_page: Any, server: Server) -> Any:
    page = new_page(server.url)
    expect_live(page)
    expect(page.locator("#tasks-heading")).to_have_text("Inbox")
    return page


def row(page: Any, task_id: int) -> Any:
    return page.locator(f'#task-list .task[data-id="{task_id}"]')


def titled(page: Any, title: str) -> Any:
    """The row whose own title is ``title`` (a parent's row also contains its subtasks' text)."""
    return page.locator("#task-list .task").filter(
        has=page.locator(":scope > .task-body > .task-title", has_text=re.compile(f"^{re.escape(title)}$"))
    )


def add(server: Server, **draft: Any) -> dict[str, Any]:
    response = server.api("POST", "/api/tasks", json=draft)
    assert response.status_code == 201, response.text
    task: dict[str, Any] = response.json()
    return task


def list_names(server: Server) -> list[str]:
    return [item["name"] for item in server.api("GET", "/api/lists").json()["items"]]


def no_page_errors(*pages: Any) -> None:
    for page in pages:
        assert page.page_errors == [], page.page_errors


def test_lists_in_the_sidebar_filter_the_tasks_and_new_tasks_go_to_the_chosen_list(
    server: Server, new_page: Any
) -> None:
    add(server, title="Inbox thing")
    page = open_tasks(new_page, server)
    other = open_tasks(new_page, server)
    nav = page.get_by_role("navigation", name="Lists")
    expect(nav.locator(".list-open").first).to_contain_text("Inbox")

    page.get_by_label("New list").fill("Groceries")
    page.get_by_role("button", name="Create list").click()

    expect(page.locator("#tasks-heading")).to_have_text("Groceries")
    expect(nav.get_by_role("button", name=re.compile("^Groceries"))).to_have_attribute("aria-current", "true")
    expect(titled(page, "Inbox thing")).to_have_count(0)  # only the chosen list's tasks
    page.get_by_label("New task").fill("Buy milk")
    page.get_by_role("button", name="Add", exact=True).click()
    expect(titled(page, "Buy milk")).to_have_count(1)
    milk = [t for t in server.api("GET", "/api/tasks?list=Groceries").json()["items"]]
    assert [t["title"] for t in milk] == ["Buy milk"]
    # The other tab learns of the new list live and counts its open task.
    other_nav = other.get_by_role("navigation", name="Lists")
    expect(other_nav.get_by_role("button", name=re.compile("^Groceries"))).to_contain_text("1")

    nav.get_by_role("button", name=re.compile("^Inbox")).click()
    expect(page.locator("#tasks-heading")).to_have_text("Inbox")
    expect(titled(page, "Inbox thing")).to_have_count(1)
    expect(titled(page, "Buy milk")).to_have_count(0)

    page.get_by_role("button", name="Rename Groceries").click()
    name = page.get_by_role("textbox", name="New name for Groceries")
    name.fill("Shopping")
    name.press("Enter")
    expect(nav.get_by_role("button", name=re.compile("^Shopping"))).to_be_visible()
    expect(other_nav.get_by_role("button", name=re.compile("^Shopping"))).to_be_visible()
    assert list_names(server) == ["Inbox", "Shopping"]

    page.get_by_role("button", name="Archive Shopping").click()
    expect(nav.get_by_role("button", name=re.compile("^Shopping"))).to_have_count(0)
    page.locator("#toasts").get_by_role("button", name="Undo").last.click()
    expect(nav.get_by_role("button", name=re.compile("^Shopping"))).to_be_visible()
    no_page_errors(page, other)


def test_archived_lists_wait_in_a_collapsed_group_and_are_unarchived_from_the_keyboard(
    server: Server, new_page: Any
) -> None:
    made = server.api("POST", "/api/lists", json={"name": "Garden"})
    assert made.status_code == 201, made.text
    add(server, title="Weed beds", list="Garden")
    page = open_tasks(new_page, server)
    nav = page.get_by_role("navigation", name="Lists")
    page.get_by_role("button", name="Archive Garden").click()
    expect(nav.get_by_role("button", name=re.compile("^Garden"))).to_have_count(0)  # collapsed
    summary = nav.locator("summary", has_text="Archived (1)")
    expect(summary).to_be_visible()
    assert server.api("GET", "/api/tasks").json()["items"] == []  # left out of the default listing

    summary.focus()
    page.keyboard.press("Enter")  # opens the group
    garden = nav.get_by_role("button", name=re.compile("^Garden"))
    expect(garden).to_be_visible()
    page.keyboard.press("Tab")
    expect(garden).to_be_focused()
    page.keyboard.press("Enter")  # an archived list still shows its tasks when chosen
    expect(page.locator("#tasks-heading")).to_have_text("Garden")
    expect(titled(page, "Weed beds")).to_have_count(1)
    page.keyboard.press("Tab")
    expect(page.get_by_role("button", name="Unarchive Garden")).to_be_focused()
    page.keyboard.press("Enter")

    expect(summary).to_have_count(0)
    expect(
        nav.locator(".list-item:not(.archived)").get_by_role("button", name=re.compile("^Garden"))
    ).to_be_focused()
    assert list_names(server) == ["Inbox", "Garden"]
    assert [t["title"] for t in server.api("GET", "/api/tasks").json()["items"]] == ["Weed beds"]
    page.locator("#toasts").get_by_role("button", name="Undo").last.click()  # archives it again
    expect(nav.locator("summary", has_text="Archived (1)")).to_be_visible()
    assert list_names(server) == ["Inbox"]
    no_page_errors(page)


@pytest.mark.parametrize(
    ("choice", "milk_left_in_inbox"), [("Move them to Inbox", True), ("Delete them too", False)]
)
def test_deleting_a_list_asks_what_happens_to_its_tasks(
    server: Server, new_page: Any, choice: str, milk_left_in_inbox: bool
) -> None:
    assert server.api("POST", "/api/lists", json={"name": "Groceries"}).status_code == 201
    milk = add(server, title="Buy milk", list="Groceries")
    page = open_tasks(new_page, server)

    delete = page.get_by_role("button", name="Delete Groceries")
    delete.focus()
    delete.press("Enter")  # the keyboard opens it, Escape closes it and changes nothing
    dialog = page.get_by_role("dialog", name="Delete “Groceries”?")
    expect(dialog.get_by_role("radio", name="Move them to Inbox")).to_be_focused()
    page.keyboard.press("Escape")
    expect(dialog).to_have_count(0)
    expect(delete).to_be_focused()
    assert list_names(server) == ["Inbox", "Groceries"]
    delete.click()
    expect(dialog).to_contain_text("It has 1 open task. What should happen to its tasks?")
    dialog.get_by_role("radio", name=choice).check()
    dialog.get_by_role("button", name="Delete list").click()

    expect(dialog).to_have_count(0)
    expect(page.get_by_role("navigation", name="Lists").locator(".list-item")).to_have_count(1)
    assert list_names(server) == ["Inbox"]
    found = server.api("GET", f"/api/tasks/{milk['id']}")
    assert found.status_code == (200 if milk_left_in_inbox else 404)
    expect(titled(page, "Buy milk")).to_have_count(1 if milk_left_in_inbox else 0)
    no_page_errors(page)


def test_subtasks_nest_under_their_parent_collapse_and_completing_the_parent_offers_them_too(
    server: Server, new_page: Any, artifacts: Path
) -> None:
    trip = add(server, title="Trip")
    add(server, title="Book hotel", parent_id=trip["id"])
    page = open_tasks(new_page, server)
    parent = row(page, trip["id"])
    expect(parent.locator(":scope > .subtasks > .task")).to_have_count(1)

    parent.get_by_role("button", name="Add a subtask to Trip").click()
    box = page.get_by_role("textbox", name="New subtask of Trip")
    box.fill("Pack passport")
    box.press("Enter")
    expect(parent.locator(":scope > .subtasks > .task")).to_have_count(2)
    expect(parent.locator(":scope > .subtasks")).to_contain_text("Pack passport")
    box.press("Escape")
    hotel = titled(page, "Book hotel")
    hotel.get_by_role("button", name="Add a subtask to Book hotel").click()  # nests deeper too
    deeper = page.get_by_role("textbox", name="New subtask of Book hotel")
    deeper.fill("Pick a room")
    deeper.press("Enter")
    expect(hotel.locator(":scope > .subtasks > .task")).to_contain_text("Pick a room")
    page.screenshot(path=artifacts / "subtasks.png")
    deeper.press("Escape")
    kids = server.api("GET", f"/api/tasks?parent_id={trip['id']}").json()["items"]
    assert sorted(t["title"] for t in kids) == ["Book hotel", "Pack passport"]

    toggle = parent.get_by_role("button", name="Hide 2 subtasks of Trip")
    toggle.click()
    expect(parent.locator(":scope > .subtasks")).to_be_hidden()
    expect(parent.get_by_role("button", name="Show 2 subtasks of Trip")).to_have_attribute(
        "aria-expanded", "false"
    )
    parent.get_by_role("button", name="Show 2 subtasks of Trip").press("Enter")  # the keyboard works too
    expect(parent.locator(":scope > .subtasks")).to_be_visible()

    parent.get_by_role("checkbox", name="Complete: Trip").click()
    dialog = page.get_by_role("dialog", name="Complete its subtasks too?")
    expect(dialog).to_contain_text(re.compile(r"has \d open subtasks"))  # the server's own words
    assert server.api("GET", f"/api/tasks/{trip['id']}").json()["completed"] is False
    dialog.get_by_role("button", name="Complete them too").click()

    expect(parent).to_have_count(0)  # everything left "pending"
    assert server.api("GET", f"/api/tasks?parent_id={trip['id']}&status=pending").json()["items"] == []
    assert server.api("GET", f"/api/tasks/{trip['id']}").json()["completed"] is True
    no_page_errors(page)


def test_selected_tasks_are_completed_moved_tagged_and_deleted_in_one_batch_each(
    server: Server, new_page: Any, artifacts: Path
) -> None:
    assert server.api("POST", "/api/lists", json={"name": "Work"}).status_code == 201
    ids = [add(server, title=f"Task {n}")["id"] for n in range(1, 5)]
    page = open_tasks(new_page, server)
    requests: list[dict[str, Any]] = []
    page.on(
        "request",
        lambda r: (
            requests.append(json.loads(r.post_data or "{}")) if r.url.endswith("/api/tasks/bulk") else None
        ),
    )
    page.get_by_role("button", name="Select", exact=True).click()
    bar = page.get_by_role("group", name="Batch actions")
    expect(bar).to_be_visible()

    page.get_by_role("checkbox", name="Select Task 1").check()
    page.get_by_role("checkbox", name="Select Task 2").check()
    expect(bar).to_contain_text("2 selected")
    page.screenshot(path=artifacts / "batch-selection.png")
    bar.get_by_role("button", name="Tag").click()  # no tag typed yet: nothing is sent
    bar.get_by_label("Tag for selected tasks").fill("home")
    bar.get_by_role("button", name="Tag").click()
    expect(row(page, ids[0]).locator(".tag")).to_have_text("#home")
    expect(row(page, ids[1]).locator(".tag")).to_have_text("#home")

    page.get_by_role("checkbox", name="Select Task 1").check()
    page.get_by_role("checkbox", name="Select Task 3").check()
    bar.get_by_label("Move selected tasks to list").select_option(label="Work")
    bar.get_by_role("button", name="Move").click()
    expect(row(page, ids[0])).to_have_count(0)
    expect(row(page, ids[2])).to_have_count(0)
    work = server.api("GET", "/api/tasks?list=Work").json()["items"]
    assert sorted(t["id"] for t in work) == [ids[0], ids[2]]

    page.get_by_role("checkbox", name="Select Task 2").check()
    bar.get_by_role("button", name="Complete").click()
    expect(row(page, ids[1])).to_have_count(0)
    assert server.api("GET", f"/api/tasks/{ids[1]}").json()["completed"] is True

    page.get_by_role("checkbox", name="Select Task 4").check()
    bar.get_by_role("button", name="Delete").click()
    expect(row(page, ids[3])).to_have_count(0)
    assert server.api("GET", f"/api/tasks/{ids[3]}").status_code == 404

    assert [r["action"] for r in requests] == ["tag", "move", "complete", "delete"]
    assert [sorted(r["task_ids"]) for r in requests] == [ids[:2], [ids[0], ids[2]], [ids[1]], [ids[3]]]
    no_page_errors(page)


def test_a_batch_over_the_threshold_asks_for_confirmation_with_the_count(
    server: Server, new_page: Any
) -> None:
    drafts = [{"title": f"Chore {n}"} for n in range(25)]
    assert server.api("POST", "/api/tasks/batch", json={"tasks": drafts}).status_code == 201
    page = open_tasks(new_page, server)
    expect(page.locator("#task-list .task")).to_have_count(25)
    page.get_by_role("button", name="Select", exact=True).click()
    bar = page.get_by_role("group", name="Batch actions")
    bar.get_by_role("button", name="Select all in view").click()
    expect(bar).to_contain_text("All 25 tasks in this view")

    bar.get_by_role("button", name="Complete").click()
    dialog = page.get_by_role("dialog", name="Complete 25 tasks?")
    dialog.get_by_role("button", name="Cancel").click()
    expect(dialog).to_have_count(0)
    assert len(server.api("GET", "/api/tasks?limit=100").json()["items"]) == 25  # nothing written

    bar.get_by_role("button", name="Complete").click()
    page.get_by_role("dialog", name="Complete 25 tasks?").get_by_role("button", name="Complete 25").click()
    expect(page.locator("#task-list .task")).to_have_count(0)
    assert server.api("GET", "/api/tasks?limit=100").json()["items"] == []

    page.locator("#toasts").get_by_role("button", name="Undo").last.click()  # the whole batch comes back
    expect(page.locator("#task-list .task")).to_have_count(25)
    assert len(server.api("GET", "/api/tasks?limit=100").json()["items"]) == 25
    no_page_errors(page)


def test_every_write_offers_an_undo_and_a_refused_undo_says_why(server: Server, new_page: Any) -> None:
    page = open_tasks(new_page, server)
    toasts = page.locator("#toasts")
    page.get_by_label("New task").fill("Water the plants")
    page.get_by_role("button", name="Add", exact=True).click()
    expect(toasts).to_contain_text("Added “Water the plants”.")
    toasts.get_by_role("button", name="Undo").last.click()
    expect(titled(page, "Water the plants")).to_have_count(0)
    assert server.api("GET", "/api/tasks").json()["items"] == []
    toasts.get_by_role("button", name="Redo").last.click()  # undo of the undo
    expect(titled(page, "Water the plants")).to_have_count(1)

    task = server.api("GET", "/api/tasks").json()["items"][0]
    row(page, task["id"]).get_by_role("button", name="Edit title: Water the plants").click()
    title = page.get_by_role("textbox", name="Task title")
    title.fill("Water the orchids")
    title.press("Enter")
    expect(toasts).to_contain_text("Changed “Water the orchids”.")
    # Someone else changes the task before the undo: the server refuses, the page says why.
    changed = server.api("PATCH", f"/api/tasks/{task['id']}", json={"title": "Water the cactus"})
    assert changed.status_code == 200
    expect(row(page, task["id"]).locator(".task-title")).to_have_text("Water the cactus")
    toasts.locator(".toast", has_text="Changed “Water the orchids”.").get_by_role(
        "button", name="Undo"
    ).click()
    error = toasts.locator('.toast[data-kind="error"]')
    expect(error).to_contain_text("Could not undo")
    expect(error).to_contain_text(re.compile("changed since|changed", re.I))
    assert server.api("GET", f"/api/tasks/{task['id']}").json()["title"] == "Water the cactus"
    no_page_errors(page)


def test_the_completed_view_shows_history_by_range(server: Server, new_page: Any) -> None:
    done = add(server, title="Filed taxes")
    assert server.api("POST", f"/api/tasks/{done['id']}/complete").status_code == 200
    add(server, title="Still open")
    page = open_tasks(new_page, server)
    page.get_by_role("radio", name="Completed").check()
    expect(titled(page, "Filed taxes")).to_have_count(1)
    expect(titled(page, "Filed taxes").locator(".completed-at")).to_contain_text("Completed today")
    expect(titled(page, "Still open")).to_have_count(0)
    since = page.get_by_label("Show completed")
    since.select_option(label="today")
    expect(titled(page, "Filed taxes")).to_have_count(1)
    queries: list[str] = []
    page.on("request", lambda r: queries.append(r.url) if "/api/tasks?" in r.url else None)
    since.select_option(label="in the last 7 days")
    expect(titled(page, "Filed taxes")).to_have_count(1)
    assert any("completed_after=" in q and "status=completed" in q for q in queries), queries
    no_page_errors(page)


def test_a_write_whose_reply_was_lost_is_retried_with_the_same_key_and_written_once(
    server: Server, new_page: Any
) -> None:
    page = open_tasks(new_page, server)
    keys: list[str] = []

    def lose_first_reply(route: Any) -> None:
        keys.append(route.request.headers.get("idempotency-key", ""))
        if len(keys) == 1:
            route.fetch()  # the server writes ...
            route.abort("connectionreset")  # ... and the reply never reaches the page
        else:
            route.continue_()

    page.route(
        "**/api/tasks",
        lambda route: lose_first_reply(route) if route.request.method == "POST" else route.continue_(),
    )
    page.get_by_label("New task").fill("Pay rent")
    page.get_by_role("button", name="Add", exact=True).click()

    expect(page.locator("#toasts")).to_contain_text("Added “Pay rent”.")  # the retry's answer
    expect(titled(page, "Pay rent")).to_have_count(1)
    expect(page.locator("#add-error")).to_be_hidden()
    assert len(keys) == 2 and keys[0] == keys[1] and keys[0], keys
    assert [t["title"] for t in server.api("GET", "/api/tasks").json()["items"]] == ["Pay rent"]
    no_page_errors(page)


def test_a_batch_from_another_tab_and_a_list_change_arrive_live(server: Server, new_page: Any) -> None:
    ids = [add(server, title=f"Errand {n}")["id"] for n in range(3)]
    page = open_tasks(new_page, server)
    expect(page.locator("#task-list .task")).to_have_count(3)

    body = {"action": "complete", "task_ids": ids[:2]}
    assert server.api("POST", "/api/tasks/bulk", json=body).status_code == 200
    expect(page.locator("#task-list .task")).to_have_count(1)
    assert server.api("POST", "/api/lists", json={"name": "Garden"}).status_code == 201
    nav = page.get_by_role("navigation", name="Lists")
    expect(nav.get_by_role("button", name=re.compile("^Garden"))).to_be_visible()
    move = {"action": "move", "task_ids": [ids[2]], "list": "Garden"}
    assert server.api("POST", "/api/tasks/bulk", json=move).status_code == 200
    expect(page.locator("#task-list .task")).to_have_count(0)
    expect(nav.get_by_role("button", name=re.compile("^Garden"))).to_contain_text("1")
    no_page_errors(page)
