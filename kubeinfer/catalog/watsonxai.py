"""IBM watsonx.ai: text embeddings, with the IAM token exchange."""

from __future__ import annotations

from pydantic import Field

from ._base import (
    EmbeddingSettings, ExternalServiceSettings, SecretField, SecretValue, ServiceSpec, TaskType,
)


class WatsonxServiceSettings(ExternalServiceSettings, EmbeddingSettings):
    api_key: SecretValue = SecretField("IBM Cloud API key.")
    # Required here, as in Elasticsearch: the watsonx.ai regional URL.
    url: str = Field(description="The watsonx.ai URL, e.g. https://us-south.ml.cloud.ibm.com.")
    api_version: str = Field(description="The watsonx.ai API version date, e.g. 2024-05-02.")
    model_id: str
    project_id: str


class WatsonxChatServiceSettings(ExternalServiceSettings):
    api_key: SecretValue = SecretField("IBM Cloud API key.")
    url: str = Field(description="The watsonx.ai URL, e.g. https://us-south.ml.cloud.ibm.com.")
    api_version: str = Field(description="The watsonx.ai API version date, e.g. 2024-05-02.")
    model_id: str
    project_id: str


SPEC = ServiceSpec(
    name="watsonxai",
    service_settings={
        TaskType.CHAT_COMPLETION: WatsonxChatServiceSettings,
        TaskType.TEXT_EMBEDDING: WatsonxServiceSettings,
    },
    default_rate_limit={TaskType.TEXT_EMBEDDING: 120, TaskType.CHAT_COMPLETION: 120},
    description="IBM watsonx.ai embeddings.",
)
