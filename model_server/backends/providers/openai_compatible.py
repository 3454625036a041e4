"""One backend for every service whose API is OpenAI's: DeepSeek, Groq, AI21, Fireworks AI,
NVIDIA NIM, Red Hat OpenShift AI and Llama Stack.

Each service differs only in facts: its default URLs, whether ``url`` is the full URL of
the operation (as Elasticsearch takes it for DeepSeek, NVIDIA, OpenShift AI and Llama) or
a base URL, and what else its embeddings body carries (NVIDIA's ``input_type``). Those facts sit in ``PROVIDERS``; the
calls are the same for all: ``/embeddings``, ``/chat/completions`` (answered, streamed
as completion deltas, or streamed as unified chat chunks), and for NVIDIA and OpenShift
AI their rerank APIs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, AsyncIterator

from kubeinfer.catalog import InferenceEndpointConfig, TaskType, returns_documents
from ..base import InferenceRequest
from ..results import CompletionDelta, InferenceResult
from ..chat import ChatCompletionChunk, ChatRequest
from . import openai_shapes
from .answers import expect_count, float_vector, parse_results_rerank, scores_as_asked, text_embeddings
from .proxy import ProviderBackend

CHAT = "/chat/completions"
EMBEDDINGS = "/embeddings"


@dataclass(frozen=True)
class Provider:
    """What one OpenAI-compatible service needs besides OpenAI's wire format."""

    # Task type -> the default URL of the operation (None: ``url`` is required).
    urls: dict[TaskType, str] = field(default_factory=dict)
    # True where ``url`` is the whole URL of the operation, as Elasticsearch takes it.
    full_url: bool = False
    # Whether the API takes OpenAI's newer ``max_completion_tokens`` and ``stream_options``.
    unified_fields: bool = True


def _chat_and_completion(url: str) -> dict[TaskType, str]:
    return {TaskType.COMPLETION: url, TaskType.CHAT_COMPLETION: url}


PROVIDERS: dict[str, Provider] = {
    "deepseek": Provider(_chat_and_completion("https://api.deepseek.com/chat/completions"), full_url=True),
    "groq": Provider(_chat_and_completion("https://api.groq.com/openai/v1/chat/completions")),
    "ai21": Provider(_chat_and_completion("https://api.ai21.com/studio/v1/chat/completions"), unified_fields=False),
    "fireworksai": Provider({
        **_chat_and_completion("https://api.fireworks.ai/inference/v1/chat/completions"),
        TaskType.TEXT_EMBEDDING: "https://api.fireworks.ai/inference/v1/embeddings",
    }, full_url=True),
    "nvidia": Provider({
        **_chat_and_completion("https://integrate.api.nvidia.com/v1/chat/completions"),
        TaskType.TEXT_EMBEDDING: "https://integrate.api.nvidia.com/v1/embeddings",
        TaskType.RERANK: "https://ai.api.nvidia.com/v1/retrieval/nvidia/reranking",
    }, full_url=True, unified_fields=False),
    "openshift_ai": Provider(full_url=True),
    "llama": Provider(full_url=True),
}

# NVIDIA's names for Elasticsearch's input types; NVIDIA asks for one, "query" when unsaid.
NVIDIA_INPUT_TYPES = {"ingest": "passage", "search": "query"}


def parse_llama_embeddings(answer: dict[str, Any], count: int) -> InferenceResult:
    """Llama Stack's ``/v1/inference/embeddings``: ``{"embeddings": [[...], ...]}``."""
    vectors = expect_count(answer["embeddings"], count, "embeddings")
    return text_embeddings([float_vector(v) for v in vectors])


def parse_nvidia_rerank(answer: dict[str, Any], documents: list[str], return_text: bool,
                        top_n: int | None) -> InferenceResult:
    """NVIDIA's ranking: ``{"rankings": [{"index": 0, "logit": 0.3}, ...]}``; its API takes
    no ``top_n`` nor ``return_documents``, so both are applied to the answer."""
    scored = [(int(item["index"]), item["logit"]) for item in answer["rankings"]]
    return scores_as_asked(scored, documents, return_text=return_text, top_n=top_n)



