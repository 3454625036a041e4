"""Fireworks AI: embeddings and chat completions (OpenAI's wire format)."""

from __future__ import annotations

from pydantic import Field

from ._base import (
    EmbeddingSettings, ExternalServiceSettings, SecretField, SecretValue, ServiceSpec, Settings, TaskType,
)


class FireworksAIServiceSettings(ExternalServiceSettings):
    api_key: SecretValue = SecretField("Fireworks AI API key.")
    model_id: str = Field(description="The model, e.g. accounts/fireworks/models/deepseek-v3p1.")


class FireworksAIEmbeddingServiceSettings(FireworksAIServiceSettings, EmbeddingSettings):
    pass


class FireworksAIChatTaskSettings(Settings):
    user: str | None = Field(default=None, description="The user issuing the request (abuse detection).")
    headers: dict[str, str] | None = Field(default=None, description="Extra HTTP headers sent to Fireworks AI.")


SPEC = ServiceSpec(
    name="fireworksai",
    label="Fireworks AI",
    service_settings={
        **dict.fromkeys((TaskType.CHAT_COMPLETION, TaskType.COMPLETION), FireworksAIServiceSettings),
        TaskType.TEXT_EMBEDDING: FireworksAIEmbeddingServiceSettings,
    },
    task_settings=dict.fromkeys((TaskType.CHAT_COMPLETION, TaskType.COMPLETION), FireworksAIChatTaskSettings),
    default_rate_limit=6000,
    description="Fireworks AI embeddings and chat completions.",
)
