"""What the e2e tests do in the chat panel: ask and wait for the whole answer."""

from __future__ import annotations

import re
from typing import Any

from playwright.sync_api import expect


def ask(page: Any, text: str) -> Any:
    """Send ``text`` in the chat and wait for the whole streamed answer; returns its element."""
    replies = page.locator(".message-assistant")
    before = replies.count()
    box = page.get_by_role("textbox", name="Message")
    box.fill(text)
    box.press("Enter")
    expect(replies).to_have_count(before + 1)
    reply = replies.nth(before)  # this answer, even after more messages follow it
    expect(reply).not_to_have_attribute("aria-busy", "true", timeout=30_000)
    expect(reply).not_to_have_class(re.compile("message-error"))
    return reply
