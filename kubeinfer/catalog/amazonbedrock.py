"""Amazon Bedrock: invoke/converse per model provider, signed with AWS Signature V4."""

from __future__ import annotations

from enum import Enum

from pydantic import Field

from .regions import RegionSetting
from ._base import (
    EmbeddingSettings, ExternalServiceSettings, SecretField, SecretValue, ServiceSpec, Settings, TaskType,
    providers_for,
)


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


EmbeddingProviderName = providers_for(TaskType.TEXT_EMBEDDING, BedrockProvider, BedrockProvider.AMAZONTITAN,
                                      BedrockProvider.COHERE)


class AmazonBedrockEmbeddingServiceSettings(AmazonBedrockServiceSettings, EmbeddingSettings):
    provider: EmbeddingProviderName = Field(description="amazontitan or cohere: the providers with embedding models.")


class AmazonBedrockCompletionTaskSettings(Settings):
    max_new_tokens: int | None = Field(default=None, gt=0)
    temperature: float | None = Field(default=None, ge=0.0, le=1.0)
    top_k: float | None = Field(default=None, ge=0.0, le=1.0)
    top_p: float | None = Field(default=None, ge=0.0, le=1.0)


SPEC = ServiceSpec(
    name="amazonbedrock",
    label="Amazon Bedrock",
    service_settings={
        **dict.fromkeys((TaskType.CHAT_COMPLETION, TaskType.COMPLETION), AmazonBedrockServiceSettings),
        TaskType.TEXT_EMBEDDING: AmazonBedrockEmbeddingServiceSettings,
    },
    task_settings=dict.fromkeys((TaskType.CHAT_COMPLETION, TaskType.COMPLETION), AmazonBedrockCompletionTaskSettings),
    default_rate_limit=240,
    # A model id may be a cross-region inference profile: "us.", "eu.", "apac."... ones
    # serve from any region of the called region's geography, "global." ones from any.
    region=RegionSetting("aws", "region", profile_setting="model",
                         geography_profiles=("us.", "us-gov.", "eu.", "apac.", "jp.", "au.", "ca."),
                         global_profiles=("global.",)),
    description="Amazon Bedrock (Titan, Cohere, Anthropic, AI21 Labs, Meta, Mistral).",
)
