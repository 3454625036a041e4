"""Backends without an injected transport share one pooled client per event loop, over
real TCP; it stays open while any backend holds it and closes with the last one."""

from __future__ import annotations

from fake_providers import FakeProvider, Reply, endpoint, serve_over_tcp
from model_server.api.elasticsearch_json import render
from model_server.backends.base import InferenceRequest
from kubeinfer.catalog import TaskType
from model_server.backends.registry import create_backend


async def test_backends_share_one_client_until_the_last_closes():
    fake = FakeProvider().on("/v1/embeddings", Reply(json={"data": [{"index": 0, "embedding": [0.5]}]}))
    with serve_over_tcp(fake) as port:
        settings = {"api_key": "k-123456789", "url": f"http://127.0.0.1:{port}/v1"}
        first = create_backend(endpoint("mistral", "text_embedding", {**settings, "model": "a"}),
                               validate_at_start=False)
        second = create_backend(endpoint("openai", "text_embedding", {**settings, "model_id": "b"}),
                                validate_at_start=False)
        await first.start()
        await second.start()
        assert first.client is second.client
        client = first.client
        request = InferenceRequest(TaskType.TEXT_EMBEDDING, ["x"], timeout=5)
        assert render(await first.infer(request)) == {"text_embedding": [{"embedding": [0.5]}]}
        await first.close()
        assert not client.is_closed
        assert render(await second.infer(request)) == {"text_embedding": [{"embedding": [0.5]}]}
        await second.close()
        assert client.is_closed
    assert [r.json["model"] for r in fake.received] == ["a", "b"]
