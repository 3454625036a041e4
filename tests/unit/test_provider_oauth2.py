"""OAuth 2.0 client credentials (RFC 6749 section 4.4) for the openai and azureopenai
services: the token endpoint is asked with the grant's form, the provider gets the token
as a bearer credential, the token is kept until shortly before it expires, and neither the
client secret nor the token shows in an error or a log line."""

from __future__ import annotations

import logging

import pytest

from fake_providers import FakeProvider, Received, Reply, backend_for, post_chat, post_through_server
from token_endpoint import CLIENT_ID, CLIENT_SECRET, TokenEndpoint, bearer_checked
from kubeinfer.catalog import parse_endpoint
from kubeinfer.errors import ElasticsearchError
from model_server.backends.base import InferenceRequest
from kubeinfer.catalog import TaskType

TOKEN_URL = "https://auth.example.test/oauth2/token"
OPENAI = {"model_id": "text-embedding-3-small", "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET,
          "scopes": ["inference.read", "inference.write"], "token_url": TOKEN_URL,
          "url": "https://api.openai.test/v1/embeddings"}
TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
AZURE = {"resource_name": "my-resource", "deployment_id": "my-deployment", "api_version": "2024-02-01",
         "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, "tenant_id": TENANT,
         "scopes": ["https://cognitiveservices.azure.com/.default"]}
EMBEDDINGS = {"object": "list", "model": "text-embedding-3-small",
              "data": [{"object": "embedding", "index": 0, "embedding": [0.5, 0.25]}],
              "usage": {"prompt_tokens": 1, "total_tokens": 1}}


async def test_openai_embeddings_carry_a_token_got_with_client_credentials():
    tokens = TokenEndpoint()
    fake = FakeProvider().on("/oauth2/token", tokens).on("/v1/embeddings", bearer_checked(tokens, Reply(json=EMBEDDINGS)))
    backend = backend_for(fake, "openai", "text_embedding", OPENAI)
    response = await post_through_server(backend, {"input": ["hello"]})
    assert response.status_code == 200, response.text
    assert response.json() == {"text_embedding": [{"embedding": [0.5, 0.25]}]}
    [exchange] = fake.to("/oauth2/token")
    assert exchange.host == "auth.example.test"
    assert tokens.scope == "inference.read inference.write"
    [call] = fake.to("/v1/embeddings")
    assert call.host == "api.openai.test" and call.headers["authorization"] == f"Bearer {tokens.issued[0]}"


async def test_the_token_is_kept_until_it_nears_expiry_then_exchanged_again():
    tokens = TokenEndpoint(expires_in=3600)
    fake = FakeProvider().on("/oauth2/token", tokens).on("/v1/embeddings", bearer_checked(tokens, Reply(json=EMBEDDINGS)))
    backend = backend_for(fake, "openai", "text_embedding", OPENAI)
    await backend.start()
    for _ in range(3):
        await backend.infer(InferenceRequest(TaskType.TEXT_EMBEDDING, ["a"], timeout=5))
    await backend.close()
    assert len(tokens.issued) == 1 and len(fake.to("/v1/embeddings")) == 3

    # A token that lives less than the refresh margin is exchanged again before each call.
    short = TokenEndpoint(expires_in=60)
    fake = FakeProvider().on("/oauth2/token", short).on("/v1/embeddings", bearer_checked(short, Reply(json=EMBEDDINGS)))
    backend = backend_for(fake, "openai", "text_embedding", OPENAI)
    await backend.start()
    for _ in range(2):
        await backend.infer(InferenceRequest(TaskType.TEXT_EMBEDDING, ["a"], timeout=5))
    await backend.close()
    assert len(short.issued) == 2
    assert [c.headers["authorization"] for c in fake.to("/v1/embeddings")] == [f"Bearer {t}" for t in short.issued]


