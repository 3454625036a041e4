"""Mistral: ``/v1/embeddings`` and ``/v1/chat/completions`` (OpenAI's shapes; chat takes
``max_tokens`` and no ``stream_options``) with a bearer API key.

``url`` replaces ``https://api.mistral.ai/v1`` (or is the full URL of the operation).
"""

from __future__ import annotations

from typing import Any, AsyncIterator

from kubeinfer.catalog import InferenceEndpointConfig, TaskType
from ..results import CompletionDelta, InferenceResult
from ..base import InferenceRequest
from ..chat import ChatCompletionChunk, ChatRequest
from . import openai_shapes
from .proxy import ProviderBackend

BASE_URL = "https://api.mistral.ai/v1"


class MistralBackend(ProviderBackend):
    default_similarity = "dot_product"

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.secret('api_key')}"}

    async def chat(self, request: ChatRequest) -> AsyncIterator[ChatCompletionChunk]:
        base = self.base_url(BASE_URL)
        url = base if base.endswith("/chat/completions") else base + "/chat/completions"
        body = openai_shapes.unified_chat_body(
            request, model=self.setting("model"), max_tokens_field="max_tokens", stream_options=False
        )
        async with self.open_stream(url, body, request, headers=self.headers()) as response:
            async for chunk in openai_shapes.chat_chunks(response):
                yield chunk

    def chat_url(self) -> str:
        base = self.base_url(BASE_URL)
        return base if base.endswith("/chat/completions") else base + "/chat/completions"

    def completion_body(self, request: InferenceRequest, stream: bool = False) -> dict[str, Any]:
        return openai_shapes.chat_body(request.input, stream=stream, model=self.setting("model"), n=1)

    async def stream(self, request: InferenceRequest) -> AsyncIterator[CompletionDelta]:
        if self.config.task_type != TaskType.COMPLETION:
            raise self.streaming_unsupported()
        body = self.completion_body(request, stream=True)
        async with self.open_stream(self.chat_url(), body, request, headers=self.headers()) as response:
            async for chunk in openai_shapes.chat_deltas(response):
                yield chunk

    async def infer(self, request: InferenceRequest) -> InferenceResult:
        if self.config.task_type == TaskType.COMPLETION:
            answer = await self.call_json(self.chat_url(), self.completion_body(request), request,
                                          headers=self.headers())
            return self.translate(openai_shapes.parse_chat, answer)
        base = self.base_url(BASE_URL)
        url = base if base.endswith("/embeddings") else base + "/embeddings"
        body = openai_shapes.embeddings_body(request.input, model=self.setting("model"), encoding_format="float")
        answer = await self.call_json(url, body, request, headers={"Authorization": f"Bearer {self.secret('api_key')}"})
        return self.translate(openai_shapes.parse_embeddings, answer, len(request.input))


def create_backend(config: InferenceEndpointConfig, **options: Any) -> MistralBackend:
    return MistralBackend(config, **options)
