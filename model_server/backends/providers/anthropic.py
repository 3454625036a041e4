"""Anthropic: the messages API (``/v1/messages``) with ``x-api-key`` and
``anthropic-version``; streams are Anthropic's named Server-Sent Events.

``url`` replaces ``https://api.anthropic.com``.
"""

from __future__ import annotations

import json
from typing import Any, AsyncIterator

from kubeinfer.catalog import InferenceEndpointConfig
from kubeinfer.errors import ElasticsearchError
from ..results import CompletionDelta, Completions, InferenceResult
from ..base import InferenceRequest
from .answers import completions, delta
from .proxy import ProviderBackend
from .streams import server_sent_events

BASE_URL = "https://api.anthropic.com"
API_VERSION = "2023-06-01"


def parse_messages(answer: dict[str, Any]) -> Completions:
    texts = [block["text"] for block in answer["content"] if block.get("type") == "text"]
    if not texts or not all(isinstance(t, str) for t in texts):
        raise ValueError("[content] holds no text block")
    return completions(texts)


class AnthropicBackend(ProviderBackend):
    def url(self) -> str:
        base = self.base_url(BASE_URL)
        return base if base.endswith("/v1/messages") else base + "/v1/messages"

    def headers(self) -> dict[str, str]:
        return {"x-api-key": self.secret("api_key"), "anthropic-version": API_VERSION}

    def body(self, request: InferenceRequest, stream: bool = False) -> dict[str, Any]:
        settings = request.task_settings
        body: dict[str, Any] = {
            "messages": [{"role": "user", "content": text} for text in request.input],
            "model": self.setting("model_id"),
            "max_tokens": settings.get("max_tokens"),
        }
        for name in ("temperature", "top_p", "top_k"):
            if settings.get(name) is not None:
                body[name] = settings[name]
        if stream:
            body["stream"] = True
        return body

    async def infer(self, request: InferenceRequest) -> InferenceResult:
        answer = await self.call_json(self.url(), self.body(request), request, headers=self.headers())
        return self.translate(parse_messages, answer)

    async def stream(self, request: InferenceRequest) -> AsyncIterator[CompletionDelta]:
        async with self.open_stream(self.url(), self.body(request, True), request, headers=self.headers()) as response:
            async for event, data in server_sent_events(response):
                if event == "content_block_delta":
                    piece = json.loads(data)["delta"]
                    if piece.get("type") == "text_delta" and piece.get("text"):
                        yield delta(piece["text"])
                elif event == "error":
                    error = json.loads(data).get("error") or {}
                    message = self.redact(str(error.get("message")))
                    raise ElasticsearchError(502, "status_exception", f"The provider's stream failed: {message}")
                elif event == "message_stop":
                    return


def create_backend(config: InferenceEndpointConfig, **options: Any) -> AnthropicBackend:
    return AnthropicBackend(config, **options)
