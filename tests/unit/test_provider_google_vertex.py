"""Vertex AI: embeddings (predict) and ranking, with OAuth2 tokens minted from a service
account key at the key's own token URI, cached and refreshed ahead of expiry."""

from __future__ import annotations

import json

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from google.auth import jwt

from fake_providers import FakeProvider, Received, Reply, backend_for, post_chat, post_through_server
from model_server.backends.base import InferenceRequest
from kubeinfer.catalog import TaskType
from model_server.api.sse import parse_events

TOKEN_URI = "https://oauth.test/token"
EMBED_PATH = "/v1/projects/proj/locations/us-central1/publishers/google/models/text-embedding-004:predict"
RANK_PATH = "/v1/projects/proj/locations/global/rankingConfigs/default_ranking_config:rank"


@pytest.fixture(scope="module")
def key_pair():
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    public = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()
    account = {
        "type": "service_account", "project_id": "proj", "private_key_id": "kid1", "private_key": pem,
        "client_email": "svc@proj.iam.gserviceaccount.com", "client_id": "1", "token_uri": TOKEN_URI,
    }
    return json.dumps(account), public


def token_server(public_pem: str, expires_in: int):
    issued = []

    def handle(received: Received) -> Reply:
        form = received.form
        assert form["grant_type"] == "urn:ietf:params:oauth:grant-type:jwt-bearer"
        # The assertion must be signed by the service account's key, for the token URI.
        claims = jwt.decode(form["assertion"], certs=public_pem, audience=TOKEN_URI)
        assert claims["iss"] == "svc@proj.iam.gserviceaccount.com"
        assert claims["scope"] == "https://www.googleapis.com/auth/cloud-platform"
        issued.append(f"ya29.token-{len(issued) + 1}")
        return Reply(json={"access_token": issued[-1], "expires_in": expires_in, "token_type": "Bearer"})

    return handle, issued


def embed_settings(account):
    return {"service_account_json": account, "model_id": "text-embedding-004", "project_id": "proj",
            "location": "us-central1", "url": "https://us-central1-aiplatform.test"}


async def test_embeddings_use_predict_with_a_minted_token(key_pair):
    account, public = key_pair
    handle, issued = token_server(public, 3600)
    fake = FakeProvider().on("/token", handle).on(EMBED_PATH, Reply(json={"predictions": [
        {"embeddings": {"values": [0.1, 0.2], "statistics": {"token_count": 1, "truncated": False}}},
        {"embeddings": {"values": [0.3, 0.4], "statistics": {"token_count": 1, "truncated": False}}},
    ]}))
    backend = backend_for(fake, "googlevertexai", "text_embedding", embed_settings(account), {"auto_truncate": True})
    response = await post_through_server(backend, {"input": ["a", "b"], "input_type": "ingest"})
    assert response.status_code == 200, response.text
    assert response.json() == {"text_embedding": [{"embedding": [0.1, 0.2]}, {"embedding": [0.3, 0.4]}]}
    [call] = fake.to(EMBED_PATH)
    assert call.host == "us-central1-aiplatform.test"
    assert call.headers["authorization"] == "Bearer ya29.token-1"
    assert call.json == {
        "instances": [{"content": "a", "task_type": "RETRIEVAL_DOCUMENT"}, {"content": "b", "task_type": "RETRIEVAL_DOCUMENT"}],
        "parameters": {"autoTruncate": True},
    }
    assert issued == ["ya29.token-1"]


async def test_token_far_from_expiry_is_reused(key_pair):
    account, public = key_pair
    handle, issued = token_server(public, 3600)
    fake = FakeProvider().on("/token", handle).on(
        EMBED_PATH, Reply(json={"predictions": [{"embeddings": {"values": [1.0]}}]}))
    backend = backend_for(fake, "googlevertexai", "text_embedding", embed_settings(account))
    await backend.start()
    for _ in range(3):
        await backend.infer(InferenceRequest(TaskType.TEXT_EMBEDDING, ["a"], timeout=5))
    await backend.close()
    assert issued == ["ya29.token-1"]
    assert [c.headers["authorization"] for c in fake.to(EMBED_PATH)] == ["Bearer ya29.token-1"] * 3


