"""Mistral: the embeddings API."""

from __future__ import annotations

from pydantic import Field

from ._base import (
    EmbeddingSettings, ExternalServiceSettings, SecretField, SecretValue, ServiceSpec, TaskType,
)


class MistralServiceSettings(ExternalServiceSettings, EmbeddingSettings):
    api_key: SecretValue = SecretField("Mistral API key.")
    model: str = Field(description="The embedding model, e.g. mistral-embed.")


class MistralChatServiceSettings(ExternalServiceSettings):
    api_key: SecretValue = SecretField("Mistral API key.")
    model: str = Field(description="The chat model, e.g. mistral-small-latest.")
    max_input_tokens: int | None = Field(default=None, gt=0)


SPEC = ServiceSpec(
    name="mistral",
    service_settings={
        TaskType.CHAT_COMPLETION: MistralChatServiceSettings,
        TaskType.TEXT_EMBEDDING: MistralServiceSettings,
    },
    default_rate_limit={TaskType.TEXT_EMBEDDING: 240, TaskType.CHAT_COMPLETION: 240},
    description="Mistral embeddings.",
)
