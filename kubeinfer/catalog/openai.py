"""OpenAI: text embeddings and chat completions (api.openai.com or a compatible ``url``)."""

from __future__ import annotations

from pydantic import Field

from ._base import (
    EmbeddingSettings, ExternalServiceSettings, SecretField, SecretValue, ServiceSpec, Settings,
    TaskType,
)


class OpenAIServiceSettings(ExternalServiceSettings):
    api_key: SecretValue = SecretField("OpenAI API key.")
    model_id: str = Field(description="The model, e.g. text-embedding-3-small or gpt-4o.")
    organization_id: str | None = None
    max_input_tokens: int | None = Field(default=None, gt=0)


class OpenAIEmbeddingServiceSettings(OpenAIServiceSettings, EmbeddingSettings):
    pass


class OpenAITaskSettings(Settings):
    user: str | None = None


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
