"""Anthropic: the messages API (``/v1/messages``) with ``x-api-key`` and
``anthropic-version``; streams are Anthropic's named Server-Sent Events.

For chat completion the unified request becomes a messages request (system messages as
``system``, tool calls as ``tool_use`` blocks, tool answers as ``tool_result`` blocks,
tools with their ``input_schema``) and Anthropic's stream events become OpenAI-shaped
chunks: text and ``input_json_delta`` pieces as deltas, the stop reason as a
``finish_reason``, the token counts as a last usage chunk. A request's ``reasoning`` turns
on extended thinking (``thinking.budget_tokens`` by effort); thinking streams back as
``reasoning`` deltas, each signed thought as a ``reasoning.text`` detail and redacted
thinking as ``reasoning.encrypted``, which an assistant message may give back.

``url`` replaces ``https://api.anthropic.com``.
"""

from __future__ import annotations

from typing import Any, AsyncIterator, Iterator

from kubeinfer import strict_json
from kubeinfer.catalog import InferenceEndpointConfig
from kubeinfer.errors import ElasticsearchError
from ..results import CompletionDelta, Completions, InferenceResult
from ..base import InferenceRequest
from ..chat import ChatCompletionChunk, ChatRequest, ChoiceDelta, Message, ToolCallDelta, tool_arguments, usage
from .answers import completions, delta
from .proxy import ProviderBackend
from .streams import ended_early, server_sent_events

BASE_URL = "https://api.anthropic.com"
API_VERSION = "2023-06-01"


def parse_messages(answer: dict[str, Any]) -> Completions:
    texts = [block["text"] for block in answer["content"] if block.get("type") == "text"]
    if not texts or not all(isinstance(t, str) for t in texts):
        raise ValueError("[content] holds no text block")
    return completions(texts)


STOP_REASONS = {"end_turn": "stop", "stop_sequence": "stop", "tool_use": "tool_calls", "max_tokens": "length",
                "refusal": "content_filter"}
TOOL_CHOICES = {"auto": {"type": "auto"}, "required": {"type": "any"}, "none": {"type": "none"}}
# Extended thinking's ``budget_tokens`` for each reasoning effort; Anthropic wants at least
# 1024 and fewer than ``max_tokens``.
THINKING_BUDGETS = {"minimal": 1024, "low": 2048, "medium": 8192, "high": 16384, "xhigh": 32768}
MIN_THINKING_BUDGET = 1024


def thinking(request: ChatRequest, max_tokens: int | None) -> dict[str, Any] | None:
    """The ``thinking`` of a request whose ``reasoning`` asks for some effort, else None."""
    level = request.reasoning.level if request.reasoning is not None else None
    if level is None or level == "none":
        return None
    budget = THINKING_BUDGETS[level]
    if max_tokens is not None:
        budget = min(budget, int(max_tokens) - 1)
    if budget < MIN_THINKING_BUDGET:
        raise ElasticsearchError(400, "status_exception", (
            f"Reasoning with the [anthropic] service needs [max_completion_tokens] above {MIN_THINKING_BUDGET}, "
            f"the smallest thinking budget; it is [{max_tokens}]"))
    return {"type": "enabled", "budget_tokens": budget}


def _thinking_blocks(message: Message) -> list[dict[str, Any]]:
    """An assistant message's reasoning details as the thinking blocks Anthropic wants back."""
    blocks = []
    for detail in message.reasoning_details or ():
        if detail.get("type") == "reasoning.text" and detail.get("signature"):
            blocks.append({"type": "thinking", "thinking": detail.get("text") or "", "signature": detail["signature"]})
        elif detail.get("type") == "reasoning.encrypted" and detail.get("data"):
            blocks.append({"type": "redacted_thinking", "data": detail["data"]})
    return blocks


def _blocks(message: Message) -> list[dict[str, Any]]:
    if isinstance(message.content, list):
        return [{"type": "text", "text": part.text} for part in message.content]
    return [{"type": "text", "text": message.content}] if message.content else []


