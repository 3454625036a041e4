"""IBM watsonx.ai: text embeddings, reranking and chat, with the IAM token exchange."""

from __future__ import annotations

from pydantic import Field

from ._base import (
    EmbeddingSettings, ExternalServiceSettings, SecretField, SecretValue, ServiceSpec, Settings, TaskType, UrlField,
)


class WatsonxModelServiceSettings(ExternalServiceSettings):
    api_key: SecretValue = SecretField("IBM Cloud API key.")
    # Required here, as in Elasticsearch: the watsonx.ai regional URL.
    url: str = UrlField("The watsonx.ai URL, e.g. https://us-south.ml.cloud.ibm.com.")
    api_version: str = Field(description="The watsonx.ai API version date, e.g. 2024-05-02.")
    model_id: str
    project_id: str


class WatsonxServiceSettings(WatsonxModelServiceSettings, EmbeddingSettings):
    pass


class WatsonxRerankTaskSettings(Settings):
    truncate_input_tokens: int | None = Field(default=None, gt=0)
    return_documents: bool | None = None
    top_n: int | None = Field(default=None, gt=0)


SPEC = ServiceSpec(
    name="watsonxai",
    label="IBM watsonx",
    service_settings={
        **dict.fromkeys((TaskType.CHAT_COMPLETION, TaskType.COMPLETION, TaskType.RERANK), WatsonxModelServiceSettings),
        TaskType.TEXT_EMBEDDING: WatsonxServiceSettings,
    },
    task_settings={TaskType.RERANK: WatsonxRerankTaskSettings},
    default_rate_limit=120,
    description="IBM watsonx.ai embeddings, reranking and chat.",
)
