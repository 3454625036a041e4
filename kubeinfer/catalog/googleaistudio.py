"""Google AI Studio (Gemini API): batchEmbedContents and generateContent with an API key."""

from __future__ import annotations

from pydantic import Field

from ._base import (
    EmbeddingSettings, ExternalServiceSettings, SecretField, SecretValue, ServiceSpec, TaskType,
)


class GoogleAIStudioServiceSettings(ExternalServiceSettings):
    api_key: SecretValue = SecretField("Google AI Studio API key.")
    model_id: str = Field(description="The model, e.g. text-embedding-004 or gemini-1.5-flash.")


class GoogleAIStudioEmbeddingServiceSettings(GoogleAIStudioServiceSettings, EmbeddingSettings):
    pass


SPEC = ServiceSpec(
    name="googleaistudio",
    label="Google AI Studio",
    service_settings={
        TaskType.COMPLETION: GoogleAIStudioServiceSettings,
        TaskType.TEXT_EMBEDDING: GoogleAIStudioEmbeddingServiceSettings,
    },
    default_rate_limit=360,
    description="Google AI Studio (Gemini) embeddings and generation.",
)
