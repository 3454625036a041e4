"""Azure AI Studio: models deployed as token (pay-as-you-go) or realtime endpoints."""

from __future__ import annotations

from enum import Enum

from pydantic import Field, field_validator

from ._base import (
    EmbeddingSettings, ExternalServiceSettings, SecretField, SecretValue, ServiceSpec, Settings,
    TaskType,
)
from ..errors import status_exception


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
    target: str = Field(description="The target URL of the deployed model.")
    provider: AzureAIStudioProvider
    endpoint_type: EndpointType


class EmbeddingProvider(str, Enum):
    OPENAI = AzureAIStudioProvider.OPENAI.value
    COHERE = AzureAIStudioProvider.COHERE.value


class AzureAIStudioEmbeddingServiceSettings(AzureAIStudioServiceSettings, EmbeddingSettings):
    provider: EmbeddingProvider = Field(description="openai or cohere: the providers with embedding models.")

    @field_validator("provider", mode="before")
    @classmethod
    def _provider_embeds(cls, value: object) -> object:
        known, embeds = AzureAIStudioProvider._value2member_map_, EmbeddingProvider._value2member_map_
        if isinstance(value, str) and value in known and value not in embeds:
            raise status_exception(f"The [text_embedding] task type for provider [{value}] is not available")
        return value


class RerankProvider(str, Enum):
    COHERE = AzureAIStudioProvider.COHERE.value


class AzureAIStudioRerankServiceSettings(AzureAIStudioServiceSettings):
    provider: RerankProvider = Field(description="cohere: the provider with rerank models.")

    @field_validator("provider", mode="before")
    @classmethod
    def _provider_reranks(cls, value: object) -> object:
        known, reranks = AzureAIStudioProvider._value2member_map_, RerankProvider._value2member_map_
        if isinstance(value, str) and value in known and value not in reranks:
            raise status_exception(f"The [rerank] task type for provider [{value}] is not available")
        return value


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
    default_rate_limit={TaskType.TEXT_EMBEDDING: 240, TaskType.COMPLETION: 240, TaskType.RERANK: 240},
    description="Azure AI Studio deployments (OpenAI, Mistral, Meta, Microsoft Phi, Cohere, Databricks).",
)
