"""The gateway's way to an endpoint's own server: every inference request relayed as bytes.

``ForwardingBackend`` says where an endpoint is served: its Service's root, from the URL
the operator reports in status. ``EndpointRelay`` is the gateway app's ``Relay`` and its
one client to endpoint servers: it hands each inference request for a
``ForwardingBackend`` (``/_inference/...``, its ``_stream`` form, chat completion's,
OpenAI's ``/v1/...``) to the endpoint's server as it came, method, path, query string
and body, and the answer back as it was sent, status and headers included; an event
stream goes back chunk by chunk as it arrives. Nothing is parsed or re-encoded on the
way: the endpoint's server validates and renders once. Only the gateway's own failures
(the server unreachable, silent past the deadline) are raised here, as values each route
writes in its API's shape. This module knows no Kubernetes and no model.
"""

from __future__ import annotations

import asyncio
from typing import AsyncIterator, NoReturn
from urllib.parse import parse_qsl, urlencode

import aiohttp
import yarl
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from ..api.deadline import timed_out, wait_limit
from ..backends.base import Backend, InferenceRequest
from ..backends.chat import ChatCompletionChunk, ChatRequest
from ..backends.results import CompletionDelta, InferenceResult
from kubeinfer.catalog import InferenceEndpointConfig
from kubeinfer.errors import status_exception


def server_root(url: str) -> str:
    """The root of an endpoint's server, from its root or its ``_inference`` URL."""
    return url.split("/_inference/", 1)[0].rstrip("/")


class ForwardingBackend(Backend):
    """An endpoint served by its own server at ``base_url`` (its root, or the endpoint's
    ``_inference`` URL as the operator reports it in status).

    Its requests reach that server through the gateway's ``EndpointRelay``, as bytes: it
    computes nothing in the gateway, so a typed call (which no route makes of it) is
    refused."""

    # Whether reaching the server may hold the request (an endpoint waking from zero).
    holds = False

    def __init__(self, config: InferenceEndpointConfig, base_url: str) -> None:
        super().__init__(config)
        self.base_url = server_root(base_url)
        # Elasticsearch's paths of the endpoint on its server, each way of naming it here
        # (``/_inference/<id>``, chat completion's ``_unified``) written as one.
        inference = f"/_inference/{config.task_type.value}/{config.inference_id}"
        self.inference_paths = (inference, f"{inference}/_stream")

    def path(self, requested: str) -> str:
        """The path on the endpoint's server for a request to ``requested`` here: Elasticsearch's
        by task type and id, OpenAI's as it came."""
        if requested.startswith("/_inference/"):
            return self.inference_paths[requested.endswith(("/_stream", "/_unified"))]
        return requested

    async def address(self, timeout: float) -> str:
        """The root of the endpoint's server, once it serves (within ``timeout`` seconds)."""
        return self.base_url

    def _relayed_only(self) -> NoReturn:
        raise status_exception(
            f"Inference endpoint [{self.config.inference_id}] is served by its own server: "
            "requests for it are relayed, not answered in the gateway", 500)

    async def infer(self, request: InferenceRequest) -> InferenceResult:
        self._relayed_only()

    async def stream(self, request: InferenceRequest) -> AsyncIterator[CompletionDelta]:
        self._relayed_only()
        yield CompletionDelta("")  # pragma: no cover - makes this an async generator

    async def chat(self, request: ChatRequest) -> AsyncIterator[ChatCompletionChunk]:
        self._relayed_only()
        yield  # pragma: no cover - makes this an async generator


# Headers of one hop, not of the answer: the relay's own server writes its own.
_HOP_HEADERS = frozenset({"connection", "keep-alive", "transfer-encoding", "content-length", "date", "server"})
# A body at most this large is read whole before it goes on; a larger one is streamed.
_BUFFERED_BODY = 1 << 16
_EVENT_STREAM = "text/event-stream"


