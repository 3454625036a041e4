"""Hugging Face Inference Endpoints: feature extraction at the endpoint's ``url``."""

from __future__ import annotations

from ._base import (
    EmbeddingSettings, ExternalServiceSettings, SecretField, SecretValue, ServiceSpec, TaskType,
)
from pydantic import Field


class HuggingFaceServiceSettings(ExternalServiceSettings, EmbeddingSettings):
    api_key: SecretValue = SecretField("Hugging Face access token.")
    # Required here, as in Elasticsearch: the Inference Endpoint's own URL.
    url: str = Field(description="The Hugging Face Inference Endpoint URL.")


class HuggingFaceChatServiceSettings(ExternalServiceSettings):
    api_key: SecretValue = SecretField("Hugging Face access token.")
    url: str = Field(description="The chat completions URL of the Inference Endpoint (OpenAI-compatible).")
    model_id: str | None = Field(default=None, description="The model, for endpoints that serve more than one.")


SPEC = ServiceSpec(
    name="hugging_face",
    service_settings={
        TaskType.CHAT_COMPLETION: HuggingFaceChatServiceSettings,
        TaskType.TEXT_EMBEDDING: HuggingFaceServiceSettings,
    },
    default_rate_limit={TaskType.TEXT_EMBEDDING: 3000, TaskType.CHAT_COMPLETION: 3000},
    description="Hugging Face Inference Endpoints (feature extraction).",
)