def messages_body(request: ChatRequest, model_id: str, task_settings: dict[str, Any]) -> dict[str, Any]:
    """Anthropic's messages request for a unified chat request (streamed)."""
    system: list[str] = []
    messages: list[dict[str, Any]] = []
    max_tokens = request.max_completion_tokens or task_settings.get("max_tokens")
    thinks = thinking(request, max_tokens)
    for message in request.messages:
        reasoned = _thinking_blocks(message) if thinks and message.role == "assistant" else []
        if message.role in ("system", "developer"):
            system.append(message.text)
            continue
        if message.role == "tool":
            result = {"type": "tool_result", "tool_use_id": message.tool_call_id, "content": message.text}
            if messages and messages[-1]["role"] == "user" and isinstance(messages[-1]["content"], list) and all(
                block.get("type") == "tool_result" for block in messages[-1]["content"]
            ):
                messages[-1]["content"].append(result)
            else:
                messages.append({"role": "user", "content": [result]})
            continue
        if message.role == "assistant" and message.tool_calls:
            content = reasoned + _blocks(message) + [
                {"type": "tool_use", "id": call.id, "name": call.function.name, "input": tool_arguments(call)}
                for call in message.tool_calls
            ]
            messages.append({"role": "assistant", "content": content})
            continue
        content: Any = message.content if isinstance(message.content, str) and not reasoned else (
            reasoned + _blocks(message))
        messages.append({"role": "user" if message.role == "user" else "assistant", "content": content})
    body: dict[str, Any] = {
        "model": request.model or model_id,
        "messages": messages,
        "max_tokens": max_tokens,
    }
    if thinks:
        body["thinking"] = thinks
    if system:
        body["system"] = "\n".join(system)
    temperature = request.temperature if request.temperature is not None else task_settings.get("temperature")
    top_p = request.top_p if request.top_p is not None else task_settings.get("top_p")
    for name, value in (("temperature", temperature), ("top_p", top_p), ("top_k", task_settings.get("top_k"))):
        if value is not None:
            body[name] = value
    if request.stop:
        body["stop_sequences"] = list(request.stop)
    if request.tools:
        body["tools"] = [
            {"name": tool.function.name, **({"description": tool.function.description} if tool.function.description
                                            else {}),
             "input_schema": tool.function.parameters or {"type": "object", "properties": {}}}
            for tool in request.tools
        ]
    if request.tool_choice is not None:
        choice = request.tool_choice_json()
        body["tool_choice"] = TOOL_CHOICES[choice] if isinstance(choice, str) else {
            "type": "tool", "name": choice["function"]["name"]}
    body["stream"] = True
    return body


class MessageStreamReader:
    """Anthropic's stream events, one at a time, into unified chunks."""

    def __init__(self) -> None:
        self.id = ""
        self.model = ""
        self.input_tokens = 0
        self.output_tokens = 0
        # Anthropic's content block index -> the tool call's index among tool calls.
        self.tools: dict[int, int] = {}
        # Thinking blocks' text so far, by content block index; how many reasoning details were sent.
        self.thoughts: dict[int, str] = {}
        self.details = 0

    def _detail(self, **detail: Any) -> ChatCompletionChunk:
        self.details += 1
        return self._chunk(reasoning_details=({**detail, "index": self.details - 1},))

    def _chunk(self, **delta: Any) -> ChatCompletionChunk:
        return ChatCompletionChunk(id=self.id, model=self.model, choices=(ChoiceDelta(**delta),))

    def read(self, event: str, data: dict[str, Any]) -> Iterator[ChatCompletionChunk]:
        if event == "message_start":
            message = data["message"]
            self.id, self.model = str(message.get("id", "")), str(message.get("model", ""))
            self.input_tokens = int((message.get("usage") or {}).get("input_tokens", 0))
            self.output_tokens = int((message.get("usage") or {}).get("output_tokens", 0))
            yield self._chunk(role="assistant", content="")
        elif event == "content_block_start":
            block = data["content_block"]
            if block.get("type") == "tool_use":
                index = self.tools[int(data["index"])] = len(self.tools)
                yield self._chunk(tool_calls=(ToolCallDelta(
                    index=index, id=block.get("id"), name=block.get("name"), arguments="", type="function"),))
            elif block.get("type") == "text" and block.get("text"):
                yield self._chunk(content=block["text"])
            elif block.get("type") == "thinking":
                self.thoughts[int(data["index"])] = block.get("thinking") or ""
                if block.get("thinking"):
                    yield self._chunk(reasoning=block["thinking"])
            elif block.get("type") == "redacted_thinking" and block.get("data"):
                yield self._detail(type="reasoning.encrypted", data=block["data"])
        elif event == "content_block_delta":
            piece = data["delta"]
            if piece.get("type") == "text_delta" and piece.get("text"):
                yield self._chunk(content=piece["text"])
            elif piece.get("type") == "thinking_delta" and piece.get("thinking"):
                index = int(data["index"])
                self.thoughts[index] = self.thoughts.get(index, "") + piece["thinking"]
                yield self._chunk(reasoning=piece["thinking"])
            elif piece.get("type") == "signature_delta" and piece.get("signature"):
                # The whole thought with its signature: what a later request gives back.
                yield self._detail(type="reasoning.text", text=self.thoughts.get(int(data["index"]), ""),
                                   signature=piece["signature"])
            elif piece.get("type") == "input_json_delta" and piece.get("partial_json"):
                index = self.tools.get(int(data["index"]), 0)
                yield self._chunk(tool_calls=(ToolCallDelta(index=index, arguments=piece["partial_json"]),))
        elif event == "message_delta":
            self.output_tokens = int((data.get("usage") or {}).get("output_tokens", self.output_tokens))
            reason = (data.get("delta") or {}).get("stop_reason")
            if reason:
                yield self._chunk(finish_reason=STOP_REASONS.get(reason, reason))
        elif event == "message_stop":
            yield ChatCompletionChunk(id=self.id, model=self.model, choices=(),
                                      usage=usage(self.input_tokens, self.output_tokens))


