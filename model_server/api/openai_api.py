"""OpenAI's API over the same endpoints: ``/v1/embeddings``, ``/v1/chat/completions``,
``/v1/rerank`` (the Cohere/Jina shape that KServe, KubeAI and LiteLLM use) and
``GET /v1/models``.

Another renderer of the same backend results as Elasticsearch's routes: a request is
read in OpenAI's terms, validated as the equivalent Elasticsearch request would be (so
the endpoint's rules hold on both APIs), answered by the endpoint's backend and written
in OpenAI's JSON. ``model`` is the inference id. Errors take OpenAI's shape,
``{"error": {"message", "type", "param", "code"}}``, with the same HTTP status the
Elasticsearch route would give. This module knows no provider and no backend.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import logging
import struct
import time
import uuid
from typing import Annotated, Any, AsyncIterator, Mapping

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr, ValidationError
from starlette.responses import JSONResponse, Response, StreamingResponse

from kubeinfer.catalog import InferenceEndpointConfig, TaskType
from kubeinfer.errors import ElasticsearchError
from ..backends.base import Backend, InferenceRequest
from ..backends.chat import ChatCompletionChunk, ChatRequest, ChoiceDelta
from ..backends.results import Completions, Embeddings, InferenceResult, Ranking, TextEmbeddings
from . import metrics
from .chat_completion import DEFAULT_TIMEOUT as CHAT_TIMEOUT
from .chat_completion import parse_chat_request
from .deadline import deadline
from .inference import checked_result
from .errors import openai_error_body as error_body
from .errors import is_openai_path
from .request_body import parse_json_body
from .inference_request import DEFAULT_TIMEOUT, parse_inference_request
from .relay import Relay, request_timeout
from .store import EndpointStore

log = logging.getLogger(__name__)

PREFIX = "/v1"
OWNER = "kubeinfer"
MEDIA_TYPE = "text/event-stream"
# Chat fields the unified request has under the same name.
_UNIFIED_FIELDS = ("messages", "stop", "temperature", "tool_choice", "tools", "top_p", "max_completion_tokens")


# ---- errors -----------------------------------------------------------------------------

class OpenAIError(Exception):
    """A request that is wrong in OpenAI's terms before Elasticsearch's rules are asked."""

    def __init__(self, status: int, message: str, *, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code


def from_elasticsearch(error: ElasticsearchError) -> dict[str, Any]:
    """An Elasticsearch error in OpenAI's shape; the Elasticsearch type becomes the code."""
    code = "model_not_found" if error.type == "resource_not_found_exception" else error.type
    return error_body(error.status, error.reason, code=code)


def error_response(exc: Exception) -> Response:
    if isinstance(exc, OpenAIError):
        return JSONResponse(error_body(exc.status, exc.message, param=exc.param, code=exc.code),
                            status_code=exc.status)
    assert isinstance(exc, ElasticsearchError)
    return JSONResponse(from_elasticsearch(exc), status_code=exc.status)


# ---- reading requests ---------------------------------------------------------------------

def _object(raw: bytes) -> dict[str, Any]:
    try:
        body = parse_json_body(raw)
    except ElasticsearchError as exc:
        raise OpenAIError(400, exc.reason) from None
    if not isinstance(body, dict):
        raise OpenAIError(400, "the request body must be a JSON object")
    return body


def _model(body: Mapping[str, Any]) -> str:
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise OpenAIError(400, "you must provide a model parameter (the inference id)", param="model")
    return model


async def _body_and_model(http_request: Request, timer: "_Timer") -> tuple[dict[str, Any], str]:
    """The request's JSON object and the endpoint its ``model`` names, which the timer counts under."""
    body = _object(await http_request.body())
    timer.inference_id = model_id = _model(body)
    return body, model_id


class _Open(BaseModel):
    # OpenAI's bodies carry many fields this API does not read: they are let through.
    model_config = ConfigDict(extra="allow")


class _ContentPart(_Open):
    type: StrictStr
    text: StrictStr | None = None


class _ChatMessage(_Open):
    role: StrictStr
    content: StrictStr | list[_ContentPart] | None = None


class _StreamOptions(_Open):
    include_usage: StrictBool = False


_PositiveInt = Annotated[StrictInt, Field(ge=1)]


class ChatCompletionBody(_Open):
    """What ``/v1/chat/completions`` reads of OpenAI's chat body, checked as OpenAI checks it
    before anything is sent on: a wrong type is the caller's 400, not a failure later."""

    messages: list[_ChatMessage] = Field(min_length=1)
    stream: StrictBool = False
    stream_options: _StreamOptions | None = None
    max_tokens: _PositiveInt | None = None
    max_completion_tokens: _PositiveInt | None = None
    n: _PositiveInt | None = None


