"""Amazon Bedrock: invoke/converse per model provider, signed with AWS Signature V4."""

from __future__ import annotations

from enum import Enum

from pydantic import Field, field_validator

from ._base import (
    EmbeddingSettings, ExternalServiceSettings, SecretField, SecretValue, ServiceSpec, Settings, TaskType,
)
from ..errors import status_exception


class BedrockProvider(str, Enum):
    AMAZONTITAN = "amazontitan"
    ANTHROPIC = "anthropic"
    AI21LABS = "ai21labs"
    COHERE = "cohere"
    META = "meta"
    MISTRAL = "mistral"


class AmazonBedrockServiceSettings(ExternalServiceSettings):
    access_key: SecretValue = SecretField("AWS access key id.")
    secret_key: SecretValue = SecretField("AWS secret access key.")
    region: str = Field(description="The AWS region, e.g. us-east-1.")
    provider: BedrockProvider
    model: str = Field(description="The model id or inference profile, e.g. amazon.titan-embed-text-v2:0.")


class EmbeddingProvider(str, Enum):
    AMAZONTITAN = BedrockProvider.AMAZONTITAN.value
    COHERE = BedrockProvider.COHERE.value


class AmazonBedrockEmbeddingServiceSettings(AmazonBedrockServiceSettings, EmbeddingSettings):
    provider: EmbeddingProvider = Field(description="amazontitan or cohere: the providers with embedding models.")

    @field_validator("provider", mode="before")
    @classmethod
    def _provider_embeds(cls, value: object) -> object:
        known, embeds = BedrockProvider._value2member_map_, EmbeddingProvider._value2member_map_
        if isinstance(value, str) and value in known and value not in embeds:
            raise status_exception(f"The [text_embedding] task type for provider [{value}] is not available")
        return value


class AmazonBedrockCompletionTaskSettings(Settings):
    max_new_tokens: int | None = Field(default=None, gt=0)
    temperature: float | None = Field(default=None, ge=0.0, le=1.0)
    top_k: float | None = Field(default=None, ge=0.0, le=1.0)
    top_p: float | None = Field(default=None, ge=0.0, le=1.0)


SPEC = ServiceSpec(
    name="amazonbedrock",
    service_settings={
        TaskType.CHAT_COMPLETION: AmazonBedrockServiceSettings,
        TaskType.COMPLETION: AmazonBedrockServiceSettings,
        TaskType.TEXT_EMBEDDING: AmazonBedrockEmbeddingServiceSettings,
    },
    task_settings={
        TaskType.CHAT_COMPLETION: AmazonBedrockCompletionTaskSettings,
        TaskType.COMPLETION: AmazonBedrockCompletionTaskSettings,
    },
    default_rate_limit={TaskType.TEXT_EMBEDDING: 240, TaskType.COMPLETION: 240, TaskType.CHAT_COMPLETION: 240},
    description="Amazon Bedrock (Titan, Cohere, Anthropic, AI21 Labs, Meta, Mistral).",
)
