"""The one place that wires adapters for a process role.

container = bootstrap("api", Settings())
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Literal

from sqlalchemy import Engine

from mcp_server.auth import Identity, InvalidToken, JwtVerifier, identity_of
from mcp_server.live import LiveResources
from mcp_server.server import McpOptions, build_mcp_server
from tasks.db import make_engine, migrate
from tasks.profiles import Profiles
from tasks.service import Actor, TaskService
from tasks.unit_of_work import UnitOfWorkFactory
from todo_agent.settings import Settings

Role = Literal["api", "recurrence", "notifications", "audit", "all", "mcp"]
ROLES: tuple[Role, ...] = ("api", "recurrence", "notifications", "audit")

log = logging.getLogger(__name__)


@dataclass
class Container:
    """Everything a process role needs, built once at start-up."""

    role: Role
    settings: Settings
    engine: Engine
    uow: UnitOfWorkFactory
    tasks: TaskService
    profiles: Profiles
    verifier: JwtVerifier | None
    extras: dict[str, Any] = field(default_factory=dict)

    def actor_for_identity(self, identity: Identity | None) -> Actor:
        if identity is None:
            return self.profiles.actor(self.settings.user)
        return self.profiles.actor(identity.user_id, token_zone=identity.timezone)

    def authenticate(self, token: str | None) -> Actor:
        """The actor a bearer token stands for; without auth configured, the local user."""
        if self.verifier is None:
            return self.actor_for_identity(None)
        if not token:
            raise InvalidToken("Sign in: this server needs 'Authorization: Bearer <token>'.")
        return self.actor_for_identity(self.verifier.verify(token))

    @property
    def mcp_live(self) -> LiveResources:
        """Who watches which MCP resource in this process (fed by task-updates or the outbox)."""
        live: LiveResources = self.extras.setdefault("mcp_live", LiveResources())
        return live

    def build_mcp(self, *, stdio: bool = False) -> Any:
        if stdio:
            local = McpOptions(live=self.mcp_live, current_user=lambda _token: self.settings.user)
            return build_mcp_server(
                self.tasks, resolve_actor=lambda _token: self.actor_for_identity(None), options=local
            )

        def resolve(token: Any) -> Actor:
            if token is None and self.verifier is not None:
                raise InvalidToken("Not authenticated.")
            return self.actor_for_identity(identity_of(token) if token is not None else None)

        def current_user(token: Any) -> str:
            if token is None:
                return self.settings.user if self.verifier is None else ""
            return identity_of(token).user_id

        options = self.mcp_options()
        options.current_user = current_user
        return build_mcp_server(
            self.tasks, resolve_actor=resolve, token_verifier=self.verifier, options=options
        )

    def mcp_options(self) -> McpOptions:
        """Where ``/mcp`` is reached and whose tokens it takes (also its RFC 9728 metadata)."""
        issuer = self.settings.jwt_issuer
        return McpOptions(
            public_url=self.settings.base_url,
            authorization_servers=[issuer] if issuer else [],
            live=self.mcp_live,
        )


def make_verifier(settings: Settings) -> JwtVerifier | None:
    if not settings.auth_enabled:
        return None
    return JwtVerifier(
        secret=settings.jwt_secret.get_secret_value() if settings.jwt_secret else None,
        jwks_url=settings.jwks_url,
        audience=settings.jwt_audience,
        issuer=settings.jwt_issuer,
    )


def _point_the_dapr_sdk_at_our_sidecar(settings: Settings) -> None:
    """The Dapr SDK reads its sidecar's ports from ``dapr.conf.settings`` (environment by
    default) and waits for that sidecar when a client is built; one process has one sidecar,
    so settings given in code (tests, ``python -m devstack serve``) must reach the SDK too."""
    from dapr.conf import settings as sdk

    values = {
        "DAPR_HTTP_PORT": settings.dapr_http_port,
        "DAPR_GRPC_PORT": settings.dapr_grpc_port,
        "DAPR_API_TOKEN": settings.dapr_api_token.get_secret_value() if settings.dapr_api_token else None,
    }
    for name, value in values.items():
        if value:
            setattr(sdk, name, value)


def bootstrap(role: Role, settings: Settings, *, run_migrations: bool = True) -> Container:
    if settings.dapr_enabled:
        _point_the_dapr_sdk_at_our_sidecar(settings)
    engine = make_engine(settings.effective_database_url)
    if run_migrations:
        migrate(engine)
    uow = UnitOfWorkFactory(engine)
    return Container(
        role=role,
        settings=settings,
        engine=engine,
        uow=uow,
        tasks=TaskService(uow),
        profiles=Profiles(uow, default_timezone=settings.default_timezone, webhooks=settings.webhook_policy),
        verifier=make_verifier(settings),
    )
