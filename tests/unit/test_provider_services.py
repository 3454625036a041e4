"""The services Elasticsearch 9 added (and the new pairs of older ones), served by
``kubeinfer serve``'s app in front of fakes that speak each provider's documented wire
format: what the provider received (path, auth, body) and the Elasticsearch answer the
client got. The chat_completion pairs stream unified chunks from OpenAI-shaped streams."""

from __future__ import annotations

import json
from typing import Any

import pytest

from fake_providers import FakeProvider, Reply, backend_for, post_chat, post_through_server
from provider_cases import BEARER, EMBEDDED, KEY, MESSAGES, VEC, VEC2, Case, openai_chat, openai_embeddings, serve_case
from model_server.api.sse import parse_events

def chat_body(model=None, **fields):
    body: dict[str, Any] = {"messages": MESSAGES}
    if model:
        body["model"] = model
    body["n"] = 1
    body.update(fields)
    return body


COMPLETED = {"completion": [{"result": "hi there"}]}
RANKED = {"rerank": [{"index": 1, "relevance_score": 0.9}, {"index": 0, "relevance_score": 0.2}]}
RANKED_TEXT = {"rerank": [{"index": 1, "relevance_score": 0.9, "text": "world"},
                          {"index": 0, "relevance_score": 0.2, "text": "hello"}]}
CUSTOM = {"secret_parameters": {"api_key": KEY}, "headers": {"Authorization": "Bearer ${api_key}"}}

