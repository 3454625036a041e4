"""OpenAI: text embeddings and chat completions (api.openai.com or a compatible ``url``),
authorized by an API key or by OAuth 2.0 client credentials exchanged at ``token_url``."""

from __future__ import annotations

from pydantic import Field, model_validator

from ._base import (
    EmbeddingSettings, ExternalServiceSettings, SecretField, SecretValue, ServiceSpec, Settings, TaskType, UrlField,
)
from .oauth2 import ClientCredentials, check_one_credential


class OpenAIServiceSettings(ClientCredentials, ExternalServiceSettings):
    api_key: SecretValue | None = SecretField("OpenAI API key; or give OAuth 2.0 client credentials.",
                                              required=False)
    token_url: str | None = UrlField(
        "OAuth 2.0 client credentials: the token endpoint that exchanges them for an access token.",
        required=False, min_length=1,
    )
    model_id: str = Field(description="The model, e.g. text-embedding-3-small or gpt-4o.")
    organization_id: str | None = None
    max_input_tokens: int | None = Field(default=None, gt=0)

    one_of_required = (("api_key", "client_secret"),)
    mutually_exclusive = (("api_key", "client_secret"),)
    required_together = (("client_id", "client_secret", "scopes", "token_url"),)

    @model_validator(mode="after")
    def _one_credential(self) -> "OpenAIServiceSettings":
        check_one_credential(self, ("api_key", "client_secret"))
        return self


class OpenAIEmbeddingServiceSettings(OpenAIServiceSettings, EmbeddingSettings):
    pass


class OpenAITaskSettings(Settings):
    user: str | None = None
    headers: dict[str, str] | None = Field(default=None, description="Extra HTTP headers sent with each request.")


SPEC = ServiceSpec(
    name="openai",
    label="OpenAI",
    service_settings={
        **dict.fromkeys((TaskType.CHAT_COMPLETION, TaskType.COMPLETION), OpenAIServiceSettings),
        **dict.fromkeys((TaskType.EMBEDDING, TaskType.TEXT_EMBEDDING), OpenAIEmbeddingServiceSettings),
    },
    task_settings=OpenAITaskSettings,
    default_rate_limit={
        **dict.fromkeys((TaskType.TEXT_EMBEDDING, TaskType.EMBEDDING), 3000),
        **dict.fromkeys((TaskType.COMPLETION, TaskType.CHAT_COMPLETION), 500),
    },
    description="OpenAI embeddings, completions and the unified chat completion API.",
)
