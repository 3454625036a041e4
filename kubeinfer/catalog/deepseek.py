"""DeepSeek: chat completions (OpenAI's wire format) at api.deepseek.com or ``url``."""

from __future__ import annotations

from pydantic import Field

from ._base import ExternalServiceSettings, SecretField, SecretValue, ServiceSpec, TaskType, UrlField


class DeepSeekServiceSettings(ExternalServiceSettings):
    api_key: SecretValue = SecretField("DeepSeek API key.")
    model_id: str = Field(description="The model, e.g. deepseek-chat.")
    url: str | None = UrlField(
        "The chat completions URL; https://api.deepseek.com/chat/completions when unset.", required=False
    )


SPEC = ServiceSpec(
    name="deepseek",
    label="DeepSeek",
    service_settings=dict.fromkeys((TaskType.COMPLETION, TaskType.CHAT_COMPLETION), DeepSeekServiceSettings),
    # Elasticsearch sets no rate limit of its own for DeepSeek.
    default_rate_limit={},
    description="DeepSeek chat completions.",
)
