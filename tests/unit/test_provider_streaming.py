"""Streaming completion from each provider's own stream format, as Elasticsearch's
``{"completion": [{"delta": ..}]}`` chunks."""

from __future__ import annotations

import json

import pytest

from fake_providers import FakeProvider, Reply, backend_for
from model_server.api.elasticsearch_json import render_delta
from model_server.backends.base import InferenceRequest
from kubeinfer.catalog import TaskType
from kubeinfer.errors import ElasticsearchError

KEY = "stream-key-0123456789"


async def collect(backend, text="hi", **task):
    await backend.start()
    try:
        request = InferenceRequest(TaskType.COMPLETION, [text], task_settings=task, timeout=5)
        return [render_delta(chunk) async for chunk in backend.stream(request)]
    finally:
        await backend.close()


def deltas(*texts):
    return [{"completion": [{"delta": t}]} for t in texts]


def openai_events(*texts):
    events = [(None, json.dumps({"id": "c", "object": "chat.completion.chunk",
                                 "choices": [{"index": 0, "delta": {"role": "assistant"}}]}))]
    events += [(None, json.dumps({"id": "c", "object": "chat.completion.chunk",
                                  "choices": [{"index": 0, "delta": {"content": t}}]})) for t in texts]
    events += [(None, json.dumps({"id": "c", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})),
               (None, "[DONE]")]
    return events


async def test_openai_stream():
    fake = FakeProvider().on("/v1/chat/completions", Reply(events=openai_events("Hel", "lo")))
    backend = backend_for(fake, "openai", "completion", {"api_key": KEY, "model_id": "gpt-4o",
                                                          "url": "https://openai.test/v1"})
    assert await collect(backend) == deltas("Hel", "lo")
    [call] = fake.received
    assert call.json == {"messages": [{"role": "user", "content": "hi"}], "model": "gpt-4o", "n": 1, "stream": True}
    assert call.headers["authorization"] == f"Bearer {KEY}"


async def test_azure_openai_stream():
    path = "/openai/deployments/gpt/chat/completions"
    fake = FakeProvider().on(path, Reply(events=openai_events("a", "b", "c")))
    backend = backend_for(fake, "azureopenai", "completion", {
        "api_key": KEY, "resource_name": "res", "deployment_id": "gpt", "api_version": "2024-06-01",
        "url": "https://res.openai.test"})
    assert await collect(backend) == deltas("a", "b", "c")
    [call] = fake.received
    assert call.query == {"api-version": "2024-06-01"}
    assert call.headers["api-key"] == KEY
    assert call.json["stream"] is True


async def test_anthropic_stream():
    events = [
        ("message_start", json.dumps({"type": "message_start", "message": {"id": "m", "content": []}})),
        ("content_block_start", json.dumps({"type": "content_block_start", "index": 0,
                                            "content_block": {"type": "text", "text": ""}})),
        ("ping", json.dumps({"type": "ping"})),
        ("content_block_delta", json.dumps({"type": "content_block_delta", "index": 0,
                                            "delta": {"type": "text_delta", "text": "Bon"}})),
        ("content_block_delta", json.dumps({"type": "content_block_delta", "index": 0,
                                            "delta": {"type": "text_delta", "text": "jour"}})),
        ("content_block_stop", json.dumps({"type": "content_block_stop", "index": 0})),
        ("message_delta", json.dumps({"type": "message_delta", "delta": {"stop_reason": "end_turn"}})),
        ("message_stop", json.dumps({"type": "message_stop"})),
    ]
    fake = FakeProvider().on("/v1/messages", Reply(events=events))
    backend = backend_for(fake, "anthropic", "completion", {"api_key": KEY, "model_id": "claude",
                                                             "url": "https://anthropic.test"}, {"max_tokens": 10})
    assert await collect(backend, max_tokens=10) == deltas("Bon", "jour")
    [call] = fake.received
    assert call.json == {"messages": [{"role": "user", "content": "hi"}], "model": "claude", "max_tokens": 10,
                         "stream": True}
    assert call.headers["x-api-key"] == KEY


async def test_anthropic_error_event_ends_the_stream_with_an_error():
    events = [("content_block_delta", json.dumps({"type": "content_block_delta", "index": 0,
                                                  "delta": {"type": "text_delta", "text": "x"}})),
              ("error", json.dumps({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}))]
    fake = FakeProvider().on("/v1/messages", Reply(events=events))
    backend = backend_for(fake, "anthropic", "completion", {"api_key": KEY, "model_id": "claude",
                                                             "url": "https://anthropic.test"}, {"max_tokens": 10})
    with pytest.raises(ElasticsearchError) as info:
        await collect(backend, max_tokens=10)
    assert info.value.status == 502
    assert "Overloaded" in info.value.reason


