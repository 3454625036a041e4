"""Chat completion as values: the unified request a backend is given and the chunks it
streams back.

The request mirrors Elasticsearch's unified chat completion body (OpenAI's shape:
messages with roles and content parts, tools, ``tool_choice``...); the chunk mirrors
Elasticsearch's ``chat.completion.chunk``. Backends translate between these and their
provider's wire format; ``model_server.api`` alone turns chunks into bytes. This module
knows neither HTTP nor any provider.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, field_validator

CHUNK_OBJECT = "chat.completion.chunk"


class _Part(BaseModel):
    # Fields Elasticsearch added later (reasoning details...) are kept, not refused.
    model_config = ConfigDict(extra="allow")


class ContentPart(_Part):
    type: str = "text"
    text: str


class ToolCallFunction(_Part):
    name: str
    arguments: str


class ToolCall(_Part):
    id: str
    type: str = "function"
    function: ToolCallFunction


class Message(_Part):
    role: str
    content: Union[str, list[ContentPart], None] = None
    tool_call_id: str | None = None
    tool_calls: list[ToolCall] | None = None
    # An assistant message's reasoning, as a previous answer streamed it: plain text, and
    # details ({"type": "reasoning.text" | "reasoning.summary" | "reasoning.encrypted", ...}).
    reasoning: str | None = None
    reasoning_details: list[dict[str, Any]] | None = None

    @property
    def text(self) -> str:
        """The content as one string (parts joined), empty when there is none."""
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text for part in self.content)


class FunctionDefinition(_Part):
    name: str
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class Tool(_Part):
    type: str = "function"
    function: FunctionDefinition


class ToolChoiceFunction(_Part):
    name: str


class ToolChoiceObject(_Part):
    type: str = "function"
    function: ToolChoiceFunction


ReasoningEffort = Literal["xhigh", "high", "medium", "low", "minimal", "none"]


class Reasoning(BaseModel):
    """Elasticsearch's ``reasoning`` of a chat completion request (9.4)."""

    model_config = ConfigDict(extra="forbid")

    effort: ReasoningEffort | None = None
    enabled: bool | None = None
    exclude: bool | None = None
    summary: Literal["auto", "concise", "detailed"] | None = None

    @field_validator("effort", "summary", mode="before")
    @classmethod
    def _any_case(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    @property
    def level(self) -> ReasoningEffort | None:
        """The effort asked for: ``effort``, else ``medium`` where ``enabled`` is true."""
        if self.effort is not None:
            return self.effort
        return "medium" if self.enabled else None


class ChatRequest(BaseModel):
    """Elasticsearch's unified chat completion request (``chat_completion_request``)."""

    model_config = ConfigDict(extra="forbid")

    messages: list[Message] = Field(min_length=1)
    model: str | None = None
    max_completion_tokens: int | None = None
    reasoning: Reasoning | None = None
    stop: list[str] | None = None
    temperature: float | None = None
    tool_choice: Union[Literal["auto", "none", "required"], ToolChoiceObject, None] = None
    tools: list[Tool] | None = None
    top_p: float | None = None
    # Not part of the body: the request's ``timeout`` parameter, in seconds.
    timeout: float = Field(default=120.0, exclude=True)

    def messages_json(self) -> list[dict[str, Any]]:
        """The messages as OpenAI's chat API takes them (which is how they came in)."""
        return [m.model_dump(exclude_none=True, include={"role", "content", "tool_call_id", "tool_calls"})
                for m in self.messages]

    def tools_json(self) -> list[dict[str, Any]] | None:
        if self.tools is None:
            return None
        return [t.model_dump(exclude_none=True) for t in self.tools]

    def tool_choice_json(self) -> Any:
        if isinstance(self.tool_choice, BaseModel):
            return self.tool_choice.model_dump(exclude_none=True)
        return self.tool_choice


def tool_arguments(call: ToolCall) -> Any:
    """A tool call's arguments as JSON, for providers that want an object; the raw text
    when it is not JSON."""
    try:
        return json.loads(call.function.arguments or "{}")
    except ValueError:
        return call.function.arguments


# ---- what a backend streams back ---------------------------------------------------------

@dataclass(frozen=True)
class ToolCallDelta:
    index: int
    id: str | None = None
    name: str | None = None
    arguments: str | None = None
    type: str | None = None


@dataclass(frozen=True)
class ChoiceDelta:
    content: str | None = None
    refusal: str | None = None
    role: str | None = None
    tool_calls: tuple[ToolCallDelta, ...] = ()
    reasoning: str | None = None
    # Pieces of Elasticsearch's reasoning details (``{"type": "reasoning.text", "signature"...}``).
    reasoning_details: tuple[dict[str, Any], ...] = ()
    finish_reason: str | None = None
    index: int = 0


@dataclass(frozen=True)
class Usage:
    completion_tokens: int
    prompt_tokens: int
    total_tokens: int


@dataclass(frozen=True)
class ChatCompletionChunk:
    """One ``chat.completion.chunk``; ``choices`` None leaves the field out, as
    Elasticsearch does."""

    id: str
    model: str
    choices: tuple[ChoiceDelta, ...] | None = ()
    usage: Usage | None = None
    object: str = field(default=CHUNK_OBJECT)


def usage(prompt_tokens: int, completion_tokens: int) -> Usage:
    return Usage(completion_tokens=int(completion_tokens), prompt_tokens=int(prompt_tokens),
                 total_tokens=int(prompt_tokens) + int(completion_tokens))


async def without_reasoning(chunks: AsyncIterator[ChatCompletionChunk]) -> AsyncIterator[ChatCompletionChunk]:
    """The chunks with their reasoning left out (a request's ``reasoning.exclude``)."""
    try:
        async for chunk in chunks:
            if chunk.choices:
                choices = tuple(dataclasses.replace(c, reasoning=None, reasoning_details=()) for c in chunk.choices)
                if all(c == ChoiceDelta(index=c.index) for c in choices):
                    continue  # a chunk that carried reasoning alone
                chunk = dataclasses.replace(chunk, choices=choices)
            yield chunk
    finally:
        await chunks.aclose()  # type: ignore[attr-defined]