CASES: dict[tuple[str, ...], Case] = {
    # ---- OpenAI-compatible services --------------------------------------------------
    ("ai21", "completion"): Case(
        {"api_key": KEY, "model_id": "jamba-large"}, "/studio/v1/chat/completions", openai_chat("hi there"),
        chat_body("jamba-large"), COMPLETED, host="api.ai21.com"),
    ("deepseek", "completion"): Case(
        {"api_key": KEY, "model_id": "deepseek-chat"}, "/chat/completions", openai_chat("hi there"),
        chat_body("deepseek-chat"), COMPLETED, host="api.deepseek.com"),
    ("fireworksai", "completion"): Case(
        {"api_key": KEY, "model_id": "accounts/fireworks/models/deepseek-v3p1"}, "/inference/v1/chat/completions",
        openai_chat("hi there"), chat_body("accounts/fireworks/models/deepseek-v3p1", user="u1"), COMPLETED,
        task_settings={"user": "u1", "headers": {"X-Custom": "v"}}, headers={**BEARER, "x-custom": "v"},
        host="api.fireworks.ai"),
    ("fireworksai", "text_embedding"): Case(
        {"api_key": KEY, "model_id": "fireworks/qwen3-embedding-8b", "dimensions": 3},
        "/inference/v1/embeddings", openai_embeddings(VEC, VEC2),
        {"input": ["hello", "world"], "model": "fireworks/qwen3-embedding-8b", "dimensions": 3}, EMBEDDED,
        host="api.fireworks.ai"),
    ("llama", "completion"): Case(
        {"url": "http://llama.test:8321/v1/openai/v1/chat/completions", "model_id": "llama3.2:3b"},
        "/v1/openai/v1/chat/completions", openai_chat("hi there"), chat_body("llama3.2:3b"), COMPLETED, headers={}),
    ("llama", "text_embedding"): Case(
        {"url": "http://llama.test:8321/v1/inference/embeddings", "model_id": "all-MiniLM-L6-v2", "dimensions": 3},
        "/v1/inference/embeddings", {"embeddings": [VEC, VEC2]},
        {"model_id": "all-MiniLM-L6-v2", "contents": ["hello", "world"]}, EMBEDDED, headers={}),
    ("nvidia", "completion"): Case(
        {"api_key": KEY, "model_id": "microsoft/phi-3-mini-128k-instruct"}, "/v1/chat/completions",
        openai_chat("hi there"), chat_body("microsoft/phi-3-mini-128k-instruct"), COMPLETED,
        host="integrate.api.nvidia.com"),
    ("nvidia", "text_embedding"): Case(
        {"api_key": KEY, "model_id": "nvidia/llama-3.2-nv-embedqa-1b-v2"}, "/v1/embeddings",
        openai_embeddings(VEC, VEC2),
        {"input": ["hello", "world"], "model": "nvidia/llama-3.2-nv-embedqa-1b-v2", "input_type": "passage",
         "truncate": "START"}, EMBEDDED, task_settings={"input_type": "ingest", "truncate": "start"},
        host="integrate.api.nvidia.com"),
    ("nvidia", "rerank"): Case(
        {"api_key": KEY, "model_id": "nv-rerank-qa-mistral-4b:1"}, "/v1/retrieval/nvidia/reranking",
        {"rankings": [{"index": 1, "logit": 0.9}, {"index": 0, "logit": 0.2}]},
        {"model": "nv-rerank-qa-mistral-4b:1", "query": {"text": "which"},
         "passages": [{"text": "hello"}, {"text": "world"}]}, RANKED, query="which", host="ai.api.nvidia.com"),
    ("openshift_ai", "completion"): Case(
        {"api_key": KEY, "url": "https://llama.apps.ocp.test/v1/chat/completions", "model_id": "llama-31-8b-instruct"},
        "/v1/chat/completions", openai_chat("hi there"), chat_body("llama-31-8b-instruct"), COMPLETED,
        host="llama.apps.ocp.test"),
    ("openshift_ai", "text_embedding"): Case(
        {"api_key": KEY, "url": "https://gritlm.apps.ocp.test/v1/embeddings", "model_id": "gritlm-7b"},
        "/v1/embeddings", openai_embeddings(VEC, VEC2), {"input": ["hello", "world"], "model": "gritlm-7b"},
        EMBEDDED),
    ("openshift_ai", "rerank"): Case(
        {"api_key": KEY, "url": "https://bge.apps.ocp.test/v1/rerank"}, "/v1/rerank",
        {"id": "r", "results": [{"index": 1, "relevance_score": 0.9, "document": {"text": "world"}},
                                {"index": 0, "relevance_score": 0.2, "document": {"text": "hello"}}]},
        {"query": "which", "documents": ["hello", "world"], "top_n": 2, "return_documents": True}, RANKED_TEXT,
        task_settings={"return_documents": True, "top_n": 2}, query="which"),
    # ---- their own APIs ---------------------------------------------------------------
    ("contextualai", "rerank"): Case(
        {"api_key": KEY, "model_id": "ctxl-rerank-v2-instruct-multilingual-mini"}, "/v1/rerank",
        {"results": [{"index": 1, "relevance_score": 0.9}, {"index": 0, "relevance_score": 0.2}]},
        {"query": "which", "documents": ["hello", "world"], "model": "ctxl-rerank-v2-instruct-multilingual-mini",
         "top_n": 3, "instruction": "Prefer recent documents."}, RANKED,
        task_settings={"instruction": "Prefer recent documents.", "top_k": 3}, query="which",
        host="api.contextual.ai"),
    ("jinaai", "text_embedding"): Case(
        {"api_key": KEY, "model_id": "jina-embeddings-v3", "dimensions": 3}, "/v1/embeddings",
        openai_embeddings(VEC, VEC2),
        {"model": "jina-embeddings-v3", "input": ["hello", "world"], "embedding_type": "float",
         "task": "retrieval.query", "dimensions": 3, "late_chunking": True}, EMBEDDED,
        task_settings={"late_chunking": True}, input_type="search", host="api.jina.ai"),
    ("jinaai", "embedding"): Case(
        {"api_key": KEY, "model_id": "jina-embeddings-v4"}, "/v1/embeddings", openai_embeddings(VEC, VEC2),
        {"model": "jina-embeddings-v4", "input": [{"text": "hello"}, {"text": "world"}], "embedding_type": "float"},
        {"embeddings": [{"embedding": VEC}, {"embedding": VEC2}]}, host="api.jina.ai"),
    ("jinaai", "rerank"): Case(
        {"api_key": KEY, "model_id": "jina-reranker-v2-base-multilingual"}, "/v1/rerank",
        {"model": "jina-reranker-v2-base-multilingual", "usage": {"total_tokens": 9},
         "results": [{"index": 1, "relevance_score": 0.9, "document": {"text": "world"}},
                     {"index": 0, "relevance_score": 0.2, "document": {"text": "hello"}}]},
        {"model": "jina-reranker-v2-base-multilingual", "query": "which", "documents": ["hello", "world"],
         "top_n": 10, "return_documents": True}, RANKED_TEXT,
        task_settings={"top_n": 10, "return_documents": True}, query="which"),
    ("voyageai", "text_embedding"): Case(
        {"api_key": KEY, "model_id": "voyage-3-large", "dimensions": 512, "embedding_type": "int8"},
        "/v1/embeddings",
        {"object": "list", "model": "voyage-3-large", "usage": {"total_tokens": 2},
         "data": [{"object": "embedding", "index": 0, "embedding": [1, -2]},
                  {"object": "embedding", "index": 1, "embedding": [3, 4]}]},
        {"input": ["hello", "world"], "model": "voyage-3-large", "input_type": "document",
         "output_dimension": 512, "output_dtype": "int8"},
        {"text_embedding_bytes": [{"embedding": [1, -2]}, {"embedding": [3, 4]}]},
        input_type="ingest", host="api.voyageai.com"),
    ("voyageai", "rerank"): Case(
        {"api_key": KEY, "model_id": "rerank-2"}, "/v1/rerank",
        {"object": "list", "model": "rerank-2", "usage": {"total_tokens": 9},
         "data": [{"index": 1, "relevance_score": 0.9, "document": "world"},
                  {"index": 0, "relevance_score": 0.2, "document": "hello"}]},
        {"query": "which", "documents": ["hello", "world"], "model": "rerank-2", "top_k": 2,
         "return_documents": True}, RANKED_TEXT, task_settings={"top_k": 2, "return_documents": True},
        query="which"),
    ("custom", "text_embedding"): Case(
        {**CUSTOM, "url": "https://api.openai.test/v1/embeddings",
         "request": '{"input": ${input}, "model": "text-embedding-3-small"}',
         "response": {"json_parser": {"text_embeddings": "$.data[*].embedding[*]"}}},
        "/v1/embeddings", openai_embeddings(VEC, VEC2),
        {"input": ["hello", "world"], "model": "text-embedding-3-small"}, EMBEDDED),
    ("custom", "text_embedding", "input_type"): Case(
        {**CUSTOM, "url": "https://api.cohere.test/v2/embed",
         "request": '{"texts": ${input}, "model": "embed-v4.0", "input_type": ${input_type}}',
         "input_type": {"translation": {"ingest": "search_document", "search": "search_query"},
                        "default": "search_document"},
         "response": {"json_parser": {"text_embeddings": "$.embeddings.float[*]"}}},
        "/v2/embed", {"id": "e", "embeddings": {"float": [VEC, VEC2]}, "texts": ["hello", "world"]},
        {"texts": ["hello", "world"], "model": "embed-v4.0", "input_type": "search_query"}, EMBEDDED,
        input_type="search"),
    ("custom", "rerank"): Case(
        {**CUSTOM, "url": "https://api.cohere.test/v2/rerank",
         "request": '{"documents": ${input}, "query": ${query}, "model": "rerank-v3.5"}',
         "response": {"json_parser": {"reranked_index": "$.results[*].index",
                                      "relevance_score": "$.results[*].relevance_score"}}},
        "/v2/rerank", {"id": "r", "results": [{"index": 1, "relevance_score": 0.9},
                                              {"index": 0, "relevance_score": 0.2}]},
        {"documents": ["hello", "world"], "query": "which", "model": "rerank-v3.5"}, RANKED, query="which"),
    ("custom", "sparse_embedding"): Case(
        {**CUSTOM, "url": "https://sparse.test/embed", "query_parameters": [["mode", "${mode}"]],
         "request": '{"texts": ${input}, "mode": ${mode}, "input_type": ${input_type}}',
         "input_type": {"translation": {"ingest": "document"}, "default": "query"},
         "response": {"json_parser": {"token_path": "$.result.sparse_embeddings[*].embedding[*].token_id",
                                      "weight_path": "$.result.sparse_embeddings[*].embedding[*].weight"}}},
        "/embed", {"result": {"sparse_embeddings": [
            {"index": 0, "embedding": [{"token_id": 6, "weight": 0.1}, {"token_id": 163040, "weight": 0.25}]},
            {"index": 1, "embedding": [{"token_id": 7, "weight": 0.5}]}]}},
        {"texts": ["hello", "world"], "mode": "fast", "input_type": "query"},
        {"sparse_embedding": [{"is_truncated": False, "embedding": {"6": 0.1, "163040": 0.25}},
                              {"is_truncated": False, "embedding": {"7": 0.5}}]},
        task_settings={"parameters": {"mode": "fast"}}, query_params={"mode": "fast"}),
    ("custom", "completion"): Case(
        {**CUSTOM, "url": "https://api.openai.test/v1/chat/completions",
         "request": '{"messages": [{"role": "user", "content": ${input}}], "model": "gpt-4.1"}',
         "response": {"json_parser": {"completion_result": "$.choices[*].message.content"}}},
        "/v1/chat/completions", openai_chat("hi there"),
        {"messages": [{"role": "user", "content": "hello"}], "model": "gpt-4.1"}, COMPLETED, input=["hello"]),
    # ---- new pairs of existing services ------------------------------------------------
    ("azureaistudio", "rerank"): Case(
        {"api_key": KEY, "target": "https://cohere-rerank.models.ai.azure.test", "provider": "cohere",
         "endpoint_type": "token"}, "/v1/rerank",
        {"id": "r", "results": [{"index": 1, "relevance_score": 0.9, "document": {"text": "world"}},
                                {"index": 0, "relevance_score": 0.2, "document": {"text": "hello"}}]},
        {"documents": ["hello", "world"], "query": "which", "top_n": 2, "return_documents": True}, RANKED_TEXT,
        task_settings={"top_n": 2, "return_documents": True}, query="which", headers={"authorization": KEY}),
    ("hugging_face", "completion"): Case(
        {"api_key": KEY, "url": "https://e.hf.test/v1/chat/completions", "model_id": "tgi"}, "/v1/chat/completions",
        openai_chat("hi there"), chat_body("tgi"), COMPLETED, host="e.hf.test"),
    ("hugging_face", "rerank"): Case(
        {"api_key": KEY, "url": "https://e.hf.test/rerank"}, "/rerank",
        [{"index": 1, "score": 0.9, "text": "world"}, {"index": 0, "score": 0.2, "text": "hello"}],
        {"texts": ["hello", "world"], "query": "which", "return_text": True, "top_n": 2}, RANKED_TEXT,
        task_settings={"top_n": 2}, query="which"),
    ("mistral", "completion"): Case(
        {"api_key": KEY, "model": "mistral-small-latest"}, "/v1/chat/completions", openai_chat("hi there"),
        chat_body("mistral-small-latest"), COMPLETED, host="api.mistral.ai"),
}