class AnthropicBackend(ProviderBackend):
    def url(self) -> str:
        base = self.base_url(BASE_URL)
        return base if base.endswith("/v1/messages") else base + "/v1/messages"

    def headers(self) -> dict[str, str]:
        return {"x-api-key": self.secret("api_key"), "anthropic-version": API_VERSION}

    def body(self, request: InferenceRequest, stream: bool = False) -> dict[str, Any]:
        settings = request.task_settings
        body: dict[str, Any] = {
            "messages": [{"role": "user", "content": text} for text in request.input],
            "model": self.setting("model_id"),
            "max_tokens": settings.get("max_tokens"),
        }
        for name in ("temperature", "top_p", "top_k"):
            if settings.get(name) is not None:
                body[name] = settings[name]
        if stream:
            body["stream"] = True
        return body

    async def infer(self, request: InferenceRequest) -> InferenceResult:
        answer = await self.call_json(self.url(), self.body(request), request, headers=self.headers())
        return self.translate(parse_messages, answer)

    async def stream(self, request: InferenceRequest) -> AsyncIterator[CompletionDelta]:
        async with self.open_stream(self.url(), self.body(request, True), request, headers=self.headers()) as response:
            async for event, data in server_sent_events(response):
                if event == "content_block_delta":
                    piece = strict_json.loads(data)["delta"]
                    if piece.get("type") == "text_delta" and piece.get("text"):
                        yield delta(piece["text"])
                elif event == "error":
                    error = strict_json.loads(data).get("error") or {}
                    message = self.redact(str(error.get("message")))
                    raise ElasticsearchError(502, "status_exception", f"The provider's stream failed: {message}")
                elif event == "message_stop":
                    return
            raise ended_early("message_stop")


    async def chat(self, request: ChatRequest) -> AsyncIterator[ChatCompletionChunk]:
        body = messages_body(request, self.setting("model_id"), self.config.task_settings.model_dump())
        async with self.open_stream(self.url(), body, request, headers=self.headers()) as response:
            reader = MessageStreamReader()
            async for event, data in server_sent_events(response):
                if event == "error":
                    error = strict_json.loads(data).get("error") or {}
                    message = self.redact(str(error.get("message")))
                    raise ElasticsearchError(502, "status_exception", f"The provider's stream failed: {message}")
                for chunk in reader.read(event, strict_json.loads(data) if data.strip().startswith("{") else {}):
                    yield chunk
                if event == "message_stop":
                    return
            raise ended_early("message_stop")


def create_backend(config: InferenceEndpointConfig, **options: Any) -> AnthropicBackend:
    return AnthropicBackend(config, **options)
