"""Read a Dockerfile into stages of instructions (the image tests check what they say)."""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)


def parse(dockerfile: Path) -> tuple[dict[str, str], list[Stage]]:
    """(global ARG defaults, stages) with line continuations joined and comments dropped."""
    args: dict[str, str] = {}
    stages: list[Stage] = []
    logical = ""
    for raw in dockerfile.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            logical += line[:-1] + " "
            continue
        keyword, _, rest = (logical + line).partition(" ")
        logical = ""
        keyword = keyword.upper()
        if keyword == "FROM":
            words = rest.split()
            base = _expand(words[0], args)
            stages.append(Stage(base=base, name=words[2] if len(words) > 2 else None))
        elif keyword == "ARG" and not stages:
            name, _, default = rest.partition("=")
            args[name] = default
        else:
            stages[-1].instructions.append((keyword, rest.strip()))
    return args, stages


def _expand(text: str, variables: dict[str, str]) -> str:
    for name, value in variables.items():
        text = text.replace("${" + name + "}", value).replace("$" + name, value)
    return text


def env_pairs(rest: str) -> dict[str, str]:
    return dict(word.split("=", 1) for word in shlex.split(rest))


def exec_form(rest: str) -> list[str]:
    """The JSON array of an exec-form instruction (after any --options)."""
    start = rest.index("[")
    return list(json.loads(rest[start:]))
