"""Cohere: embed, rerank and chat."""

from __future__ import annotations

from enum import Enum
from typing import ClassVar

from pydantic import Field

from ._base import (
    EmbeddingSettings, ExternalServiceSettings, InputType, SecretField, SecretValue, ServiceSpec, Settings,
    TaskType, Truncate,
)


class EmbeddingType(str, Enum):
    FLOAT = "float"
    BYTE = "byte"
    INT8 = "int8"


class CohereServiceSettings(ExternalServiceSettings):
    api_key: SecretValue = SecretField("Cohere API key.")
    model_id: str | None = Field(default=None, description="The Cohere model; the provider's default when unset.")


class CohereEmbeddingServiceSettings(CohereServiceSettings, EmbeddingSettings):
    embedding_type: EmbeddingType = EmbeddingType.FLOAT


class CohereEmbeddingTaskSettings(Settings):
    input_type: InputType | None = None
    truncate: Truncate | None = None


class CohereRerankTaskSettings(Settings):
    # Elasticsearch sends Cohere no return_documents unless told, and Cohere's rerank then
    # leaves the documents out.
    return_documents_default: ClassVar[bool] = False

    return_documents: bool | None = None
    top_n: int | None = Field(default=None, gt=0)
    max_chunks_per_doc: int | None = Field(default=None, gt=0)


class CohereCompletionTaskSettings(Settings):
    pass


SPEC = ServiceSpec(
    name="cohere",
    label="Cohere",
    service_settings={
        **dict.fromkeys((TaskType.COMPLETION, TaskType.RERANK), CohereServiceSettings),
        TaskType.TEXT_EMBEDDING: CohereEmbeddingServiceSettings,
    },
    task_settings={
        TaskType.COMPLETION: CohereCompletionTaskSettings,
        TaskType.RERANK: CohereRerankTaskSettings,
        TaskType.TEXT_EMBEDDING: CohereEmbeddingTaskSettings,
    },
    default_rate_limit=10000,
    description="Cohere embed, rerank and chat.",
)
