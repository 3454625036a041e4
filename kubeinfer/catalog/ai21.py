"""AI21: the Jamba models through AI21's OpenAI-compatible chat completions API."""

from __future__ import annotations

from pydantic import Field

from ._base import ExternalServiceSettings, SecretField, SecretValue, ServiceSpec, TaskType


class Ai21ServiceSettings(ExternalServiceSettings):
    api_key: SecretValue = SecretField("AI21 API key.")
    model_id: str = Field(description="The model, e.g. jamba-large or jamba-mini.")


SPEC = ServiceSpec(
    name="ai21",
    label="AI21",
    service_settings=dict.fromkeys((TaskType.COMPLETION, TaskType.CHAT_COMPLETION), Ai21ServiceSettings),
    default_rate_limit=200,
    description="AI21 Jamba chat completions.",
)