class _Document(_Open):
    text: StrictStr


class RerankBody(_Open):
    """``/v1/rerank``'s body (Cohere's and Jina's shape): documents are texts or ``{text}`` objects."""

    query: StrictStr
    documents: list[StrictStr | _Document] = Field(min_length=1)
    top_n: _PositiveInt | None = None
    return_documents: StrictBool = True

    def texts(self) -> list[str]:
        return [d if isinstance(d, str) else d.text for d in self.documents]


def _checked(model: type[BaseModel], body: Mapping[str, Any]) -> Any:
    """``body`` read by ``model``; the first problem as OpenAI's 400, naming its field."""
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(part) for part in error["loc"])
        raise OpenAIError(400, f"[{where}]: {error['msg']}", param=str(error["loc"][0]) if error["loc"] else None) \
            from None


def _with_timeout(request: InferenceRequest, timeout: float) -> InferenceRequest:
    return dataclasses.replace(request, timeout=timeout)


def _timeout(http_request: Request, default: float) -> float:
    """Elasticsearch's ``timeout`` query parameter; OpenAI's bodies have none."""
    try:
        return request_timeout(http_request, default)
    except ElasticsearchError as exc:
        raise OpenAIError(400, exc.reason, param="timeout") from None


def _require_task(config: InferenceEndpointConfig, route: str, *tasks: TaskType) -> None:
    if config.task_type not in tasks:
        names = " or ".join(t.value for t in tasks)
        raise OpenAIError(400, f"model [{config.inference_id}] is a [{config.task_type.value}] endpoint; "
                               f"{route} serves {names} endpoints", param="model", code="model_not_supported")


