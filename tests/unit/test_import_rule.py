"""The import rule of ARCHITECTURE.md, read from the source (AST, nothing imported):

- ``tasks`` (the domain) imports none of the other packages;
- no product package imports ``devstack`` (dev tooling only);
- the parts (``mcp_server``, ``agent``, ``events``) do not import ``todo_agent`` (the composition root).

Imports that break a rule today are listed below, each as (file, imported module). The list can
only shrink: an import not on it fails, and so does an entry that no longer occurs.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path
from typing import Final

ROOT: Final = Path(__file__).resolve().parents[2]
PRODUCT: Final = ("tasks", "mcp_server", "agent", "events", "todo_agent")
PARTS: Final = ("mcp_server", "agent", "events")

#: Product code that still imports the dev stack: none (the list stays, so the rule reads the same).
DEVSTACK_TODAY: Final[set[tuple[str, str]]] = set()

#: Parts that still reach back up into the composition root: none (the list stays, so the rule
#: reads the same).
ROOT_TODAY: Final[set[tuple[str, str]]] = set()


def imports_of(package: str) -> Iterator[tuple[str, str]]:
    """(file relative to the checkout, imported module) for every import in ``package``: at any
    depth (in functions, under ``TYPE_CHECKING``), relative imports resolved."""
    for path in sorted((ROOT / package).rglob("*.py")):
        relative = path.relative_to(ROOT)
        here = list(relative.with_suffix("").parts)
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    yield relative.as_posix(), alias.name
            elif isinstance(node, ast.ImportFrom):
                base = here[: len(here) - node.level] if node.level else []
                module = ".".join([*base, *([node.module] if node.module else [])])
                yield relative.as_posix(), module


def reaching(packages: tuple[str, ...], targets: tuple[str, ...]) -> set[tuple[str, str]]:
    """The imports in ``packages`` of a module in one of ``targets``."""
    return {
        (file, module)
        for package in packages
        for file, module in imports_of(package)
        if module.split(".")[0] in targets
    }


def test_the_import_reader_sees_imports_at_every_depth() -> None:
    found = set(imports_of("agent")) | set(imports_of("tasks"))
    assert ("tasks/unit_of_work.py", "tasks.repositories") in found
    assert ("agent/wiring.py", "agent.dapr_state") in found  # imported inside a function
    assert ("agent/wiring.py", "dapr.aio.clients") in found  # imported under TYPE_CHECKING


def test_the_domain_imports_no_other_part() -> None:
    assert reaching(("tasks",), ("mcp_server", "agent", "events", "todo_agent", "devstack")) == set()


def test_product_code_imports_the_dev_stack_only_where_it_still_did() -> None:
    found = reaching(PRODUCT, ("devstack",))
    assert found - DEVSTACK_TODAY == set(), "product code must not import devstack (dev tooling only)"
    assert DEVSTACK_TODAY - found == set(), "these imports are gone: remove them from DEVSTACK_TODAY"


def test_parts_import_the_composition_root_only_where_they_still_did() -> None:
    found = reaching(PARTS, ("todo_agent",))
    assert found - ROOT_TODAY == set(), "parts must not import todo_agent: take what you need as arguments"
    assert ROOT_TODAY - found == set(), "these imports are gone: remove them from ROOT_TODAY"
