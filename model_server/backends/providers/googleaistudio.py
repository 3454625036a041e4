"""Google AI Studio (Gemini API): ``models/<model>:batchEmbedContents``,
``:generateContent`` and ``:streamGenerateContent?alt=sse``.

The API key travels in the ``x-goog-api-key`` header rather than the ``key`` query
parameter, so that it never appears in a URL (URLs end up in logs).
``url`` replaces ``https://generativelanguage.googleapis.com/v1beta``.
"""

from __future__ import annotations

from typing import Any, AsyncIterator

from kubeinfer import strict_json
from kubeinfer.catalog import InferenceEndpointConfig, TaskType
from ..results import CompletionDelta, Completions, InferenceResult, TextEmbeddings
from ..base import InferenceRequest
from .answers import completions, delta, expect_count, float_vector, text_embeddings
from .proxy import ProviderBackend
from .streams import server_sent_events

BASE_URL = "https://generativelanguage.googleapis.com/v1beta"


def parse_embeddings(answer: dict[str, Any], count: int) -> TextEmbeddings:
    embeddings = expect_count(answer["embeddings"], count, "embeddings")
    return text_embeddings([float_vector(e["values"]) for e in embeddings])


def candidate_text(answer: dict[str, Any]) -> str:
    parts = answer["candidates"][0]["content"]["parts"]
    texts = [p["text"] for p in parts if "text" in p]
    if not all(isinstance(t, str) for t in texts):
        raise ValueError("[candidates[0].content.parts[].text] is not a string")
    return "".join(texts)


def parse_generate(answer: dict[str, Any]) -> Completions:
    return completions([candidate_text(answer)])


class GoogleAIStudioBackend(ProviderBackend):
    def url(self, method: str) -> str:
        return f"{self.base_url(BASE_URL)}/models/{self.setting('model_id')}:{method}"

    def headers(self) -> dict[str, str]:
        return {"x-goog-api-key": self.secret("api_key")}

    def generate_body(self, request: InferenceRequest) -> dict[str, Any]:
        return {
            "contents": [{"role": "user", "parts": [{"text": text}]} for text in request.input],
            "generationConfig": {"candidateCount": 1},
        }

    async def infer(self, request: InferenceRequest) -> InferenceResult:
        if self.config.task_type == TaskType.TEXT_EMBEDDING:
            model = f"models/{self.setting('model_id')}"
            dimensions = self.setting("dimensions")
            requests = []
            for text in request.input:
                item: dict[str, Any] = {"model": model, "content": {"parts": [{"text": text}]}}
                if dimensions:
                    item["outputDimensionality"] = dimensions
                requests.append(item)
            answer = await self.call_json(
                self.url("batchEmbedContents"), {"requests": requests}, request, headers=self.headers()
            )
            return self.translate(parse_embeddings, answer, len(request.input))
        answer = await self.call_json(
            self.url("generateContent"), self.generate_body(request), request, headers=self.headers()
        )
        return self.translate(parse_generate, answer)

    async def stream(self, request: InferenceRequest) -> AsyncIterator[CompletionDelta]:
        if self.config.task_type != TaskType.COMPLETION:
            raise self.streaming_unsupported()
        async with self.open_stream(
            self.url("streamGenerateContent"),
            self.generate_body(request),
            request,
            headers=self.headers(),
            params={"alt": "sse"},
        ) as response:
            async for _event, data in server_sent_events(response):
                chunk = strict_json.loads(data)
                # The last chunks may carry only usage metadata or a finish reason.
                if not chunk.get("candidates") or "content" not in chunk["candidates"][0]:
                    continue
                text = candidate_text(chunk)
                if text:
                    yield delta(text)


def create_backend(config: InferenceEndpointConfig, **options: Any) -> GoogleAIStudioBackend:
    return GoogleAIStudioBackend(config, **options)
