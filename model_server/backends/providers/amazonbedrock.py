"""Amazon Bedrock runtime: ``InvokeModel`` for embeddings (Titan: one text per call;
Cohere: a batch), ``Converse`` for completion and ``ConverseStream`` for streaming it
(AWS's binary event stream, read with botocore's decoder), signed with AWS Signature V4
by botocore's signer.

Chat completion goes through ``ConverseStream`` too: the unified request's messages
become Converse messages (tool calls as ``toolUse`` blocks, tool answers as
``toolResult`` blocks, system messages as ``system``), its tools a ``toolConfig``, and
the stream's events OpenAI-shaped chunks, ending with the usage of its ``metadata``.

``url`` replaces ``https://bedrock-runtime.<region>.amazonaws.com``.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any, AsyncIterator
from urllib.parse import quote

import httpx
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.eventstream import EventStreamBuffer, EventStreamMessage, ParserError

from kubeinfer import strict_json
from kubeinfer.catalog import InferenceEndpointConfig, TaskType
from ..results import CompletionDelta, Completions, InferenceResult, TextEmbeddings
from ..base import InferenceRequest
from ..chat import ChatCompletionChunk, ChatRequest, ChoiceDelta, Message, ToolCallDelta, tool_arguments, usage
from kubeinfer.errors import ElasticsearchError
from .answers import completions, delta, expect_count, float_vector, text_embeddings
from .proxy import ProviderBackend

SIGNING_NAME = "bedrock"
EMBEDDING_PROVIDERS = ("amazontitan", "cohere")
COHERE_INPUT_TYPES = {"ingest": "search_document", "search": "search_query",
                      "classification": "classification", "clustering": "clustering"}


def parse_titan(answer: dict[str, Any]) -> list[float]:
    return float_vector(answer["embedding"])


def parse_cohere(answer: dict[str, Any], count: int) -> TextEmbeddings:
    embeddings = answer["embeddings"]
    if isinstance(embeddings, dict):
        embeddings = embeddings["float"]
    expect_count(embeddings, count, "embeddings")
    return text_embeddings([float_vector(v) for v in embeddings])


def parse_converse(answer: dict[str, Any]) -> Completions:
    content = answer["output"]["message"]["content"]
    texts = [block["text"] for block in content if "text" in block]
    if not texts or not all(isinstance(t, str) for t in texts):
        raise ValueError("[output.message.content] holds no text")
    return completions(["".join(texts)])


async def _event_stream_messages(response: httpx.Response) -> AsyncIterator[EventStreamMessage]:
    """Messages of AWS's binary event stream (``application/vnd.amazon.eventstream``)."""
    frames = EventStreamBuffer()
    async for data in response.aiter_bytes():
        frames.add_data(data)
        for message in frames:
            yield message


STOP_REASONS = {"end_turn": "stop", "stop_sequence": "stop", "tool_use": "tool_calls", "max_tokens": "length",
                "content_filtered": "content_filter", "guardrail_intervened": "content_filter"}


def _text_blocks(message: Message) -> list[dict[str, Any]]:
    if isinstance(message.content, list):
        return [{"text": part.text} for part in message.content]
    return [{"text": message.content}] if message.content else []