class EndpointRelay:
    """The gateway's one client to endpoint servers: an aiohttp session (made on first use,
    on the serving loop) keeping many connections alive to each server, closed with the app.

    aiohttp directly, as the one client: httpx's request and response objects cost the
    gateway more CPU than the endpoint's whole answer, and httpcore's pool rescans every
    queued request whenever it hands out a connection."""

    def __init__(self, *, max_connections: int = 512, keepalive: float = 30.0, connect_timeout: float = 5.0,
                 grace: float = 5.0) -> None:
        """``grace``: how much longer than a request's deadline the relay waits for a read, so
        that the endpoint's own 408 comes back first."""
        self.max_connections, self.keepalive = max_connections, keepalive
        self.connect_timeout, self.grace = connect_timeout, grace
        self._session: aiohttp.ClientSession | None = None
        # One read bound per deadline seen (a handful: the routes' defaults and what callers ask).
        self._bounds: dict[float, aiohttp.ClientTimeout] = {}

    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self.max_connections, keepalive_timeout=self.keepalive),
                cookie_jar=aiohttp.DummyCookieJar(),
                auto_decompress=False,  # a relay hands on the bytes it got
                skip_auto_headers=("User-Agent", "Accept-Encoding"),
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _bound(self, timeout: float) -> aiohttp.ClientTimeout:
        """Each read bounded a little past the deadline (not the whole of a long stream)."""
        bound = self._bounds.get(timeout)
        if bound is None:
            limit = wait_limit(timeout)
            bound = aiohttp.ClientTimeout(total=None, sock_connect=self.connect_timeout,
                                          sock_read=None if limit is None else limit + self.grace)
            if len(self._bounds) < 64:
                self._bounds[timeout] = bound
        return bound

    async def __call__(self, backend: Backend, http: Request, timeout: float) -> Response | None:
        """``http`` sent on to ``backend``'s server and its answer as it comes; None for a
        backend served in this process."""
        if not isinstance(backend, ForwardingBackend):
            return None
        scope = http.scope
        query: bytes = scope["query_string"]
        if backend.holds:
            # The body first: what the client sends next tells when it has gone.
            await http.body()
            loop = asyncio.get_running_loop()
            since = loop.time()
            root = await backend.address(timeout)
            timeout, query = _time_left(timeout, loop.time() - since, query)
        else:
            root = backend.base_url
        path = backend.path(scope["path"])
        target = yarl.URL(f"{root}{path}?{query.decode('latin-1')}" if query else f"{root}{path}", encoded=True)
        request_headers = http.headers
        headers = {"Content-Type": request_headers.get("content-type", "application/json")}
        accept = request_headers.get("accept")
        if accept is not None:
            headers["Accept"] = accept
        length = request_headers.get("content-length")
        small = length is not None and length.isdigit() and int(length) <= _BUFFERED_BODY
        content = await http.body() if small else http.stream()
        try:
            upstream = await self.session().request(scope["method"], target, data=content, headers=headers,
                                                    timeout=self._bound(timeout), allow_redirects=False)
        except (aiohttp.ClientError, TimeoutError) as exc:
            _unreachable(backend, exc, timeout)
        answer_headers = {k: v for k, v in upstream.headers.items() if k.lower() not in _HOP_HEADERS}
        if upstream.content_type == _EVENT_STREAM:
            return StreamingResponse(_chunks(upstream), status_code=upstream.status, headers=answer_headers)
        try:
            body = await upstream.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            _unreachable(backend, exc, timeout)
        finally:
            upstream.release()
        return Response(body, status_code=upstream.status, headers=answer_headers)


async def _chunks(upstream: aiohttp.ClientResponse) -> AsyncIterator[bytes]:
    """An event stream's bytes as they arrive; the connection goes back to the pool after."""
    try:
        async for chunk in upstream.content.iter_any():
            yield chunk
    finally:
        upstream.release()


def _time_left(timeout: float, held: float, query: bytes) -> tuple[float, bytes]:
    """The deadline left after ``held`` seconds of waiting, and the query string that tells
    the endpoint's server so (``timeout`` in whole milliseconds)."""
    limit = wait_limit(timeout)
    if limit is None:
        return timeout, query
    left = max(limit - held, 0.001)
    pairs = [(k, v) for k, v in parse_qsl(query.decode("latin-1"), keep_blank_values=True) if k != "timeout"]
    pairs.append(("timeout", f"{max(int(left * 1000), 1)}ms"))
    return left, urlencode(pairs).encode("latin-1")


def _unreachable(backend: ForwardingBackend, exc: Exception, timeout: float) -> NoReturn:
    if isinstance(exc, aiohttp.SocketTimeoutError):  # connected, then silent past the deadline
        raise timed_out(timeout) from None
    raise status_exception(
        f"Inference endpoint [{backend.config.inference_id}] is unreachable: {type(exc).__name__}", 502
    ) from None


