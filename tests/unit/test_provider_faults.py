"""How the proxy behaves when providers misbehave: rate limiting, retries with
Retry-After, 4xx pass-through, timeouts, malformed answers, secrets kept out of errors
and logs, and readiness from the start-up check.

Each test runs twice: against the fake in-process (an injected transport, through
httpx's client) and over TCP at a plain-http URL (the shared client's plain-http path)."""

from __future__ import annotations

import contextlib
import logging

import httpx

import pytest

from fake_providers import FakeProvider, Reply, backend_for, serve_over_tcp
from model_server.api.elasticsearch_json import render
from model_server.backends.base import InferenceRequest
from kubeinfer.catalog import TaskType
from kubeinfer.errors import ElasticsearchError

KEY = "sk-secret-never-shown-42"
PATH = "/v1/embeddings"
OK = Reply(json={"object": "list", "data": [{"object": "embedding", "index": 0, "embedding": [0.5, 0.5]}]})


@pytest.fixture(params=["in_process", "over_tcp"])
def openai(request):
    """Makes an OpenAI embedding backend in front of a fake, reached as the parameter says."""
    with contextlib.ExitStack() as servers:
        def make(fake, rpm=None, **options):
            settings = {"api_key": KEY, "model_id": "text-embedding-3-small", "url": "https://openai.test/v1"}
            if request.param == "over_tcp":
                settings["url"] = f"http://127.0.0.1:{servers.enter_context(serve_over_tcp(fake))}/v1"
                options["transport"] = None
            if rpm:
                settings["rate_limit"] = {"requests_per_minute": rpm}
            return backend_for(fake, "openai", "text_embedding", settings, **options)
        yield make


def embed(timeout=5.0):
    return InferenceRequest(TaskType.TEXT_EMBEDDING, ["x"], timeout=timeout)


async def infer_error(backend, request=None) -> ElasticsearchError:
    with pytest.raises(ElasticsearchError) as info:
        await backend.infer(request or embed())
    return info.value


async def test_rate_limit_refuses_with_429_when_no_slot_fits_the_timeout(openai):
    fake = FakeProvider().on(PATH, OK)
    backend = openai(fake, rpm=1)
    await backend.infer(embed())
    error = await infer_error(backend, embed(timeout=0.5))
    await backend.close()
    assert error.status == 429
    assert error.to_body()["error"]["type"] == "status_exception"
    assert "[1] requests per minute" in error.reason
    assert len(fake.received) == 1


async def test_rate_limit_waits_for_a_slot_within_the_timeout(openai):
    fake = FakeProvider().on(PATH, OK)
    backend = openai(fake, rpm=120)  # two per second, bursts of two
    for _ in range(3):
        await backend.infer(embed(timeout=2.0))
    await backend.close()
    assert len(fake.received) == 3


@pytest.mark.parametrize("status", [429, 503])
async def test_retries_after_the_delay_the_provider_asks_for(status, openai):
    busy = Reply(status, {"error": {"message": "slow down", "type": "requests"}}, headers={"Retry-After": "0.2"})
    fake = FakeProvider().on(PATH, busy, OK)
    backend = openai(fake)
    answer = render(await backend.infer(embed()))
    await backend.close()
    assert answer == {"text_embedding": [{"embedding": [0.5, 0.5]}]}
    assert len(fake.received) == 2


async def test_retry_after_beyond_the_deadline_returns_the_providers_429_at_once(openai):
    busy = Reply(429, {"error": {"message": "Rate limit reached for requests", "type": "requests"}},
                 headers={"Retry-After": "120"})
    fake = FakeProvider().on(PATH, busy)
    backend = openai(fake)
    error = await infer_error(backend, embed(timeout=2.0))
    await backend.close()
    assert error.status == 429
    assert "Rate limit reached for requests" in error.reason
    assert len(fake.received) == 1


async def test_persistent_5xx_is_retried_within_the_timeout_then_reported(openai):
    fake = FakeProvider().on(PATH, Reply(500, {"error": {"message": "internal"}}, headers={"Retry-After": "0"}))
    backend = openai(fake)
    error = await infer_error(backend)
    await backend.close()
    assert error.status == 500
    assert "server error" in error.reason and "internal" in error.reason
    assert 2 <= len(fake.received) <= 6