async def test_token_close_to_expiry_is_refreshed_before_use(key_pair):
    account, public = key_pair
    handle, issued = token_server(public, 120)  # inside the refresh margin
    fake = FakeProvider().on("/token", handle).on(
        EMBED_PATH, Reply(json={"predictions": [{"embeddings": {"values": [1.0]}}]}))
    backend = backend_for(fake, "googlevertexai", "text_embedding", embed_settings(account))
    await backend.start()
    for _ in range(2):
        await backend.infer(InferenceRequest(TaskType.TEXT_EMBEDDING, ["a"], timeout=5))
    await backend.close()
    assert issued == ["ya29.token-1", "ya29.token-2"]
    assert [c.headers["authorization"] for c in fake.to(EMBED_PATH)] == ["Bearer ya29.token-1", "Bearer ya29.token-2"]


async def test_rerank_uses_the_ranking_api(key_pair):
    account, public = key_pair
    handle, _ = token_server(public, 3600)
    fake = FakeProvider().on("/token", handle).on(RANK_PATH, Reply(json={"records": [
        {"id": "1", "score": 0.8, "content": "second"}, {"id": "0", "score": 0.3, "content": "first"},
    ]}))
    settings = {"service_account_json": account, "model_id": "semantic-ranker-512@latest", "project_id": "proj",
                "url": "https://discoveryengine.test"}
    backend = backend_for(fake, "googlevertexai", "rerank", settings, {"top_n": 2})
    response = await post_through_server(backend, {"input": ["first", "second"], "query": "q"})
    assert response.status_code == 200, response.text
    assert response.json() == {"rerank": [{"index": 1, "relevance_score": 0.8, "text": "second"},
                                 {"index": 0, "relevance_score": 0.3, "text": "first"}]}
    [call] = fake.to(RANK_PATH)
    assert call.host == "discoveryengine.test"
    assert call.headers["authorization"] == "Bearer ya29.token-1"
    assert call.json == {"model": "semantic-ranker-512@latest", "query": "q", "topN": 2,
                         "records": [{"id": "0", "content": "first"}, {"id": "1", "content": "second"}]}


async def test_refused_token_exchange_is_an_authentication_error_without_the_key(key_pair):
    account, _ = key_pair
    fake = FakeProvider().on("/token", Reply(400, {"error": "invalid_grant", "error_description": "Invalid JWT"}))
    backend = backend_for(fake, "googlevertexai", "text_embedding", embed_settings(account))
    await backend.start()
    with pytest.raises(Exception) as info:
        await backend.infer(InferenceRequest(TaskType.TEXT_EMBEDDING, ["a"], timeout=5))
    await backend.close()
    assert info.value.status == 400
    assert "invalid_grant" in info.value.reason
    assert "PRIVATE KEY" not in info.value.reason
    assert not fake.to(EMBED_PATH)


GEMINI_PATH = "/v1/projects/proj/locations/us-central1/publishers/google/models/gemini-2.5-flash:generateContent"
GEMINI_ANSWER = {"candidates": [{"content": {"role": "model", "parts": [{"text": "Hello "}, {"text": "there"}]},
                                 "finishReason": "STOP"}],
                 "usageMetadata": {"promptTokenCount": 2, "candidatesTokenCount": 2, "totalTokenCount": 4}}


async def test_completion_calls_gemini_generate_content(key_pair):
    account, public = key_pair
    handle, _ = token_server(public, 3600)
    fake = FakeProvider().on("/token", handle).on(GEMINI_PATH, Reply(json=GEMINI_ANSWER))
    settings = {"service_account_json": account, "model_id": "gemini-2.5-flash", "project_id": "proj",
                "location": "us-central1", "url": "https://us-central1-aiplatform.test"}
    backend = backend_for(fake, "googlevertexai", "completion", settings, {"thinking_config": {"thinking_budget": 64}})
    response = await post_through_server(backend, {"input": ["hi"]})
    assert response.status_code == 200, response.text
    assert response.json() == {"completion": [{"result": "Hello there"}]}
    [call] = fake.to(GEMINI_PATH)
    assert call.headers["authorization"] == "Bearer ya29.token-1"
    assert call.json == {"contents": [{"role": "user", "parts": [{"text": "hi"}]}],
                         "generationConfig": {"thinkingConfig": {"thinkingBudget": 64}}}