def converse_chat_body(request: ChatRequest, task_settings: dict[str, Any]) -> dict[str, Any]:
    """A Converse(Stream) request for a unified chat request."""
    system: list[dict[str, Any]] = []
    messages: list[dict[str, Any]] = []
    for message in request.messages:
        if message.role in ("system", "developer"):
            system.extend(_text_blocks(message))
            continue
        if message.role == "tool":
            block = {"toolResult": {"toolUseId": message.tool_call_id, "content": [{"text": message.text}]}}
            if messages and messages[-1]["role"] == "user" and all("toolResult" in b for b in messages[-1]["content"]):
                messages[-1]["content"].append(block)
            else:
                messages.append({"role": "user", "content": [block]})
            continue
        content = _text_blocks(message)
        if message.role == "assistant" and message.tool_calls:
            content += [
                {"toolUse": {"toolUseId": call.id, "name": call.function.name, "input": tool_arguments(call)}}
                for call in message.tool_calls
            ]
        messages.append({"role": "assistant" if message.role == "assistant" else "user", "content": content})
    body: dict[str, Any] = {"messages": messages}
    if system:
        body["system"] = system
    inference: dict[str, Any] = {}
    for key, value in (
        ("maxTokens", request.max_completion_tokens or task_settings.get("max_new_tokens")),
        ("temperature", request.temperature if request.temperature is not None else task_settings.get("temperature")),
        ("topP", request.top_p if request.top_p is not None else task_settings.get("top_p")),
        ("stopSequences", list(request.stop) if request.stop else None),
    ):
        if value is not None:
            inference[key] = value
    if inference:
        body["inferenceConfig"] = inference
    if task_settings.get("top_k") is not None:
        body["additionalModelRequestFields"] = {"top_k": task_settings["top_k"]}
    if request.tools and request.tool_choice != "none":
        tools: dict[str, Any] = {"tools": [
            {"toolSpec": {"name": tool.function.name,
                          **({"description": tool.function.description} if tool.function.description else {}),
                          "inputSchema": {"json": tool.function.parameters or {"type": "object", "properties": {}}}}}
            for tool in request.tools
        ]}
        choice = request.tool_choice_json()
        if choice == "auto":
            tools["toolChoice"] = {"auto": {}}
        elif choice == "required":
            tools["toolChoice"] = {"any": {}}
        elif isinstance(choice, dict):
            tools["toolChoice"] = {"tool": {"name": choice["function"]["name"]}}
        body["toolConfig"] = tools
    return body


class ConverseStreamReader:
    """ConverseStream's events, one at a time, into unified chunks."""

    def __init__(self, chunk_id: str, model: str) -> None:
        self.id, self.model = chunk_id, model
        # Converse's content block index -> the tool call's index among tool calls.
        self.tools: dict[int, int] = {}

    def _chunk(self, **delta: Any) -> ChatCompletionChunk:
        return ChatCompletionChunk(id=self.id, model=self.model, choices=(ChoiceDelta(**delta),))

    def read(self, event: str, data: dict[str, Any]) -> ChatCompletionChunk | None:
        if event == "messageStart":
            return self._chunk(role=data.get("role", "assistant"), content="")
        if event == "contentBlockStart":
            start = (data.get("start") or {}).get("toolUse")
            if start is not None:
                index = self.tools[int(data.get("contentBlockIndex", 0))] = len(self.tools)
                return self._chunk(tool_calls=(ToolCallDelta(
                    index=index, id=start.get("toolUseId"), name=start.get("name"), arguments="", type="function"),))
        elif event == "contentBlockDelta":
            piece = data["delta"]
            if piece.get("text"):
                return self._chunk(content=piece["text"])
            if "toolUse" in piece and piece["toolUse"].get("input"):
                index = self.tools.get(int(data.get("contentBlockIndex", 0)), 0)
                return self._chunk(tool_calls=(ToolCallDelta(index=index, arguments=piece["toolUse"]["input"]),))
        elif event == "messageStop":
            reason = data.get("stopReason")
            return self._chunk(finish_reason=STOP_REASONS.get(reason, reason)) if reason else None
        elif event == "metadata":
            counted = data.get("usage") or {}
            return ChatCompletionChunk(id=self.id, model=self.model, choices=(),
                                       usage=usage(counted.get("inputTokens", 0), counted.get("outputTokens", 0)))
        return None


