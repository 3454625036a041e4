"""Mistral: the embeddings and chat completions APIs."""

from __future__ import annotations

from pydantic import Field

from ._base import (
    EmbeddingSettings, ExternalServiceSettings, SecretField, SecretValue, ServiceSpec, TaskType,
)


class MistralCompletionServiceSettings(ExternalServiceSettings):
    api_key: SecretValue = SecretField("Mistral API key.")
    model: str = Field(description="The model, e.g. mistral-embed or mistral-small-latest.")
    max_input_tokens: int | None = Field(default=None, gt=0)


class MistralServiceSettings(MistralCompletionServiceSettings, EmbeddingSettings):
    pass


class MistralChatServiceSettings(ExternalServiceSettings):
    api_key: SecretValue = SecretField("Mistral API key.")
    model: str = Field(description="The chat model, e.g. mistral-small-latest.")
    max_input_tokens: int | None = Field(default=None, gt=0)


SPEC = ServiceSpec(
    name="mistral",
    label="Mistral",
    service_settings={
        TaskType.CHAT_COMPLETION: MistralChatServiceSettings,
        TaskType.COMPLETION: MistralCompletionServiceSettings,
        TaskType.TEXT_EMBEDDING: MistralServiceSettings,
    },
    default_rate_limit=240,
    description="Mistral embeddings and chat completions.",
)
