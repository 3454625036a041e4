"""Anthropic: the messages API, for completion."""

from __future__ import annotations

from pydantic import Field

from ._base import ExternalServiceSettings, SecretField, SecretValue, ServiceSpec, Settings, TaskType


class AnthropicServiceSettings(ExternalServiceSettings):
    api_key: SecretValue = SecretField("Anthropic API key.")
    model_id: str = Field(description="The model, e.g. claude-3-5-sonnet-latest.")


class AnthropicTaskSettings(Settings):
    max_tokens: int = Field(gt=0, description="Required by Anthropic's messages API.")
    temperature: float | None = Field(default=None, ge=0.0, le=1.0)
    top_k: int | None = Field(default=None, gt=0)
    top_p: float | None = Field(default=None, ge=0.0, le=1.0)


SPEC = ServiceSpec(
    name="anthropic",
    label="Anthropic",
    service_settings=dict.fromkeys((TaskType.CHAT_COMPLETION, TaskType.COMPLETION), AnthropicServiceSettings),
    task_settings=dict.fromkeys((TaskType.CHAT_COMPLETION, TaskType.COMPLETION), AnthropicTaskSettings),
    default_rate_limit=50,
    description="Anthropic messages, plain and as the unified chat completion API.",
)
