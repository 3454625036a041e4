"""How much of a provider's answer the server reads, and for how long: through HTTP to the
local-mode app, with providers on loopback that answer too much, too long or too many.
Each limit ends in an Elasticsearch error, never in the server holding all it was sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json

import httpx
import pytest
from fake_providers import FakeProvider, Reply, read_body
from local_mode import ServedFake, openai_embeddings

from kubeinfer.config import ServerSettings
from model_server.api.sse import parse_events
from model_server.backends.registry import create_backend
from model_server.gateway.app import create_gateway_app
from model_server.gateway.local_store import LocalEndpointStore

KEY = "sk-limits-0123456789"
LIMITS = {"provider_max_answer_size": 64 * 1024, "provider_max_line_size": 8 * 1024,
          "stream_max_duration": 1.0, "stream_idle_timeout": 0.5}


def chunk(text: str) -> str:
    return json.dumps({"id": "c", "object": "chat.completion.chunk", "model": "m",
                       "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}]})


class Provider(FakeProvider):
    """OpenAI's API, with ``/endless`` and ``/stalled`` streams a queued reply cannot make."""

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(("/endless", "/stalled")):
            return await super().__call__(scope, receive, send)
        body = await read_body(receive)
        if not json.loads(body).get("stream"):  # the start-up check
            return await super().__call__(scope, _replay(body), send)
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/event-stream")]})
        for _ in range(1 if scope["path"].startswith("/stalled") else 10_000):
            await send({"type": "http.response.body", "body": f"data: {chunk('x')}\n\n".encode(), "more_body": True})
            await asyncio.sleep(0.05)
        await asyncio.sleep(3600)


def _replay(body: bytes):
    async def receive():
        return {"type": "http.request", "body": body, "more_body": False}
    return receive


def provider() -> Provider:
    fake = Provider()
    vector = [[0.125] * 8]
    big = openai_embeddings(*vector * 4000)  # about 150 kB of JSON
    fake.on("/big/v1/embeddings", Reply(json=openai_embeddings(*vector)), Reply(json=big))
    fake.on("/gzip/v1/embeddings", Reply(json=openai_embeddings(*vector)),
            Reply(raw=gzip.compress(json.dumps(big).encode()), content_type="application/json",
                  headers={"content-encoding": "gzip"}))
    fake.on("/custom/v1/embeddings", Reply(json=openai_embeddings(*vector)),
            Reply(json=openai_embeddings(*vector * 3)))
    fake.on("/long-line/v1/chat/completions", Reply(json={"id": "c", "object": "chat.completion", "choices": [
        {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "ok"}}]}),
        Reply(events=[(None, chunk("y" * 20_000)), (None, "[DONE]")]))
    for path in ("/endless", "/stalled"):
        fake.on(f"{path}/v1/chat/completions", Reply(json={"id": "c", "object": "chat.completion", "choices": [
            {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "ok"}}]}))
    return fake


@contextlib.asynccontextmanager
async def local_app(via: str):
    """The app calling the provider over loopback (aiohttp's plain-http path) or through httpx's own
    transport (the path of https:// URLs; it answers a stream only once it has ended, so streams are
    tested over loopback)."""
    fake = provider()
    settings = ServerSettings(**LIMITS)
    options = {"transport": fake.transport} if via == "httpx" else {}
    with ServedFake(fake) as served:
        store = LocalEndpointStore(backend_factory=lambda config: create_backend(config, settings=settings, **options))
        app = create_gateway_app(store)
        async with app.router.lifespan_context(app):
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://local",
                                         timeout=30) as client:
                client.provider_url = served.url
                yield client


@pytest.fixture(params=["plain-http", "httpx"])
async def local(request):
    async with local_app(request.param) as client:
        yield client


@pytest.fixture
async def streams():
    async with local_app("plain-http") as client:
        yield client


async def create(local, task: str, inference_id: str, path: str, model: str = "text-embedding-3-small") -> None:
    response = await local.put(f"/_inference/{task}/{inference_id}", json={"service": "openai", "service_settings": {
        "api_key": KEY, "model_id": model, "url": f"{local.provider_url}{path}/v1"}})
    assert response.status_code == 200, response.text


def error_of(response: httpx.Response) -> tuple[int, str]:
    body = response.json()
    assert body["status"] == response.status_code
    return response.status_code, body["error"]["reason"]


@pytest.mark.parametrize("path", ["/big", "/gzip"])
async def test_an_answer_larger_than_the_limit_is_a_502_naming_the_setting(local, path):
    await create(local, "text_embedding", "big", path)
    status, reason = error_of(await local.post("/_inference/text_embedding/big", json={"input": "abc"}))
    assert status == 502 and "KUBEINFER_PROVIDER_MAX_ANSWER_SIZE" in reason and KEY not in reason


async def test_more_results_than_inputs_is_a_502(local):
    response = await local.put("/_inference/text_embedding/many", json={"service": "custom", "service_settings": {
        "secret_parameters": {"api_key": KEY}, "url": f"{local.provider_url}/custom/v1/embeddings",
        "request": "{\"input\": ${input}}",
        "response": {"json_parser": {"text_embeddings": "$.data[*].embedding[*]"}}}})
    assert response.status_code == 200, response.text
    status, reason = error_of(await local.post("/_inference/text_embedding/many", json={"input": "abc"}))
    assert status == 502 and "3 results for 1 inputs" in reason
    answer = await local.post("/v1/embeddings", json={"model": "many", "input": "abc"})
    assert answer.status_code == 502 and "3 results for 1 inputs" in answer.json()["error"]["message"]


def streamed_error(response: httpx.Response) -> str:
    events = list(parse_events(response.text))
    assert events[-1][0] == "error" and ("message", "[DONE]") not in events, response.text
    return json.loads(events[-1][1])["error"]["reason"]


async def test_a_stream_line_longer_than_the_limit_ends_the_stream(streams):
    await create(streams, "completion", "long", "/long-line", "gpt-4o-mini")
    response = await streams.post("/_inference/completion/long/_stream", json={"input": "hi"})
    assert "KUBEINFER_PROVIDER_MAX_LINE_SIZE" in (response.text if response.status_code != 200
                                                  else streamed_error(response))


async def test_an_endless_stream_ends_at_the_total_limit(streams):
    await create(streams, "completion", "endless", "/endless", "gpt-4o-mini")
    started = asyncio.get_running_loop().time()
    response = await streams.post("/_inference/completion/endless/_stream?timeout=3s", json={"input": "hi"})
    assert "KUBEINFER_STREAM_MAX_DURATION" in streamed_error(response)
    assert asyncio.get_running_loop().time() - started < 3


async def test_a_silent_stream_ends_at_the_idle_limit_even_without_a_timeout(streams):
    await create(streams, "completion", "stalled", "/stalled", "gpt-4o-mini")
    response = await streams.post("/_inference/completion/stalled/_stream?timeout=-1", json={"input": "hi"})
    assert "KUBEINFER_STREAM_IDLE_TIMEOUT" in streamed_error(response)
