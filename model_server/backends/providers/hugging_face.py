"""Hugging Face Inference Endpoints: feature extraction at the endpoint's own ``url``
with a bearer access token; the answer is a list of vectors (or ``{"embeddings": [...]}``).
Chat completion posts OpenAI's chat body (``max_tokens``) to ``url``, the endpoint's
OpenAI-compatible ``/v1/chat/completions``, and reads OpenAI's chunks back.
"""

from __future__ import annotations

from typing import Any, AsyncIterator

from kubeinfer.catalog import InferenceEndpointConfig
from ..results import InferenceResult, TextEmbeddings
from ..base import InferenceRequest
from ..chat import ChatCompletionChunk, ChatRequest
from . import openai_shapes
from .answers import expect_count, float_vector, text_embeddings
from .proxy import ProviderBackend


def parse_features(answer: Any, count: int) -> TextEmbeddings:
    vectors = answer["embeddings"] if isinstance(answer, dict) else answer
    expect_count(vectors, count, "embeddings")
    return text_embeddings([float_vector(v) for v in vectors])


class HuggingFaceBackend(ProviderBackend):
    async def infer(self, request: InferenceRequest) -> InferenceResult:
        answer = await self.call_json(
            self.setting("url"),
            {"inputs": list(request.input)},
            request,
            headers={"Authorization": f"Bearer {self.secret('api_key')}"},
        )
        return self.translate(parse_features, answer, len(request.input))


    async def chat(self, request: ChatRequest) -> AsyncIterator[ChatCompletionChunk]:
        body = openai_shapes.unified_chat_body(request, model=self.setting("model_id"), max_tokens_field="max_tokens")
        headers = {"Authorization": f"Bearer {self.secret('api_key')}"}
        async with self.open_stream(self.setting("url"), body, request, headers=headers) as response:
            async for chunk in openai_shapes.chat_chunks(response):
                yield chunk


def create_backend(config: InferenceEndpointConfig, **options: Any) -> HuggingFaceBackend:
    return HuggingFaceBackend(config, **options)
