"""Azure OpenAI: embeddings and chat completions of a deployment in an Azure resource, authorized
by an API key, a Microsoft Entra ID token, or Entra ID client credentials (``tenant_id``)."""

from __future__ import annotations

from pydantic import Field, model_validator

from ._base import EmbeddingSettings, ExternalServiceSettings, SecretField, SecretValue, ServiceSpec, TaskType
from .oauth2 import ClientCredentials, check_one_credential
from .openai import OpenAITaskSettings

CREDENTIALS = ("api_key", "entra_id", "client_secret")


class AzureOpenAIServiceSettings(ClientCredentials, ExternalServiceSettings):
    api_key: SecretValue | None = SecretField("Azure OpenAI key; or give entra_id or client credentials.",
                                              required=False)
    entra_id: SecretValue | None = SecretField("Microsoft Entra ID token; or give api_key or client credentials.",
                                               required=False)
    tenant_id: str | None = Field(
        default=None, min_length=1,
        description="OAuth 2.0 client credentials: the Microsoft Entra ID tenant (directory) of the application.",
    )
    resource_name: str = Field(description="The Azure OpenAI resource.")
    deployment_id: str = Field(description="The model deployment within the resource.")
    api_version: str = Field(description="The Azure OpenAI API version, e.g. 2024-02-01.")

    # Exactly one credential; the CRD generator reads these groups too.
    one_of_required = (CREDENTIALS,)
    mutually_exclusive = (CREDENTIALS,)
    required_together = (("client_id", "client_secret", "scopes", "tenant_id"),)

    @model_validator(mode="after")
    def _one_credential(self) -> "AzureOpenAIServiceSettings":
        # Elasticsearch keeps the credentials in its secret settings, hence the scope's name.
        check_one_credential(self, CREDENTIALS)
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
