"""Google Vertex AI: text embeddings (predict) and the ranking API, with a service account."""

from __future__ import annotations

from pydantic import Field

from ._base import (
    EmbeddingSettings, ExternalServiceSettings, SecretField, SecretValue, ServiceSpec, Settings, TaskType,
)


class GoogleVertexAIServiceSettings(ExternalServiceSettings):
    service_account_json: SecretValue = SecretField("The service account key, as JSON.")
    project_id: str = Field(description="The Google Cloud project.")
    model_id: str | None = Field(
        default=None, description="The ranking model, e.g. semantic-ranker-512@latest; the API's default when unset."
    )


class GoogleVertexAIEmbeddingServiceSettings(GoogleVertexAIServiceSettings, EmbeddingSettings):
    model_id: str = Field(description="The embedding model, e.g. text-embedding-004.")
    location: str = Field(description="The region of the model, e.g. us-central1.")


class GoogleVertexAIEmbeddingTaskSettings(Settings):
    auto_truncate: bool | None = None


class GoogleVertexAIRerankTaskSettings(Settings):
    top_n: int | None = Field(default=None, gt=0)


SPEC = ServiceSpec(
    name="googlevertexai",
    service_settings={
        TaskType.RERANK: GoogleVertexAIServiceSettings,
        TaskType.TEXT_EMBEDDING: GoogleVertexAIEmbeddingServiceSettings,
    },
    task_settings={
        TaskType.RERANK: GoogleVertexAIRerankTaskSettings,
        TaskType.TEXT_EMBEDDING: GoogleVertexAIEmbeddingTaskSettings,
    },
    default_rate_limit={TaskType.TEXT_EMBEDDING: 30000, TaskType.RERANK: 300},
    description="Google Vertex AI embeddings and ranking.",
)
