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

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from ..api.deadline import timed_out, wait_limit
from ..backends.base import Backend, InferenceRequest
from ..backends.chat import ChatCompletionChunk, ChatRequest
from ..backends.results import CompletionDelta, InferenceResult
from kubeinfer.catalog import InferenceEndpointConfig
from kubeinfer.errors import status_exception
from .pod_connections import PodAddress, PodConnections, PodSilent, PodUnreachable


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
_HOP_HEADERS = frozenset({b"connection", b"keep-alive", b"transfer-encoding", b"content-length", b"date", b"server"})
# The request headers handed on: what the endpoint's server reads the body and answer by.
_SENT_HEADERS = {b"content-type": b"Content-Type", b"accept": b"Accept"}
# A body at most this large is read whole before it goes on; a larger one is streamed.
_BUFFERED_BODY = 1 << 16
_EVENT_STREAM = b"text/event-stream"


class _Relayed(Response):
    """A whole answer with the endpoint's raw headers, written to the client as they came."""

    def __init__(self, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
        self.status_code, self.body, self.background = status, body, None
        self.raw_headers = [*headers, (b"content-length", b"%d" % len(body))]


class _RelayedStream(StreamingResponse):
    """An event stream with the endpoint's raw headers, each piece sent on as it arrives."""

    def __init__(self, status: int, headers: list[tuple[bytes, bytes]], chunks: AsyncIterator[bytes]) -> None:
        self.status_code, self.body_iterator, self.background = status, chunks, None
        self.raw_headers = headers


class EndpointRelay:
    """The gateway's one client to endpoint servers: keep-alive connections to each
    (``PodConnections``), closed with the app."""

    def __init__(self, *, connect_timeout: float = 5.0, grace: float = 5.0) -> None:
        """``grace``: how much longer than a request's deadline the relay waits for a read, so
        that the endpoint's own 408 comes back first."""
        self.grace = grace
        self.connections = PodConnections(connect_timeout=connect_timeout)
        self._addresses: dict[str, PodAddress] = {}

    async def close(self) -> None:
        self.connections.close()

    def _address(self, root: str) -> PodAddress:
        address = self._addresses.get(root)
        if address is None:
            address = PodAddress.parse(root)
            if len(self._addresses) < 4096:
                self._addresses[root] = address
        return address

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
        target = f"{path}?{query.decode('latin-1')}" if query else path
        headers = []
        length = None
        for name, value in scope["headers"]:
            if name in _SENT_HEADERS:
                headers.append((_SENT_HEADERS[name], value))
            elif name == b"content-length":
                length = value
        if all(name != b"Content-Type" for name, _ in headers):
            headers.append((b"Content-Type", b"application/json"))  # as Elasticsearch reads a body
        small = length is not None and length.isdigit() and int(length) <= _BUFFERED_BODY
        body = await http.body() if small else http.stream()
        limit = wait_limit(timeout)
        try:
            upstream = await self.connections.request(self._address(root), scope["method"], target, headers, body,
                                                      None if limit is None else limit + self.grace)
        except (PodUnreachable, PodSilent) as exc:
            _unreachable(backend, exc, timeout)
        answer_headers = []
        stream = False
        for name, value in upstream.headers:
            lower = name.lower()
            if lower not in _HOP_HEADERS:
                answer_headers.append((lower, value))
                if lower == b"content-type" and value.startswith(_EVENT_STREAM):
                    stream = True
        if stream:
            return _RelayedStream(upstream.status, answer_headers, upstream.chunks())
        try:
            answer = await upstream.read()
        except (PodUnreachable, PodSilent) as exc:
            _unreachable(backend, exc, timeout)
        finally:
            upstream.release()
        return _Relayed(upstream.status, answer_headers, answer)


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
    if isinstance(exc, PodSilent):  # connected, then silent past the deadline
        raise timed_out(timeout) from None
    raise status_exception(
        f"Inference endpoint [{backend.config.inference_id}] is unreachable: {exc}", 502
    ) from None


