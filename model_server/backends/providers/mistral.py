"""Mistral: ``/v1/embeddings`` (OpenAI's shape) with a bearer API key.

``url`` replaces ``https://api.mistral.ai/v1`` (or is the full embeddings URL).
"""

from __future__ import annotations

from typing import Any

from kubeinfer.catalog import InferenceEndpointConfig
from ..results import InferenceResult
from ..base import InferenceRequest
from . import openai_shapes
from .proxy import ProviderBackend

BASE_URL = "https://api.mistral.ai/v1"


class MistralBackend(ProviderBackend):
    default_similarity = "dot_product"

    async def infer(self, request: InferenceRequest) -> InferenceResult:
        base = self.base_url(BASE_URL)
        url = base if base.endswith("/embeddings") else base + "/embeddings"
        body = openai_shapes.embeddings_body(request.input, model=self.setting("model"), encoding_format="float")
        answer = await self.call_json(url, body, request, headers={"Authorization": f"Bearer {self.secret('api_key')}"})
        return self.translate(openai_shapes.parse_embeddings, answer, len(request.input))


def create_backend(config: InferenceEndpointConfig, **options: Any) -> MistralBackend:
    return MistralBackend(config, **options)
