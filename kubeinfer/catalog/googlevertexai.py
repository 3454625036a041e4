"""Google Vertex AI: text embeddings (predict), the ranking API and Gemini's generateContent
(or a Model Garden provider's endpoint), with a service account."""

from __future__ import annotations

from enum import Enum

from pydantic import Field, model_validator

from ..errors import validation_exception
from .regions import RegionSetting
from ._base import (
    EmbeddingSettings, ExternalServiceSettings, SecretField, SecretValue, ServiceSpec, Settings, TaskType, UrlField,
)


class GoogleVertexAIServiceSettings(ExternalServiceSettings):
    service_account_json: SecretValue = SecretField("The service account key, as JSON.")
    project_id: str = Field(description="The Google Cloud project.")
    model_id: str | None = Field(
        default=None, description="The ranking model, e.g. semantic-ranker-512@latest; the API's default when unset."
    )


class GoogleVertexAIEmbeddingServiceSettings(GoogleVertexAIServiceSettings, EmbeddingSettings):
    model_id: str = Field(description="The embedding model, e.g. text-embedding-004.")
    location: str | None = Field(
        default=None, description="The region of the model, e.g. us-central1; the global endpoint when unset."
    )


class ModelGardenProvider(str, Enum):
    GOOGLE = "google"
    ANTHROPIC = "anthropic"
    META = "meta"
    HUGGING_FACE = "hugging_face"
    MISTRAL = "mistral"
    AI21 = "ai21"


class GoogleVertexAICompletionServiceSettings(ExternalServiceSettings):
    service_account_json: SecretValue = SecretField("The service account key, as JSON.")
    provider: ModelGardenProvider | None = Field(
        default=None, description="google (Gemini on Vertex AI, the default) or a Model Garden provider."
    )
    project_id: str | None = Field(default=None, description="The Google Cloud project (google provider).")
    location: str | None = Field(default=None, description="The region; the global endpoint when unset.")
    model_id: str | None = Field(default=None, description="The model, e.g. gemini-2.5-flash (google provider).")
    url: str | None = UrlField("A Model Garden endpoint's URL.", required=False)
    streaming_url: str | None = UrlField("A Model Garden endpoint's streaming URL.", required=False)

    @model_validator(mode="after")
    def _provider_needs(self) -> "GoogleVertexAICompletionServiceSettings":
        if self.provider in (None, ModelGardenProvider.GOOGLE.value):
            missing = [name for name in ("project_id", "model_id") if getattr(self, name) is None]
            if missing:
                raise validation_exception(
                    *(f"[service_settings] does not contain the required setting [{name}]" for name in missing)
                )
        elif self.url is None and self.streaming_url is None:
            raise validation_exception(
                "[service_settings] does not contain one of the required settings [url, streaming_url]"
            )
        return self


class ThinkingConfig(Settings):
    thinking_budget: int | None = None


class GoogleVertexAICompletionTaskSettings(Settings):
    thinking_config: ThinkingConfig | None = None
    max_tokens: int | None = Field(default=None, gt=0, description="anthropic provider: max_tokens (1024 when unset).")


class GoogleVertexAIEmbeddingTaskSettings(Settings):
    auto_truncate: bool | None = None


class GoogleVertexAIRerankTaskSettings(Settings):
    top_n: int | None = Field(default=None, gt=0)


SPEC = ServiceSpec(
    name="googlevertexai",
    label="Google Vertex AI",
    service_settings={
        **dict.fromkeys((TaskType.CHAT_COMPLETION, TaskType.COMPLETION), GoogleVertexAICompletionServiceSettings),
        TaskType.RERANK: GoogleVertexAIServiceSettings,
        TaskType.TEXT_EMBEDDING: GoogleVertexAIEmbeddingServiceSettings,
    },
    task_settings={
        **dict.fromkeys((TaskType.CHAT_COMPLETION, TaskType.COMPLETION), GoogleVertexAICompletionTaskSettings),
        TaskType.RERANK: GoogleVertexAIRerankTaskSettings,
        TaskType.TEXT_EMBEDDING: GoogleVertexAIEmbeddingTaskSettings,
    },
    default_rate_limit={
        TaskType.TEXT_EMBEDDING: 30000,
        TaskType.RERANK: 300,
        **dict.fromkeys((TaskType.COMPLETION, TaskType.CHAT_COMPLETION), 1000),
    },
    # Unset, requests go to the global endpoint, which serves from any region.
    region=RegionSetting("gcp", "location", unset="global"),
    description="Google Vertex AI embeddings and ranking.",
)
