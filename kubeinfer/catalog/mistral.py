"""Mistral: the embeddings API."""

from __future__ import annotations

from pydantic import Field

from ._base import (
    EmbeddingSettings, ExternalServiceSettings, SecretField, SecretValue, ServiceSpec, TaskType,
)


class MistralServiceSettings(ExternalServiceSettings, EmbeddingSettings):
    api_key: SecretValue = SecretField("Mistral API key.")
    model: str = Field(description="The embedding model, e.g. mistral-embed.")


SPEC = ServiceSpec(
    name="mistral",
    service_settings={TaskType.TEXT_EMBEDDING: MistralServiceSettings},
    default_rate_limit={TaskType.TEXT_EMBEDDING: 240},
    description="Mistral embeddings.",
)
