"""Elasticsearch's unified chat completion API: ``POST /_inference/chat_completion/{id}/_stream``.

Reads the unified request, asks the endpoint's backend for chat chunks and writes them
as Elasticsearch does: Server-Sent Events whose data is a ``chat.completion.chunk``
(fields in Elasticsearch's order), then ``[DONE]``. Errors take the unified shape
``{"error": {"code", "message", "param", "type"}}``, in an ``event: error``, with the
error's HTTP status when nothing was sent yet. The non-streaming inference routes
refuse ``chat_completion`` endpoints with Elasticsearch's own message.
"""

from __future__ import annotations

import asyncio
import http
import logging
from typing import Any, AsyncIterator

from fastapi import APIRouter, Request
from pydantic import ValidationError
from starlette.responses import Response, StreamingResponse

from kubeinfer.catalog import SERVICES, InferenceEndpointConfig, TaskType, check_task_type
from kubeinfer.errors import ElasticsearchError, status_exception
from ..backends.chat import ChatCompletionChunk, ChatRequest, ChoiceDelta, ToolCallDelta, without_reasoning
from . import metrics, sse
from .errors import PRODUCT, PRODUCT_HEADER
from .request_body import parse_json_body
from .inference_request import parse_time_value
from .relay import Relay, request_timeout
from .store import EndpointStore

log = logging.getLogger(__name__)

REQUEST_NAME = "chat_completion_request"
# The unified API waits longer than the other inference APIs by default.
DEFAULT_TIMEOUT = 120.0


# ---- the request ----------------------------------------------------------------------

def parse_chat_request(body: Any, timeout: str | None = None) -> ChatRequest:
    """The unified request, or the ``x_content_parse_exception`` Elasticsearch's parser raises."""
    if not isinstance(body, dict):
        raise ElasticsearchError(400, "x_content_parse_exception", f"[{REQUEST_NAME}] expected an object")
    try:
        request = ChatRequest.model_validate(body)
    except ValidationError as exc:
        raise _parse_error(exc) from None
    request.timeout = parse_time_value(timeout, default=DEFAULT_TIMEOUT)
    return request


def _parse_error(exc: ValidationError) -> ElasticsearchError:
    error = exc.errors()[0]
    location = ".".join(str(part) for part in error["loc"] if not isinstance(part, int))
    if error["type"] == "extra_forbidden":
        reason = f"[{REQUEST_NAME}] unknown field [{location}]"
    elif error["type"] == "missing" and location == "messages":
        reason = "Required [messages]"
    else:
        reason = f"[{REQUEST_NAME}] failed to parse field [{location}]: {error['msg']}"
    return ElasticsearchError(400, "x_content_parse_exception", reason)


def not_a_stream_error(config: InferenceEndpointConfig) -> ElasticsearchError:
    """What Elasticsearch answers when a chat_completion endpoint gets a plain inference call."""
    # The embedding task has its own action in Elasticsearch, so it is not listed either.
    others = [t.value for t in TaskType
              if t not in (TaskType.CHAT_COMPLETION, TaskType.EMBEDDING) and SERVICES[config.service].supports(t)]
    return status_exception(
        f"Inference entity [{config.inference_id}] does not support task type [chat_completion] for inference, "
        f"the task type must be one of [{', '.join(others)}]. The task type for the inference entity is "
        f"chat_completion, please use the _inference/chat_completion/{config.inference_id}/_stream URL."
    )


# ---- the chunks, in Elasticsearch's field order -----------------------------------------

def _tool_call_json(call: ToolCallDelta) -> dict[str, Any]:
    out: dict[str, Any] = {"index": call.index}
    if call.id is not None:
        out["id"] = call.id
    if call.arguments is not None or call.name is not None:
        function: dict[str, Any] = {}
        if call.arguments is not None:
            function["arguments"] = call.arguments
        if call.name is not None:
            function["name"] = call.name
        out["function"] = function
    out["type"] = call.type
    return out


def _choice_json(choice: ChoiceDelta) -> dict[str, Any]:
    message: dict[str, Any] = {}
    for name in ("content", "refusal", "role", "reasoning"):
        value = getattr(choice, name)
        if value is not None:
            message[name] = value
    if choice.reasoning_details:
        message["reasoning_details"] = list(choice.reasoning_details)
    if choice.tool_calls:
        message["tool_calls"] = [_tool_call_json(call) for call in choice.tool_calls]
    out: dict[str, Any] = {"delta": message}
    if choice.finish_reason is not None:
        out["finish_reason"] = choice.finish_reason
    out["index"] = choice.index
    return out