@pytest.mark.parametrize("status", [400, 401, 404, 422])
async def test_provider_4xx_passes_through_with_its_message_and_is_not_retried(status, openai):
    fake = FakeProvider().on(PATH, Reply(status, {"error": {"message": f"problem {status}", "type": "invalid"}}))
    backend = openai(fake)
    error = await infer_error(backend)
    await backend.close()
    assert error.status == status
    assert f"problem {status}" in error.reason
    assert "inference entity id [ep]" in error.reason
    assert len(fake.received) == 1


async def test_slow_provider_is_a_408(openai):
    fake = FakeProvider().on(PATH, Reply(json=OK.json, delay=2.0))
    backend = openai(fake)
    error = await infer_error(backend, embed(timeout=0.3))
    await backend.close()
    assert error.status == 408
    assert "timed out" in error.reason


@pytest.mark.parametrize(
    ("reply", "says"),
    [
        (Reply(text="<html>gateway</html>"), "not JSON"),
        (Reply(json={"object": "list"}), "missing field [data]"),
        (Reply(json={"data": [{"index": 0, "embedding": "zero"}]}), "not a non-empty list"),
        (Reply(json={"data": [{"index": 0, "embedding": [1, None]}]}), "expected a number"),
        (Reply(json={"data": []}), "expected 1 embeddings, got 0"),
    ],
)
async def test_malformed_answer_is_a_502_that_says_why(reply, says, openai):
    fake = FakeProvider().on(PATH, reply)
    backend = openai(fake)
    error = await infer_error(backend)
    await backend.close()
    assert error.status == 502
    assert says in error.reason
    assert "[openai]" in error.reason


async def test_secret_echoed_by_the_provider_never_reaches_errors_or_logs(caplog, openai):
    caplog.set_level(logging.DEBUG)
    echo = Reply(401, {"error": {"message": f"Incorrect API key provided: {KEY}.", "type": "invalid_request_error"}})
    fake = FakeProvider().on(PATH, echo)
    backend = openai(fake, validate_at_start=True)
    await backend.start()  # the start-up check fails and logs why
    error = await infer_error(backend)
    await backend.close()
    assert error.status == 401
    assert "Incorrect API key provided: [redacted]" in error.reason
    assert KEY not in str(error.to_body())
    assert KEY not in (backend.not_ready_reason or "")
    assert caplog.records, "the failed check should be logged"
    assert all(KEY not in record.getMessage() for record in caplog.records)


@pytest.mark.parametrize("transport", [httpx.AsyncHTTPTransport, None], ids=["httpx", "shared"])
async def test_unreachable_provider_is_a_502_that_says_the_connection_was_refused(transport):
    backend = backend_for(FakeProvider(), "openai", "text_embedding",
                          {"api_key": KEY, "model_id": "m", "url": "http://127.0.0.1:9/v1"},
                          transport=transport and transport())
    error = await infer_error(backend, embed(timeout=2.0))
    await backend.close()
    assert error.status == 502
    assert "Failed to send request to the [openai] service: ConnectionRefused" in error.reason
    assert KEY not in error.reason


async def test_not_ready_until_the_start_up_check_succeeds_and_dimensions_are_learned(openai):
    fake = FakeProvider().on(PATH, Reply(401, {"error": {"message": "invalid key"}}), OK)
    backend = openai(fake, validate_at_start=True)
    await backend.start()
    assert backend.ready is False
    assert "invalid key" in backend.not_ready_reason
    assert backend.describe() == {"similarity": "dot_product"}
    assert await backend.check() is True  # what the background re-check does
    await backend.close()
    assert backend.ready is True and backend.not_ready_reason is None
    assert backend.describe() == {"dimensions": 2, "similarity": "dot_product"}
    assert [r.json["input"] for r in fake.received] == [["how big"], ["how big"]]


async def test_checks_are_skipped_when_asked(openai):
    fake = FakeProvider()
    backend = openai(fake, validate_at_start=False)
    await backend.start()
    await backend.close()
    assert backend.ready and not fake.received
