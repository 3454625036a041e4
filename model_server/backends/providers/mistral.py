"""Mistral: ``/v1/embeddings`` and ``/v1/chat/completions`` (OpenAI's shapes; chat takes
``max_tokens`` and no ``stream_options``) with a bearer API key.

``url`` replaces ``https://api.mistral.ai/v1`` (or is the full URL of the operation).
"""

from __future__ import annotations

from typing import Any, AsyncIterator

from kubeinfer.catalog import InferenceEndpointConfig
from ..results import InferenceResult
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

    async def infer(self, request: InferenceRequest) -> InferenceResult:
        base = self.base_url(BASE_URL)
        url = base if base.endswith("/embeddings") else base + "/embeddings"
        body = openai_shapes.embeddings_body(request.input, model=self.setting("model"), encoding_format="float")
        answer = await self.call_json(url, body, request, headers={"Authorization": f"Bearer {self.secret('api_key')}"})
        return self.translate(openai_shapes.parse_embeddings, answer, len(request.input))


def create_backend(config: InferenceEndpointConfig, **options: Any) -> MistralBackend:
    return MistralBackend(config, **options)