async def test_azure_openai_gets_an_entra_id_token_for_its_tenant():
    tokens = TokenEndpoint(client_in="body")
    path = "/openai/deployments/my-deployment/embeddings"
    fake = FakeProvider().on(f"/{TENANT}/oauth2/v2.0/token", tokens).on(path, bearer_checked(tokens, Reply(json=EMBEDDINGS)))
    backend = backend_for(fake, "azureopenai", "text_embedding", AZURE, {"headers": {"X-Team": "search"}})
    response = await post_through_server(backend, {"input": ["hello"]})
    assert response.status_code == 200, response.text
    [exchange] = fake.to(f"/{TENANT}/oauth2/v2.0/token")
    assert exchange.host == "login.microsoftonline.com"
    assert tokens.scope == "https://cognitiveservices.azure.com/.default"
    [call] = fake.to(path)
    assert call.host == "my-resource.openai.azure.com" and call.query == {"api-version": "2024-02-01"}
    assert call.headers["authorization"] == f"Bearer {tokens.issued[0]}" and "api-key" not in call.headers
    assert call.headers["x-team"] == "search"


async def test_azure_openai_chat_stream_carries_the_token():
    tokens = TokenEndpoint(client_in="body")
    path = "/openai/deployments/my-deployment/chat/completions"
    chunk = ('{"id":"c1","object":"chat.completion.chunk","created":1,"model":"gpt-4o",'
             '"choices":[{"index":0,"delta":{"role":"assistant","content":"Hi"},"finish_reason":null}]}')
    fake = FakeProvider().on(f"/{TENANT}/oauth2/v2.0/token", tokens).on(
        path, bearer_checked(tokens, Reply(events=[(None, chunk), (None, "[DONE]")])))
    backend = backend_for(fake, "azureopenai", "chat_completion", AZURE)
    response = await post_chat(backend, {"messages": [{"role": "user", "content": "hello"}]})
    assert response.status_code == 200, response.text
    assert '"content":"Hi"' in response.text.replace(" ", "")
    assert fake.to(path)[0].headers["authorization"] == f"Bearer {tokens.issued[0]}"


async def test_refused_client_credentials_are_an_error_without_the_secret(caplog):
    caplog.set_level(logging.DEBUG)
    refusal = Reply(401, {"error": "invalid_client",
                          "error_description": f"AADSTS7000215: Invalid client secret provided: {CLIENT_SECRET}"})
    fake = FakeProvider().on("/oauth2/token", refusal)
    backend = backend_for(fake, "openai", "text_embedding", OPENAI)
    await backend.start()
    with pytest.raises(ElasticsearchError) as caught:
        await backend.infer(InferenceRequest(TaskType.TEXT_EMBEDDING, ["a"], timeout=5))
    await backend.close()
    assert caught.value.status == 401 and "invalid_client" in caught.value.reason
    assert CLIENT_SECRET not in caught.value.reason and CLIENT_SECRET not in caplog.text
    assert not fake.to("/v1/embeddings")


async def test_the_token_never_shows_in_an_error_or_a_log_line(caplog):
    caplog.set_level(logging.DEBUG)
    tokens = TokenEndpoint()

    def echoes_the_token(received: Received) -> Reply:  # a provider that quotes the credential it refused
        return Reply(403, {"error": {"message": f"Token {received.headers['authorization'][7:]} lacks the scope",
                                     "type": "invalid_request_error"}})

    fake = FakeProvider().on("/oauth2/token", tokens).on("/v1/embeddings", echoes_the_token)
    backend = backend_for(fake, "openai", "text_embedding", OPENAI)
    response = await post_through_server(backend, {"input": ["hello"]})
    assert response.status_code == 403, response.text
    assert "lacks the scope" in response.text
    assert tokens.issued and tokens.issued[0] not in response.text and tokens.issued[0] not in caplog.text
    assert CLIENT_SECRET not in caplog.text


def test_client_credentials_are_shown_back_without_the_secret():
    config = parse_endpoint("e", "text_embedding", {"service": "openai", "service_settings": dict(OPENAI)})
    settings = config.es_view()["service_settings"]
    assert "client_secret" not in settings and CLIENT_SECRET not in str(config.es_view())
    assert (settings["client_id"], settings["scopes"], settings["token_url"]) == (
        CLIENT_ID, ["inference.read", "inference.write"], TOKEN_URL)
    assert set(config.plain_secrets()) == {"client_secret"}
