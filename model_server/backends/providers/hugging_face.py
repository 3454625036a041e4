"""Hugging Face Inference Endpoints: feature extraction at the endpoint's own ``url``
with a bearer access token; the answer is a list of vectors (or ``{"embeddings": [...]}``).
Chat completion posts OpenAI's chat body (``max_tokens``) to ``url``, the endpoint's
OpenAI-compatible ``/v1/chat/completions``, and reads OpenAI's chunks back; completion
posts the same body unstreamed (or streams its deltas). Rerank posts Text Embeddings
Inference's ``/rerank`` body (``texts``, ``query``, ``return_text``, ``top_n``) and reads
its list of ``{"index", "score", "text"?}``.
"""

from __future__ import annotations

from typing import Any, AsyncIterator

from kubeinfer.catalog import InferenceEndpointConfig, TaskType, returns_documents
from ..results import CompletionDelta, InferenceResult, TextEmbeddings
from ..base import InferenceRequest
from ..chat import ChatCompletionChunk, ChatRequest
from . import openai_shapes
from .answers import expect_count, float_vector, rerank_results, text_embeddings
from .proxy import ProviderBackend


def parse_features(answer: Any, count: int) -> TextEmbeddings:
    vectors = answer["embeddings"] if isinstance(answer, dict) else answer
    expect_count(vectors, count, "embeddings")
    return text_embeddings([float_vector(v) for v in vectors])


def parse_tei_rerank(answer: Any, documents: list[str], return_text: bool, top_n: int | None) -> InferenceResult:
    if not isinstance(answer, list):
        raise ValueError("the answer is not a list of ranks")
    scored = []
    for item in answer:
        index = int(item["index"])
        if not 0 <= index < len(documents):
            raise ValueError(f"rank index [{index}] is out of range")
        scored.append((index, item["score"], item.get("text", documents[index]) if return_text else None))
    return rerank_results(scored, top_n)


class HuggingFaceBackend(ProviderBackend):
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.secret('api_key')}"}

    def completion_body(self, request: InferenceRequest, stream: bool = False) -> dict[str, Any]:
        return openai_shapes.chat_body(request.input, stream=stream, model=self.setting("model_id"), n=1)

    async def infer(self, request: InferenceRequest) -> InferenceResult:
        task = self.config.task_type
        if task == TaskType.COMPLETION:
            answer = await self.call_json(self.setting("url"), self.completion_body(request), request,
                                          headers=self.headers())
            return self.translate(openai_shapes.parse_chat, answer)
        if task == TaskType.RERANK:
            settings = request.task_settings
            return_text = returns_documents(self.config, settings)
            body: dict[str, Any] = {"texts": list(request.input), "query": request.query or "",
                                    "return_text": return_text}
            if settings.get("top_n") is not None:
                body["top_n"] = settings["top_n"]
            answer = await self.call_json(self.setting("url"), body, request, headers=self.headers())
            return self.translate(parse_tei_rerank, answer, list(request.input), return_text, settings.get("top_n"))
        answer = await self.call_json(
            self.setting("url"),
            {"inputs": list(request.input)},
            request,
            headers={"Authorization": f"Bearer {self.secret('api_key')}"},
        )
        return self.translate(parse_features, answer, len(request.input))

    async def stream(self, request: InferenceRequest) -> AsyncIterator[CompletionDelta]:
        if self.config.task_type != TaskType.COMPLETION:
            raise self.streaming_unsupported()
        body = self.completion_body(request, stream=True)
        async with self.open_stream(self.setting("url"), body, request, headers=self.headers()) as response:
            async for chunk in openai_shapes.chat_deltas(response):
                yield chunk

    async def chat(self, request: ChatRequest) -> AsyncIterator[ChatCompletionChunk]:
        body = openai_shapes.unified_chat_body(request, model=self.setting("model_id"), max_tokens_field="max_tokens")
        headers = {"Authorization": f"Bearer {self.secret('api_key')}"}
        async with self.open_stream(self.setting("url"), body, request, headers=headers) as response:
            async for chunk in openai_shapes.chat_chunks(response):
                yield chunk


def create_backend(config: InferenceEndpointConfig, **options: Any) -> HuggingFaceBackend:
    return HuggingFaceBackend(config, **options)
