"""The inference routes of Elasticsearch's API, over any ``EndpointStore``.

``POST /_inference/{task_type}/{inference_id}`` and ``POST /_inference/{inference_id}``
answer Elasticsearch's JSON; ``.../_stream`` answers Server-Sent Events as Elasticsearch
does, errors included (an ``event: error`` carrying the usual error body, with the
error's HTTP status when nothing was sent yet). Each request is counted, timed and,
when it fails, counted again by error type. With a ``Relay`` (the gateway's), a request
for an endpoint served elsewhere is handed on as bytes once the endpoint is found.
"""

from __future__ import annotations

import logging
import time
from typing import Any, AsyncIterator, Awaitable, Callable

from fastapi import Request
from starlette.convertors import Convertor, register_url_convertor
from starlette.exceptions import HTTPException
from starlette.responses import Response, StreamingResponse
from starlette.routing import BaseRoute, Match
from starlette.types import Receive, Scope, Send

from ..backends.base import Backend, InferenceRequest
from ..backends.results import CompletionDelta, InferenceResult, count_mismatch
from kubeinfer.catalog import InferenceEndpointConfig, TaskType, check_task_type, parse_task_type
from kubeinfer.config import ServerSettings
from kubeinfer.errors import ElasticsearchError, status_exception
from . import elasticsearch_json, metrics, sse
from .chat_completion import not_a_stream_error
from .deadline import deadline
from .errors import PRODUCT, PRODUCT_HEADER, ElasticsearchJSONResponse, error_response
from .request_body import read_json_body
from .inference_request import DEFAULT_TIMEOUT, parse_inference_request
from .relay import Relay, request_timeout
from .store import EndpointStore

log = logging.getLogger(__name__)


class EndpointConvertor(Convertor[str]):
    """``<inference_id>`` or ``<task_type>/<inference_id>``: Elasticsearch's two ways of
    naming an endpoint in a path, so that each route is declared once."""

    regex = "(?:[^/]+/)?[^/]+"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("endpoint", EndpointConvertor())


def endpoint_path(value: str) -> tuple[str | None, str]:
    """(task type or None, inference id) of an ``{endpoint:endpoint}`` path parameter."""
    task_type, _, inference_id = value.rpartition("/")
    return task_type or None, inference_id


class _Observed:
    """Counts and times one inference request for ``/metrics``; labelled by endpoint only
    once the endpoint is known to exist."""

    def __init__(self, inference_id: str) -> None:
        self.requested_id = inference_id
        self.inference_id = metrics.UNKNOWN_ENDPOINT
        self.task_type = "unknown"
        self.started = time.perf_counter()

    def finish(self, status: int, error_type: str | None = None) -> None:
        metrics.observe_request(self.inference_id, self.task_type, status, time.perf_counter() - self.started,
                                error_type)


async def _relayed(
    store: EndpointStore, relay: Relay | None, http: Request, inference_id: str, task_type: str | None,
    observed: _Observed, stream: bool,
) -> Response | None:
    """The relay's answer, once the endpoint is found and takes this request; else None."""
    if relay is None:
        return None
    config = await _endpoint(store, inference_id, task_type, observed)
    if config.task_type is TaskType.CHAT_COMPLETION and not stream:
        raise not_a_stream_error(config)
    answer = await relay(await store.backend(inference_id), http, request_timeout(http, DEFAULT_TIMEOUT))
    if answer is not None:
        observed.finish(answer.status_code)
    return answer


async def _endpoint(store: EndpointStore, inference_id: str, task_type: str | None,
                    observed: _Observed) -> InferenceEndpointConfig:
    """The endpoint a request names, which must have the task type its path names."""
    requested = parse_task_type(task_type) if task_type is not None else None
    config = await store.get(inference_id)
    observed.inference_id = config.inference_id
    observed.task_type = config.task_type.value
    check_task_type(config, requested, inference=True)
    return config


async def _prepare(
    store: EndpointStore, http: Request, inference_id: str, task_type: str | None, observed: _Observed,
    max_inputs: int,
) -> tuple[Backend, InferenceRequest]:
    config = await _endpoint(store, inference_id, task_type, observed)
    body = await read_json_body(http)
    request = parse_inference_request(config, body, http.query_params.get("timeout"), max_inputs=max_inputs)
    if config.task_type is TaskType.CHAT_COMPLETION:
        raise not_a_stream_error(config)
    metrics.count_inputs(config.inference_id, config.task_type.value, len(request.input))
    return await store.backend(inference_id), request


def checked_result(result: InferenceResult, request: InferenceRequest) -> InferenceResult:
    """``result``, unless it holds another number of results than the request has inputs."""
    problem = count_mismatch(result, len(request.input))
    if problem is not None:
        raise status_exception(f"The inference endpoint answered {problem}", 502)
    return result


_PREFIX = "/_inference/"
_STREAM = "_stream"
# Chat completion's own routes (`chat_completion.py`) take its `_stream` path.
_CHAT_COMPLETION = "chat_completion"


