"""Which model answers: any OpenAI-compatible endpoint, or the offline command model.

    choice = select_model(settings)
    model = choice.model_for(timezone="Europe/Berlin")

``OPENAI_API_KEY`` (and/or ``OPENAI_BASE_URL`` for servers that need no key, such as Ollama)
selects a real model named by ``TODO_MODEL`` over Chat Completions or, with
``TODO_MODEL_API=responses``, the Responses API. Without either, the offline model answers.
SDK tracing export stays off unless ``TODO_AGENT_TRACING=1`` and a real key is configured.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal, Protocol

from agents import Model, OpenAIChatCompletionsModel, OpenAIResponsesModel
from openai import AsyncOpenAI
from pydantic import SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from agent.offline import OfflineModel

DEFAULT_MODEL: Final = "gpt-4.1-mini"
ModelKind = Literal["openai", "offline", "custom"]


class ModelSettings(Protocol):
    """The settings the model choice reads (``todo_agent.settings.Settings`` has them)."""

    @property
    def model(self) -> str | None: ...
    @property
    def openai_api_key(self) -> SecretStr | None: ...
    @property
    def openai_base_url(self) -> str | None: ...
    @property
    def model_api(self) -> Literal["chat_completions", "responses"]: ...


class AgentOptions(BaseSettings):
    """Agent-only switches that the shared settings do not carry."""

    model_config = SettingsConfigDict(env_prefix="TODO_", extra="ignore")

    agent_tracing: bool = False


@dataclass(frozen=True)
class ModelChoice:
    """The model a deployment uses; ``model_for`` gives one for a turn."""

    kind: ModelKind
    name: str
    tracing_enabled: bool = False
    shared: Model | None = None

    def model_for(self, *, timezone: str) -> Model:
        if self.shared is not None:
            return self.shared
        return OfflineModel(timezone=timezone)


def select_model(settings: ModelSettings, *, client: AsyncOpenAI | None = None) -> ModelChoice:
    """Pick the model from the settings; ``client`` overrides the OpenAI client (tests)."""
    key = settings.openai_api_key.get_secret_value() if settings.openai_api_key else None
    if client is None and not key and not settings.openai_base_url:
        return ModelChoice(kind="offline", name="offline")
    name = settings.model or DEFAULT_MODEL
    client = client or AsyncOpenAI(api_key=key or "not-needed", base_url=settings.openai_base_url)
    model: Model
    if settings.model_api == "responses":
        model = OpenAIResponsesModel(model=name, openai_client=client)
    else:
        model = OpenAIChatCompletionsModel(model=name, openai_client=client)
    tracing = bool(key) and AgentOptions().agent_tracing
    return ModelChoice(kind="openai", name=name, tracing_enabled=tracing, shared=model)
