"""Azure AI Studio: models deployed as ``token`` (pay-as-you-go, OpenAI-style API) or
``realtime`` (managed online) endpoints, at the deployment's ``target`` URL.

- token + openai provider: ``target`` is the full operation URL, key in ``api-key``;
- token + other providers: ``target`` plus ``/v1/embeddings`` or ``/v1/chat/completions``
  (unless already there), key as the ``Authorization`` value;
- realtime: ``target`` as is, ``Authorization: Bearer <key>``, completion body
  ``{"input_data": {"input_string": [...], "parameters": {...}}}`` answered ``{"output": ".."}``.

Rerank (Cohere's models) posts Cohere's rerank body to ``target`` plus ``/v1/rerank`` and
reads Cohere's ``results``. Token completion endpoints also stream (OpenAI's event stream). ``url`` replaces ``target``.
"""

from __future__ import annotations

from typing import Any, AsyncIterator

from kubeinfer.catalog import InferenceEndpointConfig, TaskType, returns_documents
from ..results import CompletionDelta, Completions, InferenceResult
from ..base import InferenceRequest
from . import openai_shapes
from .answers import completions, parse_results_rerank
from .proxy import ProviderBackend

TOKEN_PATHS = {
    TaskType.TEXT_EMBEDDING: "/v1/embeddings",
    TaskType.COMPLETION: "/v1/chat/completions",
    TaskType.RERANK: "/v1/rerank",
}


def parse_realtime(answer: Any) -> Completions:
    # Realtime deployments answer {"output": ".."} or a list of such objects.
    items = answer if isinstance(answer, list) else [answer]
    texts = []
    for item in items:
        output = item["output"]
        if not isinstance(output, str):
            raise ValueError("[output] is not a string")
        texts.append(output)
    if not texts:
        raise ValueError("the answer holds no [output]")
    return completions(texts)



class AzureAIStudioBackend(ProviderBackend):
    @property
    def realtime(self) -> bool:
        return self.setting("endpoint_type") == "realtime"

    def operation_url(self) -> str:
        target = (self.setting("url") or self.setting("target")).rstrip("/")
        if self.realtime or self.setting("provider") == "openai":
            return target
        path = TOKEN_PATHS[self.config.task_type]
        return target if target.split("?")[0].endswith(path) else target + path

    def headers(self) -> dict[str, str]:
        key = self.secret("api_key")
        if self.realtime:
            return {"Authorization": f"Bearer {key}"}
        if self.setting("provider") == "openai":
            return {"api-key": key}
        return {"Authorization": key}

    async def infer(self, request: InferenceRequest) -> InferenceResult:
        settings = request.task_settings
        if self.config.task_type == TaskType.RERANK:
            return_documents = returns_documents(self.config, settings)
            body: dict[str, Any] = {"documents": list(request.input), "query": request.query or ""}
            if settings.get("top_n") is not None:
                body["top_n"] = settings["top_n"]
            if settings.get("return_documents") is not None:
                body["return_documents"] = return_documents
            answer = await self.call_json(self.operation_url(), body, request, headers=self.headers())
            return self.translate(parse_results_rerank, answer, list(request.input), return_documents)
        if self.config.task_type == TaskType.TEXT_EMBEDDING:
            body = openai_shapes.embeddings_body(
                request.input, dimensions=self.setting("dimensions"), user=settings.get("user")
            )
            answer = await self.call_json(self.operation_url(), body, request, headers=self.headers())
            return self.translate(openai_shapes.parse_embeddings, answer, len(request.input))
        if self.realtime:
            names = ("temperature", "top_p", "do_sample", "max_new_tokens")
            parameters = {k: settings[k] for k in names if settings.get(k) is not None}
            body = {
                "input_data": {
                    "input_string": [{"role": "user", "content": text} for text in request.input],
                    "parameters": parameters,
                }
            }
            answer = await self.call_json(self.operation_url(), body, request, headers=self.headers())
            return self.translate(parse_realtime, answer)
        answer = await self.call_json(self.operation_url(), self.chat_body(request), request, headers=self.headers())
        return self.translate(openai_shapes.parse_chat, answer)

    def chat_body(self, request: InferenceRequest, stream: bool = False) -> dict[str, Any]:
        settings = request.task_settings
        return openai_shapes.chat_body(
            request.input,
            stream=stream,
            temperature=settings.get("temperature"),
            top_p=settings.get("top_p"),
            max_tokens=settings.get("max_new_tokens"),
        )

    async def stream(self, request: InferenceRequest) -> AsyncIterator[CompletionDelta]:
        # Token endpoints stream as OpenAI's chat completions do; realtime ones do not stream.
        if self.config.task_type != TaskType.COMPLETION or self.realtime:
            raise self.streaming_unsupported()
        body = self.chat_body(request, stream=True)
        async with self.open_stream(self.operation_url(), body, request, headers=self.headers()) as response:
            async for chunk in openai_shapes.chat_deltas(response):
                yield chunk


def create_backend(config: InferenceEndpointConfig, **options: Any) -> AzureAIStudioBackend:
    return AzureAIStudioBackend(config, **options)