def chunk_json(chunk: ChatCompletionChunk) -> dict[str, Any]:
    out: dict[str, Any] = {"id": chunk.id}
    if chunk.choices is not None:
        out["choices"] = [_choice_json(choice) for choice in chunk.choices]
    out["model"] = chunk.model
    out["object"] = chunk.object
    if chunk.usage is not None:
        out["usage"] = {
            "completion_tokens": chunk.usage.completion_tokens,
            "prompt_tokens": chunk.usage.prompt_tokens,
            "total_tokens": chunk.usage.total_tokens,
        }
    return out


def unified_error(error: ElasticsearchError) -> dict[str, Any]:
    """Elasticsearch's ``UnifiedChatCompletionException`` body for any error."""
    try:
        code = http.HTTPStatus(error.status).name.lower()
    except ValueError:
        code = None
    body: dict[str, Any] = {}
    if code is not None:
        body["code"] = code
    body["message"] = error.reason
    body["type"] = error.type
    return {"error": body}


# ---- the route ------------------------------------------------------------------------

def chat_completion_router(store: EndpointStore, relay: Relay | None = None) -> APIRouter:
    """The unified chat completion routes over ``store``; ``relay`` hands requests for the
    backends it takes on as bytes (the endpoint's server reads them)."""
    router = APIRouter()

    async def chat(http_request: Request, inference_id: str) -> Response:
        started = asyncio.get_running_loop().time()
        task = TaskType.CHAT_COMPLETION.value
        label = metrics.UNKNOWN_ENDPOINT  # until the endpoint is known to exist
        try:
            if relay is not None:
                config = await store.get(inference_id)
                label = config.inference_id
                check_task_type(config, TaskType.CHAT_COMPLETION, inference=True)
                answer = await relay(await store.backend(inference_id), http_request,
                                     request_timeout(http_request, DEFAULT_TIMEOUT))
                if answer is not None:
                    _observe(label, task, answer.status_code, started)
                    return answer
            request = parse_chat_request(
                parse_json_body(await http_request.body()), http_request.query_params.get("timeout")
            )
            config = await store.get(inference_id)
            label = config.inference_id
            check_task_type(config, TaskType.CHAT_COMPLETION, inference=True)
            backend = await store.backend(inference_id)
            chunks = backend.chat(request)
            if request.reasoning is not None and request.reasoning.exclude:
                chunks = without_reasoning(chunks)
            first = await sse.first_chunk(chunks, request.timeout)
        except ElasticsearchError as exc:
            _observe(label, task, exc.status, started, exc.type)
            return Response(
                sse.error_event(unified_error(exc)), status_code=exc.status, media_type=sse.MEDIA_TYPE,
                headers={PRODUCT_HEADER: PRODUCT},
            )
        return StreamingResponse(
            _events(first, chunks, label, started), media_type=sse.MEDIA_TYPE,
            headers={PRODUCT_HEADER: PRODUCT},
        )

    @router.post("/_inference/chat_completion/{inference_id}/_stream")
    async def chat_stream(http_request: Request, inference_id: str) -> Response:
        return await chat(http_request, inference_id)

    # Elasticsearch 8.18's first path for the same API, still answered.
    @router.post("/_inference/chat_completion/{inference_id}/_unified")
    async def chat_unified(http_request: Request, inference_id: str) -> Response:
        return await chat(http_request, inference_id)

    return router


async def _events(first: Any, chunks: AsyncIterator[ChatCompletionChunk], inference_id: str,
                  started: float) -> AsyncIterator[bytes]:
    task = TaskType.CHAT_COMPLETION.value
    try:
        if first is not sse.END:
            yield sse.message_event(chunk_json(first))
            async for chunk in chunks:
                yield sse.message_event(chunk_json(chunk))
    except ElasticsearchError as exc:
        _observe(inference_id, task, 200, started, exc.type)
        yield sse.error_event(unified_error(exc))
        return
    except Exception as exc:  # a stream broke mid-way: say so in the unified shape
        log.exception("chat completion stream of [%s] failed", inference_id)
        error = ElasticsearchError(500, "exception", f"stream failed: {type(exc).__name__}")
        _observe(inference_id, task, 200, started, error.type)
        yield sse.error_event(unified_error(error))
        return
    finally:
        await chunks.aclose()
    _observe(inference_id, task, 200, started)
    yield sse.done_event()


def _observe(inference_id: str, task: str, status: int, started: float, error_type: str | None = None) -> None:
    metrics.observe_request(inference_id, task, status, asyncio.get_running_loop().time() - started, error_type)
