"""NVIDIA NIM: embeddings, chat completions (OpenAI's wire format) and the retrieval
reranking API, at NVIDIA's hosted endpoints or a NIM's ``url``."""

from __future__ import annotations


from pydantic import Field

from ._base import (
    EmbeddingSettings, ExternalServiceSettings, SearchInputType, SecretField, SecretValue, ServiceSpec, Settings,
    TaskType, Truncate,
)


class NvidiaServiceSettings(ExternalServiceSettings):
    api_key: SecretValue = SecretField("NVIDIA API key.")
    model_id: str = Field(description="The model, e.g. nvidia/llama-3.2-nv-embedqa-1b-v2.")


class NvidiaEmbeddingServiceSettings(NvidiaServiceSettings, EmbeddingSettings):
    pass


class NvidiaEmbeddingTaskSettings(Settings):
    input_type: SearchInputType | None = Field(default=None, description="ingest (passage) or search (query).")
    truncate: Truncate | None = None


SPEC = ServiceSpec(
    name="nvidia",
    label="Nvidia",
    service_settings={
        **dict.fromkeys((TaskType.CHAT_COMPLETION, TaskType.COMPLETION, TaskType.RERANK), NvidiaServiceSettings),
        TaskType.TEXT_EMBEDDING: NvidiaEmbeddingServiceSettings,
    },
    task_settings={TaskType.TEXT_EMBEDDING: NvidiaEmbeddingTaskSettings},
    default_rate_limit=3000,
    description="NVIDIA NIM embeddings, reranking and chat completions.",
)
