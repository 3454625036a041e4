"""Every external (service, task type) pair of the catalog, served by ``kubeinfer serve``'s
app in front of a fake provider that speaks the provider's wire format: the request the
provider received (path, auth, body) and the Elasticsearch answer the HTTP client got."""

from __future__ import annotations


import pytest

from provider_cases import EMBEDDED, KEY, MESSAGES, VEC, VEC2, Case, openai_chat, openai_embeddings, serve_case
from kubeinfer.catalog import SERVICES, service_task_pairs
from test_provider_services import CASES as SERVICE_CASES, CHAT_CASES, SAGEMAKER_CASES

CASES: dict[tuple[str, str], Case] = {
    ("openai", "text_embedding"): Case(
        {"api_key": KEY, "model_id": "text-embedding-3-small", "dimensions": 3, "organization_id": "org-1",
         "url": "https://openai.test/v1"},
        "/v1/embeddings", openai_embeddings(VEC, VEC2),
        {"input": ["hello", "world"], "model": "text-embedding-3-small", "encoding_format": "float",
         "dimensions": 3, "user": "u1"},
        EMBEDDED, task_settings={"user": "u1"},
        headers={"authorization": f"Bearer {KEY}", "openai-organization": "org-1"}, host="openai.test"),
    ("openai", "completion"): Case(
        {"api_key": KEY, "model_id": "gpt-4o", "url": "https://openai.test/v1/chat/completions"},
        "/v1/chat/completions", openai_chat("hi there"),
        {"messages": MESSAGES, "model": "gpt-4o", "n": 1},
        {"completion": [{"result": "hi there"}]}),
    ("azureopenai", "text_embedding"): Case(
        {"api_key": KEY, "resource_name": "res", "deployment_id": "emb", "api_version": "2024-02-01",
         "url": "https://res.openai.test"},
        "/openai/deployments/emb/embeddings", openai_embeddings(VEC, VEC2),
        {"input": ["hello", "world"]}, EMBEDDED,
        headers={"api-key": KEY}, query_params={"api-version": "2024-02-01"}),
    ("azureopenai", "completion"): Case(
        {"entra_id": KEY, "resource_name": "res", "deployment_id": "gpt", "api_version": "2024-02-01",
         "url": "https://res.openai.test"},
        "/openai/deployments/gpt/chat/completions", openai_chat("ok"),
        {"messages": MESSAGES, "n": 1, "user": "u2"}, {"completion": [{"result": "ok"}]},
        task_settings={"user": "u2"}, query_params={"api-version": "2024-02-01"}),
    ("azureaistudio", "text_embedding"): Case(
        {"api_key": KEY, "target": "https://studio.test", "provider": "cohere", "endpoint_type": "token"},
        "/v1/embeddings", openai_embeddings(VEC, VEC2),
        {"input": ["hello", "world"]}, EMBEDDED, headers={"authorization": KEY}),
    ("azureaistudio", "completion"): Case(
        {"api_key": KEY, "target": "https://studio.test/score", "provider": "meta", "endpoint_type": "realtime"},
        "/score", {"output": "realtime answer"},
        {"input_data": {"input_string": MESSAGES, "parameters": {"temperature": 0.5, "max_new_tokens": 20}}},
        {"completion": [{"result": "realtime answer"}]},
        task_settings={"temperature": 0.5, "max_new_tokens": 20}),
    ("cohere", "text_embedding"): Case(
        {"api_key": KEY, "model_id": "embed-english-v3.0", "url": "https://cohere.test"},
        "/v1/embed",
        {"id": "1", "response_type": "embeddings_by_type", "texts": ["hello", "world"],
         "embeddings": {"float": [VEC, VEC2]}, "meta": {"api_version": {"version": "1"}}},
        {"texts": ["hello", "world"], "model": "embed-english-v3.0", "embedding_types": ["float"],
         "input_type": "search_query", "truncate": "END"},
        EMBEDDED, task_settings={"input_type": "ingest", "truncate": "END"}, input_type="search"),
    ("cohere", "rerank"): Case(
        {"api_key": KEY, "model_id": "rerank-english-v3.0", "url": "https://cohere.test"},
        "/v1/rerank",
        {"id": "r", "results": [{"index": 1, "relevance_score": 0.9, "document": {"text": "world"}},
                                {"index": 0, "relevance_score": 0.1, "document": {"text": "hello"}}],
         "meta": {}},
        {"query": "which", "documents": ["hello", "world"], "model": "rerank-english-v3.0", "top_n": 2,
         "return_documents": True},
        {"rerank": [{"index": 1, "relevance_score": 0.9, "text": "world"},
                    {"index": 0, "relevance_score": 0.1, "text": "hello"}]},
        task_settings={"top_n": 2, "return_documents": True}, query="which"),
    ("cohere", "completion"): Case(
        {"api_key": KEY, "model_id": "command-r", "url": "https://cohere.test"},
        "/v1/chat", {"response_id": "x", "text": "cohere says", "generation_id": "g", "finish_reason": "COMPLETE"},
        {"message": "hello", "model": "command-r"}, {"completion": [{"result": "cohere says"}]}, input=["hello"]),
    ("anthropic", "completion"): Case(
        {"api_key": KEY, "model_id": "claude-3-5-sonnet-latest", "url": "https://anthropic.test"},
        "/v1/messages",
        {"id": "msg_1", "type": "message", "role": "assistant", "model": "claude",
         "content": [{"type": "text", "text": "claude says"}], "stop_reason": "end_turn"},
        {"messages": MESSAGES, "model": "claude-3-5-sonnet-latest", "max_tokens": 64, "temperature": 0.2, "top_k": 5},
        {"completion": [{"result": "claude says"}]},
        task_settings={"max_tokens": 64, "temperature": 0.2, "top_k": 5},
        headers={"x-api-key": KEY, "anthropic-version": "2023-06-01"}),
    ("mistral", "text_embedding"): Case(
        {"api_key": KEY, "model": "mistral-embed", "url": "https://mistral.test/v1"},
        "/v1/embeddings", openai_embeddings(VEC, VEC2),
        {"input": ["hello", "world"], "model": "mistral-embed", "encoding_format": "float"}, EMBEDDED),
    ("googleaistudio", "text_embedding"): Case(
        {"api_key": KEY, "model_id": "text-embedding-004", "url": "https://gemini.test/v1beta"},
        "/v1beta/models/text-embedding-004:batchEmbedContents",
        {"embeddings": [{"values": VEC}, {"values": VEC2}]},
        {"requests": [{"model": "models/text-embedding-004", "content": {"parts": [{"text": "hello"}]}},
                      {"model": "models/text-embedding-004", "content": {"parts": [{"text": "world"}]}}]},
        EMBEDDED, headers={"x-goog-api-key": KEY}),
    ("googleaistudio", "completion"): Case(
        {"api_key": KEY, "model_id": "gemini-1.5-flash", "url": "https://gemini.test/v1beta"},
        "/v1beta/models/gemini-1.5-flash:generateContent",
        {"candidates": [{"content": {"role": "model", "parts": [{"text": "gemini says"}]}, "finishReason": "STOP"}]},
        {"contents": [{"role": "user", "parts": [{"text": "hello"}]}], "generationConfig": {"candidateCount": 1}},
        {"completion": [{"result": "gemini says"}]}, input=["hello"], headers={"x-goog-api-key": KEY}),
    ("hugging_face", "text_embedding"): Case(
        {"api_key": KEY, "url": "https://hf.test/endpoint"},
        "/endpoint", [VEC, VEC2], {"inputs": ["hello", "world"]}, EMBEDDED),
    ("alibabacloud-ai-search", "text_embedding"): Case(
        {"api_key": KEY, "service_id": "ops-text-embedding-001", "host": "ali.test", "workspace": "default"},
        "/v3/openapi/workspaces/default/text-embedding/ops-text-embedding-001",
        {"request_id": "r", "latency": 1, "usage": {"token_count": 2},
         "result": {"embeddings": [{"index": 0, "embedding": VEC}, {"index": 1, "embedding": VEC2}]}},
        {"input": ["hello", "world"], "input_type": "document"}, EMBEDDED,
        task_settings={"input_type": "ingest"}, host="ali.test"),
    ("alibabacloud-ai-search", "sparse_embedding"): Case(
        {"api_key": KEY, "service_id": "ops-text-sparse-embedding-001", "host": "ali.test", "workspace": "ws",
         "http_schema": "http"},
        "/v3/openapi/workspaces/ws/text-sparse-embedding/ops-text-sparse-embedding-001",
        {"request_id": "r", "result": {"sparse_embeddings": [
            {"index": 0, "embedding": [{"token_id": 6, "weight": 0.5, "token": "hello"}]},
            {"index": 1, "embedding": [{"token_id": 7, "weight": 0.25, "token": "world"}]}]}},
        {"input": ["hello", "world"], "input_type": "query", "return_token": True},
        {"sparse_embedding": [{"is_truncated": False, "embedding": {"hello": 0.5}},
                              {"is_truncated": False, "embedding": {"world": 0.25}}]},
        task_settings={"return_token": True, "input_type": "search"}),
    ("alibabacloud-ai-search", "rerank"): Case(
        {"api_key": KEY, "service_id": "ops-bge-reranker-larger", "host": "ali.test", "workspace": "ws"},
        "/v3/openapi/workspaces/ws/ranker/ops-bge-reranker-larger",
        {"request_id": "r", "result": {"scores": [{"index": 0, "score": 0.2}, {"index": 1, "score": 0.7}]}},
        {"query": "which", "docs": ["hello", "world"]},
        {"rerank": [{"index": 1, "relevance_score": 0.7, "text": "world"},
                    {"index": 0, "relevance_score": 0.2, "text": "hello"}]}, query="which"),
    ("alibabacloud-ai-search", "completion"): Case(
        {"api_key": KEY, "service_id": "ops-qwen-turbo", "host": "ali.test", "workspace": "ws"},
        "/v3/openapi/workspaces/ws/text-generation/ops-qwen-turbo",
        {"request_id": "r", "result": {"text": "qwen says"}},
        {"messages": [{"role": "user", "content": "hello"}]}, {"completion": [{"result": "qwen says"}]},
        input=["hello"]),
}
# Services whose authentication is exchanged or signed are covered in their own modules.
OWN_MODULES = {
    **{(service, "chat_completion"): "test_chat_completion_providers.py"
       for service in ("amazonbedrock", "anthropic", "azureopenai", "hugging_face", "mistral", "watsonxai")},
    ("openai", "chat_completion"): "test_chat_completion_openai.py",
    ("googlevertexai", "chat_completion"): "test_provider_google_vertex.py",
    ("openai", "embedding"): "test_embedding_task.py",
    ("googlevertexai", "text_embedding"): "test_provider_google_vertex.py",
    ("googlevertexai", "rerank"): "test_provider_google_vertex.py",
    ("watsonxai", "text_embedding"): "test_provider_watsonx.py",
    ("amazonbedrock", "text_embedding"): "test_provider_bedrock.py",
    ("amazonbedrock", "completion"): "test_provider_bedrock.py",
    ("googlevertexai", "completion"): "test_provider_google_vertex.py",
    ("watsonxai", "completion"): "test_provider_watsonx.py",
    ("watsonxai", "rerank"): "test_provider_watsonx.py",
    # The services Elasticsearch 9 added, and the new pairs of older services.
    **{pair: "test_provider_services.py" for pair in (
        *(key[:2] for key in SERVICE_CASES), *((s, "chat_completion") for s in CHAT_CASES),
        *((s, "chat_completion") for s in ("amazon_sagemaker",)),
        *(("amazon_sagemaker", task) for _, task in SAGEMAKER_CASES),
    )},
}


def external_pairs() -> list[tuple[str, str]]:
    return [(s, t.value) for s, t in service_task_pairs() if SERVICES[s].external]


def test_every_external_pair_is_covered():
    assert set(external_pairs()) == set(CASES) | set(OWN_MODULES)


@pytest.mark.parametrize(("service", "task"), sorted(CASES), ids=lambda v: str(v))
async def test_pair_sends_provider_format_and_answers_elasticsearch_json(service, task):
    case = CASES[(service, task)]
    response, received = await serve_case(service, task, case)
    assert response.json() == case.expect_answer
    assert received.method == "POST"
    assert received.path == case.path
    if case.host:
        assert received.host == case.host
    assert received.json == case.expect_body
    assert received.headers["content-type"] == "application/json"
    for name, value in case.headers.items():
        assert received.headers.get(name) == value, name
    for name, value in case.query_params.items():
        assert received.query.get(name) == value
