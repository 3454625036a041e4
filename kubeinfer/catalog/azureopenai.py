"""Azure OpenAI: embeddings and chat completions of a deployment in an Azure resource."""

from __future__ import annotations

from pydantic import Field, model_validator

from ._base import EmbeddingSettings, ExternalServiceSettings, SecretField, SecretValue, ServiceSpec, TaskType
from ..errors import validation_exception
from .openai import OpenAITaskSettings


class AzureOpenAIServiceSettings(ExternalServiceSettings):
    api_key: SecretValue | None = SecretField("Azure OpenAI key; or give entra_id.", required=False)
    entra_id: SecretValue | None = SecretField("Microsoft Entra ID token; or give api_key.", required=False)
    resource_name: str = Field(description="The Azure OpenAI resource.")
    deployment_id: str = Field(description="The model deployment within the resource.")
    api_version: str = Field(description="The Azure OpenAI API version, e.g. 2024-02-01.")

    # Exactly one credential; the CRD generator reads these groups too.
    one_of_required = (("api_key", "entra_id"),)
    mutually_exclusive = (("api_key", "entra_id"),)

    @model_validator(mode="after")
    def _one_credential(self) -> "AzureOpenAIServiceSettings":
        # Elasticsearch keeps these two in its secret settings, hence the scope's name.
        if self.api_key is None and self.entra_id is None:
            raise validation_exception("[secret_settings] must have either the [api_key] or the [entra_id] setting")
        if self.api_key is not None and self.entra_id is not None:
            raise validation_exception(
                "[secret_settings] must have only one of the [api_key] or the [entra_id] settings"
            )
        return self


class AzureOpenAIEmbeddingServiceSettings(AzureOpenAIServiceSettings, EmbeddingSettings):
    pass


SPEC = ServiceSpec(
    name="azureopenai",
    label="Azure OpenAI",
    service_settings={
        **dict.fromkeys((TaskType.CHAT_COMPLETION, TaskType.COMPLETION), AzureOpenAIServiceSettings),
        TaskType.TEXT_EMBEDDING: AzureOpenAIEmbeddingServiceSettings,
    },
    # Azure's deployments take OpenAI's task settings.
    task_settings=OpenAITaskSettings,
    default_rate_limit={
        TaskType.TEXT_EMBEDDING: 1440,
        **dict.fromkeys((TaskType.COMPLETION, TaskType.CHAT_COMPLETION), 120),
    },
    description="Azure OpenAI embeddings and chat completions.",
)
