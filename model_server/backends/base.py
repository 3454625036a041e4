"""The contract between the HTTP API and whatever computes an answer.

A backend is built from a validated ``InferenceEndpointConfig`` (secrets resolved) by
the factory the catalog names. It knows nothing of HTTP: it takes an
``InferenceRequest`` and returns a typed result (``results``), or raises
``ElasticsearchError``; ``model_server.api`` writes the wire format. A
``DelegatingBackend`` serves through another backend that it loads, starts or retries
as it needs.
"""

from __future__ import annotations

import abc
import contextlib
from dataclasses import dataclass, field
from typing import Any, AsyncIterator

from kubeinfer.catalog import InferenceEndpointConfig, TaskType
from kubeinfer.errors import status_exception
from .chat import ChatCompletionChunk, ChatRequest
from .content import ContentItem

from .results import CompletionDelta, InferenceResult


@dataclass(frozen=True)
class InferenceRequest:
    task_type: TaskType
    input: list[str]
    query: str | None = None
    # Elasticsearch's input_type: "ingest" / "search" (also "classification", "clustering").
    input_type: str | None = None
    # The endpoint's task_settings with the request's overrides merged over them.
    task_settings: dict[str, Any] = field(default_factory=dict)
    # Seconds the caller is willing to wait (Elasticsearch's ``timeout``, 30s by default).
    timeout: float = 30.0
    # ``embedding`` only: each input as its content items (one embedding per group);
    # ``input`` then holds each group's text.
    contents: tuple[tuple[ContentItem, ...], ...] = ()

    def text_only(self) -> bool:
        """Every input is a single text item (always true outside the ``embedding`` task)."""
        return all(len(group) == 1 and group[0].type == "text" for group in self.contents)


class Backend(abc.ABC):
    """Serves one inference endpoint."""

    def __init__(self, config: InferenceEndpointConfig) -> None:
        self.config = config

    async def start(self) -> None:
        """Load the model or open the client; called once before the first request."""

    async def close(self) -> None:
        """Release what ``start`` took."""

    @property
    def ready(self) -> bool:
        return True

    @abc.abstractmethod
    async def infer(self, request: InferenceRequest) -> InferenceResult:
        """The result for ``request``: embeddings, a ranking or completions."""

    async def stream(self, request: InferenceRequest) -> AsyncIterator[CompletionDelta]:
        """Pieces of a completion, as they come."""
        raise status_exception(
            f"Streaming is not supported for the [{self.config.service}] service", 405
        )
        yield CompletionDelta("")  # pragma: no cover - makes this an async generator

    async def chat(self, request: ChatRequest) -> AsyncIterator[ChatCompletionChunk]:
        """The chunks of a unified chat completion (``chat_completion`` endpoints only)."""
        raise status_exception(
            f"The [{self.config.service}] service does not support task type [{self.config.task_type}]", 400
        )
        yield  # pragma: no cover - makes this an async generator

    def describe(self) -> dict[str, Any]:
        """What the endpoint knows of its model once started (``dimensions``, ``similarity``)."""
        return {}


class DelegatingBackend(Backend):
    """Serves each call through the backend that ``serving`` hands out for it: one that is
    loaded again after being idle, or started late. A subclass says only how it gets that
    backend; the calls keep ``Backend``'s signatures, and a stream ends its inner stream
    when it ends."""

    @abc.abstractmethod
    def serving(self) -> contextlib.AbstractAsyncContextManager[Backend]:
        """The backend for one call, held for as long as the call lasts."""

    async def infer(self, request: InferenceRequest) -> InferenceResult:
        async with self.serving() as backend:
            return await backend.infer(request)

    async def stream(self, request: InferenceRequest) -> AsyncIterator[CompletionDelta]:
        async with self.serving() as backend:
            async with contextlib.aclosing(backend.stream(request)) as chunks:
                async for chunk in chunks:
                    yield chunk

    async def chat(self, request: ChatRequest) -> AsyncIterator[ChatCompletionChunk]:
        async with self.serving() as backend:
            async with contextlib.aclosing(backend.chat(request)) as chunks:
                async for chunk in chunks:
                    yield chunk
