"""The provider backends of a process send through the one ``OutboundHTTP`` the serving
app gives them, over real TCP: their calls share its connections, a backend that closes
leaves them open for the others, and the app closes them at shutdown."""

from __future__ import annotations

import pytest

from fake_providers import FakeProvider, Reply, endpoint, serve_over_tcp
from model_server.api.elasticsearch_json import render
from model_server.backends.base import InferenceRequest
from model_server.backends.providers.outbound import OutboundHTTP
from kubeinfer.catalog import TaskType
from kubeinfer.config import ServerSettings
from model_server.backends.registry import create_backend

EMBEDDED = {"text_embedding": [{"embedding": [0.5]}]}
REQUEST = InferenceRequest(TaskType.TEXT_EMBEDDING, ["x"], timeout=5)


def two_backends(port: int, outbound: OutboundHTTP):
    settings = {"api_key": "k-123456789", "url": f"http://127.0.0.1:{port}/v1"}
    first = create_backend(endpoint("mistral", "text_embedding", {**settings, "model": "a"}, inference_id="first"),
                           validate_at_start=False, outbound=outbound)
    second = create_backend(endpoint("openai", "text_embedding", {**settings, "model_id": "b"}, inference_id="second"),
                            validate_at_start=False, outbound=outbound)
    return first, second


async def test_backends_given_one_outbound_share_its_connections_until_it_closes():
    fake = FakeProvider().on("/v1/embeddings", Reply(json={"data": [{"index": 0, "embedding": [0.5]}]}))
    with serve_over_tcp(fake) as port:
        outbound = OutboundHTTP(ServerSettings())
        first, second = two_backends(port, outbound)
        async with outbound:
            await first.start()
            await second.start()
            assert render(await first.infer(REQUEST)) == EMBEDDED
            assert render(await second.infer(REQUEST)) == EMBEDDED
            await first.close()  # the pools are the app's, not the backend's
            assert render(await second.infer(REQUEST)) == EMBEDDED
            await second.close()
        assert not outbound.is_open
    assert [r.json["model"] for r in fake.received] == ["a", "b", "b"]
    # One keep-alive connection carried every call, whichever backend made it.
    assert len({r.peer for r in fake.received}) == 1


async def test_a_request_through_outbound_http_the_app_did_not_open_is_refused():
    fake = FakeProvider().on("/v1/embeddings", Reply(json={"data": [{"index": 0, "embedding": [0.5]}]}))
    with serve_over_tcp(fake) as port:
        first, _ = two_backends(port, OutboundHTTP(ServerSettings()))
        with pytest.raises(RuntimeError, match="not open"):
            await first.infer(REQUEST)
    assert fake.received == []
