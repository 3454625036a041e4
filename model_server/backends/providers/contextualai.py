"""Contextual AI: ``/v1/rerank`` with a bearer API key; the task settings' ``top_k`` is
sent as ``top_n`` and ``instruction`` as is. ``url`` replaces ``https://api.contextual.ai/v1``
(or is the full URL of the operation).
"""

from __future__ import annotations

from typing import Any

from kubeinfer.catalog import InferenceEndpointConfig
from ..base import InferenceRequest
from ..results import InferenceResult
from .answers import rerank_results
from .proxy import ProviderBackend

BASE_URL = "https://api.contextual.ai/v1"


def parse_rerank(answer: dict[str, Any], count: int) -> InferenceResult:
    scored = []
    for item in answer["results"]:
        index = int(item["index"])
        if not 0 <= index < count:
            raise ValueError(f"result index [{index}] is out of range")
        scored.append((index, item["relevance_score"], None))
    return rerank_results(scored)


class ContextualAIBackend(ProviderBackend):
    async def infer(self, request: InferenceRequest) -> InferenceResult:
        url = self.provider_url(BASE_URL + "/rerank", "/rerank")
        settings = request.task_settings
        body: dict[str, Any] = {
            "query": request.query or "", "documents": list(request.input), "model": self.setting("model_id"),
        }
        top_n = settings.get("top_n", settings.get("top_k"))  # the request's own top_n wins
        if top_n is not None:
            body["top_n"] = top_n
        if settings.get("instruction") is not None:
            body["instruction"] = settings["instruction"]
        headers = {"Authorization": f"Bearer {self.secret('api_key')}"}
        answer = await self.call_json(url, body, request, headers=headers)
        return self.translate(parse_rerank, answer, len(request.input))


def create_backend(config: InferenceEndpointConfig, **options: Any) -> ContextualAIBackend:
    return ContextualAIBackend(config, **options)
