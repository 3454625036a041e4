"""Jina AI: ``/v1/embeddings`` and ``/v1/rerank`` with a bearer API key.

Embeddings carry Jina's ``task`` for Elasticsearch's input type (``retrieval.passage``
for ingest, ``retrieval.query`` for search), ``late_chunking``, ``dimensions`` and the
``embedding_type`` (``float``, or ``binary`` answered as Elasticsearch's
``text_embedding_bits``). The ``embedding`` task sends multimodal models a list of
``{"text": ...}`` objects, other models plain strings, and answers ``embeddings``. ``url`` replaces
``https://api.jina.ai/v1`` (or is the full URL of the operation).
"""

from __future__ import annotations

from typing import Any

from kubeinfer.catalog import InferenceEndpointConfig, TaskType, returns_documents
from ..base import InferenceRequest
from ..results import InferenceResult
from .answers import bit_embeddings, embeddings, expect_count, float_vector, parse_results_rerank, text_embeddings
from .proxy import ProviderBackend

BASE_URL = "https://api.jina.ai/v1"
TASKS = {"ingest": "retrieval.passage", "search": "retrieval.query",
         "classification": "classification", "clustering": "separation"}


def parse_embeddings(answer: dict[str, Any], count: int, binary: bool, task: TaskType) -> InferenceResult:
    """Dense vectors (packed bits for ``binary``); the ``embedding`` task's own answer for it."""
    data = sorted(expect_count(answer["data"], count, "embeddings"), key=lambda item: item.get("index", 0))
    if task == TaskType.EMBEDDING:
        return embeddings([float_vector(item["embedding"]) for item in data])
    if binary:
        return bit_embeddings([item["embedding"] for item in data])
    return text_embeddings([float_vector(item["embedding"]) for item in data])



class JinaAIBackend(ProviderBackend):
    default_similarity = "dot_product"

    def url(self, operation: str) -> str:
        return self.provider_url(BASE_URL + operation, operation)

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.secret('api_key')}", "Accept": "application/json"}

    async def infer(self, request: InferenceRequest) -> InferenceResult:
        if self.config.task_type == TaskType.RERANK:
            return await self._rerank(request)
        settings = request.task_settings
        # The embedding task's answer holds float vectors only.
        binary = self.setting("embedding_type") in ("bit", "binary") and self.config.task_type != TaskType.EMBEDDING
        multimodal = self.config.task_type == TaskType.EMBEDDING and self.setting("multimodal_model", True)
        if self.config.task_type == TaskType.EMBEDDING and not multimodal:
            self.require_text(request)
        body: dict[str, Any] = {
            "model": self.setting("model_id"),
            "input": self.multimodal_input(request) if multimodal else list(request.input),
            "embedding_type": "binary" if binary else "float",
        }
        task = TASKS.get(self.input_type(request) or "")
        if task:
            body["task"] = task
        if self.setting("dimensions"):
            body["dimensions"] = self.setting("dimensions")
        if settings.get("late_chunking") is not None:
            body["late_chunking"] = settings["late_chunking"]
        answer = await self.call_json(self.url("/embeddings"), body, request, headers=self.headers())
        return self.translate(parse_embeddings, answer, len(request.input), binary, self.config.task_type)

    def multimodal_input(self, request: InferenceRequest) -> list[dict[str, str]]:
        """Jina's multimodal input: one ``{"text": ...}`` or ``{"image": ...}`` object per input."""
        if not request.contents:
            return [{"text": text} for text in request.input]
        out = []
        for group in request.contents:
            if len(group) != 1:
                raise self.unsupported("more than one item per content object")
            item = group[0]
            if item.type not in ("text", "image"):
                raise self.unsupported(f"[{item.type}] inputs for the [embedding] task")
            out.append({item.type: item.value})
        return out

    async def _rerank(self, request: InferenceRequest) -> InferenceResult:
        settings = request.task_settings
        return_documents = returns_documents(self.config, settings)
        body: dict[str, Any] = {
            "model": self.setting("model_id"), "query": request.query or "", "documents": list(request.input),
        }
        if settings.get("top_n") is not None:
            body["top_n"] = settings["top_n"]
        if settings.get("return_documents") is not None:
            body["return_documents"] = return_documents
        answer = await self.call_json(self.url("/rerank"), body, request, headers=self.headers())
        return self.translate(parse_results_rerank, answer, list(request.input), return_documents)


def create_backend(config: InferenceEndpointConfig, **options: Any) -> JinaAIBackend:
    return JinaAIBackend(config, **options)
