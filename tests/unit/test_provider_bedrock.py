"""Amazon Bedrock: InvokeModel (Titan, Cohere) and Converse, signed with SigV4; the
signature is checked by recomputing it with botocore from what the fake received."""

from __future__ import annotations

import re

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from fake_providers import (
    FakeProvider, Received, Reply, aws_event, aws_event_frame, backend_for, post_through_server, serve_over_tcp,
)
from model_server.api.elasticsearch_json import render, render_delta
from model_server.backends.base import InferenceRequest
from kubeinfer.catalog import TaskType
from kubeinfer.errors import ElasticsearchError

ACCESS, SECRET = "AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
HOST = "bedrock-runtime.us-east-1.amazonaws.com"


def settings(provider: str, model: str) -> dict:
    return {"access_key": ACCESS, "secret_key": SECRET, "region": "us-east-1", "provider": provider, "model": model}


def assert_signed(received: Received, region="us-east-1") -> None:
    auth = received.headers["authorization"]
    match = re.fullmatch(
        r"AWS4-HMAC-SHA256 Credential=(?P<cred>[^,]+), SignedHeaders=(?P<signed>[^,]+), Signature=(?P<sig>[0-9a-f]+)",
        auth,
    )
    assert match, auth
    access, date, cred_region, service, terminator = match["cred"].split("/")
    assert (access, cred_region, service, terminator) == (ACCESS, region, "bedrock", "aws4_request")
    signed = match["signed"].split(";")
    assert {"host", "x-amz-date", "content-type"} <= set(signed)
    request = AWSRequest(
        method=received.method,
        url=f"https://{received.host}{received.raw_path}",
        data=received.body,
        headers={name: received.headers[name] for name in signed},
    )
    request.context["timestamp"] = received.headers["x-amz-date"]
    signer = SigV4Auth(Credentials(ACCESS, SECRET), "bedrock", region)
    expected = signer.signature(signer.string_to_sign(request, signer.canonical_request(request)), request)
    assert match["sig"] == expected


async def test_titan_embeddings_are_invoked_once_per_text_and_signed():
    path = "/model/amazon.titan-embed-text-v2:0/invoke"
    fake = FakeProvider().on(path, lambda r: Reply(json={
        "embedding": [float(len(r.json["inputText"])), 0.5], "inputTextTokenCount": 1}))
    backend = backend_for(fake, "amazonbedrock", "text_embedding",
                          settings("amazontitan", "amazon.titan-embed-text-v2:0"))
    await backend.start()
    answer = render(await backend.infer(InferenceRequest(TaskType.TEXT_EMBEDDING, ["a", "bbb"], timeout=5)))
    await backend.close()
    assert answer == {"text_embedding": [{"embedding": [1.0, 0.5]}, {"embedding": [3.0, 0.5]}]}
    calls = fake.to(path)
    assert sorted(c.json["inputText"] for c in calls) == ["a", "bbb"]
    for call in calls:
        assert call.host == HOST
        assert call.raw_path == "/model/amazon.titan-embed-text-v2%3A0/invoke"
        assert_signed(call)


async def test_a_signed_request_to_a_plain_http_url_keeps_its_escaped_path():
    """Over real TCP to an http:// ``url`` (aiohttp's pool): the path is sent as signed, ``%3A`` and all."""
    path = "/model/amazon.titan-embed-text-v2:0/invoke"
    fake = FakeProvider().on(path, Reply(json={"embedding": [0.25, 0.5], "inputTextTokenCount": 1}))
    with serve_over_tcp(fake) as port:
        backend = backend_for(fake, "amazonbedrock", "text_embedding",
                              {**settings("amazontitan", "amazon.titan-embed-text-v2:0"),
                               "url": f"http://127.0.0.1:{port}"}, transport=None)
        await backend.start()
        answer = render(await backend.infer(InferenceRequest(TaskType.TEXT_EMBEDDING, ["a"], timeout=5)))
        await backend.close()
    assert answer == {"text_embedding": [{"embedding": [0.25, 0.5]}]}
    [call] = fake.to(path)
    assert call.raw_path == "/model/amazon.titan-embed-text-v2%3A0/invoke"
    assert_signed(call)


async def test_cohere_embeddings_on_bedrock_are_one_signed_batch():
    path = "/model/cohere.embed-english-v3/invoke"
    fake = FakeProvider().on(path, Reply(json={"id": "x", "embeddings": [[0.1], [0.2]], "texts": ["a", "b"]}))
    backend = backend_for(fake, "amazonbedrock", "text_embedding", settings("cohere", "cohere.embed-english-v3"))
    response = await post_through_server(backend, {"input": ["a", "b"], "input_type": "search"})
    assert response.status_code == 200, response.text
    assert response.json() == {"text_embedding": [{"embedding": [0.1]}, {"embedding": [0.2]}]}
    [call] = fake.to(path)
    assert call.json == {"texts": ["a", "b"], "input_type": "search_query"}
    assert_signed(call)


