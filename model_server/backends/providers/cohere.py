"""Cohere: ``/v1/embed``, ``/v1/rerank`` and ``/v1/chat`` with a bearer API key.

Embeddings of type ``byte``/``int8`` are asked for as Cohere's ``int8`` and answered as
Elasticsearch's ``text_embedding_bytes``. The chat stream is Cohere's newline-delimited
JSON (``text-generation`` events). ``url`` replaces ``https://api.cohere.com``.
"""

from __future__ import annotations

from typing import Any, AsyncIterator

from kubeinfer.catalog import InferenceEndpointConfig, TaskType, returns_documents
from kubeinfer.errors import ElasticsearchError
from ..results import CompletionDelta, Completions, InferenceResult, TextEmbeddings
from ..base import InferenceRequest
from .answers import (
    byte_embeddings, byte_vector, completions, delta, expect_count, float_vector, parse_results_rerank, text_embeddings,
)
from .proxy import ProviderBackend
from .streams import json_lines

BASE_URL = "https://api.cohere.com"
# Elasticsearch's input types as Cohere's.
INPUT_TYPES = {
    "ingest": "search_document",
    "search": "search_query",
    "classification": "classification",
    "clustering": "clustering",
}


def parse_embed(answer: dict[str, Any], count: int, embedding_type: str) -> TextEmbeddings:
    embeddings = answer["embeddings"]
    if isinstance(embeddings, dict):  # response_type "embeddings_by_type"
        key = "float" if embedding_type == "float" else "int8"
        embeddings = embeddings[key]
    expect_count(embeddings, count, "embeddings")
    if embedding_type == "float":
        return text_embeddings([float_vector(v) for v in embeddings])
    return byte_embeddings([byte_vector(v) for v in embeddings])



def parse_chat(answer: dict[str, Any]) -> Completions:
    text = answer["text"]
    if not isinstance(text, str):
        raise ValueError("[text] is not a string")
    return completions([text])


class CohereBackend(ProviderBackend):
    def url(self, operation: str) -> str:
        base = self.base_url(BASE_URL)
        return base if base.endswith(operation) else base + operation

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.secret('api_key')}", "Accept": "application/json"}

    async def infer(self, request: InferenceRequest) -> InferenceResult:
        task = self.config.task_type
        settings = request.task_settings
        if task == TaskType.TEXT_EMBEDDING:
            embedding_type = self.setting("embedding_type", "float")
            body: dict[str, Any] = {
                "texts": list(request.input),
                "embedding_types": ["float" if embedding_type == "float" else "int8"],
            }
            if self.setting("model_id"):
                body["model"] = self.setting("model_id")
            input_type = self.input_type(request)
            if input_type:
                body["input_type"] = INPUT_TYPES.get(input_type, input_type)
            if settings.get("truncate"):
                body["truncate"] = settings["truncate"]
            answer = await self.call_json(self.url("/v1/embed"), body, request, headers=self.headers())
            return self.translate(parse_embed, answer, len(request.input), embedding_type)
        if task == TaskType.RERANK:
            return_documents = returns_documents(self.config, settings)
            body = {"query": request.query or "", "documents": list(request.input)}
            if self.setting("model_id"):
                body["model"] = self.setting("model_id")
            if settings.get("top_n"):
                body["top_n"] = settings["top_n"]
            if "return_documents" in settings:
                body["return_documents"] = return_documents
            answer = await self.call_json(self.url("/v1/rerank"), body, request, headers=self.headers())
            return self.translate(parse_results_rerank, answer, list(request.input), return_documents)
        answer = await self.call_json(self.url("/v1/chat"), self.chat_body(request), request, headers=self.headers())
        return self.translate(parse_chat, answer)

    def chat_body(self, request: InferenceRequest, stream: bool = False) -> dict[str, Any]:
        body: dict[str, Any] = {"message": "\n".join(request.input)}
        if self.setting("model_id"):
            body["model"] = self.setting("model_id")
        if stream:
            body["stream"] = True
        return body

    async def stream(self, request: InferenceRequest) -> AsyncIterator[CompletionDelta]:
        if self.config.task_type != TaskType.COMPLETION:
            raise self.streaming_unsupported()
        body = self.chat_body(request, stream=True)
        async with self.open_stream(self.url("/v1/chat"), body, request, headers=self.headers()) as response:
            async for event in json_lines(response):
                kind = event.get("event_type")
                if kind == "text-generation" and event.get("text"):
                    yield delta(event["text"])
                elif kind == "stream-end":
                    if event.get("finish_reason") == "ERROR":
                        raise ElasticsearchError(502, "status_exception", "The provider's stream ended with an error")
                    return


def create_backend(config: InferenceEndpointConfig, **options: Any) -> CohereBackend:
    return CohereBackend(config, **options)
