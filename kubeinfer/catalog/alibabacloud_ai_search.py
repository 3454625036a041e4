"""AlibabaCloud AI Search: embeddings, sparse embeddings, rerank and text generation."""

from __future__ import annotations

from enum import Enum

from pydantic import Field

from ._base import (
    EmbeddingSettings, ExternalServiceSettings, SearchInputType, SecretField, SecretValue, ServiceSpec, Settings,
    TaskType, UrlField,
)


class HttpSchema(str, Enum):
    HTTPS = "https"
    HTTP = "http"


class AlibabaCloudServiceSettings(ExternalServiceSettings):
    api_key: SecretValue = SecretField("AlibabaCloud AI Search API key.")
    service_id: str = Field(description="e.g. ops-text-embedding-001, ops-bge-reranker-larger, ops-qwen-turbo.")
    host: str = UrlField("The host of the AI Search service, from its console.")
    workspace: str
    http_schema: HttpSchema | None = Field(default=None, description="https (default) or http.")


class AlibabaCloudEmbeddingServiceSettings(AlibabaCloudServiceSettings, EmbeddingSettings):
    pass


class AlibabaEmbeddingTaskSettings(Settings):
    input_type: SearchInputType | None = None


class AlibabaSparseTaskSettings(Settings):
    input_type: SearchInputType | None = None
    return_token: bool | None = None


SPEC = ServiceSpec(
    name="alibabacloud-ai-search",
    label="AlibabaCloud AI Search",
    service_settings={
        **dict.fromkeys((TaskType.COMPLETION, TaskType.RERANK, TaskType.SPARSE_EMBEDDING), AlibabaCloudServiceSettings),
        TaskType.TEXT_EMBEDDING: AlibabaCloudEmbeddingServiceSettings,
    },
    task_settings={
        TaskType.SPARSE_EMBEDDING: AlibabaSparseTaskSettings,
        TaskType.TEXT_EMBEDDING: AlibabaEmbeddingTaskSettings,
    },
    default_rate_limit=1000,
    description="AlibabaCloud AI Search.",
)
