"""The composition root: builds every adapter a process role needs, once, into a typed ``Container``.

container = bootstrap("api", Settings())

The Dapr-or-in-process choice is made here and nowhere else: with ``DAPR_HTTP_PORT`` or
``DAPR_GRPC_PORT`` set, publishing, jobs and conversation memory go through the sidecar;
otherwise through the in-process bus, job timers and the SQL conversation store. What a role
builds follows its row in ``todo_agent.roles.SERVES``; what it does not serve is ``None``.
Constructors do no I/O: clients connect on first use, and the app's lifespan
(``todo_agent.api``) starts and stops what runs in the background.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from mcp.server import MCPServer
from sqlalchemy import Engine

from agent.chat import Chat
from agent.memory import ConversationStore
from agent.models import select_model
from agent.wiring import ChatOptions, build_chat, dapr_conversation_store
from events.inprocess import InProcessBus
from events.ports import EventPublisher
from events.publishers import DaprPublisher, InProcessPublisher
from events.realtime import WebSocketHub
from events.relay import OutboxRelay
from events.relay_process import RelayProcess, RelaySettings
from events.reminders.firing import Fired, GroupFiring, fire_job
from events.reminders.jobs import DaprJobScheduler, InProcessJobScheduler
from events.reminders.notifications import ReminderNotifier
from events.reminders.retrier import NotificationRetrier
from events.reminders.scheduling import ReminderScheduling
from mcp_server.auth import Identity, InvalidToken, JwtVerifier, identity_of
from mcp_server.server import build_mcp_server
from tasks.db import make_engine, migrate
from tasks.profiles import Profiles
from tasks.service import Actor, TaskService
from tasks.unit_of_work import UnitOfWorkFactory
from todo_agent.roles import ROLES, SERVES, Role, Serves
from todo_agent.settings import Settings

__all__ = ["ROLES", "Container", "Role", "bootstrap", "make_verifier"]

log = logging.getLogger(__name__)

JobScheduler = DaprJobScheduler | InProcessJobScheduler


@dataclass
class Container:
    """Everything a process role needs, built once at start-up by ``bootstrap``."""

    role: Role
    serves: Serves
    settings: Settings
    engine: Engine
    uow: UnitOfWorkFactory
    tasks: TaskService
    profiles: Profiles
    verifier: JwtVerifier | None
    #: The in-process event bus (the embedded default); ``None`` with Dapr.
    bus: InProcessBus | None = None
    #: Where the outbox relay publishes, and the relay (roles that relay).
    publisher: EventPublisher | None = None
    relay: OutboxRelay | None = None
    #: With Dapr the relay runs in this supervised child process instead of on the app's loop.
    relay_process: RelayProcess | None = None
    #: The WebSocket hub behind ``/ws`` (roles that serve real-time updates).
    hub: WebSocketHub | None = None
    #: Reminders: job callbacks fire through ``firing``; ``reminders`` schedules jobs on ``jobs``.
    firing: GroupFiring | None = None
    jobs: JobScheduler | None = None
    reminders: ReminderScheduling | None = None
    #: Notifications: the ``reminders`` consumer and the retrier of its deliveries.
    notifier: ReminderNotifier | None = None
    retrier: NotificationRetrier | None = None
    #: The chat and where its conversations are kept.
    conversations: ConversationStore | None = None
    chat: Chat | None = None

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

    def build_mcp(self, *, stdio: bool = False) -> MCPServer:
        if stdio:
            return build_mcp_server(self.tasks, resolve_actor=lambda _token: self.actor_for_identity(None))

        def resolve(token: Any) -> Actor:
            if token is None and self.verifier is not None:
                raise InvalidToken("Not authenticated.")
            return self.actor_for_identity(identity_of(token) if token is not None else None)

        return build_mcp_server(
            self.tasks,
            resolve_actor=resolve,
            token_verifier=self.verifier,
            public_url=self.settings.base_url,
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
    container = Container(
        role=role,
        serves=SERVES[role],
        settings=settings,
        engine=engine,
        uow=uow,
        tasks=TaskService(uow),
        profiles=Profiles(uow, default_timezone=settings.default_timezone, webhooks=settings.webhook_policy),
        verifier=make_verifier(settings),
    )
    if settings.dapr_enabled:
        _build_with_dapr(container)
    else:
        _build_in_process(container)
    _build_the_rest(container)
    return container


def _sidecar_http(settings: Settings, what: str) -> tuple[str, str | None]:
    """The sidecar's HTTP address and API token; refuses Dapr mode without ``DAPR_HTTP_PORT``."""
    if settings.dapr_http_port is None:
        raise RuntimeError(f"Dapr mode needs DAPR_HTTP_PORT for {what} (as well as DAPR_GRPC_PORT).")
    token = settings.dapr_api_token.get_secret_value() if settings.dapr_api_token else None
    return f"http://127.0.0.1:{settings.dapr_http_port}", token


def _build_with_dapr(c: Container) -> None:
    settings, serves = c.settings, c.serves
    if serves.relay:
        url, token = _sidecar_http(settings, "publishing events")
        c.publisher = DaprPublisher(base_url=url, pubsub=settings.pubsub_name, api_token=token)
        c.relay_process = RelayProcess(
            RelaySettings(
                database_url=settings.effective_database_url,
                log_level=settings.log_level,
                sidecar_url=url,
                api_token=token,
                pubsub=settings.pubsub_name,
            )
        )
    if serves.reminders:
        url, token = _sidecar_http(settings, "reminders (daprd's HTTP Jobs API)")
        c.jobs = DaprJobScheduler(http_url=url, api_token=token)
    if serves.chat:
        url, token = _sidecar_http(settings, "conversation memory")
        grpc = f"127.0.0.1:{settings.dapr_grpc_port}" if settings.dapr_grpc_port else None
        c.conversations = dapr_conversation_store(
            url, token, grpc_address=grpc, store_name=settings.statestore_name,
            ttl_seconds=settings.conversation_ttl_seconds,
        )  # fmt: skip


def _build_in_process(c: Container) -> None:
    c.bus = InProcessBus()
    if c.serves.relay:
        c.publisher = InProcessPublisher(c.bus)
    if c.serves.reminders:
        c.jobs = InProcessJobScheduler(on_due=functools.partial(_fire_in_process, c))
    if c.serves.chat:
        from agent.memory_sql import SqlConversationStore

        c.conversations = SqlConversationStore(c.engine)


async def _fire_in_process(c: Container, name: str, data: Mapping[str, Any]) -> bool:
    assert c.firing is not None  # built with the job scheduler
    return await fire_job(c.firing, name, data) is not Fired.NOT_YET


def _build_the_rest(c: Container) -> None:
    settings, serves = c.settings, c.serves
    if c.publisher is not None:
        c.relay = OutboxRelay(c.engine, c.publisher)
    if serves.realtime:
        c.hub = WebSocketHub()
    if serves.reminders:
        c.firing = GroupFiring(c.uow, grace=timedelta(minutes=settings.reminder_grace_minutes))
        assert c.jobs is not None
        c.reminders = ReminderScheduling(c.jobs, c.uow)
    if serves.notifications:
        c.retrier = NotificationRetrier(c.uow, c.profiles, settings)
        c.notifier = ReminderNotifier(c.uow, c.profiles, settings, retrier=c.retrier)
    if serves.chat:
        assert c.conversations is not None
        c.chat = build_chat(
            c.tasks,
            store=c.conversations,
            models=select_model(settings),
            mcp_url=ChatOptions().agent_mcp_url,
            item_limit=settings.conversation_item_limit,
            verifier=c.verifier,
        )