class OpenAICompatibleBackend(ProviderBackend):
    default_similarity = "dot_product"

    def __init__(self, config: InferenceEndpointConfig, **options: Any) -> None:
        super().__init__(config, **options)
        self.provider = PROVIDERS[config.service]

    # ---- where and who ----------------------------------------------------------------
    def url(self) -> str:
        task = self.config.task_type
        default = self.provider.urls.get(task)
        if default is None:  # url is required, and is the operation's own
            return self.setting("url")
        suffix = {TaskType.TEXT_EMBEDDING: EMBEDDINGS, TaskType.RERANK: "/reranking"}.get(task, CHAT)
        return self.provider_url(default, suffix, full=self.provider.full_url)

    def headers(self, request_settings: dict[str, Any] | None = None) -> dict[str, str]:
        headers = {}
        key = self.secret("api_key")
        if key:
            headers["Authorization"] = f"Bearer {key}"
        # Fireworks AI's task settings may add headers of the user's own.
        extra = (request_settings or {}).get("headers")
        if isinstance(extra, dict):
            headers.update({str(k): str(v) for k, v in extra.items()})
        return headers

    @property
    def model(self) -> str | None:
        return self.setting("model_id")

    # ---- the calls --------------------------------------------------------------------
    async def infer(self, request: InferenceRequest) -> InferenceResult:
        task = self.config.task_type
        if task == TaskType.TEXT_EMBEDDING:
            return await self._embeddings(request)
        if task == TaskType.RERANK:
            return await self._rerank(request)
        body = self.chat_body(request)
        answer = await self.call_json(self.url(), body, request, headers=self.headers(request.task_settings))
        return self.translate(openai_shapes.parse_chat, answer)

    def chat_body(self, request: InferenceRequest, stream: bool = False) -> dict[str, Any]:
        return openai_shapes.chat_body(
            request.input, stream=stream, model=self.model, n=1, user=request.task_settings.get("user")
        )

    async def _embeddings(self, request: InferenceRequest) -> InferenceResult:
        url = self.url()
        if self.config.service == "llama":
            body: dict[str, Any] = {"model_id": self.model, "contents": list(request.input)}
            answer = await self.call_json(url, body, request, headers=self.headers())
            return self.translate(parse_llama_embeddings, answer, len(request.input))
        fields: dict[str, Any] = {"model": self.model}
        if self.config.service == "nvidia":
            fields["input_type"] = NVIDIA_INPUT_TYPES.get(self.input_type(request) or "", "query")
            fields["truncate"] = request.task_settings.get("truncate")
        else:
            fields["dimensions"] = self.setting("dimensions")
        body = openai_shapes.embeddings_body(request.input, **fields)
        answer = await self.call_json(url, body, request, headers=self.headers())
        return self.translate(openai_shapes.parse_embeddings, answer, len(request.input))

    async def _rerank(self, request: InferenceRequest) -> InferenceResult:
        documents = list(request.input)
        if self.config.service == "nvidia":
            body: dict[str, Any] = {
                "model": self.model,
                "query": {"text": request.query or ""},
                "passages": [{"text": text} for text in documents],
            }
            answer = await self.call_json(self.url(), body, request, headers=self.headers())
            settings = request.task_settings
            return self.translate(parse_nvidia_rerank, answer, documents, returns_documents(self.config, settings),
                                  settings.get("top_n"))
        settings = request.task_settings
        return_documents = returns_documents(self.config, settings)
        body = {"query": request.query or "", "documents": documents}
        if self.model:
            body = {"model": self.model, **body}
        if settings.get("top_n") is not None:
            body["top_n"] = settings["top_n"]
        if settings.get("return_documents") is not None:
            body["return_documents"] = return_documents
        answer = await self.call_json(self.url(), body, request, headers=self.headers())
        return self.translate(parse_results_rerank, answer, documents, return_documents)

    async def stream(self, request: InferenceRequest) -> AsyncIterator[CompletionDelta]:
        if self.config.task_type != TaskType.COMPLETION:
            raise self.streaming_unsupported()
        body = self.chat_body(request, stream=True)
        headers = self.headers(request.task_settings)
        async with self.open_stream(self.url(), body, request, headers=headers) as response:
            async for chunk in openai_shapes.chat_deltas(response):
                yield chunk

    async def chat(self, request: ChatRequest) -> AsyncIterator[ChatCompletionChunk]:
        settings = self.config.task_settings.model_dump(exclude_none=True)
        unified = self.provider.unified_fields
        body = openai_shapes.unified_chat_body(
            request,
            model=self.model,
            max_tokens_field="max_completion_tokens" if unified else "max_tokens",
            stream_options=unified,
            user=settings.get("user"),
        )
        async with self.open_stream(self.url(), body, request, headers=self.headers(settings)) as response:
            async for chunk in openai_shapes.chat_chunks(response):
                yield chunk


def create_backend(config: InferenceEndpointConfig, **options: Any) -> OpenAICompatibleBackend:
    return OpenAICompatibleBackend(config, **options)