async def test_completion_uses_converse_with_inference_config():
    model = "anthropic.claude-3-haiku-20240307-v1:0"
    path = f"/model/{model}/converse"
    fake = FakeProvider().on(path, Reply(json={
        "output": {"message": {"role": "assistant", "content": [{"text": "bedrock says"}]}},
        "stopReason": "end_turn", "usage": {"inputTokens": 1, "outputTokens": 2, "totalTokens": 3}}))
    task = {"max_new_tokens": 50, "temperature": 0.5, "top_p": 0.9}
    backend = backend_for(fake, "amazonbedrock", "completion", settings("anthropic", model), task)
    response = await post_through_server(backend, {"input": "hi"})
    assert response.status_code == 200, response.text
    assert response.json() == {"completion": [{"result": "bedrock says"}]}
    [call] = fake.to(path)
    assert call.json == {"messages": [{"role": "user", "content": [{"text": "hi"}]}],
                         "inferenceConfig": {"maxTokens": 50, "temperature": 0.5, "topP": 0.9}}
    assert_signed(call)


async def test_a_tampered_body_fails_signature_check():
    path = "/model/cohere.embed-english-v3/invoke"
    fake = FakeProvider().on(path, Reply(json={"embeddings": [[0.1]]}))
    backend = backend_for(fake, "amazonbedrock", "text_embedding", settings("cohere", "cohere.embed-english-v3"))
    await backend.infer(InferenceRequest(TaskType.TEXT_EMBEDDING, ["a"], timeout=5))
    await backend.close()
    [call] = fake.to(path)
    call.body = call.body.replace(b'"a"', b'"b"')
    with pytest.raises(AssertionError):
        assert_signed(call)


def test_embeddings_with_a_chat_only_provider_are_refused():
    with pytest.raises(ElasticsearchError) as info:
        backend_for(FakeProvider(), "amazonbedrock", "text_embedding", settings("anthropic", "anthropic.claude"))
    assert info.value.status == 400


STREAM_MODEL = "anthropic.claude-3-haiku-20240307-v1:0"
STREAM_PATH = f"/model/{STREAM_MODEL}/converse-stream"


async def collect(backend):
    await backend.start()
    try:
        request = InferenceRequest(TaskType.COMPLETION, ["hi"], timeout=5)
        return [render_delta(chunk) async for chunk in backend.stream(request)]
    finally:
        await backend.close()


async def test_converse_stream_yields_deltas_from_the_event_stream():
    frames = b"".join([
        aws_event("messageStart", {"role": "assistant"}),
        aws_event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "Bed"}}),
        aws_event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "rock"}}),
        aws_event("contentBlockStop", {"contentBlockIndex": 0}),
        aws_event("messageStop", {"stopReason": "end_turn"}),
    ])
    fake = FakeProvider().on(STREAM_PATH, Reply(raw=frames, content_type="application/vnd.amazon.eventstream"))
    backend = backend_for(fake, "amazonbedrock", "completion", settings("anthropic", STREAM_MODEL))
    assert await collect(backend) == [{"completion": [{"delta": "Bed"}]}, {"completion": [{"delta": "rock"}]}]
    [call] = fake.to(STREAM_PATH)
    assert call.json == {"messages": [{"role": "user", "content": [{"text": "hi"}]}]}
    assert_signed(call)


async def test_exception_in_the_event_stream_is_an_error():
    frames = aws_event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "x"}}) + aws_event_frame(
        {":exception-type": "throttlingException", ":content-type": "application/json", ":message-type": "exception"},
        {"message": "Too many tokens"},
    )
    fake = FakeProvider().on(STREAM_PATH, Reply(raw=frames, content_type="application/vnd.amazon.eventstream"))
    backend = backend_for(fake, "amazonbedrock", "completion", settings("anthropic", STREAM_MODEL))
    with pytest.raises(ElasticsearchError) as info:
        await collect(backend)
    assert info.value.status == 502
    assert "throttlingException" in info.value.reason and "Too many tokens" in info.value.reason


async def test_corrupt_event_stream_is_a_502():
    frame = bytearray(aws_event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "x"}}))
    frame[-1] ^= 0xFF  # break the message checksum
    fake = FakeProvider().on(STREAM_PATH, Reply(raw=bytes(frame), content_type="application/vnd.amazon.eventstream"))
    backend = backend_for(fake, "amazonbedrock", "completion", settings("anthropic", STREAM_MODEL))
    with pytest.raises(ElasticsearchError) as info:
        await collect(backend)
    assert info.value.status == 502
    assert "event stream could not be decoded" in info.value.reason
