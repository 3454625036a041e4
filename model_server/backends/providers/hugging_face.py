"""Hugging Face Inference Endpoints: feature extraction at the endpoint's own ``url``
with a bearer access token; the answer is a list of vectors (or ``{"embeddings": [...]}``).
"""

from __future__ import annotations

from typing import Any

from kubeinfer.catalog import InferenceEndpointConfig
from ..results import InferenceResult, TextEmbeddings
from ..base import InferenceRequest
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


def create_backend(config: InferenceEndpointConfig, **options: Any) -> HuggingFaceBackend:
    return HuggingFaceBackend(config, **options)
