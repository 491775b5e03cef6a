"""Where the local stack keeps its state and which ports it uses (all overridable by env)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from devstack.versions import DAPR_VERSION, JAEGER_VERSION, KAFKA_VERSION, KEYCLOAK_VERSION

#: Topics the application uses; each has a dead-letter topic named ``<topic>-dlq``.
TOPICS: tuple[str, ...] = ("task-events", "task-updates", "reminders")
TOPIC_PARTITIONS = 3


def all_topics() -> list[str]:
    """Every topic the stack creates, dead-letter topics included."""
    return [*TOPICS, *(f"{t}-dlq" for t in TOPICS)]


def repo_root() -> Path:
    """The checkout this package lives in (``devstack/`` is at its top level)."""
    return Path(__file__).resolve().parent.parent


def cache_root() -> Path:
    """``${XDG_CACHE_HOME:-$HOME/.cache}/todo-agent``: built binaries and jars, by version."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "todo-agent"


def _env_int(env: dict[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise ValueError(f"{name} must be a port number, got {raw!r}") from exc


@dataclass(frozen=True)
class StackConfig:
    """Everything the stack needs to know; build it with :meth:`from_env`."""

    state_dir: Path
    pg_port: int = 55432
    kafka_port: int = 59092
    kafka_controller_port: int = 59093
    scheduler_port: int = 50006
    scheduler_healthz_port: int = 58081
    scheduler_etcd_client_port: int = 52379
    scheduler_etcd_peer_port: int = 52380
    keycloak_port: int = 58180
    keycloak_management_port: int = 58190
    jaeger_otlp_grpc_port: int = 54317
    jaeger_otlp_http_port: int = 54318
    jaeger_ui_port: int = 56686
    jaeger_query_grpc_port: int = 56685
    jaeger_health_port: int = 53133
    #: An existing PostgreSQL (``TODO_TEST_DATABASE_URL``): when set, none is started.
    external_database_url: str | None = None
    #: An existing Kafka (``TODO_KAFKA_BROKERS``, comma separated): when set, none is started.
    external_kafka_brokers: str | None = None
    #: The address PostgreSQL and Kafka listen on besides loopback (``TODO_STACK_LISTEN_HOST``),
    #: e.g. the local cluster's bridge address so its pods reach them; Kafka advertises it.
    listen_host: str = "127.0.0.1"
    dapr_version: str = DAPR_VERSION
    kafka_version: str = KAFKA_VERSION
    keycloak_version: str = KEYCLOAK_VERSION
    jaeger_version: str = JAEGER_VERSION
    cache_dir: Path = field(default_factory=cache_root)

    def fixed_ports(self) -> list[int]:
        """Every TCP port the stack's components listen on (the ``*_port`` settings)."""
        return [v for k, v in vars(self).items() if k.endswith("_port") and isinstance(v, int)]

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> StackConfig:
        e = dict(os.environ if env is None else env)
        state = Path(e.get("TODO_STACK_DIR") or repo_root() / ".devstack").resolve()
        return cls(
            state_dir=state,
            pg_port=_env_int(e, "TODO_STACK_PG_PORT", 55432),
            kafka_port=_env_int(e, "TODO_STACK_KAFKA_PORT", 59092),
            kafka_controller_port=_env_int(e, "TODO_STACK_KAFKA_CONTROLLER_PORT", 59093),
            scheduler_port=_env_int(e, "TODO_STACK_SCHEDULER_PORT", 50006),
            scheduler_healthz_port=_env_int(e, "TODO_STACK_SCHEDULER_HEALTHZ_PORT", 58081),
            scheduler_etcd_client_port=_env_int(e, "TODO_STACK_SCHEDULER_ETCD_PORT", 52379),
            scheduler_etcd_peer_port=_env_int(e, "TODO_STACK_SCHEDULER_ETCD_PEER_PORT", 52380),
            keycloak_port=_env_int(e, "TODO_STACK_KEYCLOAK_PORT", 58180),
            keycloak_management_port=_env_int(e, "TODO_STACK_KEYCLOAK_MANAGEMENT_PORT", 58190),
            jaeger_otlp_grpc_port=_env_int(e, "TODO_STACK_JAEGER_OTLP_GRPC_PORT", 54317),
            jaeger_otlp_http_port=_env_int(e, "TODO_STACK_JAEGER_OTLP_HTTP_PORT", 54318),
            jaeger_ui_port=_env_int(e, "TODO_STACK_JAEGER_UI_PORT", 56686),
            jaeger_query_grpc_port=_env_int(e, "TODO_STACK_JAEGER_QUERY_GRPC_PORT", 56685),
            jaeger_health_port=_env_int(e, "TODO_STACK_JAEGER_HEALTH_PORT", 53133),
            external_database_url=e.get("TODO_TEST_DATABASE_URL") or None,
            external_kafka_brokers=e.get("TODO_KAFKA_BROKERS") or None,
            listen_host=e.get("TODO_STACK_LISTEN_HOST") or "127.0.0.1",
        )

    # -- derived locations -------------------------------------------------------------
    @property
    def log_dir(self) -> Path:
        return self.state_dir / "logs"

    @property
    def run_dir(self) -> Path:
        """Pid files of the processes this stack started."""
        return self.state_dir / "run"

    @property
    def dapr_cache(self) -> Path:
        return self.cache_dir / "dapr" / self.dapr_version

    @property
    def jaeger_cache(self) -> Path:
        return self.cache_dir / "jaeger" / self.jaeger_version

    @property
    def kafka_libs(self) -> Path:
        return self.cache_dir / "kafka" / self.kafka_version / "libs"

    @property
    def keycloak_home(self) -> Path:
        return self.cache_dir / "keycloak" / self.keycloak_version / f"keycloak-{self.keycloak_version}"

    # -- addresses -----------------------------------------------------------------------
    @property
    def kafka_brokers(self) -> str:
        return self.external_kafka_brokers or f"{self.listen_host}:{self.kafka_port}"

    @property
    def scheduler_address(self) -> str:
        return f"127.0.0.1:{self.scheduler_port}"

    @property
    def database_url(self) -> str:
        """libpq URL of the ``todo`` database (or the external one)."""
        if self.external_database_url:
            return self.external_database_url
        return f"postgresql://todo:todo@127.0.0.1:{self.pg_port}/todo"
