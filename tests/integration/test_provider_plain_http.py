"""Provider calls of plain-http URLs over real TCP, as a proxy in front of private
endpoints makes them: the provider sees the request httpx's client would have sent, no
cookie goes back to a provider, compressed answers are read, and the environment's
proxy settings are followed."""

from __future__ import annotations

import gzip
import json
import zlib

import httpx
import pytest

from fake_providers import FakeProvider, Reply, backend_for, serve_over_tcp
from model_server.api.elasticsearch_json import render
from model_server.backends.base import InferenceRequest
from kubeinfer.catalog import TaskType
from kubeinfer.errors import ElasticsearchError

KEY = "sk-plain-http-key-0123456789"
EMBEDDINGS = {"object": "list", "data": [{"object": "embedding", "index": 0, "embedding": [0.25, 0.5]}]}
EMBEDDED = {"text_embedding": [{"embedding": [0.25, 0.5]}]}
CUSTOM = {
    "secret_parameters": {"api_key": KEY},
    "headers": {"Authorization": "Bearer ${api_key}", "X-Tenant": "t-1"},
    "request": '{"input": ${input}, "model": "m", "note": "é ☃"}',
    "query_parameters": [["mode", "fast search"], ["v", "2"]],
    "response": {"json_parser": {"text_embeddings": "$.data[*].embedding[*]"}},
}


def embed(*texts: str) -> InferenceRequest:
    return InferenceRequest(TaskType.TEXT_EMBEDDING, list(texts) or ["hello"], timeout=5.0)


def openai(fake: FakeProvider, port: int, inference_id: str = "ep", **options):
    settings = {"api_key": KEY, "model_id": "text-embedding-3-small", "url": f"http://127.0.0.1:{port}/v1",
                "organization_id": "org-1"}
    options.setdefault("transport", None)  # the shared client
    return backend_for(fake, "openai", "text_embedding", settings, inference_id=inference_id, **options)


def custom(fake: FakeProvider, port: int, **options):
    settings = {**CUSTOM, "url": f"http://127.0.0.1:{port}/v1/embed%2Fitems/run"}
    options.setdefault("transport", None)
    return backend_for(fake, "custom", "text_embedding", settings, **options)


@pytest.mark.parametrize("make", [openai, custom], ids=["openai", "custom"])
async def test_the_provider_sees_the_request_httpx_would_have_sent(make):
    fake = FakeProvider().on("/v1/embeddings", Reply(json=EMBEDDINGS)).on("/v1/embed/items/run", Reply(json=EMBEDDINGS))
    with serve_over_tcp(fake) as port:
        for transport in (None, httpx.AsyncHTTPTransport()):  # the shared client, then httpx's own
            backend = make(fake, port, transport=transport)
            await backend.start()
            assert render(await backend.infer(embed("hello wörld ☃"))) == EMBEDDED
            await backend.close()
    shared, through_httpx = fake.received
    assert (shared.method, shared.raw_path, shared.query) == (through_httpx.method, through_httpx.raw_path,
                                                              through_httpx.query)
    assert shared.headers == through_httpx.headers
    assert json.loads(shared.body) == json.loads(through_httpx.body)
    assert shared.headers["authorization"] == f"Bearer {KEY}"
    assert shared.headers["content-type"] == "application/json"
    assert int(shared.headers["content-length"]) == len(shared.body)


async def test_a_cookie_set_by_a_provider_is_not_sent_back():
    setter = Reply(json=EMBEDDINGS, headers={"Set-Cookie": "session=abc123; Path=/"})
    fake = FakeProvider().on("/v1/embeddings", setter)
    with serve_over_tcp(fake) as port:
        first, second = openai(fake, port, "first"), openai(fake, port, "second")
        in_process = backend_for(fake, "openai", "text_embedding", {"api_key": KEY, "model_id": "m"})
        for backend in (first, second, first, in_process, in_process):
            await backend.start()
            assert render(await backend.infer(embed())) == EMBEDDED
        for backend in (first, second, in_process):
            await backend.close()
    assert len(fake.received) == 5
    assert [r.headers.get("cookie") for r in fake.received] == [None] * 5


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
async def test_a_compressed_answer_over_plain_http_is_read(encoding):
    payload = json.dumps(EMBEDDINGS).encode()
    body = gzip.compress(payload) if encoding == "gzip" else zlib.compress(payload)
    fake = FakeProvider().on("/v1/embeddings", Reply(raw=body, content_type="application/json",
                                                     headers={"Content-Encoding": encoding}))
    with serve_over_tcp(fake) as port:
        backend = openai(fake, port)
        await backend.start()
        answer = render(await backend.infer(embed()))
        await backend.close()
    assert answer == EMBEDDED
    assert "gzip" in fake.received[0].headers["accept-encoding"]


async def test_a_compressed_error_answer_is_quoted_decoded():
    error = json.dumps({"error": {"message": "model overloaded, try later"}}).encode()
    fake = FakeProvider().on("/v1/embeddings", Reply(400, raw=gzip.compress(error), content_type="application/json",
                                                     headers={"Content-Encoding": "gzip"}))
    with serve_over_tcp(fake) as port:
        backend = openai(fake, port)
        await backend.start()
        with pytest.raises(ElasticsearchError) as info:
            await backend.infer(embed())
        await backend.close()
    assert info.value.status == 400
    assert "model overloaded, try later" in info.value.reason


async def test_plain_http_calls_go_through_the_proxy_the_environment_names(monkeypatch):
    fake = FakeProvider().on("/v1/embeddings", Reply(json=EMBEDDINGS))
    with serve_over_tcp(fake) as proxy_port:
        monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{proxy_port}")
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        backend = backend_for(fake, "openai", "text_embedding",
                              {"api_key": KEY, "model_id": "m", "url": "http://provider.invalid/v1"}, transport=None)
        await backend.start()
        answer = render(await backend.infer(embed()))
        await backend.close()
    assert answer == EMBEDDED
    assert [(r.host, r.path) for r in fake.received] == [("provider.invalid", "/v1/embeddings")]
