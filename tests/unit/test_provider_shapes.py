"""Variants of the providers' wire formats beyond the one-per-pair matrix: Cohere's byte
embeddings, Azure AI Studio's endpoint kinds, Hugging Face's answer shapes, AlibabaCloud's
sparse token ids, and the Retry-After forms the retry policy reads."""

from __future__ import annotations

import email.utils
import math
import time

import httpx
import pytest

from fake_providers import FakeProvider, Reply, backend_for
from model_server.api.elasticsearch_json import render
from model_server.backends.base import InferenceRequest
from model_server.backends.providers import retries
from kubeinfer.catalog import TaskType
from kubeinfer.errors import ElasticsearchError

KEY = "shape-key-0123456789"


async def run(backend, request):
    await backend.start()
    try:
        return render(await backend.infer(request))
    finally:
        await backend.close()


@pytest.mark.parametrize("embedding_type", ["byte", "int8"])
async def test_cohere_byte_embeddings_are_text_embedding_bytes(embedding_type):
    fake = FakeProvider().on("/v1/embed", Reply(json={
        "response_type": "embeddings_by_type", "embeddings": {"int8": [[-128, 0, 127], [1, 2, 3]]}}))
    backend = backend_for(fake, "cohere", "text_embedding",
                          {"api_key": KEY, "embedding_type": embedding_type, "url": "https://cohere.test"})
    answer = await run(backend, InferenceRequest(TaskType.TEXT_EMBEDDING, ["a", "b"], timeout=5))
    assert answer == {"text_embedding_bytes": [{"embedding": [-128, 0, 127]}, {"embedding": [1, 2, 3]}]}
    assert fake.received[0].json == {"texts": ["a", "b"], "embedding_types": ["int8"]}


async def test_cohere_rerank_without_documents_leaves_text_out():
    fake = FakeProvider().on("/v1/rerank", Reply(json={"results": [
        {"index": 0, "relevance_score": 0.2}, {"index": 1, "relevance_score": 0.6}]}))
    backend = backend_for(fake, "cohere", "rerank", {"api_key": KEY, "url": "https://cohere.test"})
    answer = await run(backend, InferenceRequest(TaskType.RERANK, ["a", "b"], query="q", timeout=5))
    assert answer == {"rerank": [{"index": 1, "relevance_score": 0.6}, {"index": 0, "relevance_score": 0.2}]}


async def test_azure_ai_studio_openai_token_endpoint_uses_target_and_api_key():
    target = "https://my.openai.azure.test/openai/deployments/emb/embeddings?api-version=2024-02-01"
    fake = FakeProvider().on("/openai/deployments/emb/embeddings", Reply(json={
        "data": [{"index": 0, "embedding": [1.0, 2.0]}]}))
    backend = backend_for(fake, "azureaistudio", "text_embedding",
                          {"api_key": KEY, "target": target, "provider": "openai", "endpoint_type": "token"},
                          {"user": "me"})
    answer = await run(backend, InferenceRequest(TaskType.TEXT_EMBEDDING, ["a"], task_settings={"user": "me"},
                                                 timeout=5))
    assert answer == {"text_embedding": [{"embedding": [1.0, 2.0]}]}
    [call] = fake.received
    assert call.query == {"api-version": "2024-02-01"}
    assert call.headers["api-key"] == KEY
    assert call.json == {"input": ["a"], "user": "me"}


async def test_azure_ai_studio_token_completion_speaks_chat_completions():
    fake = FakeProvider().on("/v1/chat/completions", Reply(json={
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "mistral says"}}]}))
    backend = backend_for(fake, "azureaistudio", "completion",
                          {"api_key": KEY, "target": "https://mistral.studio.test", "provider": "mistral",
                           "endpoint_type": "token"}, {"temperature": 0.1, "max_new_tokens": 9})
    answer = await run(backend, InferenceRequest(TaskType.COMPLETION, ["hi"],
                                                 task_settings={"temperature": 0.1, "max_new_tokens": 9}, timeout=5))
    assert answer == {"completion": [{"result": "mistral says"}]}
    [call] = fake.received
    assert call.headers["authorization"] == KEY
    assert call.json == {"messages": [{"role": "user", "content": "hi"}], "temperature": 0.1, "max_tokens": 9}


async def test_hugging_face_embeddings_object_answer():
    fake = FakeProvider().on("/e", Reply(json={"embeddings": [[0.5, 0.5]]}))
    backend = backend_for(fake, "hugging_face", "text_embedding", {"api_key": KEY, "url": "https://hf.test/e"})
    answer = await run(backend, InferenceRequest(TaskType.TEXT_EMBEDDING, ["a"], timeout=5))
    assert answer == {"text_embedding": [{"embedding": [0.5, 0.5]}]}