async def test_cohere_stream():
    lines = [
        json.dumps({"is_finished": False, "event_type": "stream-start", "generation_id": "g"}),
        json.dumps({"is_finished": False, "event_type": "text-generation", "text": "Co"}),
        json.dumps({"is_finished": False, "event_type": "text-generation", "text": "here"}),
        json.dumps({"is_finished": True, "event_type": "stream-end", "finish_reason": "COMPLETE",
                    "response": {"text": "Cohere"}}),
    ]
    fake = FakeProvider().on("/v1/chat", Reply(lines=lines))
    backend = backend_for(fake, "cohere", "completion", {"api_key": KEY, "model_id": "command-r",
                                                          "url": "https://cohere.test"})
    assert await collect(backend) == deltas("Co", "here")
    [call] = fake.received
    assert call.json == {"message": "hi", "model": "command-r", "stream": True}
    assert call.headers["authorization"] == f"Bearer {KEY}"


async def test_google_ai_studio_stream():
    def chunk(text):
        return (None, json.dumps({"candidates": [{"content": {"role": "model", "parts": [{"text": text}]}}]}))

    path = "/v1beta/models/gemini-1.5-flash:streamGenerateContent"
    finish = (None, json.dumps({"candidates": [{"finishReason": "STOP", "index": 0}],
                                "usageMetadata": {"promptTokenCount": 1, "totalTokenCount": 3}}))
    usage = (None, json.dumps({"usageMetadata": {"promptTokenCount": 1, "totalTokenCount": 3}}))
    fake = FakeProvider().on(path, Reply(events=[chunk("Gem"), chunk("ini"), finish, usage]))
    backend = backend_for(fake, "googleaistudio", "completion", {"api_key": KEY, "model_id": "gemini-1.5-flash",
                                                                  "url": "https://gemini.test/v1beta"})
    assert await collect(backend) == deltas("Gem", "ini")
    [call] = fake.received
    assert call.query == {"alt": "sse"}
    assert call.headers["x-goog-api-key"] == KEY
    assert "key" not in call.query


async def test_stream_that_fails_before_the_first_byte_is_an_elasticsearch_error():
    fake = FakeProvider().on("/v1/chat/completions", Reply(400, {"error": {"message": "bad model",
                                                                           "type": "invalid_request_error"}}))
    backend = backend_for(fake, "openai", "completion", {"api_key": KEY, "model_id": "nope",
                                                          "url": "https://openai.test/v1"})
    with pytest.raises(ElasticsearchError) as info:
        await collect(backend)
    assert info.value.status == 400
    assert "bad model" in info.value.reason


async def test_embedding_endpoints_do_not_stream():
    fake = FakeProvider()
    backend = backend_for(fake, "openai", "text_embedding", {"api_key": KEY, "model_id": "e"})
    with pytest.raises(ElasticsearchError) as info:
        await collect(backend)
    assert info.value.status == 405
    assert not fake.received


async def test_error_chunk_in_an_openai_stream_is_an_error():
    events = openai_events("partial")[:2] + [(None, json.dumps({"error": {"message": f"server overloaded {KEY}"}}))]
    fake = FakeProvider().on("/v1/chat/completions", Reply(events=events))
    backend = backend_for(fake, "openai", "completion", {"api_key": KEY, "model_id": "gpt-4o",
                                                          "url": "https://openai.test/v1"})
    with pytest.raises(ElasticsearchError) as info:
        await collect(backend)
    assert info.value.status == 502
    assert "server overloaded [redacted]" in info.value.reason


async def test_unreadable_stream_event_is_a_502_that_says_so():
    path = "/v1beta/models/gemini-1.5-flash:streamGenerateContent"
    fake = FakeProvider().on(path, Reply(events=[(None, "{not json")]))
    backend = backend_for(fake, "googleaistudio", "completion", {"api_key": KEY, "model_id": "gemini-1.5-flash",
                                                                  "url": "https://gemini.test/v1beta"})
    with pytest.raises(ElasticsearchError) as info:
        await collect(backend)
    assert info.value.status == 502
    assert "streamed event could not be read" in info.value.reason


async def test_azure_ai_studio_token_endpoint_stream():
    fake = FakeProvider().on("/v1/chat/completions", Reply(events=openai_events("Phi", "!")))
    backend = backend_for(fake, "azureaistudio", "completion", {
        "api_key": KEY, "target": "https://phi.studio.test", "provider": "microsoft_phi", "endpoint_type": "token"})
    assert await collect(backend) == deltas("Phi", "!")
    [call] = fake.received
    assert call.headers["authorization"] == KEY
    assert call.json == {"messages": [{"role": "user", "content": "hi"}], "stream": True}


async def test_azure_ai_studio_realtime_endpoint_does_not_stream():
    fake = FakeProvider()
    backend = backend_for(fake, "azureaistudio", "completion", {
        "api_key": KEY, "target": "https://rt.studio.test/score", "provider": "meta", "endpoint_type": "realtime"})
    with pytest.raises(ElasticsearchError) as info:
        await collect(backend)
    assert info.value.status == 405
    assert not fake.received
