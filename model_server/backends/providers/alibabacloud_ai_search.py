"""AlibabaCloud OpenSearch AI Search: text embedding, sparse embedding, rerank and text
generation under ``<http_schema>://<host>/v3/openapi/workspaces/<workspace>/``, with a
bearer API key.

``url`` replaces ``<http_schema>://<host>``.
"""

from __future__ import annotations

from typing import Any

from kubeinfer.catalog import InferenceEndpointConfig, TaskType
from ..base import InferenceRequest
from ..results import Completions, InferenceResult, Ranking, SparseEmbeddings, TextEmbeddings
from .answers import completions, expect_count, float_vector, scores_as_asked, sparse_embeddings, text_embeddings
from .proxy import ProviderBackend

OPERATIONS = {
    TaskType.TEXT_EMBEDDING: "text-embedding",
    TaskType.SPARSE_EMBEDDING: "text-sparse-embedding",
    TaskType.RERANK: "ranker",
    TaskType.COMPLETION: "text-generation",
}
INPUT_TYPES = {"ingest": "document", "search": "query"}


def parse_embeddings(answer: dict[str, Any], count: int) -> TextEmbeddings:
    items = expect_count(answer["result"]["embeddings"], count, "embeddings")
    ordered = sorted(items, key=lambda item: item.get("index", 0))
    return text_embeddings([float_vector(item["embedding"]) for item in ordered])


def parse_sparse(answer: dict[str, Any], count: int, return_token: bool) -> SparseEmbeddings:
    items = expect_count(answer["result"]["sparse_embeddings"], count, "sparse embeddings")
    out = []
    for item in sorted(items, key=lambda item: item.get("index", 0)):
        embedding: dict[str, float] = {}
        for weight in item["embedding"]:
            key = weight["token"] if return_token and weight.get("token") is not None else weight["token_id"]
            embedding[str(key)] = float(weight["weight"])
        out.append(embedding)
    return sparse_embeddings(out)


def parse_rerank(answer: dict[str, Any], documents: list[str], return_text: bool, top_n: int | None) -> Ranking:
    """``{"result": {"scores": [{"index", "score"}]}}``; the ranker takes no ``top_n`` nor
    ``return_documents``, so both are applied to the answer."""
    scored = [(int(score["index"]), score["score"]) for score in answer["result"]["scores"]]
    return scores_as_asked(scored, documents, return_text=return_text, top_n=top_n)


def parse_generation(answer: dict[str, Any]) -> Completions:
    text = answer["result"]["text"]
    if not isinstance(text, str):
        raise ValueError("[result.text] is not a string")
    return completions([text])


class AlibabaCloudSearchBackend(ProviderBackend):
    def url(self) -> str:
        base = self.base_url(f"{self.setting('http_schema', 'https')}://{self.setting('host')}")
        return (f"{base}/v3/openapi/workspaces/{self.setting('workspace')}/"
                f"{OPERATIONS[self.config.task_type]}/{self.setting('service_id')}")

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.secret('api_key')}"}

    async def infer(self, request: InferenceRequest) -> InferenceResult:
        task = self.config.task_type
        settings = request.task_settings
        if task in (TaskType.TEXT_EMBEDDING, TaskType.SPARSE_EMBEDDING):
            body: dict[str, Any] = {"input": list(request.input)}
            input_type = INPUT_TYPES.get(self.input_type(request) or "")
            if input_type:
                body["input_type"] = input_type
            if task == TaskType.SPARSE_EMBEDDING:
                return_token = bool(settings.get("return_token"))
                body["return_token"] = return_token
                answer = await self.call_json(self.url(), body, request, headers=self.headers())
                return self.translate(parse_sparse, answer, len(request.input), return_token)
            answer = await self.call_json(self.url(), body, request, headers=self.headers())
            return self.translate(parse_embeddings, answer, len(request.input))
        if task == TaskType.RERANK:
            body = {"query": request.query or "", "docs": list(request.input)}
            answer = await self.call_json(self.url(), body, request, headers=self.headers())
            # The texts are shown unless the request says otherwise.
            return_text = settings.get("return_documents") is not False
            return self.translate(parse_rerank, answer, list(request.input), return_text, settings.get("top_n"))
        body = {"messages": [{"role": "user", "content": text} for text in request.input]}
        answer = await self.call_json(self.url(), body, request, headers=self.headers())
        return self.translate(parse_generation, answer)


def create_backend(config: InferenceEndpointConfig, **options: Any) -> AlibabaCloudSearchBackend:
    return AlibabaCloudSearchBackend(config, **options)
