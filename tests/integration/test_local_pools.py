"""Pools and Elasticsearch's deployment_id in local mode: every model already shares the
one process; an endpoint on another's deployment answers with that one's model, and the
deployment it uses cannot be deleted from under it, as in Elasticsearch."""

from __future__ import annotations

import pytest
import yaml

from local_mode import LocalMode
from tiny_bert import build_tiny_bert


def manifest(name: str, task: str, **settings) -> dict:
    deployment = {"pool": "small"} if "model_id" in settings else {}
    spec = {"taskType": task, "service": "elasticsearch", "serviceSettings": settings}
    if deployment:
        spec["deployment"] = deployment
    return {"apiVersion": "kubeinfer.io/v1alpha1", "kind": "InferenceEndpoint", "metadata": {"name": name},
            "spec": spec}


@pytest.fixture(scope="module")
def local(tmp_path_factory):
    root = tmp_path_factory.mktemp("pool")
    dense = build_tiny_bert(root / "dense", "base", sentence_transformers={})
    rerank = build_tiny_bert(root / "rerank", "rerank", seed=3)
    (root / "pool.yaml").write_text(yaml.safe_dump_all([
        manifest("pool-dense", "text_embedding", model_id=str(dense), num_allocations=1, num_threads=1),
        manifest("pool-rerank", "rerank", model_id=str(rerank), num_allocations=1, num_threads=1),
        manifest("on-dense", "text_embedding", deployment_id="pool-dense"),
    ]))
    with LocalMode("-f", str(root / "pool.yaml"), state_dir=root / "state") as running:
        yield running


def test_a_pool_of_two_models_answers_both_endpoints(local):
    dense = local.client.post("/_inference/text_embedding/pool-dense", json={"input": ["the cat sat"]})
    assert dense.status_code == 200, dense.text
    ranked = local.client.post("/_inference/rerank/pool-rerank", json={"query": "cat", "input": ["cat", "sky"]})
    assert ranked.status_code == 200, ranked.text
    assert len(ranked.json()["rerank"]) == 2


def test_an_endpoint_on_an_existing_deployment_answers_with_its_model(local):
    ours = local.client.post("/_inference/text_embedding/on-dense", json={"input": ["the cat sat"]})
    theirs = local.client.post("/_inference/text_embedding/pool-dense", json={"input": ["the cat sat"]})
    assert ours.status_code == 200, ours.text
    assert ours.json() == theirs.json()
    shown = local.client.get("/_inference/on-dense").json()["endpoints"][0]
    assert shown["service_settings"]["deployment_id"] == "pool-dense"


def test_a_put_naming_a_missing_deployment_is_refused(local):
    answer = local.client.put("/_inference/sparse_embedding/lost", json={
        "service": "elasticsearch", "service_settings": {"deployment_id": ".missing_deployment"}})
    assert answer.status_code == 404
    assert answer.json()["error"]["reason"] == "Cannot find deployment [.missing_deployment]"
    assert local.client.get("/_inference/lost").status_code == 404


def test_a_deployment_in_use_cannot_be_deleted_while_others_use_it(local):
    refused = local.client.delete("/_inference/pool-dense")
    assert refused.status_code == 409
    assert refused.json()["error"]["reason"] == ("Cannot stop deployment [pool-dense] as it is used by inference "
                                                 "endpoint [on-dense]")
    assert local.client.post("/_inference/text_embedding/on-dense", json={"input": ["x"]}).status_code == 200
