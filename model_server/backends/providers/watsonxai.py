"""IBM watsonx.ai: ``/ml/v1/text/embeddings?version=<api_version>`` (and, for chat
completion, ``/ml/v1/text/chat_stream``: OpenAI-like messages and chunks) at the regional
``url``, with a bearer token from IBM Cloud IAM (the API key exchanged at
``https://iam.cloud.ibm.com/identity/token``), cached until shortly before it expires.

Rerank posts ``/ml/v1/text/rerank`` (``inputs`` as ``{"text"}`` objects, ``parameters``
with ``truncate_input_tokens`` and ``return_options``) and completion ``/ml/v1/text/chat``.

The IAM URL can be changed with the ``iam_url`` option (private clouds, tests).
"""

from __future__ import annotations


from typing import Any, AsyncIterator

from kubeinfer import strict_json
from kubeinfer.catalog import InferenceEndpointConfig, TaskType, returns_documents
from ..results import InferenceResult, TextEmbeddings
from kubeinfer.errors import ElasticsearchError
from ..base import InferenceRequest
from ..chat import ChatCompletionChunk, ChatRequest
from . import openai_shapes
from .streams import server_sent_events
from .answers import expect_count, float_vector, rerank_results, text_embeddings
from .tokens import TokenExchangeBackend

IAM_URL = "https://iam.cloud.ibm.com/identity/token"
APIKEY_GRANT = "urn:ibm:params:oauth:grant-type:apikey"


def parse_embeddings(answer: dict[str, Any], count: int) -> TextEmbeddings:
    results = expect_count(answer["results"], count, "results")
    return text_embeddings([float_vector(r["embedding"]) for r in results])


def parse_rerank(answer: dict[str, Any], documents: list[str], return_text: bool) -> InferenceResult:
    scored = []
    for item in answer["results"]:
        index = int(item["index"])
        if not 0 <= index < len(documents):
            raise ValueError(f"result index [{index}] is out of range")
        text = ((item.get("input") or {}).get("text") or documents[index]) if return_text else None
        scored.append((index, item["score"], text))
    return rerank_results(scored)


def parse_iam(response: Any) -> tuple[str, float]:
    answer = response.json()
    return str(answer["access_token"]), float(answer["expires_in"])


class WatsonxBackend(TokenExchangeBackend):
    token_name = "an IAM token"

    def __init__(self, config: InferenceEndpointConfig, *, iam_url: str = IAM_URL, **options: Any) -> None:
        super().__init__(config, **options)
        self.iam_url = iam_url

    async def _exchange(self) -> tuple[str, float]:
        return await self.post_token_form(
            self.iam_url, {"grant_type": APIKEY_GRANT, "apikey": self.secret("api_key")}, parse_iam
        )

    def operation_url(self, operation: str) -> str:
        return f"{self.setting('url').rstrip('/')}/ml/v1/text/{operation}"

    async def infer(self, request: InferenceRequest) -> InferenceResult:
        params = {"version": self.setting("api_version")}
        if self.config.task_type == TaskType.RERANK:
            settings = request.task_settings
            return_text = returns_documents(self.config, settings)
            return_options: dict[str, Any] = {"inputs": return_text}
            if settings.get("top_n") is not None:
                return_options["top_n"] = settings["top_n"]
            parameters: dict[str, Any] = {"return_options": return_options}
            if settings.get("truncate_input_tokens") is not None:
                parameters["truncate_input_tokens"] = settings["truncate_input_tokens"]
            body: dict[str, Any] = {
                "model_id": self.setting("model_id"),
                "project_id": self.setting("project_id"),
                "query": request.query or "",
                "inputs": [{"text": text} for text in request.input],
                "parameters": parameters,
            }
            answer = await self.call_json(self.operation_url("rerank"), body, request, params=params)
            return self.translate(parse_rerank, answer, list(request.input), return_text)
        if self.config.task_type == TaskType.COMPLETION:
            body = {
                "messages": [{"role": "user", "content": text} for text in request.input],
                "model_id": self.setting("model_id"),
                "project_id": self.setting("project_id"),
            }
            answer = await self.call_json(self.operation_url("chat"), body, request, params=params)
            return self.translate(openai_shapes.parse_chat, answer)
        url = f"{self.setting('url').rstrip('/')}/ml/v1/text/embeddings"
        body = {
            "inputs": list(request.input),
            "model_id": self.setting("model_id"),
            "project_id": self.setting("project_id"),
        }
        answer = await self.call_json(url, body, request, params={"version": self.setting("api_version")})
        return self.translate(parse_embeddings, answer, len(request.input))


    async def chat(self, request: ChatRequest) -> AsyncIterator[ChatCompletionChunk]:
        url = f"{self.setting('url').rstrip('/')}/ml/v1/text/chat_stream"
        body = openai_shapes.unified_chat_body(
            request, model=None, max_tokens_field="max_tokens", stream_options=False,
            model_id=self.setting("model_id"), project_id=self.setting("project_id"),
        )
        # watsonx.ai names the model in the body's ``model_id`` and takes no ``n``/``stream``.
        for name in ("model", "n", "stream"):
            body.pop(name, None)
        params = {"version": self.setting("api_version")}
        async with self.open_stream(url, body, request, params=params) as response:
            async for _event, data in server_sent_events(response):
                if data.strip() == "[DONE]":
                    return
                chunk = strict_json.loads(data)
                if "errors" in chunk or "error" in chunk:
                    raise ElasticsearchError(502, "status_exception", f"The provider's stream failed: {data[:300]}")
                chunk.setdefault("model", chunk.get("model_id", self.setting("model_id")))
                yield openai_shapes.parse_chat_chunk(chunk)


def create_backend(config: InferenceEndpointConfig, **options: Any) -> WatsonxBackend:
    return WatsonxBackend(config, **options)
