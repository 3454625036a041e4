"""Elasticsearch 9's new services in local mode, as a user meets them: created with the
bodies of Elasticsearch's documentation (``url`` pointed at a fake provider on a real
port), answered in Elasticsearch's JSON, secrets never shown back."""

from __future__ import annotations

import pytest
from local_mode import LocalMode, ServedFake, openai_fake

SECRET = "sk-custom-secret-0123456789"


@pytest.fixture(scope="module")
def provider():
    with ServedFake(openai_fake()) as served:
        yield served


@pytest.fixture(scope="module")
def local(tmp_path_factory):
    root = tmp_path_factory.mktemp("local-services")
    with LocalMode(state_dir=root / "state") as running:
        yield running


def test_custom_service_reaches_any_http_model_and_hides_its_secret_parameters(local, provider):
    body = {
        "service": "custom",
        "service_settings": {
            "secret_parameters": {"api_key": SECRET},
            "url": f"{provider.url}/v1/embeddings",
            "headers": {"Authorization": "Bearer ${api_key}", "Content-Type": "application/json;charset=utf-8"},
            "request": "{\"input\": ${input}, \"model\": \"text-embedding-3-small\"}",
            "response": {"json_parser": {"text_embeddings": "$.data[*].embedding[*]"}},
        },
    }
    created = local.client.put("/_inference/text_embedding/custom-embeddings", json=body)
    assert created.status_code == 200, created.text
    assert SECRET not in created.text and "secret_parameters" not in created.json()["service_settings"]
    assert created.json()["service_settings"]["rate_limit"] == {"requests_per_minute": 10000}
    answer = local.client.post("/_inference/text_embedding/custom-embeddings", json={"input": ["abc", "de"]})
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"text_embedding": [{"embedding": [3.0, 0.5, -0.25]}, {"embedding": [2.0, 0.5, -0.25]}]}
    received = provider.fake.to("/v1/embeddings")[-1]
    assert received.headers["authorization"] == f"Bearer {SECRET}"
    assert received.json == {"input": ["abc", "de"], "model": "text-embedding-3-small"}
    listed = local.client.get("/_inference/custom-embeddings")
    assert SECRET not in listed.text


def test_deepseek_completion_from_its_documented_body(local, provider):
    body = {"service": "deepseek", "service_settings": {
        "api_key": "DeepSeek-Api-key", "model_id": "deepseek-chat", "url": f"{provider.url}/v1/chat/completions"}}
    created = local.client.put("/_inference/completion/deepseek-completion", json=body)
    assert created.status_code == 200, created.text
    answer = local.client.post("/_inference/completion/deepseek-completion", json={"input": "Say hello"})
    assert answer.json() == {"completion": [{"result": "Bonjour!"}]}
    received = provider.fake.to("/v1/chat/completions")[-1]
    assert received.json["model"] == "deepseek-chat"
    assert received.json["messages"] == [{"role": "user", "content": "Say hello"}]


def test_new_service_without_a_required_setting_is_refused_as_elasticsearch_does(local):
    response = local.client.put("/_inference/rerank/ctx", json={
        "service": "contextualai", "service_settings": {"api_key": "k"}})
    assert response.status_code == 400
    assert response.json()["error"]["reason"] == (
        "Validation Failed: 1: [service_settings] does not contain the required setting [model_id];")
    unsupported = local.client.put("/_inference/rerank/groq-rerank", json={
        "service": "groq", "service_settings": {"api_key": "k", "model_id": "m"}})
    assert unsupported.status_code == 400
    assert unsupported.json()["error"]["reason"] == "The [groq] service does not support task type [rerank]"


def test_services_api_lists_the_26_services_with_their_task_types_as_documented(local):
    from catalog_cases import PAIRS

    response = local.client.get("/_inference/_services")
    assert response.status_code == 200, response.text
    services = response.json()
    assert [s["service"] for s in services] == sorted({service for service, _ in PAIRS})
    assert len(services) == 26
    assert sorted((s["service"], t) for s in services for t in s["task_types"]) == PAIRS
    openai = next(s for s in services if s["service"] == "openai")
    assert openai["name"] == "OpenAI"
    key = openai["configurations"]["api_key"]
    # An API key, or OAuth 2.0 client credentials in its stead.
    assert (key["label"], key["required"], key["sensitive"], key["updatable"], key["type"]) == (
        "API Key", False, True, True, "str")
    client_secret = openai["configurations"]["client_secret"]
    assert (client_secret["required"], client_secret["sensitive"], client_secret["type"]) == (False, True, "str")
    assert openai["configurations"]["scopes"]["type"] == "list"
    assert not openai["configurations"]["token_url"]["sensitive"]
    azure = next(s for s in services if s["service"] == "azureopenai")
    assert {"client_id", "client_secret", "scopes", "tenant_id"} <= set(azure["configurations"])
    assert "token_url" not in azure["configurations"]
    assert openai["configurations"]["dimensions"]["supported_task_types"] == ["embedding", "text_embedding"]
    limit = openai["configurations"]["rate_limit.requests_per_minute"]
    assert (limit["type"], limit["required"]) == ("int", False)
    for service in services:
        for name, field in service["configurations"].items():
            assert set(field) <= {"default_value", "description", "label", "required", "sensitive", "updatable",
                                  "type", "supported_task_types"}, name
            assert field["type"] in ("str", "int", "bool", "list", "map")
            assert set(field["supported_task_types"]) <= set(service["task_types"])


def test_services_api_for_a_task_type_lists_only_the_services_that_perform_it(local):
    from catalog_cases import PAIRS

    response = local.client.get("/_inference/_services/RERANK")
    assert response.status_code == 200, response.text
    assert [s["service"] for s in response.json()] == sorted(s for s, t in PAIRS if t == "rerank")
    unknown = local.client.get("/_inference/_services/translation")
    assert unknown.status_code == 400
    assert unknown.json()["error"]["reason"] == "Unknown task_type [translation]"
