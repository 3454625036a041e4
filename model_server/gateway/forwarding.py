"""A backend that forwards inference to an endpoint's own server (its Kubernetes Service).

On the gateway's inference routes, ``relay_to_endpoint`` hands the request to the pod as
bytes and the pod's answer back as bytes, status and headers included: the pod already
speaks Elasticsearch's JSON, so nothing is parsed or re-encoded on the way, and a
``_stream`` answer goes back chunk by chunk as it arrives. Only the gateway's own errors
(the pod unreachable) are written here, in Elasticsearch's shape.

Called as a ``Backend`` (``infer``, ``stream``, ``chat``), it reads the pod's answers back
into the typed results the API renders, re-raising the pod's errors as the
``ElasticsearchError`` it reported.
"""

from __future__ import annotations

import asyncio
import json
import math
import weakref
from typing import Any, AsyncIterator

import aiohttp
import httpx
import yarl
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from ..api import elasticsearch_json
from ..api.inference_request import format_time_value, parse_time_value
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


# Headers of one hop, not of the answer: the relay's own server writes its own.
_HOP_HEADERS = frozenset({"connection", "keep-alive", "transfer-encoding", "content-length", "date", "server"})
# A body at most this large is read whole before it goes on; a larger one is streamed.
_BUFFERED_BODY = 1 << 16


async def relay_to_endpoint(backend: Backend, http: Request, stream: bool) -> Response | None:
    """The gateway's ``Relay``: bytes to and from the pod when ``backend`` forwards; else None."""
    if not isinstance(backend, ForwardingBackend):
        return None
    return await backend.relay(http, stream)


def _bounds(timeout: float) -> dict[str, Any]:
    """The ``timeout`` parameter the pod takes for ``timeout`` seconds (``-1`` for none), and
    the client's own limit, a little longer so that the pod's 408 comes back first."""
    return {"params": {"timeout": format_time_value(timeout)},
            "timeout": timeout + 5 if math.isfinite(timeout) else None}


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


# Connections to endpoint pods: a busy gateway keeps many alive to each Service.
POD_LIMITS = httpx.Limits(max_connections=512, max_keepalive_connections=256, keepalive_expiry=30.0)
POD_TIMEOUT = httpx.Timeout(60.0, connect=5.0)


class _PodSession:
    """The aiohttp session under a pod client, made on first use (on the serving loop)."""

    def __init__(self) -> None:
        self.session: aiohttp.ClientSession | None = None

    def __call__(self) -> aiohttp.ClientSession:
        if self.session is None:
            self.session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=POD_LIMITS.max_connections or 0,
                                               keepalive_timeout=POD_LIMITS.keepalive_expiry),
                cookie_jar=aiohttp.DummyCookieJar(),
                auto_decompress=False,  # a relay hands on the bytes it got
            )
        return self.session


_pod_sessions: "weakref.WeakKeyDictionary[httpx.AsyncClient, _PodSession]" = weakref.WeakKeyDictionary()


def pod_client() -> httpx.AsyncClient:
    """The gateway's client to endpoint pods (plain HTTP inside the cluster) over aiohttp's
    pool, as provider calls are: httpcore's pool rescans every queued request whenever it
    hands out a connection, a cost that grows with the requests waiting. ``relay`` uses the
    aiohttp session under it directly: httpx's request and response objects cost the
    gateway more CPU than the pod's whole answer."""
    from httpx_aiohttp import AiohttpTransport

    session = _PodSession()
    client = httpx.AsyncClient(transport=AiohttpTransport(client=session), timeout=POD_TIMEOUT)
    _pod_sessions[client] = session
    return client


class ForwardingBackend(Backend):
    """Serves ``config`` by calling ``base_url``, where the endpoint's server listens: its
    root, or the endpoint's ``_inference`` URL as the operator reports it in status."""

    def __init__(self, config: InferenceEndpointConfig, base_url: str, client: httpx.AsyncClient) -> None:
        """``client`` comes from ``pod_client``: ``relay`` uses the aiohttp session under it."""
        super().__init__(config)
        self.base_url = base_url.split("/_inference/", 1)[0].rstrip("/")
        self.client = client

    def _url(self, suffix: str = "") -> str:
        return f"{self.base_url}/_inference/{self.config.task_type.value}/{self.config.inference_id}{suffix}"

    async def relay(self, http: Request, stream: bool) -> Response:
        """``http`` sent on to the pod, and the pod's answer as it comes."""
        timeout = parse_time_value(http.query_params.get("timeout"))
        headers = {"content-type": http.headers.get("content-type", "application/json")}
        if stream:
            headers["accept"] = "text/event-stream"
        length = http.headers.get("content-length")
        small = length is not None and length.isdigit() and int(length) <= _BUFFERED_BODY
        content = await http.body() if small else http.stream()
        url = self._url("/_stream" if stream else "")
        wait = None if timeout == float("inf") else timeout + 5
        session = _pod_sessions[self.client]()
        query = http.scope.get("query_string", b"")
        # The query string as it came; each read bounded by ``wait`` as httpx bounds them (not
        # the whole of a long stream).
        target = yarl.URL(url + ("?" + query.decode("latin-1") if query else ""), encoded=True)
        bounds = aiohttp.ClientTimeout(total=None, sock_connect=wait, sock_read=wait)
        try:
            upstream = await session.post(target, data=content, headers=headers, timeout=bounds,
                                          allow_redirects=False)
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            raise self._unreachable(exc) from None
        answer_headers = {k: v for k, v in upstream.headers.items() if k.lower() not in _HOP_HEADERS}
        if stream:
            return StreamingResponse(upstream.content.iter_any(), status_code=upstream.status,
                                     headers=answer_headers, background=BackgroundTask(upstream.release))
        try:
            body = await upstream.read()
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            raise self._unreachable(exc) from None
        finally:
            upstream.release()
        return Response(body, status_code=upstream.status, headers=answer_headers)

    async def infer(self, request: InferenceRequest) -> InferenceResult:
        try:
            response = await self.client.post(self._url(), json=request_body(request), **_bounds(request.timeout))
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
                headers={"Accept": "text/event-stream"}, **_bounds(request.timeout),
            ) as response:
                if response.status_code >= 400:
                    raw = await response.aread()
                    try:
                        payload = json.loads(raw)
                    except ValueError:
                        payload = None
                    raise _upstream_error(response.status_code, payload, self.config.inference_id)
                parser = EventStreamParser()
                async for line in response.aiter_lines():
                    parsed = parser.feed(line)
                    if parsed is None:
                        continue
                    data = parsed[1].strip()
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
                "POST", url, json=request.model_dump(exclude_none=True), headers={"Accept": "text/event-stream"},
                **_bounds(request.timeout),
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
