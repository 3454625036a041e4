"""Azure OpenAI: embeddings and chat completions of a deployment in an Azure resource."""

from __future__ import annotations

from pydantic import Field, model_validator

from ._base import (
    EmbeddingSettings, ExternalServiceSettings, SecretField, SecretValue, ServiceSpec, Settings,
    TaskType, provider_backend,
)
from ..errors import validation_exception


class AzureOpenAIServiceSettings(ExternalServiceSettings, EmbeddingSettings):
    api_key: SecretValue | None = SecretField("Azure OpenAI key; or give entra_id.", required=False)
    entra_id: SecretValue | None = SecretField("Microsoft Entra ID token; or give api_key.", required=False)
    resource_name: str = Field(description="The Azure OpenAI resource.")
    deployment_id: str = Field(description="The model deployment within the resource.")
    api_version: str = Field(description="The Azure OpenAI API version, e.g. 2024-02-01.")

    @model_validator(mode="after")
    def _one_credential(self) -> "AzureOpenAIServiceSettings":
        if (self.api_key is None) == (self.entra_id is None):
            raise validation_exception(
                "[service_settings] must have either the [api_key] or the [entra_id] setting"
                if self.api_key is None
                else "[service_settings] must have only one of the [api_key] or the [entra_id] settings"
            )
        return self


class AzureOpenAITaskSettings(Settings):
    user: str | None = None


SPEC = ServiceSpec(
    name="azureopenai",
    service_settings={
        TaskType.COMPLETION: AzureOpenAIServiceSettings,
        TaskType.TEXT_EMBEDDING: AzureOpenAIServiceSettings,
    },
    task_settings={TaskType.COMPLETION: AzureOpenAITaskSettings, TaskType.TEXT_EMBEDDING: AzureOpenAITaskSettings},
    default_rate_limit={TaskType.TEXT_EMBEDDING: 1440, TaskType.COMPLETION: 120},
    backend=provider_backend("azureopenai"),
    description="Azure OpenAI embeddings and chat completions.",
)
