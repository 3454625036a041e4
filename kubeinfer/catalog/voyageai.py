"""Voyage AI: ``/v1/embeddings`` and ``/v1/rerank``."""

from __future__ import annotations

from enum import Enum

from pydantic import Field

from ._base import (
    EmbeddingSettings, ExternalServiceSettings, SecretField, SecretValue, ServiceSpec, Settings, TaskType,
)


class VoyageEmbeddingType(str, Enum):
    FLOAT = "float"
    INT8 = "int8"
    BIT = "bit"


class VoyageAIServiceSettings(ExternalServiceSettings):
    # Elasticsearch's own examples leave the key out; Voyage AI refuses calls without one.
    api_key: SecretValue | None = SecretField("Voyage AI API key.", required=False)
    model_id: str = Field(description="The model, e.g. voyage-3-large or rerank-2.")


class VoyageAIEmbeddingServiceSettings(VoyageAIServiceSettings, EmbeddingSettings):
    embedding_type: VoyageEmbeddingType | None = Field(
        default=None, description="output_dtype: float, int8 (byte) or bit (binary)."
    )


class VoyageAIEmbeddingTaskSettings(Settings):
    input_type: str | None = Field(default=None, description="ingest (document) or search (query).")
    truncation: bool | None = None


class VoyageAIRerankTaskSettings(Settings):
    return_documents: bool | None = None
    top_k: int | None = Field(default=None, gt=0)
    truncation: bool | None = None


SPEC = ServiceSpec(
    name="voyageai",
    label="Voyage AI",
    service_settings={
        TaskType.RERANK: VoyageAIServiceSettings,
        TaskType.TEXT_EMBEDDING: VoyageAIEmbeddingServiceSettings,
    },
    task_settings={TaskType.RERANK: VoyageAIRerankTaskSettings, TaskType.TEXT_EMBEDDING: VoyageAIEmbeddingTaskSettings},
    default_rate_limit=2000,
    description="Voyage AI embeddings and reranking.",
)
