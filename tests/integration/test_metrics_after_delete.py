"""``/metrics`` forgets a deleted endpoint: endpoints created, called and deleted over and
over (each with a new id) must not grow the exposition, and the process's memory, without
bound. Through HTTP against ``kubeinfer local``; the fake provider speaks OpenAI's wire
format and records what it received.
"""

from __future__ import annotations

import re

import pytest
from local_mode import LocalMode, ServedFake, openai_fake


@pytest.fixture(scope="module")
def provider():
    with ServedFake(openai_fake()) as served:
        yield served


@pytest.fixture(scope="module")
def local(tmp_path_factory):
    with LocalMode(state_dir=tmp_path_factory.mktemp("metrics-churn")) as running:
        yield running


def labelled_ids(exposition: str) -> set[str]:
    return set(re.findall(r'\{[^}]*inference_id="([^"]*)"', exposition))


def test_deleted_endpoints_leave_no_series_behind(local, provider):
    body = {"service": "openai", "service_settings": {
        "api_key": "sk-churn", "model_id": "text-embedding-3-small", "url": f"{provider.url}/v1"}}
    assert local.client.put("/_inference/text_embedding/kept", json=body).status_code == 200
    assert local.client.post("/_inference/text_embedding/kept", json={"input": "x"}).status_code == 200
    for i in range(5):
        churn = f"churn-{i}"
        assert local.client.put(f"/_inference/text_embedding/{churn}", json=body).status_code == 200
        assert local.client.post(f"/_inference/text_embedding/{churn}", json={"input": "x"}).status_code == 200
        assert local.client.post(f"/_inference/text_embedding/{churn}", json={"input": []}).status_code == 400
        assert local.client.delete(f"/_inference/{churn}").status_code == 200
    ids = labelled_ids(local.client.get("/metrics").text)
    assert not {i for i in ids if i.startswith("churn-")}
    assert "kept" in ids
    assert len(provider.fake.to("/v1/embeddings")) >= 6


def test_an_id_created_again_is_counted_afresh(local, provider):
    body = {"service": "openai", "service_settings": {
        "api_key": "sk-churn", "model_id": "text-embedding-3-small", "url": f"{provider.url}/v1"}}
    for _ in range(2):
        assert local.client.put("/_inference/text_embedding/again", json=body).status_code == 200
        assert local.client.post("/_inference/text_embedding/again", json={"input": "x"}).status_code == 200
        text = local.client.get("/metrics").text
        counted = re.search(r'kubeinfer_inference_requests_total\{inference_id="again",status="200",'
                            r'task_type="text_embedding"\} (\S+)', text)
        assert counted is not None and float(counted.group(1)) == 1.0
        assert local.client.delete("/_inference/again").status_code == 200
