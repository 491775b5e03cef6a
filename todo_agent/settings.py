"""All configuration, read once from the environment (``TODO_*`` plus the standard names).

settings = Settings()                  # from the environment
settings = Settings(database_url=...)  # in tests
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Literal

from platformdirs import user_data_path
from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from tasks.clock import machine_zone_name
from tasks.webhooks import WebhookPolicy


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TODO_", extra="ignore", populate_by_name=True)

    environment: Literal["development", "production"] = "development"
    database_url: str | None = Field(
        default=None, description="SQLAlchemy/PostgreSQL URL; default: SQLite in the user's data dir."
    )
    data_dir: Path = Field(default_factory=lambda: user_data_path("todo-agent", appauthor=False))
    timezone: str | None = Field(default=None, description="Default IANA zone for users without one.")
    user: str = Field(
        default="local", description="The user stdio MCP and the unauthenticated embedded app act for."
    )
    host: str = "127.0.0.1"
    port: int = 8000
    public_url: str | None = None
    allowed_hosts: list[str] = Field(
        default_factory=list,
        description="Host names (name, name:port or name:*) every route answers to and pages whose "
        "origin may call it, besides loopback, the bound host and TODO_PUBLIC_URL's host.",
    )
    max_body_bytes: int = Field(
        default=1_048_576, ge=1024, description="The largest request body accepted (413 beyond)."
    )
    log_level: str = "INFO"
    shutdown_grace_seconds: float = Field(
        default=25.0, gt=0, description="After SIGTERM: requests get half, the process exits by the end."
    )

    jwt_secret: SecretStr | None = None
    jwks_url: str | None = None
    jwt_audience: str = "todo-agent"
    jwt_issuer: str | None = None

    app_api_token: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("APP_API_TOKEN", "TODO_APP_API_TOKEN")
    )
    dapr_api_token: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("DAPR_API_TOKEN", "TODO_DAPR_API_TOKEN")
    )
    dapr_http_port: int | None = Field(default=None, validation_alias=AliasChoices("DAPR_HTTP_PORT"))
    dapr_grpc_port: int | None = Field(default=None, validation_alias=AliasChoices("DAPR_GRPC_PORT"))
    pubsub_name: str = "kafka-pubsub"
    statestore_name: str = "statestore"

    model: str | None = Field(
        default=None, description="Model name; with OPENAI_API_KEY selects a real model."
    )
    openai_api_key: SecretStr | None = Field(default=None, validation_alias=AliasChoices("OPENAI_API_KEY"))
    openai_base_url: str | None = Field(default=None, validation_alias=AliasChoices("OPENAI_BASE_URL"))
    model_api: Literal["chat_completions", "responses"] = "chat_completions"
    conversation_item_limit: int = 40
    conversation_ttl_seconds: int | None = None

    smtp_host: str | None = None
    smtp_port: int = 25
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_from: str = "todo-agent@localhost"
    smtp_starttls: bool = False
    reminder_grace_minutes: int = 60
    webhook_allowed_networks: list[str] = Field(
        default_factory=list,
        description='CIDRs webhooks may reach besides public addresses, e.g. ["10.0.0.0/8"] (self-hosting).',
    )
    webhook_allowed_hosts: list[str] = Field(
        default_factory=list, description="Host names webhooks may reach whatever they resolve to."
    )
    notify_max_attempts: int = Field(
        default=8, ge=1, description="Attempts per email or webhook delivery before it is marked failed."
    )
    notify_retry_base_seconds: float = Field(
        default=5.0, gt=0, description="Backoff before a delivery's second attempt; doubles after each."
    )
    notify_retry_max_seconds: float = Field(
        default=900.0, gt=0, description="The longest backoff between two attempts of a delivery."
    )

    @model_validator(mode="after")
    def _refuse_unsafe_production(self) -> Settings:
        if self.environment == "production":
            if not self.jwt_secret and not self.jwks_url:
                raise ValueError("TODO_ENVIRONMENT=production needs TODO_JWT_SECRET or TODO_JWKS_URL.")
            if self.jwt_secret and len(self.jwt_secret.get_secret_value()) < 32:
                raise ValueError("TODO_JWT_SECRET must be at least 32 characters in production.")
            if not self.database_url:
                raise ValueError("TODO_ENVIRONMENT=production needs TODO_DATABASE_URL.")
        return self

    def serving_problem(self) -> str | None:
        """Why this configuration must not serve HTTP (None: it may). Checked when an app is
        built, not when settings are read: ``todo-agent migrate`` serves nothing."""
        if self.environment == "production" and self.dapr_enabled and not self.app_api_token:
            return (
                "TODO_ENVIRONMENT=production with Dapr (DAPR_HTTP_PORT/DAPR_GRPC_PORT) needs "
                "APP_API_TOKEN, the token the sidecar presents (dapr.io/app-token-secret): without it "
                "anyone who reaches the app could post events and job callbacks."
            )
        return None

    @field_validator("webhook_allowed_networks")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        for network in value:
            ipaddress.ip_network(network.strip(), strict=False)  # a ValueError names the bad one
        return value

    @property
    def webhook_policy(self) -> WebhookPolicy:
        return WebhookPolicy.of(
            allowed_networks=self.webhook_allowed_networks, allowed_hosts=self.webhook_allowed_hosts
        )

    @property
    def auth_enabled(self) -> bool:
        return bool(self.jwt_secret or self.jwks_url)

    @property
    def dapr_enabled(self) -> bool:
        return self.dapr_http_port is not None or self.dapr_grpc_port is not None

    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        self.data_dir.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{self.data_dir / 'todo.db'}"

    @property
    def default_timezone(self) -> str:
        return self.timezone or machine_zone_name()

    @property
    def base_url(self) -> str:
        return self.public_url or f"http://{self.host}:{self.port}"