SAGEMAKER = {"access_key": "AKIDEXAMPLE", "secret_key": KEY, "region": "us-east-1", "endpoint_name": "my-endpoint"}
SAGEMAKER_PATH = "/endpoints/my-endpoint/invocations"


@pytest.mark.parametrize("key", sorted(CASES), ids=lambda v: "-".join(v))
async def test_pair_sends_provider_format_and_answers_elasticsearch_json(key):
    service, task = key[:2]
    case = CASES[key]
    response, received = await serve_case(service, task, case)
    assert response.json() == case.expect_answer
    assert (received.method, received.path) == ("POST", case.path)
    if case.host:
        assert received.host == case.host
    assert received.json == case.expect_body
    for name, value in case.headers.items():
        assert received.headers.get(name) == value, name
    assert received.query == case.query_params


# ---- Amazon SageMaker ---------------------------------------------------------------------

SAGEMAKER_CASES = {
    ("elastic", "text_embedding"): (
        {"element_type": "float", "dimensions": 3}, {"text_embedding": [{"embedding": VEC}, {"embedding": VEC2}]},
        {"input": ["hello", "world"], "input_type": "search"}, EMBEDDED),
    ("elastic", "sparse_embedding"): (
        {}, {"sparse_embedding": [{"is_truncated": False, "embedding": {"hello": 1.5}},
                                  {"is_truncated": False, "embedding": {"world": 0.5}}]},
        {"input": ["hello", "world"]},
        {"sparse_embedding": [{"is_truncated": False, "embedding": {"hello": 1.5}},
                              {"is_truncated": False, "embedding": {"world": 0.5}}]}),
    ("elastic", "rerank"): (
        {}, {"rerank": [{"index": 1, "relevance_score": 0.9}, {"index": 0, "relevance_score": 0.2}]},
        {"input": ["hello", "world"], "query": "which"}, RANKED),
    ("elastic", "completion"): (
        {}, {"completion": [{"result": "hi there"}]}, {"input": ["hello", "world"]},
        COMPLETED),
    ("openai", "text_embedding"): (
        {"dimensions": 3}, openai_embeddings(VEC, VEC2), {"input": ["hello", "world"], "dimensions": 3}, EMBEDDED),
    ("openai", "completion"): ({}, openai_chat("hi there"), chat_body(), COMPLETED),
}


