"""Voyage AI: ``/v1/embeddings`` and ``/v1/rerank`` with a bearer API key.

Elasticsearch's names become Voyage AI's: ``dimensions`` -> ``output_dimension``,
``embedding_type`` -> ``output_dtype`` (``int8`` answered as ``text_embedding_bytes``,
``bit`` as Voyage's ``binary`` and Elasticsearch's ``text_embedding_bits``),
``input_type`` ingest/search -> ``document``/``query``. Rerank answers ``{"data": [...]}``.
``url`` replaces ``https://api.voyageai.com/v1`` (or is the full URL of the operation).
"""

from __future__ import annotations

from typing import Any

from kubeinfer.catalog import InferenceEndpointConfig, TaskType, returns_documents
from ..base import InferenceRequest
from ..results import InferenceResult
from .answers import (
    bit_embeddings, byte_embeddings, expect_count, float_vector, rerank_results, text_embeddings,
)
from .proxy import ProviderBackend

BASE_URL = "https://api.voyageai.com/v1"
INPUT_TYPES = {"ingest": "document", "search": "query"}
DTYPES = {"float": "float", "int8": "int8", "bit": "binary"}


def parse_embeddings(answer: dict[str, Any], count: int, dtype: str) -> InferenceResult:
    data = sorted(expect_count(answer["data"], count, "embeddings"), key=lambda item: item.get("index", 0))
    vectors = [item["embedding"] for item in data]
    if dtype == "int8":
        return byte_embeddings(vectors)
    if dtype == "binary":
        return bit_embeddings(vectors)
    return text_embeddings([float_vector(v) for v in vectors])


def parse_rerank(answer: dict[str, Any], documents: list[str], return_documents: bool) -> InferenceResult:
    scored = []
    for item in answer["data"]:
        index = int(item["index"])
        if not 0 <= index < len(documents):
            raise ValueError(f"result index [{index}] is out of range")
        text = item.get("document", documents[index]) if return_documents else None
        scored.append((index, item["relevance_score"], text))
    return rerank_results(scored)


class VoyageAIBackend(ProviderBackend):
    default_similarity = "dot_product"

    def url(self, operation: str) -> str:
        return self.provider_url(BASE_URL + operation, operation)

    def headers(self) -> dict[str, str]:
        # The key is optional in the catalog (Elasticsearch's own examples leave it out).
        key = self.secret("api_key")
        return {"Authorization": f"Bearer {key}"} if key else {}

    async def infer(self, request: InferenceRequest) -> InferenceResult:
        settings = request.task_settings
        if self.config.task_type == TaskType.RERANK:
            return_documents = returns_documents(self.config, settings)
            body: dict[str, Any] = {
                "query": request.query or "", "documents": list(request.input), "model": self.setting("model_id"),
            }
            for name in ("top_k", "return_documents", "truncation"):
                if settings.get(name) is not None:
                    body[name] = settings[name]
            if settings.get("top_n") is not None:  # the request's own top_n wins, as in Elasticsearch
                body["top_k"] = settings["top_n"]
            answer = await self.call_json(self.url("/rerank"), body, request, headers=self.headers())
            return self.translate(parse_rerank, answer, list(request.input), return_documents)
        dtype = DTYPES[self.setting("embedding_type", "float")]
        body = {"input": list(request.input), "model": self.setting("model_id")}
        input_type = INPUT_TYPES.get(self.input_type(request) or "")
        if input_type:
            body["input_type"] = input_type
        if settings.get("truncation") is not None:
            body["truncation"] = settings["truncation"]
        if self.setting("dimensions"):
            body["output_dimension"] = self.setting("dimensions")
        if self.setting("embedding_type"):
            body["output_dtype"] = dtype
        answer = await self.call_json(self.url("/embeddings"), body, request, headers=self.headers())
        return self.translate(parse_embeddings, answer, len(request.input), dtype)


def create_backend(config: InferenceEndpointConfig, **options: Any) -> VoyageAIBackend:
    return VoyageAIBackend(config, **options)
