"""The official ``elasticsearch`` Python client's ``inference`` namespace against local
mode: what works against Elasticsearch works against kubeinfer unchanged."""

from __future__ import annotations

import pytest
from elasticsearch import BadRequestError, Elasticsearch, NotFoundError
from local_mode import LocalMode, ServedFake, openai_fake


@pytest.fixture(scope="module")
def provider():
    with ServedFake(openai_fake()) as served:
        yield served


@pytest.fixture(scope="module")
def es(tmp_path_factory, provider):
    with LocalMode(state_dir=tmp_path_factory.mktemp("es-client") / "state") as local:
        client = Elasticsearch(local.url, request_timeout=60)
        yield client
        client.close()


def test_put_get_inference_update_and_delete_with_the_official_client(es, provider):
    created = es.inference.put(
        task_type="text_embedding",
        inference_id="client-embeddings",
        inference_config={"service": "openai", "service_settings": {
            "api_key": "sk-client", "model_id": "text-embedding-3-small", "url": f"{provider.url}/v1"}},
    )
    assert created["inference_id"] == "client-embeddings"
    assert "api_key" not in created["service_settings"]

    endpoints = es.inference.get(task_type="text_embedding", inference_id="client-embeddings")["endpoints"]
    assert [e["inference_id"] for e in endpoints] == ["client-embeddings"]
    assert "client-embeddings" in [e["inference_id"] for e in es.inference.get()["endpoints"]]

    answer = es.inference.inference(task_type="text_embedding", inference_id="client-embeddings",
                                    input=["hello", "kubeinfer"])
    assert answer.body == {"text_embedding": [{"embedding": [5.0, 0.5, -0.25]}, {"embedding": [9.0, 0.5, -0.25]}]}
    assert provider.fake.to("/v1/embeddings")[-1].json["input"] == ["hello", "kubeinfer"]

    updated = es.inference.update(inference_id="client-embeddings", task_type="text_embedding",
                                  inference_config={"task_settings": {"user": "app-1"}})
    assert updated["task_settings"] == {"user": "app-1"}

    deleted = es.inference.delete(inference_id="client-embeddings")
    assert deleted.body == {"acknowledged": True, "pipelines": [], "indexes": []}
    with pytest.raises(NotFoundError) as missing:
        es.inference.get(inference_id="client-embeddings")
    assert missing.value.body["error"]["reason"] == "Inference endpoint not found [client-embeddings]"


def test_client_sees_elasticsearch_errors(es, provider):
    with pytest.raises(BadRequestError) as failure:
        es.inference.put(task_type="rerank", inference_id="client-bad",
                         inference_config={"service": "openai", "service_settings": {"api_key": "k", "model_id": "m"}})
    assert failure.value.error == "status_exception"
    assert failure.value.body["error"]["reason"] == "The [openai] service does not support task type [rerank]"


def test_service_specific_put_and_task_methods(es, provider):
    created = es.inference.put_openai(
        task_type="completion", openai_inference_id="client-chat", service="openai",
        service_settings={"api_key": "sk-client", "model_id": "gpt-4o-mini", "url": f"{provider.url}/v1"})
    assert created["service_settings"]["rate_limit"] == {"requests_per_minute": 500}
    assert es.inference.completion(inference_id="client-chat", input="hi").body == {
        "completion": [{"result": "Bonjour!"}]}
    assert provider.fake.to("/v1/chat/completions")[-1].headers["authorization"] == "Bearer sk-client"