@pytest.mark.parametrize(("api", "task"), sorted(SAGEMAKER_CASES), ids=lambda v: str(v))
async def test_sagemaker_invokes_the_endpoint_signed_with_sigv4(api, task):
    extra, reply, expect_body, expect_answer = SAGEMAKER_CASES[(api, task)]
    fake = FakeProvider().on(SAGEMAKER_PATH, Reply(json=reply))
    settings = {**SAGEMAKER, "api": api, "target_model": "model-a.tar.gz", **extra}
    backend = backend_for(fake, "amazon_sagemaker", task, settings, {"session_id": "s-1"})
    body: dict[str, Any] = {"input": ["hello", "world"]}
    if task == "text_embedding":
        body["input_type"] = "search"
    if task == "rerank":
        body["query"] = "which"
    response = await post_through_server(backend, body)
    assert response.status_code == 200, response.text
    assert response.json() == expect_answer
    [received] = fake.received
    assert received.host == "runtime.sagemaker.us-east-1.amazonaws.com"
    assert received.json == expect_body
    assert received.headers["x-amzn-sagemaker-target-model"] == "model-a.tar.gz"
    assert received.headers["x-amzn-sagemaker-session-id"] == "s-1"
    auth = received.headers["authorization"]
    assert auth.startswith("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/")
    assert "/us-east-1/sagemaker/aws4_request" in auth
    assert KEY not in json.dumps(received.headers)


