"""Groq: chat completions through Groq's OpenAI-compatible API."""

from __future__ import annotations

from pydantic import Field

from ._base import ExternalServiceSettings, SecretField, SecretValue, ServiceSpec, TaskType


class GroqServiceSettings(ExternalServiceSettings):
    api_key: SecretValue = SecretField("Groq API key.")
    model_id: str = Field(description="The model, e.g. llama-3.3-70b-versatile.")


SPEC = ServiceSpec(
    name="groq",
    label="Groq",
    service_settings={TaskType.CHAT_COMPLETION: GroqServiceSettings},
    default_rate_limit=1000,
    description="Groq chat completions.",
)
