"""Hugging Face Inference Endpoints: feature extraction, chat completions (the OpenAI-compatible
``/v1/chat/completions``) and reranking at the endpoint's ``url``."""

from __future__ import annotations

from typing import ClassVar

from ._base import (
    EmbeddingSettings, ExternalServiceSettings, SecretField, SecretValue, ServiceSpec, Settings, TaskType, UrlField,
)
from pydantic import Field


class HuggingFaceServiceSettings(ExternalServiceSettings, EmbeddingSettings):
    api_key: SecretValue = SecretField("Hugging Face access token.")
    # Required here, as in Elasticsearch: the Inference Endpoint's own URL.
    url: str = UrlField("The Hugging Face Inference Endpoint URL.")


class HuggingFaceModelServiceSettings(ExternalServiceSettings):
    api_key: SecretValue = SecretField("Hugging Face access token.")
    url: str = UrlField("The Hugging Face Inference Endpoint URL (with /v1/chat/completions for chat).")
    model_id: str | None = Field(default=None, description="The model, where the endpoint serves several.")


class HuggingFaceRerankTaskSettings(Settings):
    # Elasticsearch asks Text Embeddings Inference for the texts unless told not to.
    return_documents_default: ClassVar[bool] = True

    return_documents: bool | None = None
    top_n: int | None = Field(default=None, gt=0)


class HuggingFaceChatServiceSettings(ExternalServiceSettings):
    api_key: SecretValue = SecretField("Hugging Face access token.")
    url: str = UrlField("The chat completions URL of the Inference Endpoint (OpenAI-compatible).")
    model_id: str | None = Field(default=None, description="The model, for endpoints that serve more than one.")


SPEC = ServiceSpec(
    name="hugging_face",
    label="Hugging Face",
    service_settings={
        TaskType.CHAT_COMPLETION: HuggingFaceChatServiceSettings,
        **dict.fromkeys((TaskType.COMPLETION, TaskType.RERANK), HuggingFaceModelServiceSettings),
        TaskType.TEXT_EMBEDDING: HuggingFaceServiceSettings,
    },
    task_settings={TaskType.RERANK: HuggingFaceRerankTaskSettings},
    default_rate_limit=3000,
    description="Hugging Face Inference Endpoints (feature extraction, chat completions, reranking).",
)