def test_sagemaker_rerank_is_refused_with_the_openai_api():
    from kubeinfer.catalog import parse_endpoint
    from kubeinfer.errors import ElasticsearchError

    with pytest.raises(ElasticsearchError) as caught:
        parse_endpoint("sm", "rerank", {"service": "amazon_sagemaker", "service_settings": {**SAGEMAKER, "api": "openai"}})
    assert caught.value.status == 400
    assert "is not compatible" in caught.value.reason


# ---- custom: what a user would get wrong ---------------------------------------------------

async def test_custom_template_with_an_unknown_placeholder_is_refused_and_sends_nothing():
    fake = FakeProvider()
    settings = {**CASES[("custom", "text_embedding")].service_settings, "request": '{"input": ${input}, "x": ${nope}}'}
    backend = backend_for(fake, "custom", "text_embedding", settings)
    response = await post_through_server(backend, {"input": ["hello"]})
    assert response.status_code == 400
    assert response.json()["error"]["reason"].endswith(
        "Found placeholder [${nope}] in field [request] after replacement call, please check that all templates "
        "have a corresponding field definition.;")
    assert fake.received == []


async def test_custom_answer_that_does_not_match_the_parser_is_a_bad_gateway_without_the_secret():
    fake = FakeProvider().on("/v1/embeddings", Reply(json={"data": {"not": "a list"}}))
    backend = backend_for(fake, "custom", "text_embedding", CASES[("custom", "text_embedding")].service_settings)
    response = await post_through_server(backend, {"input": ["hello"]})
    assert response.status_code == 502
    assert KEY not in response.text


# ---- chat_completion: unified chunks from OpenAI-shaped streams ------------------------------

