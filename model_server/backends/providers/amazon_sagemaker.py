"""Amazon SageMaker runtime: ``InvokeEndpoint`` (``/endpoints/<name>/invocations``) and,
for streams, ``InvokeEndpointWithResponseStream`` (``/invocations-response-stream``,
AWS's binary event stream of ``PayloadPart`` events), signed with AWS Signature V4 by
botocore's signer for the ``sagemaker`` service.

The body follows the endpoint's ``api``:

- ``openai``: OpenAI's embeddings body (``input``, ``dimensions``, ``user``) and chat
  completions body, answered in OpenAI's shapes; streams are OpenAI's event stream
  carried in the payload parts;
- ``elastic``: Elasticsearch's own request (``input``, ``input_type``, ``query``,
  ``task_settings``), answered in Elasticsearch's own response shapes; a streamed
  completion is one ``{"completion": [{"delta": ...}]}`` object a payload part, and
  chat completion takes the unified request and streams OpenAI's chunks, as with ``openai``.

The invoke options of the task settings (``custom_attributes``, ``target_variant``,
``session_id``...) and of the service settings (``target_model``,
``target_container_hostname``, ``inference_component_name``) travel as SageMaker's
``X-Amzn-SageMaker-*`` headers. ``url`` replaces
``https://runtime.sagemaker.<region>.amazonaws.com``.
"""

from __future__ import annotations

from typing import Any, AsyncIterator
from urllib.parse import quote

import httpx
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.eventstream import EventStreamBuffer, ParserError

from kubeinfer import strict_json
from kubeinfer.catalog import InferenceEndpointConfig, TaskType
from kubeinfer.errors import ElasticsearchError
from ...event_stream import EventStreamParser
from ..base import InferenceRequest
from ..results import CompletionDelta, InferenceResult
from ..chat import ChatCompletionChunk, ChatRequest
from . import openai_shapes
from .answers import (
    bit_embeddings, byte_embeddings, completions, delta, expect_count, float_vector, rerank_results,
    sparse_embeddings, text_embeddings,
)
from .proxy import ProviderBackend
from .streams import ended_early

SIGNING_NAME = "sagemaker"
# Settings -> SageMaker's invoke headers.
SERVICE_HEADERS = {
    "target_model": "X-Amzn-SageMaker-Target-Model",
    "target_container_hostname": "X-Amzn-SageMaker-Target-Container-Hostname",
    "inference_component_name": "X-Amzn-SageMaker-Inference-Component",
}
TASK_HEADERS = {
    "custom_attributes": "X-Amzn-SageMaker-Custom-Attributes",
    "enable_explanations": "X-Amzn-SageMaker-Enable-Explanations",
    "inference_id": "X-Amzn-SageMaker-Inference-Id",
    "session_id": "X-Amzn-SageMaker-Session-Id",
    "target_variant": "X-Amzn-SageMaker-Target-Variant",
}
# Task settings that are invoke options, not part of the body.
INVOKE_OPTIONS = set(TASK_HEADERS) | {"user"}


def parse_elastic(answer: dict[str, Any], task: TaskType, count: int, element_type: str | None) -> InferenceResult:
    """Elasticsearch's own response shapes, checked and rebuilt."""
    if task == TaskType.TEXT_EMBEDDING:
        if element_type == "bit":
            return bit_embeddings([i["embedding"] for i in expect_count(answer["text_embedding_bits"], count, "embeddings")])
        if element_type == "byte":
            return byte_embeddings([i["embedding"] for i in expect_count(answer["text_embedding_bytes"], count, "embeddings")])
        return text_embeddings([float_vector(i["embedding"]) for i in expect_count(answer["text_embedding"], count, "embeddings")])
    if task == TaskType.SPARSE_EMBEDDING:
        items = expect_count(answer["sparse_embedding"], count, "sparse embeddings")
        return sparse_embeddings([item["embedding"] for item in items])
    if task == TaskType.RERANK:
        scored = []
        for item in answer["rerank"]:
            index = int(item["index"])
            if not 0 <= index < count:
                raise ValueError(f"rerank index [{index}] is out of range")
            scored.append((index, item["relevance_score"], item.get("text")))
        return rerank_results(scored)
    texts = [item["result"] for item in answer["completion"]]
    if not texts or not all(isinstance(t, str) for t in texts):
        raise ValueError("[completion] holds no text")
    return completions(texts)