def inference_target(scope: Scope) -> tuple[str, bool] | None:
    """(``{endpoint}``, stream) when ``scope``'s path is one of inference's, else None.

    The paths' one definition, read with a split rather than regular expressions: one or
    two segments after ``/_inference/``, and ``/_stream`` after them, except
    ``/_inference/chat_completion/<id>/_stream``, which is chat completion's.
    """
    if scope["type"] != "http" or scope.get("root_path"):
        return None
    path: str = scope["path"]
    if not path.startswith(_PREFIX):
        return None
    parts = path[len(_PREFIX):].split("/")
    stream = len(parts) > 1 and parts[-1] == _STREAM
    if stream:
        del parts[-1]
    if len(parts) > 2 or not all(parts) or (stream and len(parts) == 2 and parts[0] == _CHAT_COMPLETION):
        return None
    return "/".join(parts), stream


class InferenceRoute(BaseRoute):
    """Elasticsearch's inference POSTs, ``/_inference/{endpoint}`` and its ``_stream`` form,
    declared once, as one route that an app places first.

    Every request walks an app's routes in order, each a regular expression, and Starlette
    wraps each route's handler in a request/response adapter: this route matches with
    ``inference_target`` (the paths' one definition) and calls the handler at once. It
    answers POSTs only; other methods on these paths are the other routes' (GET, PUT and
    DELETE of endpoints), or a 405. Errors the handler raises go to the app's exception
    handlers as from any route.
    """

    path_format = "/_inference/{endpoint}"

    def __init__(self, answer: Callable[[Request, bool], Awaitable[Response]]) -> None:
        self.answer = answer

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        target = inference_target(scope)
        if target is None:
            return Match.NONE, {}
        endpoint, stream = target
        # Another method on these paths is another route's, or a 405 (as Starlette's routes do).
        match = Match.FULL if scope["method"] == "POST" else Match.PARTIAL
        return match, {"endpoint": self, "path_params": {"endpoint": endpoint}, "kubeinfer.stream": stream}

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["method"] != "POST":
            raise HTTPException(status_code=405, headers={"Allow": "POST"})
        response = await self.answer(Request(scope, receive, send), scope["kubeinfer.stream"])
        await response(scope, receive, send)


def inference_route(store: EndpointStore, *, max_inputs: int | None = None, relay: Relay | None = None) -> InferenceRoute:
    """The inference route over ``store``; ``max_inputs`` per request,
    ``KUBEINFER_MAX_INPUTS_PER_REQUEST`` by default; ``relay`` hands requests for the
    backends it takes on as bytes (the endpoint's server checks them)."""
    if max_inputs is None:
        max_inputs = ServerSettings.from_env().max_inputs_per_request

    async def answer(http: Request, stream: bool) -> Response:
        """One request, inference or its ``_stream`` form: relayed as bytes where the relay
        takes its backend, served here otherwise."""
        task_type, inference_id = endpoint_path(http.path_params["endpoint"])
        observed = _Observed(inference_id)
        try:
            relayed = await _relayed(store, relay, http, inference_id, task_type, observed, stream)
            if relayed is not None:
                return relayed
            backend, request = await _prepare(store, http, inference_id, task_type, observed, max_inputs)
            if stream:
                chunks = backend.stream(request)
                first = await sse.first_chunk(chunks, request.timeout)
            else:
                async with deadline(request.timeout):
                    result = checked_result(await backend.infer(request), request)
        except ElasticsearchError as exc:
            observed.finish(exc.status, exc.type)
            if not stream:
                return error_response(exc)
            return Response(
                sse.error_event(exc.to_body()), status_code=exc.status, media_type=sse.MEDIA_TYPE,
                headers={PRODUCT_HEADER: PRODUCT},
            )
        if stream:
            return StreamingResponse(
                _event_stream(first, chunks, observed), media_type=sse.MEDIA_TYPE, headers={PRODUCT_HEADER: PRODUCT}
            )
        observed.finish(200)
        return ElasticsearchJSONResponse(elasticsearch_json.render(result))

    return InferenceRoute(answer)


async def _event_stream(first: Any, chunks: AsyncIterator[CompletionDelta], observed: _Observed) -> AsyncIterator[bytes]:
    try:
        if first is not sse.END:
            yield sse.message_event(elasticsearch_json.render_delta(first))
            async for chunk in chunks:
                yield sse.message_event(elasticsearch_json.render_delta(chunk))
    except ElasticsearchError as exc:
        observed.finish(200, exc.type)
        yield sse.error_event(exc.to_body())
        return
    except Exception as exc:  # a stream broke mid-way: tell the client as Elasticsearch does
        log.exception("stream of [%s] failed", observed.requested_id)
        error = ElasticsearchError(500, "exception", f"stream failed: {type(exc).__name__}")
        observed.finish(200, error.type)
        yield sse.error_event(error.to_body())
        return
    finally:
        aclose = getattr(chunks, "aclose", None)
        if aclose is not None:
            await aclose()
    observed.finish(200)
    yield sse.done_event()
