"""Llama Stack: embeddings (``/v1/inference/embeddings``) and chat completions
(``/v1/openai/v1/chat/completions``) at the stack's ``url``."""

from __future__ import annotations

from pydantic import Field

from ._base import EmbeddingSettings, ExternalServiceSettings, SecretField, SecretValue, ServiceSpec, TaskType, UrlField


class LlamaServiceSettings(ExternalServiceSettings):
    # Required here, as in Elasticsearch: the Llama Stack server's URL of the operation.
    url: str = UrlField("The Llama Stack URL of the operation, e.g. http://llama:8321/v1/inference/embeddings.")
    model_id: str = Field(description="The model, e.g. all-MiniLM-L6-v2 or llama3.2:3b.")
    api_key: SecretValue | None = SecretField("Llama Stack API key, where the server asks for one.", required=False)


class LlamaEmbeddingServiceSettings(LlamaServiceSettings, EmbeddingSettings):
    pass


SPEC = ServiceSpec(
    name="llama",
    label="Llama",
    service_settings={
        **dict.fromkeys((TaskType.CHAT_COMPLETION, TaskType.COMPLETION), LlamaServiceSettings),
        TaskType.TEXT_EMBEDDING: LlamaEmbeddingServiceSettings,
    },
    default_rate_limit=3000,
    description="Llama Stack embeddings and chat completions.",
)
