"""Red Hat OpenShift AI: models served at the endpoint's ``url`` with OpenAI's wire format
(embeddings, chat completions) and the vLLM/Cohere-style rerank API."""

from __future__ import annotations

from pydantic import Field

from ._base import (
    EmbeddingSettings, ExternalServiceSettings, SecretField, SecretValue, ServiceSpec, Settings, TaskType, UrlField,
)


class OpenShiftAiServiceSettings(ExternalServiceSettings):
    api_key: SecretValue = SecretField("The model's token (Token authentication).")
    # Required here, as in Elasticsearch: the hosted model's URL.
    url: str = UrlField("The URL of the model served by OpenShift AI.")
    model_id: str | None = Field(default=None, description="The model, where the server needs its name.")


class OpenShiftAiEmbeddingServiceSettings(OpenShiftAiServiceSettings, EmbeddingSettings):
    pass


class OpenShiftAiRerankTaskSettings(Settings):
    return_documents: bool | None = None
    top_n: int | None = Field(default=None, gt=0)


SPEC = ServiceSpec(
    name="openshift_ai",
    label="OpenShift AI",
    service_settings={
        **dict.fromkeys((TaskType.CHAT_COMPLETION, TaskType.COMPLETION, TaskType.RERANK), OpenShiftAiServiceSettings),
        TaskType.TEXT_EMBEDDING: OpenShiftAiEmbeddingServiceSettings,
    },
    task_settings={TaskType.RERANK: OpenShiftAiRerankTaskSettings},
    default_rate_limit=3000,
    description="Red Hat OpenShift AI embeddings, reranking and chat completions.",
)
