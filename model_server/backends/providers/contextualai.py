"""Contextual AI: ``/v1/rerank`` with a bearer API key; the task settings' ``top_k`` is
sent as ``top_n`` (a request's own ``top_n`` first) and ``instruction`` as is; the API
answers scores only, so the texts a request's ``return_documents`` asks for are added
here. ``url`` replaces ``https://api.contextual.ai/v1`` (or is the full URL of the operation).
"""

from __future__ import annotations

from typing import Any

from kubeinfer.catalog import InferenceEndpointConfig, returns_documents
from ..base import InferenceRequest
from ..results import InferenceResult
from .answers import scores_as_asked
from .proxy import ProviderBackend

BASE_URL = "https://api.contextual.ai/v1"


def parse_rerank(answer: dict[str, Any], documents: list[str], return_text: bool) -> InferenceResult:
    """Scores only: the inputs' texts are added here when the request asks for them."""
    scored = [(int(item["index"]), item["relevance_score"]) for item in answer["results"]]
    return scores_as_asked(scored, documents, return_text=return_text, top_n=None)


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
        return self.translate(parse_rerank, answer, list(request.input), returns_documents(self.config, settings))


def create_backend(config: InferenceEndpointConfig, **options: Any) -> ContextualAIBackend:
    return ContextualAIBackend(config, **options)
