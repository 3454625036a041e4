"""Amazon Bedrock runtime: ``InvokeModel`` for embeddings (Titan: one text per call;
Cohere: a batch), ``Converse`` for completion and ``ConverseStream`` for streaming it
(AWS's binary event stream, read with botocore's decoder), signed with AWS Signature V4
by botocore's signer.

``url`` replaces ``https://bedrock-runtime.<region>.amazonaws.com``.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, AsyncIterator
from urllib.parse import quote

import httpx
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.eventstream import EventStreamBuffer, EventStreamMessage, ParserError

from kubeinfer.catalog import InferenceEndpointConfig, TaskType
from ..results import CompletionDelta, Completions, InferenceResult, TextEmbeddings
from ..base import InferenceRequest
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


class AmazonBedrockBackend(ProviderBackend):
    # The signature covers the escaped model id in the path: send it byte for byte.
    exact_urls = True

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
                        detail = json.loads(message.payload or b"{}").get("message", "")
                        raise ElasticsearchError(
                            502, "status_exception", f"The provider's stream failed: [{kind}] {detail}"
                        )
                    if headers.get(":event-type") == "contentBlockDelta":
                        text = json.loads(message.payload)["delta"].get("text")
                        if text:
                            yield delta(text)
                    elif headers.get(":event-type") == "messageStop":
                        return
            except ParserError as exc:
                raise self.malformed(f"the event stream could not be decoded: {type(exc).__name__}") from None

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
