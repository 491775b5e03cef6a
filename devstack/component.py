"""What every stack component reports about itself."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Protocol


@dataclass(frozen=True)
class ComponentStatus:
    name: str
    pid: int | None
    port: int | None
    version: str | None
    healthy: bool
    #: Free text for people: where it runs, why it is unhealthy, which binary.
    detail: str = ""
    #: True when the component is an external service this stack does not manage.
    external: bool = False

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


class Component(Protocol):
    name: str

    def up(self) -> None:
        """Start it when it is not running (idempotent); return once it is healthy."""

    def down(self) -> None:
        """Stop it when this stack started it; leave no process behind."""

    def status(self) -> ComponentStatus: ...
