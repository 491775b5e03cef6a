"""Resolved copies of ``dapr-components/`` for a given stack (tests, non-default ports).

The committed files hold values matching the devstack defaults, so ``dapr run -f .`` works
as is. :func:`render` writes a copy with the brokers (and other values) of another stack, and
returns the environment the daprd processes need (secrets come from the environment through
the ``secretstores.local.env`` store: the state store's connection string is the env var
:data:`STATESTORE_URL_ENV`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from devstack.config import repo_root
from devstack.postgres import libpq_url

SOURCE_DIR = repo_root() / "dapr-components"
DEFAULT_BROKERS = "127.0.0.1:59092"
DEFAULT_OTLP_GRPC = '"127.0.0.1:54317"'
DEFAULT_TABLE_PREFIX = 'value: "dapr_"'
STATESTORE_URL_ENV = "TODO_STATESTORE_PG_URL"
CONFIG_FILE = "config.yaml"


@dataclass(frozen=True)
class RenderedResources:
    """A folder to pass as daprd ``--resources-path`` plus what daprd needs with it."""

    path: Path
    #: The Dapr Configuration file (``--config``).
    config: Path
    #: Environment variables daprd must get (the secrets the components reference).
    env: Mapping[str, str] = field(default_factory=dict)


def render(
    target_dir: Path,
    *,
    kafka_brokers: str,
    pg_url: str,
    table_prefix: str = "dapr_",
    subscriptions: bool = True,
    extra: Mapping[str, str] | None = None,
    otlp_grpc_address: str | None = None,
) -> RenderedResources:
    """Write the components for a stack at ``kafka_brokers`` / ``pg_url`` into ``target_dir``.

    ``pg_url`` may be a SQLAlchemy (``postgresql+psycopg://``) or libpq URL. With
    ``subscriptions=False`` the declarative subscriptions are left out (apps then subscribe
    programmatically). ``extra`` maps file names to additional YAML documents to write.
    The Dapr Configuration is copied as ``config.yaml`` too (daprd's resource loader skips
    documents of kind Configuration, as with the committed folder). ``otlp_grpc_address``
    replaces the devstack Jaeger's OTLP address daprd sends its spans to.
    """
    target_dir.mkdir(parents=True, exist_ok=True)
    for src in sorted(SOURCE_DIR.glob("*.yaml")):
        if not subscriptions and src.name == "subscriptions.yaml":
            continue
        text = src.read_text().replace(DEFAULT_BROKERS, kafka_brokers)
        text = text.replace(DEFAULT_TABLE_PREFIX, f'value: "{table_prefix}"')
        if otlp_grpc_address:
            text = text.replace(DEFAULT_OTLP_GRPC, f'"{otlp_grpc_address}"')
        (target_dir / src.name).write_text(text)
    for name, text in (extra or {}).items():
        (target_dir / name).write_text(text)
    config = target_dir / CONFIG_FILE
    return RenderedResources(path=target_dir, config=config, env={STATESTORE_URL_ENV: libpq_url(pg_url)})


def subscriptions_for(app_ids: Mapping[str, str]) -> str:
    """The committed declarative subscriptions (``subscriptions.yaml``) for other app ids.

    ``app_ids`` maps a committed app id (``todo-api``, ``todo-recurrence``, ...) to the id to use
    instead; subscriptions scoped to none of them are left out. Tests and benchmarks run their
    own app ids on a shared stack, and this keeps them on the very subscriptions that ship.
    """
    import yaml

    kept = []
    for document in yaml.safe_load_all((SOURCE_DIR / "subscriptions.yaml").read_text()):
        scopes = [app_ids[scope] for scope in document.get("scopes", []) if scope in app_ids]
        if scopes:
            kept.append({**document, "scopes": scopes})
    text: str = yaml.safe_dump_all(kept, sort_keys=False)
    return text
