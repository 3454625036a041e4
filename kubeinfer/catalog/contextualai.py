"""Contextual AI: the instructable reranker, ``/v1/rerank``."""

from __future__ import annotations

from pydantic import Field

from ._base import ExternalServiceSettings, SecretField, SecretValue, ServiceSpec, Settings, TaskType


class ContextualAIServiceSettings(ExternalServiceSettings):
    api_key: SecretValue = SecretField("Contextual AI API key.")
    model_id: str = Field(description="The rerank model, e.g. ctxl-rerank-v2-instruct-multilingual.")


class ContextualAIRerankTaskSettings(Settings):
    instruction: str | None = Field(default=None, description="Instructions for the reranker.")
    top_k: int | None = Field(default=None, gt=0)


SPEC = ServiceSpec(
    name="contextualai",
    label="Contextual AI",
    service_settings={TaskType.RERANK: ContextualAIServiceSettings},
    task_settings={TaskType.RERANK: ContextualAIRerankTaskSettings},
    default_rate_limit=1000,
    description="Contextual AI reranking.",
)
