"""The OpenAI wire format (embeddings and chat completions), spoken by OpenAI, Azure
OpenAI, Azure AI Studio's token endpoints and Mistral. Pure builders and parsers only.
"""

from __future__ import annotations

import json
from typing import Any, AsyncIterator

import httpx

from kubeinfer.errors import ElasticsearchError
from ..results import CompletionDelta, Completions, TextEmbeddings
from .answers import completions, delta, expect_count, float_vector, text_embeddings
from .streams import server_sent_events


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


async def chat_deltas(response: httpx.Response) -> AsyncIterator[CompletionDelta]:
    """ES completion chunks from an OpenAI chat completion event stream."""
    async for _event, data in server_sent_events(response):
        if data.strip() == "[DONE]":
            return
        chunk = json.loads(data)
        if "error" in chunk:
            error = chunk["error"]
            message = error.get("message") if isinstance(error, dict) else str(error)
            raise ElasticsearchError(502, "status_exception", f"The provider's stream failed: {message}")
        for choice in chunk.get("choices") or []:
            text = (choice.get("delta") or {}).get("content")
            if text:
                yield delta(text)
