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


SPEC = ServiceSpec(
    name="hugging_face",
    service_settings={TaskType.TEXT_EMBEDDING: HuggingFaceServiceSettings},
    default_rate_limit={TaskType.TEXT_EMBEDDING: 3000},
    description="Hugging Face Inference Endpoints (feature extraction).",
)