async def test_alibaba_sparse_embedding_keys_are_token_ids_unless_tokens_are_asked_for():
    path = "/v3/openapi/workspaces/ws/text-sparse-embedding/ops-sparse"
    fake = FakeProvider().on(path, Reply(json={"result": {"sparse_embeddings": [
        {"index": 0, "embedding": [{"token_id": 12, "weight": 0.5}, {"token_id": 7, "weight": 0.1}]}]}}))
    backend = backend_for(fake, "alibabacloud-ai-search", "sparse_embedding",
                          {"api_key": KEY, "service_id": "ops-sparse", "host": "ali.test", "workspace": "ws"})
    answer = await run(backend, InferenceRequest(TaskType.SPARSE_EMBEDDING, ["a"], timeout=5))
    assert answer == {"sparse_embedding": [{"is_truncated": False, "embedding": {"12": 0.5, "7": 0.1}}]}
    assert fake.received[0].json == {"input": ["a"], "return_token": False}


async def test_requests_without_a_time_limit_are_served():
    fake = FakeProvider().on("/v1/embeddings", Reply(json={"data": [{"index": 0, "embedding": [1.0]}]}))
    backend = backend_for(fake, "mistral", "text_embedding", {"api_key": KEY, "model": "mistral-embed",
                                                               "url": "https://mistral.test/v1"})
    answer = await run(backend, InferenceRequest(TaskType.TEXT_EMBEDDING, ["a"], timeout=math.inf))
    assert answer == {"text_embedding": [{"embedding": [1.0]}]}


def test_retry_after_forms():
    def response(**headers):
        return httpx.Response(429, headers=headers)

    assert retries.retry_after(response(**{"retry-after": "3"})) == 3.0
    assert retries.retry_after(response(**{"retry-after-ms": "250"})) == 0.25
    date = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert 25 <= retries.retry_after(response(**{"retry-after": date})) <= 31
    assert retries.retry_after(response(**{"retry-after": "soon"})) is None
    assert retries.retry_after(response()) is None


def test_backoff_grows_with_jitter_and_obeys_retry_after():
    from tenacity import RetryCallState

    def wait_after(attempt: int, response: httpx.Response | None = None) -> float:
        state = RetryCallState(None, None, (), {})
        state.attempt_number = attempt
        state.set_exception((retries.RetryableFailure, retries.RetryableFailure(
            ElasticsearchError(503, "status_exception", "busy"), response), None))
        return retries.wait_for_provider()(state)

    first = [wait_after(1) for _ in range(50)]
    fourth = [wait_after(4) for _ in range(50)]
    assert max(first) <= retries.BASE_DELAY and max(fourth) <= retries.BASE_DELAY * 8
    assert max(fourth) > retries.BASE_DELAY  # grows
    assert len(set(first)) > 1  # jitter
    assert wait_after(1, httpx.Response(503, headers={"retry-after": "2"})) == 2.0


async def test_internal_input_types_count_as_their_public_ones():
    fake = FakeProvider().on("/v1/embed", Reply(json={"embeddings": {"float": [[0.1]]}}))
    backend = backend_for(fake, "cohere", "text_embedding", {"api_key": KEY, "url": "https://cohere.test"},
                          {"input_type": "search"})
    await run(backend, InferenceRequest(TaskType.TEXT_EMBEDDING, ["a"], input_type="internal_ingest",
                                        task_settings={"input_type": "search"}, timeout=5))
    assert fake.received[0].json["input_type"] == "search_document"


async def test_cohere_rerank_returns_documents_only_when_asked_as_elasticsearch_does():
    results = [{"index": 1, "relevance_score": 0.9}, {"index": 0, "relevance_score": 0.1}]
    with_documents = [{**r, "document": {"text": ["hello", "world"][r["index"]]}} for r in results]
    fake = FakeProvider().on("/v1/rerank", Reply(json={"results": results}), Reply(json={"results": with_documents}))
    settings = {"api_key": KEY, "url": "https://cohere.test"}
    plain = await run(backend_for(fake, "cohere", "rerank", settings),
                      InferenceRequest(TaskType.RERANK, ["hello", "world"], query="q", timeout=5))
    asked = await run(backend_for(fake, "cohere", "rerank", settings),
                      InferenceRequest(TaskType.RERANK, ["hello", "world"], query="q", timeout=5,
                                       task_settings={"return_documents": True}))
    assert "return_documents" not in fake.received[0].json
    assert plain == {"rerank": [{"index": 1, "relevance_score": 0.9}, {"index": 0, "relevance_score": 0.1}]}
    assert fake.received[1].json["return_documents"] is True
    assert asked["rerank"][0] == {"index": 1, "relevance_score": 0.9, "text": "world"}
