"""OpenAI: ``/v1/embeddings`` and ``/v1/chat/completions`` with a bearer API key, or with
an access token got from ``token_url`` by OAuth 2.0's client credentials grant.

``url`` may be a base URL (``https://proxy.example/v1``) or, as in Elasticsearch, the
full URL of the operation; either way it replaces ``https://api.openai.com/v1``.
"""

from __future__ import annotations

from typing import Any, AsyncIterator

from kubeinfer.catalog import InferenceEndpointConfig, TaskType
from ..results import CompletionDelta, InferenceResult
from ..base import InferenceRequest
from ..chat import ChatCompletionChunk, ChatRequest
from . import openai_shapes
from .answers import embeddings
from .oauth2 import ClientCredentialsGrant
from .openai_shapes import with_custom_headers
from .proxy import ProviderBackend

BASE_URL = "https://api.openai.com/v1"


class OpenAIBackend(ProviderBackend):
    default_similarity = "dot_product"

    def operation_url(self) -> str:
        path = "/" + openai_shapes.OPERATIONS[self.config.task_type]
        base = self.base_url(BASE_URL)
        return base if base.endswith(path) else base + path

    def credentials(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.secret('api_key')}"}

    def headers(self, task_settings: dict[str, Any] | None = None) -> dict[str, str]:
        headers = with_custom_headers(self.credentials(), task_settings)
        organization = self.setting("organization_id")
        if organization:
            headers["OpenAI-Organization"] = organization
        return headers

    async def infer(self, request: InferenceRequest) -> InferenceResult:
        user = request.task_settings.get("user")
        if self.config.task_type in (TaskType.TEXT_EMBEDDING, TaskType.EMBEDDING):
            self.require_text(request)
            body = openai_shapes.embeddings_body(
                request.input,
                model=self.setting("model_id"),
                encoding_format="float",
                dimensions=self.setting("dimensions"),
                user=user,
            )
            headers = self.headers(request.task_settings)
            answer = await self.call_json(self.operation_url(), body, request, headers=headers)
            parsed = self.translate(openai_shapes.parse_embeddings, answer, len(request.input))
            if self.config.task_type == TaskType.EMBEDDING:
                return embeddings(parsed.vectors)
            return parsed
        body = openai_shapes.chat_body(request.input, model=self.setting("model_id"), n=1, user=user)
        headers = self.headers(request.task_settings)
        answer = await self.call_json(self.operation_url(), body, request, headers=headers)
        return self.translate(openai_shapes.parse_chat, answer)

    async def stream(self, request: InferenceRequest) -> AsyncIterator[CompletionDelta]:
        if self.config.task_type != TaskType.COMPLETION:
            raise self.streaming_unsupported()
        body = openai_shapes.chat_body(
            request.input, stream=True, model=self.setting("model_id"), n=1, user=request.task_settings.get("user")
        )
        async with self.open_stream(
            self.operation_url(), body, request, headers=self.headers(request.task_settings)
        ) as response:
            async for chunk in openai_shapes.chat_deltas(response):
                yield chunk


    async def chat(self, request: ChatRequest) -> AsyncIterator[ChatCompletionChunk]:
        body = openai_shapes.unified_chat_body(
            request, model=self.setting("model_id"), user=self.config.task_settings.model_dump().get("user"),
            reasoning_effort=openai_shapes.reasoning_effort(request),
        )
        headers = self.headers(self.config.task_settings.model_dump(exclude_none=True))
        async with self.open_stream(self.operation_url(), body, request, headers=headers) as response:
            async for chunk in openai_shapes.chat_chunks(response):
                yield chunk


class OpenAIClientCredentialsBackend(ClientCredentialsGrant, OpenAIBackend):
    """OpenAI (or a gateway before it) authorized by a token from the endpoint's ``token_url``."""

    def token_url(self) -> str:
        return self.setting("token_url")


def create_backend(config: InferenceEndpointConfig, **options: Any) -> OpenAIBackend:
    if getattr(config.service_settings, "client_secret", None) is not None:
        return OpenAIClientCredentialsBackend(config, **options)
    return OpenAIBackend(config, **options)
