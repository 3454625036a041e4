"""The OpenAI wire format (embeddings and chat completions), spoken by OpenAI, Azure
OpenAI, Azure AI Studio's token endpoints, Mistral, Hugging Face's chat endpoints and
every OpenAI-compatible service. Pure builders and parsers only, plus the reading of a
chat completion stream into typed chunks (``chat_chunks``), which any OpenAI-compatible
backend can use for the unified chat completion API.
"""

from __future__ import annotations

from typing import Any, AsyncIterator

import httpx

from kubeinfer import strict_json
from kubeinfer.catalog import TaskType
from kubeinfer.errors import ElasticsearchError
from ..results import CompletionDelta, Completions, TextEmbeddings
from ..chat import CHUNK_OBJECT, ChatCompletionChunk, ChatRequest, ChoiceDelta, ToolCallDelta, usage
from .answers import completions, delta, expect_count, float_vector, text_embeddings
from .streams import ended_early, server_sent_events


# The operation each task type calls, relative to the API's base URL.
OPERATIONS = {
    TaskType.TEXT_EMBEDDING: "embeddings",
    TaskType.EMBEDDING: "embeddings",
    TaskType.COMPLETION: "chat/completions",
    TaskType.CHAT_COMPLETION: "chat/completions",
}


def embeddings_body(inputs: list[str], **fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"input": list(inputs)}
    body.update({k: v for k, v in fields.items() if v is not None})
    return body


def parse_embeddings(answer: dict[str, Any], count: int) -> TextEmbeddings:
    data = expect_count(answer["data"], count, "embeddings")
    ordered = sorted(data, key=lambda item: item.get("index", 0))
    return text_embeddings([float_vector(item["embedding"]) for item in ordered])


def chat_body(inputs: list[str], *, stream: bool = False, **fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"messages": [{"role": "user", "content": text} for text in inputs]}
    body.update({k: v for k, v in fields.items() if v is not None})
    if stream:
        body["stream"] = True
    return body


def parse_chat(answer: dict[str, Any]) -> Completions:
    choices = answer["choices"]
    if not isinstance(choices, list) or not choices:
        raise ValueError("[choices] is empty")
    texts = []
    for choice in choices:
        content = choice["message"]["content"]
        if not isinstance(content, str):
            raise ValueError("[choices[].message.content] is not a string")
        texts.append(content)
    return completions(texts)


async def stream_chunks(response: httpx.Response) -> AsyncIterator[dict[str, Any]]:
    """The JSON chunks of an OpenAI chat completion event stream, up to ``[DONE]``; an error
    event raises, and so does a stream cut off before ``[DONE]``."""
    async for _event, data in server_sent_events(response):
        if data.strip() == "[DONE]":
            return
        chunk = strict_json.loads(data)
        if "error" in chunk:
            error = chunk["error"]
            message = error.get("message") if isinstance(error, dict) else str(error)
            raise ElasticsearchError(502, "status_exception", f"The provider's stream failed: {message}")
        yield chunk
    raise ended_early("[DONE]")


async def chat_deltas(response: httpx.Response) -> AsyncIterator[CompletionDelta]:
    """ES completion chunks from an OpenAI chat completion event stream."""
    async for chunk in stream_chunks(response):
        for choice in chunk.get("choices") or []:
            text = (choice.get("delta") or {}).get("content")
            if text:
                yield delta(text)


# ---- the unified chat completion API (Elasticsearch's chat_completion task) -------------

def unified_chat_body(
    request: ChatRequest,
    *,
    model: str | None,
    max_tokens_field: str = "max_completion_tokens",
    stream_options: bool = True,
    **fields: Any,
) -> dict[str, Any]:
    """The OpenAI chat body Elasticsearch sends for a unified request: the request's own
    fields, one choice, a stream that ends with a usage chunk. Compatible services that
    know only the older ``max_tokens`` or no ``stream_options`` say so."""
    body: dict[str, Any] = {"messages": request.messages_json()}
    if request.model or model:
        body["model"] = request.model or model
    if request.max_completion_tokens is not None:
        body[max_tokens_field] = request.max_completion_tokens
    if request.stop:
        body["stop"] = list(request.stop)
    if request.temperature is not None:
        body["temperature"] = request.temperature
    if request.tool_choice is not None:
        body["tool_choice"] = request.tool_choice_json()
    if request.tools:
        body["tools"] = request.tools_json()
    if request.top_p is not None:
        body["top_p"] = request.top_p
    body["n"] = 1
    body["stream"] = True
    if stream_options:
        body["stream_options"] = {"include_usage": True}
    body.update({k: v for k, v in fields.items() if v is not None})
    return body


def reasoning_effort(request: ChatRequest) -> str | None:
    """OpenAI's ``reasoning_effort`` for a request's ``reasoning`` (the same six levels)."""
    return request.reasoning.level if request.reasoning is not None else None


def _tool_call_delta(item: dict[str, Any]) -> ToolCallDelta:
    function = item.get("function") or {}
    return ToolCallDelta(
        index=int(item.get("index", 0)), id=item.get("id"), name=function.get("name"),
        arguments=function.get("arguments"), type=item.get("type"),
    )


def parse_chat_chunk(chunk: dict[str, Any]) -> ChatCompletionChunk:
    """A typed chunk from one OpenAI ``chat.completion.chunk`` (also Elasticsearch's own)."""
    choices = None
    if chunk.get("choices") is not None:
        choices = tuple(
            ChoiceDelta(
                content=(choice.get("delta") or {}).get("content"),
                refusal=(choice.get("delta") or {}).get("refusal"),
                role=(choice.get("delta") or {}).get("role"),
                # OpenRouter's and Elasticsearch's "reasoning", vLLM's and DeepSeek's "reasoning_content".
                reasoning=(choice.get("delta") or {}).get("reasoning") or (choice.get("delta") or {}).get(
                    "reasoning_content"),
                reasoning_details=tuple((choice.get("delta") or {}).get("reasoning_details") or ()),
                tool_calls=tuple(_tool_call_delta(t) for t in (choice.get("delta") or {}).get("tool_calls") or ()),
                finish_reason=choice.get("finish_reason"),
                index=int(choice.get("index", 0)),
            )
            for choice in chunk["choices"]
        )
    counted = chunk.get("usage")
    return ChatCompletionChunk(
        id=str(chunk.get("id", "")),
        model=str(chunk.get("model", "")),
        choices=choices,
        usage=usage(counted.get("prompt_tokens", 0), counted.get("completion_tokens", 0)) if counted else None,
        object=str(chunk.get("object") or CHUNK_OBJECT),
    )


async def chat_chunks(response: httpx.Response) -> AsyncIterator[ChatCompletionChunk]:
    """Typed chunks from an OpenAI-compatible chat completion event stream."""
    async for chunk in stream_chunks(response):
        yield parse_chat_chunk(chunk)


def with_custom_headers(credentials: dict[str, str], task_settings: dict[str, Any] | None) -> dict[str, str]:
    """The task settings' ``headers`` (OpenAI's and Azure's), then the credentials: a custom
    header of the same name (in any case) does not replace them."""
    reserved = {name.lower() for name in credentials}
    custom = (task_settings or {}).get("headers") or {}
    headers = {str(k): str(v) for k, v in custom.items() if str(k).lower() not in reserved}
    headers.update(credentials)
    return headers
