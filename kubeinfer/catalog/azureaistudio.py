"""Azure AI Studio: models deployed as token (pay-as-you-go) or realtime endpoints."""

from __future__ import annotations

from enum import Enum

from pydantic import Field

from ._base import (
    EmbeddingSettings, ExternalServiceSettings, SecretField, SecretValue, ServiceSpec, Settings,
    TaskType, UrlField, providers_for,
)


class AzureAIStudioProvider(str, Enum):
    OPENAI = "openai"
    MISTRAL = "mistral"
    META = "meta"
    MICROSOFT_PHI = "microsoft_phi"
    COHERE = "cohere"
    DATABRICKS = "databricks"


class EndpointType(str, Enum):
    TOKEN = "token"
    REALTIME = "realtime"


class AzureAIStudioServiceSettings(ExternalServiceSettings):
    api_key: SecretValue = SecretField("Azure AI Studio key.")
    target: str = UrlField("The target URL of the deployed model.")
    provider: AzureAIStudioProvider
    endpoint_type: EndpointType


EmbeddingProviderName = providers_for(TaskType.TEXT_EMBEDDING, AzureAIStudioProvider, AzureAIStudioProvider.OPENAI,
                                      AzureAIStudioProvider.COHERE)


class AzureAIStudioEmbeddingServiceSettings(AzureAIStudioServiceSettings, EmbeddingSettings):
    provider: EmbeddingProviderName = Field(description="openai or cohere: the providers with embedding models.")


RerankProviderName = providers_for(TaskType.RERANK, AzureAIStudioProvider, AzureAIStudioProvider.COHERE)


class AzureAIStudioRerankServiceSettings(AzureAIStudioServiceSettings):
    provider: RerankProviderName = Field(description="cohere: the provider with rerank models.")


class AzureAIStudioRerankTaskSettings(Settings):
    return_documents: bool | None = None
    top_n: int | None = Field(default=None, gt=0)


class AzureAIStudioEmbeddingTaskSettings(Settings):
    user: str | None = None


class AzureAIStudioCompletionTaskSettings(Settings):
    do_sample: float | None = None
    max_new_tokens: int | None = Field(default=None, gt=0)
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, ge=0.0, le=2.0)


SPEC = ServiceSpec(
    name="azureaistudio",
    label="Azure AI Studio",
    service_settings={
        TaskType.COMPLETION: AzureAIStudioServiceSettings,
        TaskType.RERANK: AzureAIStudioRerankServiceSettings,
        TaskType.TEXT_EMBEDDING: AzureAIStudioEmbeddingServiceSettings,
    },
    task_settings={
        TaskType.COMPLETION: AzureAIStudioCompletionTaskSettings,
        TaskType.RERANK: AzureAIStudioRerankTaskSettings,
        TaskType.TEXT_EMBEDDING: AzureAIStudioEmbeddingTaskSettings,
    },
    default_rate_limit=240,
    description="Azure AI Studio deployments (OpenAI, Mistral, Meta, Microsoft Phi, Cohere, Databricks).",
)
