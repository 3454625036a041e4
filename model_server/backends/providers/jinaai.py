"""Jina AI: ``/v1/embeddings`` and ``/v1/rerank`` with a bearer API key.

Embeddings carry Jina's ``task`` for Elasticsearch's input type (``retrieval.passage``
for ingest, ``retrieval.query`` for search), ``late_chunking``, ``dimensions`` and the
``embedding_type`` (``float``, or ``binary`` answered as Elasticsearch's
``text_embedding_bits``). The ``embedding`` task sends multimodal models one object per
input, as Elasticsearch writes them: ``{"text": ...}``, ``{"image": ...}``, ``{"audio": ...}``,
``{"video": ...}`` or ``{"pdf": ...}`` (data URIs as given), ``{"content": [...]}`` for a
group of several items, and a lone PDF as the input itself rather than a list of one;
``late_chunking`` is sent false with non-text inputs, and ``jina-clip-v2`` gets a ``task``
for searches only (the one it takes). Models with ``multimodal_model: false`` get plain
strings and refuse other inputs. It answers ``embeddings``. ``url`` replaces
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
# Takes "retrieval.query" alone for its "task".
CLIP_V2 = "jina-clip-v2"
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


def multimodal_input(request: InferenceRequest) -> list[Any] | dict[str, str]:
    """Jina's multimodal input: one object per input, ``{"content": [...]}`` for a group of
    several items, and a lone PDF as the input itself (Jina takes PDFs one at a time)."""
    if not request.contents:
        return [{"text": text} for text in request.input]
    groups = [[{item.type: item.value} for item in group] for group in request.contents]
    if len(groups) == 1 and any(item.type == "pdf" for item in request.contents[0]):
        return groups[0][0] if len(groups[0]) == 1 else {"content": groups[0]}
    return [group[0] if len(group) == 1 else {"content": group} for group in groups]


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
            "input": multimodal_input(request) if multimodal else list(request.input),
            "embedding_type": "binary" if binary else "float",
        }
        input_type = self.input_type(request) or ""
        task = TASKS.get(input_type)
        if task and (str(self.setting("model_id")).lower() != CLIP_V2 or input_type == "search"):
            body["task"] = task
        if self.setting("dimensions"):
            body["dimensions"] = self.setting("dimensions")
        if settings.get("late_chunking") is not None:
            # Late chunking reads texts only.
            body["late_chunking"] = bool(settings["late_chunking"]) and all(
                item.type == "text" for group in request.contents for item in group)
        answer = await self.call_json(self.url("/embeddings"), body, request, headers=self.headers())
        return self.translate(parse_embeddings, answer, len(request.input), binary, self.config.task_type)

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
