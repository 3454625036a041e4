"""A provider endpoint served by ``kubeinfer serve``'s app, through HTTP: the start-up
check gates ``/readyz``, inference and streaming answer Elasticsearch's JSON and SSE,
and a provider's refusal comes back as Elasticsearch's error body."""

from __future__ import annotations

import json

import httpx

from fake_providers import FakeProvider, Reply, backend_for
from model_server.api.serve import build_app
from model_server.api.sse import parse_events

KEY = "sk-http-test-key-987654321"
SETTINGS = {"api_key": KEY, "model_id": "text-embedding-3-small", "url": "https://openai.test/v1"}
EMBEDDINGS = Reply(json={"object": "list", "data": [{"object": "embedding", "index": 0, "embedding": [0.25, 0.75]}]})


def client(backend) -> httpx.AsyncClient:
    app = build_app(backend.config, backend)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://serve")


async def test_readyz_waits_for_the_provider_check_then_inference_answers():
    fake = FakeProvider().on("/v1/embeddings", Reply(503, {"error": {"message": "warming"}}), EMBEDDINGS)
    backend = backend_for(fake, "openai", "text_embedding", SETTINGS, validate_at_start=True)
    async with client(backend) as http:
        assert (await http.get("/readyz")).status_code == 503
        # The first check meets the 503 once, retries, and succeeds within its timeout.
        await backend.start()
        assert (await http.get("/readyz")).status_code == 200
        response = await http.post("/_inference/text_embedding/ep", json={"input": ["hello"]})
    await backend.close()
    assert response.status_code == 200
    assert response.json() == {"text_embedding": [{"embedding": [0.25, 0.75]}]}
    assert fake.received[-1].json["input"] == ["hello"]
    assert backend.describe()["dimensions"] == 2


async def test_provider_refusal_is_an_elasticsearch_error_body_without_the_key():
    fake = FakeProvider().on("/v1/embeddings", Reply(401, {"error": {"message": f"Incorrect API key provided: {KEY}"}}))
    backend = backend_for(fake, "openai", "text_embedding", SETTINGS)
    await backend.start()
    async with client(backend) as http:
        response = await http.post("/_inference/text_embedding/ep", json={"input": "hello"})
    await backend.close()
    assert response.status_code == 401
    body = response.json()
    assert body["status"] == 401
    assert body["error"]["type"] == "status_exception"
    assert "Incorrect API key provided" in body["error"]["reason"]
    assert KEY not in response.text


async def test_streaming_completion_through_http():
    events = [(None, json.dumps({"choices": [{"index": 0, "delta": {"content": t}}]})) for t in ("Hi", " there")]
    fake = FakeProvider().on("/v1/chat/completions", Reply(events=events + [(None, "[DONE]")]))
    backend = backend_for(fake, "openai", "completion", {**SETTINGS, "model_id": "gpt-4o"})
    await backend.start()
    async with client(backend) as http:
        response = await http.post("/_inference/completion/ep/_stream", json={"input": "hello"})
    await backend.close()
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert list(parse_events(response.text)) == [
        ("message", '{"completion":[{"delta":"Hi"}]}'),
        ("message", '{"completion":[{"delta":" there"}]}'),
        ("message", "[DONE]"),
    ]
    assert fake.received[0].json["stream"] is True