class AmazonBedrockBackend(ProviderBackend):
    def __init__(self, config: InferenceEndpointConfig, **options: Any) -> None:
        super().__init__(config, **options)
        if config.task_type == TaskType.TEXT_EMBEDDING and self.setting("provider") not in EMBEDDING_PROVIDERS:
            raise self.unsupported(
                f"text_embedding with the [{self.setting('provider')}] provider; use one of {list(EMBEDDING_PROVIDERS)}"
            )
        self.credentials = Credentials(self.secret("access_key"), self.secret("secret_key"))
        self.region = self.setting("region")

    def url(self, operation: str) -> str:
        base = self.base_url(f"https://bedrock-runtime.{self.region}.amazonaws.com")
        return f"{base}/model/{quote(self.setting('model'), safe='')}/{operation}"

    async def authorize(self, request: httpx.Request) -> None:
        """Sign method, URL, body and the content headers with SigV4."""
        signed = AWSRequest(
            method=request.method,
            url=str(request.url),
            data=request.content,
            headers={"Content-Type": request.headers["content-type"], "Accept": "application/json"},
        )
        SigV4Auth(self.credentials, SIGNING_NAME, self.region).add_auth(signed)
        for name, value in signed.headers.items():
            request.headers[name] = value

    async def infer(self, request: InferenceRequest) -> InferenceResult:
        if self.config.task_type == TaskType.TEXT_EMBEDDING:
            if self.setting("provider") == "amazontitan":
                return await self._titan(request)
            body: dict[str, Any] = {
                "texts": list(request.input),
                "input_type": COHERE_INPUT_TYPES.get(self.input_type(request) or "", "search_document"),
            }
            answer = await self.call_json(self.url("invoke"), body, request)
            return self.translate(parse_cohere, answer, len(request.input))
        answer = await self.call_json(self.url("converse"), self.converse_body(request), request)
        return self.translate(parse_converse, answer)

    def converse_body(self, request: InferenceRequest) -> dict[str, Any]:
        settings = request.task_settings
        body: dict[str, Any] = {
            "messages": [{"role": "user", "content": [{"text": text}]} for text in request.input]
        }
        inference = {
            key: settings[name]
            for name, key in (("max_new_tokens", "maxTokens"), ("temperature", "temperature"), ("top_p", "topP"))
            if settings.get(name) is not None
        }
        if inference:
            body["inferenceConfig"] = inference
        if settings.get("top_k") is not None:
            body["additionalModelRequestFields"] = {"top_k": settings["top_k"]}
        return body

    async def stream(self, request: InferenceRequest) -> AsyncIterator[CompletionDelta]:
        if self.config.task_type != TaskType.COMPLETION:
            raise self.streaming_unsupported()
        async with self.open_stream(self.url("converse-stream"), self.converse_body(request), request) as response:
            try:
                async for message in _event_stream_messages(response):
                    headers = message.headers
                    if headers.get(":message-type") != "event":
                        kind = headers.get(":exception-type") or headers.get(":error-code") or "error"
                        detail = strict_json.loads(message.payload or b"{}").get("message", "")
                        raise ElasticsearchError(
                            502, "status_exception", f"The provider's stream failed: [{kind}] {detail}"
                        )
                    if headers.get(":event-type") == "contentBlockDelta":
                        text = strict_json.loads(message.payload)["delta"].get("text")
                        if text:
                            yield delta(text)
                    elif headers.get(":event-type") == "messageStop":
                        return
            except ParserError as exc:
                raise self.malformed(f"the event stream could not be decoded: {type(exc).__name__}") from None

    async def _events(self, response: httpx.Response) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        """(event type, payload) of a ConverseStream answer; exceptions in it raise."""
        try:
            async for message in _event_stream_messages(response):
                headers = message.headers
                if headers.get(":message-type") != "event":
                    kind = headers.get(":exception-type") or headers.get(":error-code") or "error"
                    detail = self.redact(str(strict_json.loads(message.payload or b"{}").get("message", "")))
                    raise ElasticsearchError(502, "status_exception", f"The provider's stream failed: [{kind}] {detail}")
                yield str(headers.get(":event-type", "")), strict_json.loads(message.payload or b"{}")
        except ParserError as exc:
            raise self.malformed(f"the event stream could not be decoded: {type(exc).__name__}") from None

    async def chat(self, request: ChatRequest) -> AsyncIterator[ChatCompletionChunk]:
        body = converse_chat_body(request, self.config.task_settings.model_dump())
        async with self.open_stream(self.url("converse-stream"), body, request) as response:
            chunk_id = response.headers.get("x-amzn-requestid") or f"chatcmpl-{uuid.uuid4().hex}"
            reader = ConverseStreamReader(chunk_id, request.model or self.setting("model"))
            async for event, data in self._events(response):
                chunk = reader.read(event, data)
                if chunk is not None:
                    yield chunk
                if event == "metadata":
                    return

    async def _titan(self, request: InferenceRequest) -> TextEmbeddings:
        # Titan embeds one text per call: send them side by side.
        async def one(text: str) -> list[float]:
            body: dict[str, Any] = {"inputText": text}
            if self.setting("dimensions"):
                body["dimensions"] = self.setting("dimensions")
            answer = await self.call_json(self.url("invoke"), body, request)
            return self.translate(parse_titan, answer)

        return text_embeddings(list(await asyncio.gather(*(one(text) for text in request.input))))


def create_backend(config: InferenceEndpointConfig, **options: Any) -> AmazonBedrockBackend:
    return AmazonBedrockBackend(config, **options)
