"""Bad input through HTTP, on Elasticsearch's routes and OpenAI's: each is a 400 in the
route's own error shape (Elasticsearch's on ``/_inference``, OpenAI's on ``/v1``), never a
500, and nothing is logged as an unexpected error. Endpoints are created with PUT on the
local-mode app, in front of fakes speaking each provider's wire format.
"""

from __future__ import annotations

import logging

import httpx
import pytest
from fake_providers import FakeProvider, Reply
from local_mode import openai_chat, openai_embeddings

from model_server.backends.registry import create_backend
from model_server.gateway.app import create_gateway_app
from model_server.gateway.local_store import LocalEndpointStore

KEY = "sk-bad-input-0123456789"


def provider() -> FakeProvider:
    fake = FakeProvider()
    fake.on("/v1/chat/completions", Reply(json=openai_chat("Bonjour!")))
    fake.on("/v1/embeddings", lambda r: Reply(json=openai_embeddings(*[[1.0, 0.0] for _ in r.json["input"]])))
    fake.on("/v1/rerank", lambda r: Reply(json={"results": [
        {"index": i, "relevance_score": 1.0 / (i + 1)} for i, _ in enumerate(r.json["documents"])]}))
    return fake


@pytest.fixture
async def app(caplog):
    fake = provider()
    store = LocalEndpointStore(backend_factory=lambda config: create_backend(config, transport=fake.transport))
    gateway = create_gateway_app(store)
    async with gateway.router.lifespan_context(gateway):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=gateway), base_url="http://local") as client:
            client.fake = fake
            for task, inference_id, body in [
                ("completion", "words", {"service": "openai", "service_settings": {
                    "api_key": KEY, "model_id": "gpt-4o-mini", "url": "https://openai.test/v1"}}),
                ("rerank", "ranks", {"service": "jinaai", "service_settings": {
                    "api_key": KEY, "model_id": "jina-reranker-v2", "url": "https://jina.test/v1"}}),
                ("text_embedding", "templated", {"service": "custom", "service_settings": {
                    "secret_parameters": {"api_key": KEY},
                    "url": "https://custom.test/v1/embeddings",
                    "headers": {"Authorization": "Bearer ${api_key}", "X-Tenant": "${tenant}"},
                    "request": "{\"input\": ${input}}",
                    "response": {"json_parser": {"text_embeddings": "$.data[*].embedding[*]"}},
                }, "task_settings": {"parameters": {"tenant": "t-1"}}}),
            ]:
                created = await client.put(f"/_inference/{task}/{inference_id}", json=body)
                assert created.status_code == 200, created.text
            fake.received.clear()  # the start-up checks
            caplog.clear()
            yield client
    unexpected = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not unexpected, [r.getMessage() for r in unexpected]


def openai_error(response: httpx.Response) -> tuple[int, str]:
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}, error
    return response.status_code, error["message"]


def es_error(response: httpx.Response) -> tuple[int, str, str]:
    body = response.json()
    assert body["status"] == response.status_code and "root_cause" in body["error"], body
    return response.status_code, body["error"]["type"], body["error"]["reason"]


@pytest.mark.parametrize("extra", [
    {"stream": True, "stream_options": "x"},
    {"stream": True, "stream_options": 1},
    {"stream": True, "stream_options": [1]},
    {"stream": True, "stream_options": {"include_usage": "yes"}},
    {"stream": "yes"},
    {"messages": [{"role": "user", "content": [{"type": "text", "text": 5}]}]},
    {"messages": [{"role": "user", "content": [{"type": "text", "text": {"a": 1}}]}]},
    {"messages": [{"role": "user", "content": 7}]},
    {"messages": ["hello"]},
    {"max_tokens": -5},
    {"max_tokens": 0},
    {"max_tokens": "10"},
    {"max_completion_tokens": -1},
])
async def test_malformed_chat_request_is_a_400_in_openai_shape(app, extra):
    body = {"model": "words", "messages": [{"role": "user", "content": "hi"}], **extra}
    response = await app.post("/v1/chat/completions", json=body)
    status, message = openai_error(response)
    assert status == 400, response.text
    assert not app.fake.to("/v1/chat/completions")


@pytest.mark.parametrize("documents", ["abc", {"text": "abc"}, 5, [], [1, 2], [{"text": 5}]])
async def test_rerank_documents_must_be_a_list_of_texts(app, documents):
    response = await app.post("/v1/rerank", json={"model": "ranks", "query": "q", "documents": documents})
    status, message = openai_error(response)
    assert status == 400 and "documents" in message
    assert not app.fake.to("/v1/rerank")


async def test_a_body_that_is_not_json_on_v1_is_refused_in_openai_shape(app):
    response = await app.post("/v1/embeddings", content=b"input=abc",
                              headers={"content-type": "application/x-www-form-urlencoded"})
    assert openai_error(response)[0] == 406


async def test_a_body_too_large_on_v1_is_refused_in_openai_shape(app):
    response = await app.post("/v1/embeddings", content=b"x" * (11 * 1024 * 1024),
                              headers={"content-type": "application/json"})
    assert openai_error(response)[0] == 413


@pytest.mark.parametrize("value", ["t\r\nX-Injected: 1", "t\nX-Injected: 1", "t\x00", "t\r"])
async def test_a_header_parameter_that_would_split_a_header_is_a_400(app, value):
    response = await app.post("/_inference/text_embedding/templated",
                              json={"input": ["abc"], "task_settings": {"parameters": {"tenant": value}}})
    status, kind, reason = es_error(response)
    assert (status, kind) == (400, "validation_exception"), response.text
    assert "X-Tenant" in reason and KEY not in reason
    assert not app.fake.to("/v1/embeddings")