def openai_stream(model="m"):
    def chunk(delta, finish=None, usage=None, choices=True):
        body = {"id": "c-1", "object": "chat.completion.chunk", "created": 1, "model": model}
        body["choices"] = [{"index": 0, "delta": delta, "finish_reason": finish}] if choices else []
        if usage:
            body["usage"] = usage
        return (None, json.dumps(body))
    return [chunk({"role": "assistant", "content": "Hi"}),
            chunk({"tool_calls": [{"index": 0, "id": "call_1", "type": "function",
                                   "function": {"name": "weather", "arguments": "{}"}}]}),
            chunk({}, "tool_calls"),
            chunk({}, usage={"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}, choices=False),
            (None, "[DONE]")]


CHAT_REQUEST = {"messages": [{"role": "user", "content": "hello"}], "max_completion_tokens": 8,
                "tools": [{"type": "function", "function": {"name": "weather", "parameters": {"type": "object"}}}]}
CHAT_CASES = {
    "ai21": ({"api_key": KEY, "model_id": "jamba-mini"}, "api.ai21.com", "/studio/v1/chat/completions", "max_tokens"),
    "deepseek": ({"api_key": KEY, "model_id": "deepseek-chat"}, "api.deepseek.com", "/chat/completions",
                 "max_completion_tokens"),
    "fireworksai": ({"api_key": KEY, "model_id": "accounts/fireworks/models/deepseek-v3p1"}, "api.fireworks.ai",
                    "/inference/v1/chat/completions", "max_completion_tokens"),
    "groq": ({"api_key": KEY, "model_id": "llama-3.3-70b-versatile"}, "api.groq.com", "/openai/v1/chat/completions",
             "max_completion_tokens"),
    "llama": ({"url": "http://llama.test:8321/v1/openai/v1/chat/completions", "model_id": "llama3.2:3b"},
              "llama.test:8321", "/v1/openai/v1/chat/completions", "max_completion_tokens"),
    "nvidia": ({"api_key": KEY, "model_id": "microsoft/phi-3-mini-128k-instruct"}, "integrate.api.nvidia.com",
               "/v1/chat/completions", "max_tokens"),
    "openshift_ai": ({"api_key": KEY, "url": "https://llama.apps.ocp.test/v1/chat/completions",
                      "model_id": "llama-31-8b-instruct"}, "llama.apps.ocp.test", "/v1/chat/completions",
                     "max_completion_tokens"),
}


@pytest.mark.parametrize("service", sorted(CHAT_CASES))
async def test_chat_completion_streams_unified_chunks_with_tool_calls(service):
    settings, host, path, max_tokens = CHAT_CASES[service]
    fake = FakeProvider().on(path, Reply(events=openai_stream(settings["model_id"])))
    backend = backend_for(fake, service, "chat_completion", settings)
    response = await post_chat(backend, CHAT_REQUEST)
    assert response.status_code == 200, response.text
    events = list(parse_events(response.text))
    assert events[-1] == ("message", "[DONE]")
    got = [json.loads(data) for _, data in events[:-1]]
    deltas = [c["choices"][0]["delta"] for c in got if c.get("choices")]
    assert deltas[0] == {"content": "Hi", "role": "assistant"}
    assert deltas[1]["tool_calls"][0]["function"]["name"] == "weather"
    assert got[-1]["usage"]["total_tokens"] == 4
    [received] = fake.to(path)
    assert received.host == host
    assert received.json["model"] == settings["model_id"]
    assert received.json["messages"] == CHAT_REQUEST["messages"]
    assert received.json[max_tokens] == 8 and received.json["stream"] is True
    assert received.json["tools"] == CHAT_REQUEST["tools"]
    if "api_key" in settings:
        assert received.headers["authorization"] == f"Bearer {KEY}"


async def test_sagemaker_chat_streams_payload_parts_of_the_event_stream():
    payload = "".join(f"data: {data}\n\n" for _, data in openai_stream("sm"))
    frames = _raw_event("PayloadPart", payload[: len(payload) // 2].encode()) + \
        _raw_event("PayloadPart", payload[len(payload) // 2:].encode())
    path = "/endpoints/my-endpoint/invocations-response-stream"
    fake = FakeProvider().on(path, Reply(raw=frames, content_type="application/vnd.amazon.eventstream"))
    backend = backend_for(fake, "amazon_sagemaker", "chat_completion", {**SAGEMAKER, "api": "openai"})
    response = await post_chat(backend, CHAT_REQUEST)
    assert response.status_code == 200, response.text
    events = list(parse_events(response.text))
    got = [json.loads(data) for _, data in events[:-1]]
    assert got[0]["choices"][0]["delta"] == {"content": "Hi", "role": "assistant"}
    [received] = fake.to(path)
    assert received.json["messages"] == CHAT_REQUEST["messages"] and received.json["stream"] is True
    assert received.headers["authorization"].startswith("AWS4-HMAC-SHA256")


def _raw_event(kind: str, payload: bytes) -> bytes:
    """One message of AWS's binary event stream whose payload is raw bytes (a blob event)."""
    import binascii
    import struct

    headers = {":event-type": kind, ":content-type": "application/octet-stream", ":message-type": "event"}
    encoded = b""
    for name, value in headers.items():
        encoded += struct.pack("B", len(name)) + name.encode() + b"\x07" + struct.pack(">H", len(value)) + value.encode()
    prelude = struct.pack(">II", 12 + len(encoded) + len(payload) + 4, len(encoded))
    message = prelude + struct.pack(">I", binascii.crc32(prelude)) + encoded + payload
    return message + struct.pack(">I", binascii.crc32(message))


@pytest.mark.parametrize("service,task,url,path", [
    # A bare host keeps the provider's own path, whatever the service.
    ("groq", "chat_completion", "http://fake.test", "/openai/v1/chat/completions"),
    ("nvidia", "text_embedding", "http://fake.test:8080/", "/v1/embeddings"),
    ("jinaai", "rerank", "http://fake.test", "/v1/rerank"),
    ("voyageai", "text_embedding", "http://fake.test", "/v1/embeddings"),
    # A base URL gets the operation added; a URL of the operation is used as is.
    ("ai21", "completion", "http://fake.test/proxy/v1", "/proxy/v1/chat/completions"),
    ("jinaai", "text_embedding", "http://fake.test/v1/embeddings", "/v1/embeddings"),
    # Where Elasticsearch takes url as the operation's own URL, it is.
    ("deepseek", "completion", "http://fake.test/beta/chat/completions", "/beta/chat/completions"),
])
async def test_url_override_reaches_the_operation(service, task, url, path):
    settings = {"api_key": KEY, "model_id": "m", "url": url}
    replies = {"text_embedding": Reply(json=openai_embeddings(VEC)),
               "rerank": Reply(json={"results": [{"index": 0, "relevance_score": 0.5}]})}
    fake = FakeProvider().on(path, replies.get(task, Reply(json=openai_chat("ok"))))
    backend = backend_for(fake, service, task, settings)
    if task == "chat_completion":
        fake.on(path, Reply(events=openai_stream()))
        response = await post_chat(backend, CHAT_REQUEST)
    else:
        body = {"input": ["hello"], **({"query": "q"} if task == "rerank" else {})}
        response = await post_through_server(backend, body)
    assert response.status_code == 200, response.text
    [received] = fake.received
    assert received.path == path


async def test_completion_of_an_openai_compatible_service_streams_deltas():
    fake = FakeProvider().on("/chat/completions", Reply(events=openai_stream("deepseek-chat")))
    backend = backend_for(fake, "deepseek", "completion", {"api_key": KEY, "model_id": "deepseek-chat"})
    response = await post_through_server(backend, {"input": "hello"}, stream=True)
    assert response.status_code == 200, response.text
    events = list(parse_events(response.text))
    assert json.loads(events[0][1]) == {"completion": [{"delta": "Hi"}]}
    assert events[-1][1] == "[DONE]"
    [received] = fake.received
    assert received.json["stream"] is True and received.json["messages"] == [{"role": "user", "content": "hello"}]


async def test_binary_embeddings_answer_as_packed_bits():
    reply = {"object": "list", "model": "jina-embeddings-v3", "usage": {"total_tokens": 1},
             "data": [{"object": "embedding", "index": 0, "embedding": [-7, 12, 127]}]}
    fake = FakeProvider().on("/v1/embeddings", Reply(json=reply))
    backend = backend_for(fake, "jinaai", "text_embedding",
                          {"api_key": KEY, "model_id": "jina-embeddings-v3", "embedding_type": "bit"})
    response = await post_through_server(backend, {"input": ["hello"]})
    assert response.status_code == 200, response.text
    assert response.json() == {"text_embedding_bits": [{"embedding": [-7, 12, 127]}]}
    assert fake.received[0].json["embedding_type"] == "binary"


async def test_sagemaker_elastic_api_streams_one_completion_object_a_payload_part():
    parts = [_raw_event("PayloadPart", json.dumps({"completion": [{"delta": text}]}).encode()) for text in ("Hel", "lo")]
    path = "/endpoints/my-endpoint/invocations-response-stream"
    fake = FakeProvider().on(path, Reply(raw=b"".join(parts), content_type="application/vnd.amazon.eventstream"))
    backend = backend_for(fake, "amazon_sagemaker", "completion", {**SAGEMAKER, "api": "elastic"})
    response = await post_through_server(backend, {"input": "hello"}, stream=True)
    assert response.status_code == 200, response.text
    deltas = [json.loads(data) for _, data in list(parse_events(response.text))[:-1]]
    assert deltas == [{"completion": [{"delta": "Hel"}]}, {"completion": [{"delta": "lo"}]}]
    assert fake.received[0].json == {"input": "hello", "stream": True}


@pytest.mark.parametrize("service,settings,path,reply,sent", [
    ("voyageai", {"api_key": KEY, "model_id": "rerank-2"}, "/v1/rerank",
     {"data": [{"index": 0, "relevance_score": 0.5}]}, {"top_k": 1}),
    ("contextualai", {"api_key": KEY, "model_id": "ctxl-rerank"}, "/v1/rerank",
     {"results": [{"index": 0, "relevance_score": 0.5}]}, {"top_n": 1}),
    ("custom", {**CUSTOM, "url": "https://r.test/rerank",
                "request": '{"q": ${query}, "docs": ${input}, "top": ${top_n}}',
                "response": {"json_parser": {"relevance_score": "$.scores[*]"}}},
     "/rerank", {"scores": [0.5]}, {"top": 1}),
])
async def test_the_request_top_n_of_rerank_reaches_the_provider(service, settings, path, reply, sent):
    fake = FakeProvider().on(path, Reply(json=reply))
    backend = backend_for(fake, service, "rerank", settings)
    response = await post_through_server(backend, {"input": ["a", "b"], "query": "q", "top_n": 1})
    assert response.status_code == 200, response.text
    body = fake.received[0].json
    assert {k: body[k] for k in sent} == sent


async def test_jina_multimodal_embedding_sends_text_and_image_objects():
    image = "data:image/png;base64,iVBORw0KGgo="
    fake = FakeProvider().on("/v1/embeddings", Reply(json=openai_embeddings(VEC, VEC2)))
    backend = backend_for(fake, "jinaai", "embedding", {"api_key": KEY, "model_id": "jina-embeddings-v4"})
    response = await post_through_server(backend, {"input": [
        "a cat", {"content": {"type": "image", "value": image, "format": "base64"}}]})
    assert response.status_code == 200, response.text
    assert response.json() == {"embeddings": [{"embedding": VEC}, {"embedding": VEC2}]}
    assert fake.received[0].json["input"] == [{"text": "a cat"}, {"image": image}]


async def test_jina_text_only_model_refuses_images_for_the_embedding_task():
    fake = FakeProvider()
    backend = backend_for(fake, "jinaai", "embedding",
                          {"api_key": KEY, "model_id": "jina-embeddings-v3", "multimodal_model": False})
    response = await post_through_server(backend, {"input": [
        {"content": {"type": "image", "value": "aGk=", "format": "base64"}}]})
    assert response.status_code == 400
    assert response.json()["error"] == {
        "type": "status_exception", "reason": "The jinaai service does not support embedding with non-text inputs",
        "root_cause": [{"type": "status_exception",
                        "reason": "The jinaai service does not support embedding with non-text inputs"}]}
    assert fake.received == []
