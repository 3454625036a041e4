"""Jina AI: ``/v1/embeddings`` (text and multimodal) and ``/v1/rerank``."""

from __future__ import annotations

from enum import Enum

from pydantic import Field

from ._base import (
    EmbeddingSettings, ExternalServiceSettings, InputType, SecretField, SecretValue, ServiceSpec, Settings, TaskType,
)


class JinaEmbeddingType(str, Enum):
    BINARY = "binary"
    BIT = "bit"
    FLOAT = "float"


class JinaAIServiceSettings(ExternalServiceSettings):
    api_key: SecretValue = SecretField("Jina AI API key.")
    model_id: str = Field(description="The model, e.g. jina-embeddings-v3 or jina-reranker-v2-base-multilingual.")


class JinaAIEmbeddingServiceSettings(JinaAIServiceSettings, EmbeddingSettings):
    embedding_type: JinaEmbeddingType | None = Field(default=None, description="float (default), bit or binary.")


class JinaAIMultimodalServiceSettings(JinaAIEmbeddingServiceSettings):
    multimodal_model: bool | None = Field(
        default=None, description="Whether the model takes multimodal inputs (a list of objects); true when unset."
    )


class JinaAIEmbeddingTaskSettings(Settings):
    input_type: InputType | None = None
    late_chunking: bool | None = None


class JinaAIRerankTaskSettings(Settings):
    return_documents: bool | None = None
    top_n: int | None = Field(default=None, gt=0)


SPEC = ServiceSpec(
    name="jinaai",
    label="Jina AI",
    service_settings={
        TaskType.EMBEDDING: JinaAIMultimodalServiceSettings,
        TaskType.RERANK: JinaAIServiceSettings,
        TaskType.TEXT_EMBEDDING: JinaAIEmbeddingServiceSettings,
    },
    task_settings={
        TaskType.EMBEDDING: JinaAIEmbeddingTaskSettings,
        TaskType.RERANK: JinaAIRerankTaskSettings,
        TaskType.TEXT_EMBEDDING: JinaAIEmbeddingTaskSettings,
    },
    default_rate_limit=2000,
    description="Jina AI embeddings and reranking.",
)
