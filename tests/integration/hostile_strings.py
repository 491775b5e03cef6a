"""Hostile strings for the bad-input suite: what no text field may answer with a 500."""

from __future__ import annotations

HOSTILE: dict[str, str] = {
    "nul": "a\x00b",
    "lone high surrogate": "bad \ud800 text",
    "lone low surrogate": "\udfff",
    "rtl override": "\u202etxt.exe\u202c",
    "rtl marks": "\u200fمرحبا\u200e \u2067x\u2069",
    "line separators": "a\u2028b\u2029c\x85d",
    "zero width": "a\u200bb\u200c\u200dc\ufeff",
    "ten thousand chars": "x" * 10_000,
    "sql": "'; DROP TABLE tasks; -- %_\\",
    "html": "<script>alert('x')</script><img src=x onerror=alert(1)>",
    "emoji": "👍🏽 family 👨‍👩‍👧 flag 🇩🇪",
    "combining": "e\u0301 a\u030a",
    "controls": "a\x01b\x1fc\x7fd",
    "newlines": "line one\nline two\r\n\ttabbed",
    "long unicode": "é" * 300,
    "template": "${jndi:ldap://x/a} {{7*7}} %s %n",
    "path": "../../etc/passwd",
    "empty": "",
    "blank": "   ",
    "json meta": '{"a": [1, null]}',
}