async def test_completion_streams_gemini_deltas(key_pair):
    account, public = key_pair
    handle, _ = token_server(public, 3600)
    path = GEMINI_PATH.replace(":generateContent", ":streamGenerateContent")
    chunk = lambda text: (None, json.dumps({"candidates": [{"content": {"role": "model", "parts": [{"text": text}]}}]}))  # noqa: E731
    fake = FakeProvider().on("/token", handle).on(path, Reply(events=[chunk("Hel"), chunk("lo")]))
    settings = {"service_account_json": account, "model_id": "gemini-2.5-flash", "project_id": "proj",
                "location": "us-central1", "url": "https://us-central1-aiplatform.test"}
    backend = backend_for(fake, "googlevertexai", "completion", settings)
    response = await post_through_server(backend, {"input": ["hi"]}, stream=True)
    assert response.status_code == 200, response.text
    assert '"delta":"Hel"' in response.text.replace(" ", "") and '"delta":"lo"' in response.text.replace(" ", "")
    [call] = fake.to(path)
    assert call.query == {"alt": "sse"}


async def test_completion_with_anthropic_on_model_garden_posts_messages_to_its_url(key_pair):
    account, public = key_pair
    handle, _ = token_server(public, 3600)
    path = "/v1/projects/proj/locations/us-east5/publishers/anthropic/models/claude-sonnet-4:rawPredict"
    answer = {"id": "msg_1", "type": "message", "role": "assistant", "content": [{"type": "text", "text": "Hi!"}],
              "stop_reason": "end_turn"}
    fake = FakeProvider().on("/token", handle).on(path, Reply(json=answer))
    settings = {"service_account_json": account, "provider": "anthropic",
                "url": f"https://us-east5-aiplatform.test{path}"}
    backend = backend_for(fake, "googlevertexai", "completion", settings)
    response = await post_through_server(backend, {"input": ["hi"]})
    assert response.status_code == 200, response.text
    assert response.json() == {"completion": [{"result": "Hi!"}]}
    [call] = fake.to(path)
    assert call.json == {"anthropic_version": "vertex-2023-10-16", "messages": [{"role": "user", "content": "hi"}],
                         "max_tokens": 1024}


async def test_embeddings_without_a_location_use_the_global_endpoint(key_pair):
    account, public = key_pair
    handle, _ = token_server(public, 3600)
    path = "/v1/projects/proj/locations/global/publishers/google/models/text-embedding-004:predict"
    fake = FakeProvider().on("/token", handle).on(path, Reply(json={"predictions": [
        {"embeddings": {"values": [0.1, 0.2]}}]}))
    settings = {k: v for k, v in embed_settings(account).items() if k not in ("location", "url")}
    backend = backend_for(fake, "googlevertexai", "text_embedding", settings)
    response = await post_through_server(backend, {"input": ["a"]})
    assert response.status_code == 200, response.text
    [call] = fake.to(path)
    assert call.host == "aiplatform.googleapis.com"


# ---- chat completion ------------------------------------------------------------------------

CHAT = {
    "messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Weather in Boston?"},
        {"role": "assistant", "content": None, "tool_calls": [{"id": "call_K", "type": "function", "function": {
            "name": "get_weather", "arguments": "{\"city\":\"Boston\"}"}}]},
        {"role": "tool", "content": "cold", "tool_call_id": "call_K"},
    ],
    "tools": [{"type": "function", "function": {"name": "get_weather", "description": "Weather of a city",
                                                "parameters": {"type": "object"}}}],
    "tool_choice": "auto",
    "max_completion_tokens": 50,
}