def _embedding_inputs(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and value and all(isinstance(item, str) for item in value):
        return value
    if isinstance(value, list) and value and all(isinstance(item, (int, list)) for item in value):
        raise OpenAIError(400, "token arrays are not supported: send the input as text", param="input")
    raise OpenAIError(400, "input must be a non-empty string or array of strings", param="input")


# ---- values to OpenAI's JSON ----------------------------------------------------------------

def embedding_vectors(result: InferenceResult) -> list[list[float]]:
    """The vectors of a text_embedding or embedding result, whatever its element type."""
    if isinstance(result, (TextEmbeddings, Embeddings)):
        return [[float(x) for x in vector] for vector in result.vectors]
    raise ElasticsearchError(500, "exception", "the endpoint did not answer with embeddings")


def encode_embedding(vector: list[float], encoding_format: str) -> list[float] | str:
    if encoding_format == "base64":  # little-endian float32, as OpenAI sends and its SDK decodes
        return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")
    return vector


def embeddings_json(model: str, vectors: list[list[float]], encoding_format: str, tokens: int) -> dict[str, Any]:
    return {
        "object": "list",
        "data": [{"object": "embedding", "index": i, "embedding": encode_embedding(v, encoding_format)}
                 for i, v in enumerate(vectors)],
        "model": model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }


def rerank_json(model: str, ranking: InferenceResult, documents: list[str], top_n: int | None,
                return_documents: bool) -> dict[str, Any]:
    if not isinstance(ranking, Ranking):
        raise ElasticsearchError(500, "exception", "the endpoint did not answer with a ranking")
    ordered = sorted(ranking.documents, key=lambda r: -r.relevance_score)
    if top_n is not None:
        ordered = ordered[:top_n]
    results = []
    for item in ordered:
        entry: dict[str, Any] = {"index": item.index, "relevance_score": float(item.relevance_score)}
        if return_documents:
            entry["document"] = {"text": documents[item.index]}
        results.append(entry)
    return {"id": f"rerank-{uuid.uuid4().hex}", "model": model, "results": results,
            "usage": {"total_tokens": _rough_tokens(documents)}}


def _rough_tokens(texts: list[str]) -> int:
    # The backends do not report token counts; whitespace-separated words stand in.
    return sum(len(t.split()) for t in texts)


def _chunk_json(chunk: ChatCompletionChunk, model: str, created: int, include_usage: bool) -> dict[str, Any]:
    choices = []
    for choice in chunk.choices or ():
        delta: dict[str, Any] = {}
        for name in ("role", "content", "refusal"):
            if getattr(choice, name) is not None:
                delta[name] = getattr(choice, name)
        if choice.tool_calls:
            delta["tool_calls"] = [_tool_call_delta(call) for call in choice.tool_calls]
        choices.append({"index": choice.index, "delta": delta, "finish_reason": choice.finish_reason})
    out: dict[str, Any] = {"id": chunk.id, "object": "chat.completion.chunk", "created": created, "model": model,
                           "choices": choices}
    if include_usage:
        out["usage"] = _usage(chunk)
    return out


def _tool_call_delta(call: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"index": call.index}
    if call.id is not None:
        out["id"] = call.id
        out["type"] = call.type or "function"
    function: dict[str, Any] = {}
    if call.name is not None:
        function["name"] = call.name
    if call.arguments is not None:
        function["arguments"] = call.arguments
    if function:
        out["function"] = function
    return out


def _usage(chunk: ChatCompletionChunk) -> dict[str, int] | None:
    if chunk.usage is None:
        return None
    return {"prompt_tokens": chunk.usage.prompt_tokens, "completion_tokens": chunk.usage.completion_tokens,
            "total_tokens": chunk.usage.total_tokens}


def completion_json(chunks: list[ChatCompletionChunk], model: str, created: int) -> dict[str, Any]:
    """A whole ``chat.completion`` from the chunks of one streamed answer."""
    content: list[str] = []
    refusal: list[str] = []
    calls: dict[int, dict[str, Any]] = {}
    finish = None
    usage = None
    for chunk in chunks:
        usage = _usage(chunk) or usage
        for choice in chunk.choices or ():
            if choice.content:
                content.append(choice.content)
            if choice.refusal:
                refusal.append(choice.refusal)
            for call in choice.tool_calls:
                entry = calls.setdefault(call.index, {"id": None, "type": "function",
                                                      "function": {"name": "", "arguments": ""}})
                entry["id"] = call.id or entry["id"]
                entry["function"]["name"] += call.name or ""
                entry["function"]["arguments"] += call.arguments or ""
            finish = choice.finish_reason or finish
    message: dict[str, Any] = {"role": "assistant", "content": "".join(content) if content or not calls else None}
    if refusal:
        message["refusal"] = "".join(refusal)
    if calls:
        message["tool_calls"] = [calls[i] for i in sorted(calls)]
    out: dict[str, Any] = {
        "id": chunks[0].id if chunks else f"chatcmpl-{uuid.uuid4().hex}",
        "object": "chat.completion", "created": created, "model": model,
        "choices": [{"index": 0, "message": message,
                     "finish_reason": finish or ("tool_calls" if calls else "stop")}],
    }
    if usage is not None:
        out["usage"] = usage
    return out


def _sse(data: Any) -> bytes:
    payload = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    return f"data: {payload}\n\n".encode("utf-8")


# ---- chat on either kind of endpoint -----------------------------------------------------------

def chat_request(body: Mapping[str, Any], timeout: float) -> ChatRequest:
    """OpenAI's chat body as the unified request the chat_completion backends take."""
    unified = {name: body[name] for name in _UNIFIED_FIELDS if body.get(name) is not None}
    if isinstance(unified.get("stop"), str):
        unified["stop"] = [unified["stop"]]
    if "max_completion_tokens" not in unified and body.get("max_tokens") is not None:
        unified["max_completion_tokens"] = body["max_tokens"]
    if body.get("reasoning_effort") is not None:
        unified["reasoning"] = {"effort": body["reasoning_effort"]}
    if body.get("n") not in (None, 1):
        raise OpenAIError(400, "only n=1 is supported", param="n")
    try:
        request = parse_chat_request(unified)
    except ElasticsearchError as exc:
        raise OpenAIError(400, exc.reason, param="messages" if "messages" in exc.reason else None) from None
    request.timeout = timeout
    return request


async def _completion_chunks(backend: Backend, request: InferenceRequest, stream: bool,
                             chunk_id: str) -> AsyncIterator[ChatCompletionChunk]:
    """A completion endpoint's answer as chat chunks: its streamed deltas, or its one result."""
    yield ChatCompletionChunk(id=chunk_id, model="", choices=(ChoiceDelta(role="assistant", content=""),))
    if stream:
        async for piece in backend.stream(request):
            if piece.text:
                yield ChatCompletionChunk(id=chunk_id, model="", choices=(ChoiceDelta(content=piece.text),))
    else:
        result = await backend.infer(request)
        text = "".join(result.texts) if isinstance(result, Completions) else ""
        yield ChatCompletionChunk(id=chunk_id, model="", choices=(ChoiceDelta(content=text),))
    yield ChatCompletionChunk(id=chunk_id, model="", choices=(ChoiceDelta(finish_reason="stop"),))


def _conversation_text(body: ChatCompletionBody) -> str:
    """A completion endpoint takes one text: the messages' texts, in order."""
    texts = []
    for message in body.messages:
        content = message.content
        if isinstance(content, list):
            content = "".join(part.text or "" for part in content)
        if content:
            texts.append(content)
    if not texts:
        raise OpenAIError(400, "the messages carry no text", param="messages")
    return "\n\n".join(texts)


# ---- the routes ---------------------------------------------------------------------------

class _Timer:
    def __init__(self, inference_id: str, task: str) -> None:
        self.inference_id, self.task, self.started = inference_id, task, time.perf_counter()

    def finish(self, status: int, error_type: str | None = None) -> None:
        metrics.observe_request(self.inference_id, self.task, status, time.perf_counter() - self.started, error_type)


def openai_router(store: EndpointStore, relay: Relay | None = None) -> APIRouter:
    """OpenAI's routes over ``store``; ``relay`` hands requests for the backends it takes
    on as bytes (the endpoint's server reads them, in OpenAI's terms)."""
    router = APIRouter(prefix=PREFIX)

    async def relayed(model_id: str, http_request: Request, timeout: float, timer: _Timer) -> Response | None:
        """The relay's answer for the endpoint ``model_id``, found and of the route's task; else None."""
        if relay is None:
            return None
        answer = await relay(await store.backend(model_id), http_request, timeout)
        if answer is not None:
            timer.finish(answer.status_code)
        return answer

    @router.get("/models")
    async def models() -> Response:
        configs = await store.list()
        return JSONResponse({"object": "list", "data": [
            {"id": c.inference_id, "object": "model", "created": 0, "owned_by": OWNER,
             "task_type": c.task_type.value, "service": c.service}
            for c in configs]})

    @router.get("/models/{model:path}")
    async def model(model: str) -> Response:
        try:
            config = await store.get(model)
        except ElasticsearchError as exc:
            return error_response(exc)
        return JSONResponse({"id": config.inference_id, "object": "model", "created": 0, "owned_by": OWNER,
                             "task_type": config.task_type.value, "service": config.service})

    @router.post("/embeddings")
    async def embeddings(http_request: Request) -> Response:
        timer = _Timer("unknown", TaskType.TEXT_EMBEDDING.value)
        try:
            body, model_id = await _body_and_model(http_request, timer)
            config = await store.get(model_id)
            # OpenAI's input is text: an embedding endpoint takes it as one text content each.
            _require_task(config, "/v1/embeddings", TaskType.TEXT_EMBEDDING, TaskType.EMBEDDING)
            timeout = _timeout(http_request, DEFAULT_TIMEOUT)
            if (answer := await relayed(model_id, http_request, timeout, timer)) is not None:
                return answer
            encoding = body.get("encoding_format") or "float"
            if encoding not in ("float", "base64"):
                raise OpenAIError(400, "encoding_format must be float or base64", param="encoding_format")
            texts = _embedding_inputs(body.get("input"))
            request = _with_timeout(parse_inference_request(config, {"input": texts}), timeout)
            backend = await store.backend(model_id)
            metrics.count_inputs(model_id, config.task_type.value, len(texts))
            async with deadline(timeout):
                vectors = embedding_vectors(checked_result(await backend.infer(request), request))
            dimensions = body.get("dimensions")
            if dimensions is not None and vectors and dimensions != len(vectors[0]):
                raise OpenAIError(400, f"model [{model_id}] answers {len(vectors[0])}-dimensional embeddings; "
                                       f"dimensions [{dimensions}] is set when the endpoint is created "
                                       "(service_settings.dimensions)", param="dimensions")
        except (OpenAIError, ElasticsearchError) as exc:
            timer.finish(exc.status, getattr(exc, "type", "invalid_request_error"))
            return error_response(exc)
        timer.finish(200)
        return JSONResponse(embeddings_json(model_id, vectors, encoding, _rough_tokens(texts)))

    @router.post("/rerank")
    async def rerank(http_request: Request) -> Response:
        timer = _Timer("unknown", TaskType.RERANK.value)
        try:
            body, model_id = await _body_and_model(http_request, timer)
            config = await store.get(model_id)
            _require_task(config, "/v1/rerank", TaskType.RERANK)
            timeout = _timeout(http_request, DEFAULT_TIMEOUT)
            if (answer := await relayed(model_id, http_request, timeout, timer)) is not None:
                return answer
            rerank_body: RerankBody = _checked(RerankBody, body)
            documents = rerank_body.texts()
            request = _with_timeout(parse_inference_request(config, {"input": documents, "query": rerank_body.query}),
                                    timeout)
            backend = await store.backend(model_id)
            metrics.count_inputs(model_id, config.task_type.value, len(documents))
            async with deadline(timeout):
                result = checked_result(await backend.infer(request), request)
        except (OpenAIError, ElasticsearchError) as exc:
            timer.finish(exc.status, getattr(exc, "type", "invalid_request_error"))
            return error_response(exc)
        timer.finish(200)
        return JSONResponse(rerank_json(model_id, result, documents, rerank_body.top_n, rerank_body.return_documents))

    @router.post("/chat/completions")
    async def chat_completions(http_request: Request) -> Response:
        timer = _Timer("unknown", TaskType.CHAT_COMPLETION.value)
        created = int(time.time())
        try:
            body, model_id = await _body_and_model(http_request, timer)
            config = await store.get(model_id)
            timer.task = config.task_type.value
            _require_task(config, "/v1/chat/completions", TaskType.CHAT_COMPLETION, TaskType.COMPLETION)
            chatting = config.task_type is TaskType.CHAT_COMPLETION
            timeout = _timeout(http_request, CHAT_TIMEOUT if chatting else DEFAULT_TIMEOUT)
            if (answer := await relayed(model_id, http_request, timeout, timer)) is not None:
                return answer
            chat_body: ChatCompletionBody = _checked(ChatCompletionBody, body)
            stream = chat_body.stream
            include_usage = chat_body.stream_options is not None and chat_body.stream_options.include_usage
            chunk_id = f"chatcmpl-{uuid.uuid4().hex}"
            if chatting:
                request = chat_request(body, timeout)
                backend = await store.backend(model_id)
                chunks = backend.chat(request)
            else:
                if body.get("tools"):
                    raise OpenAIError(400, f"model [{model_id}] is a completion endpoint, which takes no tools; "
                                           "use a chat_completion endpoint", param="tools")
                request_in = _with_timeout(parse_inference_request(config, {"input": _conversation_text(chat_body)}),
                                           timeout)
                backend = await store.backend(model_id)
                chunks = _completion_chunks(backend, request_in, stream, chunk_id)
            # A stream's deadline bounds its first chunk; a whole answer's, all of it.
            async with deadline(timeout):
                first = await _first(chunks)
                if not stream:
                    collected = [] if first is None else [first]
                    async for chunk in chunks:
                        collected.append(chunk)
            if not stream:
                whole = completion_json(collected, model_id, created)
        except (OpenAIError, ElasticsearchError) as exc:
            timer.finish(exc.status, getattr(exc, "type", "invalid_request_error"))
            return error_response(exc)
        if not stream:
            timer.finish(200)
            return JSONResponse(whole)
        return StreamingResponse(_chat_events(first, chunks, model_id, created, include_usage, timer),
                                 media_type=MEDIA_TYPE)

    return router


async def _first(chunks: AsyncIterator[ChatCompletionChunk]) -> ChatCompletionChunk | None:
    try:
        return await anext(chunks)
    except StopAsyncIteration:
        return None


async def _chat_events(first: ChatCompletionChunk | None, chunks: AsyncIterator[ChatCompletionChunk], model: str,
                       created: int, include_usage: bool, timer: _Timer) -> AsyncIterator[bytes]:
    usage = None
    try:
        pending = [first] if first is not None else []
        while True:
            if pending:
                chunk = pending.pop()
            else:
                try:
                    chunk = await anext(chunks)
                except StopAsyncIteration:
                    break
            usage = _usage(chunk) or usage
            if chunk.choices:
                yield _sse(_chunk_json(chunk, model, created, include_usage=False))
    except ElasticsearchError as exc:
        timer.finish(200, exc.type)
        yield _sse(from_elasticsearch(exc))
        return
    except Exception as exc:  # a stream broke mid-way: say so as OpenAI does, in the stream
        log.exception("chat completion stream of [%s] failed", model)
        timer.finish(200, "exception")
        yield _sse(error_body(500, f"stream failed: {type(exc).__name__}"))
        return
    finally:
        await chunks.aclose()
    if include_usage:
        yield _sse({"id": first.id if first else "", "object": "chat.completion.chunk", "created": created,
                    "model": model, "choices": [], "usage": usage})
    timer.finish(200)
    yield _sse("[DONE]")


