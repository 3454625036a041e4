"""A backend that forwards inference to an endpoint's own server (its Kubernetes Service).

The endpoint pod answers Elasticsearch's JSON: bodies are read back into the typed
results the API renders, errors are re-raised as the ``ElasticsearchError`` the pod
reported, and streamed completions and chat completion chunks are relayed event by event
as they arrive, never buffered whole.
"""

from __future__ import annotations

import json
from typing import Any, AsyncIterator

import httpx

from ..api import elasticsearch_json
from ..backends.base import Backend, InferenceRequest
from ..backends.results import CompletionDelta, InferenceResult
from ..backends.chat import ChatCompletionChunk, ChatRequest
from ..backends.providers.openai_shapes import parse_chat_chunk
from ..event_stream import EventStreamParser
from kubeinfer.catalog import InferenceEndpointConfig
from kubeinfer.errors import ElasticsearchError, status_exception


def request_body(request: InferenceRequest) -> dict[str, Any]:
    """The inference request body Elasticsearch takes, rebuilt from ``request``."""
    body: dict[str, Any] = {"input": list(request.input)}
    if request.query is not None:
        body["query"] = request.query
    if request.input_type is not None:
        body["input_type"] = request.input_type
    if request.task_settings:
        body["task_settings"] = dict(request.task_settings)
    return body


def _upstream_error(status: int, payload: Any, inference_id: str) -> ElasticsearchError:
    error = payload.get("error") if isinstance(payload, dict) else None
    if isinstance(error, dict) and "type" in error:
        return ElasticsearchError(int(payload.get("status", status)), error["type"], str(error.get("reason", "")))
    return status_exception(f"Inference endpoint [{inference_id}] answered with HTTP status [{status}]", 502)


def _unified_error(status: int, data: str, inference_id: str) -> ElasticsearchError:
    """The pod's unified chat completion error (``{"error": {"message", "type"...}}``) as a value."""
    try:
        error = json.loads(data).get("error")
    except (ValueError, AttributeError):
        error = None
    if isinstance(error, dict) and "type" in error:
        return ElasticsearchError(status if status >= 400 else 500, error["type"], str(error.get("message", "")))
    return status_exception(f"Inference endpoint [{inference_id}] answered with HTTP status [{status}]", 502)


class ForwardingBackend(Backend):
    """Serves ``config`` by calling ``base_url``, where the endpoint's server listens."""

    def __init__(self, config: InferenceEndpointConfig, base_url: str, client: httpx.AsyncClient) -> None:
        super().__init__(config)
        self.base_url = base_url.rstrip("/")
        self.client = client

    def _url(self, suffix: str = "") -> str:
        return f"{self.base_url}/_inference/{self.config.task_type.value}/{self.config.inference_id}{suffix}"

    async def infer(self, request: InferenceRequest) -> InferenceResult:
        try:
            response = await self.client.post(
                self._url(), json=request_body(request), params={"timeout": f"{request.timeout:g}s"},
                timeout=request.timeout + 5,
            )
        except httpx.HTTPError as exc:
            raise self._unreachable(exc) from None
        try:
            payload = response.json()
        except ValueError:
            payload = None
        if response.status_code >= 400 or not isinstance(payload, dict):
            raise _upstream_error(response.status_code, payload, self.config.inference_id)
        try:
            return elasticsearch_json.parse(payload)
        except (KeyError, TypeError, ValueError):
            raise status_exception(
                f"Inference endpoint [{self.config.inference_id}] answered with a body that is not an inference result",
                502,
            ) from None

    async def stream(self, request: InferenceRequest) -> AsyncIterator[CompletionDelta]:
        try:
            async with self.client.stream(
                "POST", self._url("/_stream"), json=request_body(request),
                headers={"Accept": "text/event-stream"}, timeout=request.timeout + 5,
            ) as response:
                if response.status_code >= 400:
                    raw = await response.aread()
                    try:
                        payload = json.loads(raw)
                    except ValueError:
                        payload = None
                    raise _upstream_error(response.status_code, payload, self.config.inference_id)
                async for line in response.aiter_lines():
                    if not line.startswith("data:"):
                        continue
                    data = line[5:].strip()
                    if data == "[DONE]":
                        return
                    event = json.loads(data)
                    if isinstance(event, dict) and "error" in event:
                        raise _upstream_error(int(event.get("status", 500)), event, self.config.inference_id)
                    yield elasticsearch_json.parse_delta(event)
        except httpx.HTTPError as exc:
            raise self._unreachable(exc) from None

    async def chat(self, request: ChatRequest) -> AsyncIterator[ChatCompletionChunk]:
        url = f"{self.base_url}/_inference/chat_completion/{self.config.inference_id}/_stream"
        try:
            async with self.client.stream(
                "POST", url, json=request.model_dump(exclude_none=True), params={"timeout": f"{request.timeout:g}s"},
                headers={"Accept": "text/event-stream"}, timeout=request.timeout + 5,
            ) as response:
                parser = EventStreamParser()
                async for line in response.aiter_lines():
                    event = parser.feed(line)
                    if event is None:
                        continue
                    name, data = event
                    if name == "error" or response.status_code >= 400:
                        raise _unified_error(response.status_code, data, self.config.inference_id)
                    if data == "[DONE]":
                        return
                    yield parse_chat_chunk(json.loads(data))
                if response.status_code >= 400:
                    raise _unified_error(response.status_code, "", self.config.inference_id)
        except httpx.HTTPError as exc:
            raise self._unreachable(exc) from None

    def _unreachable(self, exc: Exception) -> ElasticsearchError:
        return status_exception(
            f"Inference endpoint [{self.config.inference_id}] is unreachable: {type(exc).__name__}", 502
        )
