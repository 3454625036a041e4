"""Streaming completion over Server-Sent Events, byte for byte as Elasticsearch writes it.

The backend here yields completion chunks (or fails) on demand; only the HTTP layer's
SSE rendering is under test.
"""

from __future__ import annotations

import json
from typing import AsyncIterator

import httpx

from model_server.api.app import create_app
from model_server.api.sse import error_event, parse_events
from model_server.api.store import SingleEndpointStore
from model_server.backends.base import Backend, InferenceRequest
from model_server.backends.results import CompletionDelta, Completions
from kubeinfer.catalog import parse_endpoint
from kubeinfer.errors import ElasticsearchError, status_exception


class ScriptedCompletion(Backend):
    def __init__(self, config, deltas: list[str], fail_after: int | None = None) -> None:
        super().__init__(config)
        self.deltas = deltas
        self.fail_after = fail_after
        self.closed = False
        self.seen: list[InferenceRequest] = []

    async def infer(self, request: InferenceRequest) -> Completions:
        return Completions(["".join(self.deltas)])

    async def stream(self, request: InferenceRequest) -> AsyncIterator[CompletionDelta]:
        self.seen.append(request)
        try:
            for i, delta in enumerate(self.deltas):
                if self.fail_after is not None and i == self.fail_after:
                    raise status_exception("Received a rate limit status code. Remaining tokens: 0", 429)
                yield CompletionDelta(delta)
        finally:
            self.closed = True


def completion_config():
    return parse_endpoint("chat", "completion", {
        "service": "openai", "service_settings": {"api_key": "sk-test", "model_id": "gpt-4o-mini"}})


def client_for(backend: Backend) -> httpx.AsyncClient:
    app = create_app(SingleEndpointStore(backend.config, backend))
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


async def test_stream_is_one_sse_message_per_chunk_then_done():
    backend = ScriptedCompletion(completion_config(), ["Hel", "lo", " \"world\""])
    async with client_for(backend) as client:
        r = await client.post("/_inference/completion/chat/_stream", json={"input": "Say hello"})
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/event-stream")
    assert r.headers["x-elastic-product"] == "Elasticsearch"
    bom = "\ufeff"
    assert r.text == (
        f'{bom}event: message\ndata: {{"completion":[{{"delta":"Hel"}}]}}\n\n'
        f'{bom}event: message\ndata: {{"completion":[{{"delta":"lo"}}]}}\n\n'
        f'{bom}event: message\ndata: {{"completion":[{{"delta":" \\"world\\""}}]}}\n\n'
        f"{bom}event: message\ndata: [DONE]\n\n"
    )
    events = list(parse_events(r.text))
    assert [e for e, _ in events] == ["message"] * 4
    assert "".join(json.loads(d)["completion"][0]["delta"] for _, d in events[:-1]) == 'Hello "world"'
    assert backend.seen[0].input == ["Say hello"]
    assert backend.closed


async def test_stream_by_id_path_works_too():
    backend = ScriptedCompletion(completion_config(), ["ok"])
    async with client_for(backend) as client:
        r = await client.post("/_inference/chat/_stream", json={"input": "x"})
    assert [d for _, d in parse_events(r.text)] == ['{"completion":[{"delta":"ok"}]}', "[DONE]"]


async def test_error_mid_stream_is_an_sse_error_event_and_no_done():
    backend = ScriptedCompletion(completion_config(), ["a", "b", "c"], fail_after=1)
    async with client_for(backend) as client:
        r = await client.post("/_inference/completion/chat/_stream", json={"input": "x"})
    assert r.status_code == 200  # the status line went out with the first chunk
    events = list(parse_events(r.text))
    assert events[0] == ("message", '{"completion":[{"delta":"a"}]}')
    event, data = events[-1]
    assert event == "error"
    body = json.loads(data)
    assert body["status"] == 429
    assert body["error"]["type"] == "status_exception"
    assert body["error"]["root_cause"][0]["reason"].startswith("Received a rate limit status code")
    assert all(d != "[DONE]" for _, d in events)
    assert backend.closed


async def test_error_before_the_first_chunk_keeps_its_http_status():
    backend = ScriptedCompletion(completion_config(), ["a"], fail_after=0)
    async with client_for(backend) as client:
        r = await client.post("/_inference/completion/chat/_stream", json={"input": "x"})
        missing = await client.post("/_inference/completion/nope/_stream", json={"input": "x"})
    assert r.status_code == 429
    [(event, data)] = list(parse_events(r.text))
    assert event == "error" and json.loads(data)["status"] == 429
    assert missing.status_code == 404
    [(event, data)] = list(parse_events(missing.text))
    assert json.loads(data)["error"]["type"] == "resource_not_found_exception"


async def test_streaming_a_task_without_streaming_is_refused_with_405():
    class EmbeddingOnly(Backend):
        async def infer(self, request):  # pragma: no cover - never reached
            raise AssertionError

    config = parse_endpoint("e5", "text_embedding", {
        "service": "elasticsearch", "service_settings": {"model_id": ".multilingual-e5-small", "num_allocations": 1, "num_threads": 1}})
    async with client_for(EmbeddingOnly(config)) as client:
        r = await client.post("/_inference/text_embedding/e5/_stream", json={"input": "x"})
    assert r.status_code == 405
    [(event, data)] = list(parse_events(r.text))
    assert event == "error"
    assert json.loads(data)["error"]["reason"] == "Streaming is not supported for the [elasticsearch] service"


async def test_non_streamed_completion_is_plain_json():
    backend = ScriptedCompletion(completion_config(), ["Hel", "lo"])
    async with client_for(backend) as client:
        r = await client.post("/_inference/completion/chat", json={"input": "x"})
    assert r.json() == {"completion": [{"result": "Hello"}]}


def test_error_values_render_identically_in_sse_and_json():
    error = ElasticsearchError(400, "status_exception", "bad")
    [(event, data)] = list(parse_events(error_event(error.to_body()).decode()))
    assert event == "error" and json.loads(data) == error.to_body()