async def test_gemini_chat_completion_streams_function_calls_as_tool_calls(key_pair):
    account, public = key_pair
    handle, _ = token_server(public, 3600)
    path = GEMINI_PATH.replace(":generateContent", ":streamGenerateContent")
    events = [
        (None, json.dumps({"candidates": [{"content": {"role": "model", "parts": [{"text": "Checking"}]},
                                           "index": 0}], "modelVersion": "gemini-2.5-flash", "responseId": "r-1"})),
        (None, json.dumps({"candidates": [{"content": {"role": "model", "parts": [
            {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}}]}, "finishReason": "STOP",
            "index": 0}], "usageMetadata": {"promptTokenCount": 20, "candidatesTokenCount": 5, "totalTokenCount": 25},
            "modelVersion": "gemini-2.5-flash", "responseId": "r-1"})),
    ]
    fake = FakeProvider().on("/token", handle).on(path, Reply(events=events))
    settings = {"service_account_json": account, "model_id": "gemini-2.5-flash", "project_id": "proj",
                "location": "us-central1", "url": "https://us-central1-aiplatform.test"}
    backend = backend_for(fake, "googlevertexai", "chat_completion", settings)
    response = await post_chat(backend, CHAT)
    assert response.status_code == 200, response.text
    data = [d for _, d in parse_events(response.text)]
    assert data[-1] == "[DONE]"
    chunks = [json.loads(d) for d in data[:-1]]
    assert chunks[0] == {"id": "r-1", "choices": [{"delta": {"content": "Checking", "role": "assistant"}, "index": 0}],
                         "model": "gemini-2.5-flash", "object": "chat.completion.chunk"}
    assert chunks[1]["choices"][0]["delta"]["tool_calls"] == [
        {"index": 0, "id": "call_0", "function": {"arguments": "{\"city\":\"Paris\"}", "name": "get_weather"},
         "type": "function"}]
    assert chunks[2]["choices"][0]["finish_reason"] == "tool_calls"
    assert chunks[3]["usage"] == {"completion_tokens": 5, "prompt_tokens": 20, "total_tokens": 25}
    [call] = fake.to(path)
    assert call.query == {"alt": "sse"} and call.headers["authorization"] == "Bearer ya29.token-1"
    assert call.json == {
        "contents": [
            {"role": "user", "parts": [{"text": "Weather in Boston?"}]},
            {"role": "model", "parts": [{"functionCall": {"name": "get_weather", "args": {"city": "Boston"}}}]},
            {"role": "user", "parts": [{"functionResponse": {"name": "get_weather", "response": {"content": "cold"}}}]},
        ],
        "systemInstruction": {"parts": [{"text": "Be brief."}]},
        "generationConfig": {"maxOutputTokens": 50},
        "tools": [{"functionDeclarations": [{"name": "get_weather", "description": "Weather of a city",
                                             "parameters": {"type": "object"}}]}],
        "toolConfig": {"functionCallingConfig": {"mode": "AUTO"}},
    }


async def test_anthropic_on_model_garden_chat_streams_from_the_streaming_url(key_pair):
    account, public = key_pair
    handle, _ = token_server(public, 3600)
    path = "/v1/projects/proj/locations/us-east5/publishers/anthropic/models/claude-sonnet-4:streamRawPredict"
    events = [(name, json.dumps({"type": name, **data})) for name, data in (
        ("message_start", {"message": {"id": "msg_v", "model": "claude-sonnet-4", "usage": {"input_tokens": 9}}}),
        ("content_block_delta", {"index": 0, "delta": {"type": "text_delta", "text": "Hi!"}}),
        ("message_delta", {"delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 2}}),
        ("message_stop", {}),
    )]
    fake = FakeProvider().on("/token", handle).on(path, Reply(events=events))
    settings = {"service_account_json": account, "provider": "anthropic",
                "streaming_url": f"https://us-east5-aiplatform.test{path}"}
    backend = backend_for(fake, "googlevertexai", "chat_completion", settings, {"max_tokens": 128})
    response = await post_chat(backend, {"messages": [{"role": "user", "content": "hi"}]})
    chunks = [json.loads(d) for _, d in parse_events(response.text) if d != "[DONE]"]
    assert [c["choices"][0]["delta"] for c in chunks[:-1]] == [{"content": "", "role": "assistant"},
                                                                {"content": "Hi!"}, {}]
    assert chunks[-1]["usage"] == {"completion_tokens": 2, "prompt_tokens": 9, "total_tokens": 11}
    [call] = fake.to(path)
    assert call.json == {"anthropic_version": "vertex-2023-10-16", "messages": [{"role": "user", "content": "hi"}],
                         "max_tokens": 128, "stream": True}