class AmazonSageMakerBackend(ProviderBackend):
    def __init__(self, config: InferenceEndpointConfig, **options: Any) -> None:
        super().__init__(config, **options)
        self.credentials = Credentials(self.secret("access_key"), self.secret("secret_key"))
        self.region = self.setting("region")

    @property
    def openai(self) -> bool:
        return self.setting("api") == "openai"

    def url(self, stream: bool = False) -> str:
        base = self.base_url(f"https://runtime.sagemaker.{self.region}.amazonaws.com")
        operation = "invocations-response-stream" if stream else "invocations"
        return f"{base}/endpoints/{quote(self.setting('endpoint_name'), safe='')}/{operation}"

    def headers(self, task_settings: dict[str, Any], stream: bool = False) -> dict[str, str]:
        headers = {"Accept": "text/event-stream" if stream else "application/json"}
        for name, header in SERVICE_HEADERS.items():
            if self.setting(name):
                headers[header] = str(self.setting(name))
        for name, header in TASK_HEADERS.items():
            if task_settings.get(name) is not None:
                headers[header] = str(task_settings[name])
        return headers

    async def authorize(self, request: httpx.Request) -> None:
        """Sign method, URL, body and the content headers with SigV4."""
        signed = AWSRequest(
            method=request.method,
            url=str(request.url),
            data=request.content,
            headers={"Content-Type": request.headers["content-type"]},
        )
        SigV4Auth(self.credentials, SIGNING_NAME, self.region).add_auth(signed)
        for name, value in signed.headers.items():
            request.headers[name] = value

    # ---- bodies -----------------------------------------------------------------------
    def elastic_body(self, request: InferenceRequest) -> dict[str, Any]:
        inputs = list(request.input)
        body: dict[str, Any] = {"input": inputs if len(inputs) > 1 else inputs[0]}
        if self.input_type(request):
            body["input_type"] = self.input_type(request)
        if request.query is not None:
            body["query"] = request.query
        for name in ("return_documents", "top_n"):
            if request.task_settings.get(name) is not None:
                body[name] = request.task_settings[name]
        extra = {k: v for k, v in request.task_settings.items()
                 if k not in INVOKE_OPTIONS and k not in ("return_documents", "top_n")}
        if extra:
            body["task_settings"] = extra
        return body

    def openai_body(self, request: InferenceRequest, stream: bool = False) -> dict[str, Any]:
        user = request.task_settings.get("user")
        if self.config.task_type == TaskType.TEXT_EMBEDDING:
            return openai_shapes.embeddings_body(request.input, dimensions=self.setting("dimensions"), user=user)
        return openai_shapes.chat_body(request.input, stream=stream, n=1, user=user)

    # ---- calls ------------------------------------------------------------------------
    async def infer(self, request: InferenceRequest) -> InferenceResult:
        task = self.config.task_type
        headers = self.headers(request.task_settings)
        if not self.openai:
            answer = await self.call_json(self.url(), self.elastic_body(request), request, headers=headers)
            return self.translate(parse_elastic, answer, task, len(request.input), self.setting("element_type"))
        answer = await self.call_json(self.url(), self.openai_body(request), request, headers=headers)
        if task == TaskType.TEXT_EMBEDDING:
            return self.translate(openai_shapes.parse_embeddings, answer, len(request.input))
        return self.translate(openai_shapes.parse_chat, answer)

    async def _payload_parts(self, response: httpx.Response) -> AsyncIterator[bytes]:
        """The bytes of each ``PayloadPart`` of AWS's event stream."""
        frames = EventStreamBuffer()
        try:
            async for data in response.aiter_bytes():
                frames.add_data(data)
                for message in frames:
                    headers = message.headers
                    if headers.get(":message-type") != "event":
                        kind = headers.get(":exception-type") or headers.get(":error-code") or "error"
                        detail = strict_json.loads(message.payload or b"{}").get("Message", "")
                        raise ElasticsearchError(502, "status_exception", f"The provider's stream failed: [{kind}] {detail}")
                    if headers.get(":event-type") == "PayloadPart":
                        yield message.payload
        except ParserError as exc:
            raise self.malformed(f"the event stream could not be decoded: {type(exc).__name__}") from None

    async def _payload_events(self, response: httpx.Response) -> AsyncIterator[tuple[str, str]]:
        """Server-Sent Events carried in the payload parts (a part may end mid-event)."""
        parser = EventStreamParser()
        async for part in self._payload_parts(response):
            for line in part.decode().splitlines():
                if (event := parser.feed(line)) is not None:
                    yield event
        if (event := parser.close()) is not None:
            yield event

    async def stream(self, request: InferenceRequest) -> AsyncIterator[CompletionDelta]:
        if self.config.task_type != TaskType.COMPLETION:
            raise self.streaming_unsupported()
        headers = self.headers(request.task_settings, stream=True)
        if not self.openai:
            # The elastic api streams one {"completion": [{"delta": ...}]} object a part.
            body = {**self.elastic_body(request), "stream": True}
            async with self.open_stream(self.url(stream=True), body, request, headers=headers) as response:
                async for part in self._payload_parts(response):
                    for item in strict_json.loads(part)["completion"]:
                        if item.get("delta"):
                            yield delta(item["delta"])
            return
        body = self.openai_body(request, stream=True)
        async with self.open_stream(self.url(stream=True), body, request, headers=headers) as response:
            async for _event, data in self._payload_events(response):
                if data.strip() == "[DONE]":
                    return
                for choice in strict_json.loads(data).get("choices") or []:
                    text = (choice.get("delta") or {}).get("content")
                    if text:
                        yield delta(text)
            raise ended_early("[DONE]")

    async def chat(self, request: ChatRequest) -> AsyncIterator[ChatCompletionChunk]:
        # Both apis take the unified request and stream OpenAI's chunks as events.
        settings = self.config.task_settings.model_dump(exclude_none=True)
        body = openai_shapes.unified_chat_body(request, model=None, user=settings.get("user"))
        headers = self.headers(settings, stream=True)
        async with self.open_stream(self.url(stream=True), body, request, headers=headers) as response:
            async for _event, data in self._payload_events(response):
                if data.strip() == "[DONE]":
                    return
                yield openai_shapes.parse_chat_chunk(strict_json.loads(data))
            raise ended_early("[DONE]")


def create_backend(config: InferenceEndpointConfig, **options: Any) -> AmazonSageMakerBackend:
    return AmazonSageMakerBackend(config, **options)
