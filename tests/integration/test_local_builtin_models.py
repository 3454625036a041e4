"""Local mode serving the built-in backend (service ``elasticsearch``) for each of its task
types: tiny random BERT models built by the test, and the real all-MiniLM-L6-v2 of the
``examples/local`` demo, which must work offline from the PyPI package's copy."""

from __future__ import annotations

import math

import pytest
from local_mode import ROOT, LocalMode
from tiny_bert import build_tiny_bert
from tiny_clip import PROJECTION_DIM, build_tiny_clip, data_uri, png

MANIFEST = """\
apiVersion: kubeinfer.io/v1alpha1
kind: InferenceEndpoint
metadata:
  name: {name}
spec:
  taskType: {task}
  service: elasticsearch
  serviceSettings: {{model_id: "{path}", num_allocations: 1, num_threads: 1}}
"""


@pytest.fixture(scope="module")
def local(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    models = {
        "tiny-dense": ("text_embedding", build_tiny_bert(root / "dense", "base", sentence_transformers={})),
        "tiny-sparse": ("sparse_embedding", sparse_tiny_bert(root / "sparse")),
        "tiny-rerank": ("rerank", build_tiny_bert(root / "rerank", "rerank")),
        "tiny-clip": ("embedding", build_tiny_clip(root / "clip")),
    }
    (root / "manifests").mkdir()
    for name, (task, path) in models.items():
        (root / "manifests" / f"{name}.yaml").write_text(MANIFEST.format(name=name, task=task, path=path))
    root_paths = {"rerank_model": str(root / "rerank")}
    with LocalMode("-f", str(ROOT / "examples" / "local"), "-f", str(root / "manifests"),
                   state_dir=root / "state") as running:
        running.paths = root_paths
        yield running


def sparse_tiny_bert(folder):
    """A tiny MLM whose output bias favours a few word pieces, so its SPLADE weights are sparse."""
    import torch
    from transformers import BertForMaskedLM

    build_tiny_bert(folder, "mlm")
    model = BertForMaskedLM.from_pretrained(str(folder))
    with torch.no_grad():
        model.cls.predictions.bias.fill_(-1.0)
        model.cls.predictions.bias[10:20] = 1.0
    model.save_pretrained(str(folder))
    return folder


def cosine(a, b):
    return sum(x * y for x, y in zip(a, b)) / math.sqrt(sum(x * x for x in a) * sum(y * y for y in b))


def test_demo_endpoint_serves_real_embeddings_offline(local):
    texts = ["A quick brown fox jumps over the lazy dog", "A fast fox leaps over a sleepy dog",
             "Quarterly earnings of the bank rose sharply"]
    response = local.client.post("/_inference/text_embedding/all-minilm-l6-v2", json={"input": texts})
    assert response.status_code == 200, response.text
    vectors = [e["embedding"] for e in response.json()["text_embedding"]]
    assert [len(v) for v in vectors] == [384, 384, 384]
    assert cosine(vectors[0], vectors[1]) > cosine(vectors[0], vectors[2]) + 0.3
    view = local.client.get("/_inference/all-minilm-l6-v2").json()["endpoints"][0]
    # The id given, not the path of the installed copy.
    assert view["service_settings"]["model_id"] == "sentence-transformers/all-MiniLM-L6-v2"


def test_text_embedding_on_a_tiny_model(local):
    response = local.client.post("/_inference/text_embedding/tiny-dense", json={"input": ["the cat sat", "dogs run"]})
    assert response.status_code == 200, response.text
    embeddings = response.json()["text_embedding"]
    assert len(embeddings) == 2 and all(len(e["embedding"]) == 32 for e in embeddings)
    assert embeddings[0]["embedding"] != embeddings[1]["embedding"]


def test_sparse_embedding_on_a_tiny_model(local):
    response = local.client.post("/_inference/sparse_embedding/tiny-sparse", json={"input": ["the cat sat on the mat"]})
    assert response.status_code == 200, response.text
    (result,) = response.json()["sparse_embedding"]
    assert result["is_truncated"] is False
    weights = result["embedding"]
    assert 0 < len(weights) <= 10
    assert all(isinstance(t, str) and w > 0 for t, w in weights.items())


def test_rerank_on_a_tiny_model(local):
    documents = ["the cat sat on the mat", "paris is the capital of france", "rain today"]
    response = local.client.post("/_inference/rerank/tiny-rerank", json={
        "query": "capital of france", "input": documents, "return_documents": True})
    assert response.status_code == 200, response.text
    ranked = response.json()["rerank"]
    assert sorted(r["index"] for r in ranked) == [0, 1, 2]
    scores = [r["relevance_score"] for r in ranked]
    assert scores == sorted(scores, reverse=True)
    assert all(r["text"] == documents[r["index"]] for r in ranked)


def test_image_embedding_round_trip_on_a_clip_model(local):
    picture = {"content": {"type": "image", "format": "base64", "value": data_uri(png(24, 24, (250, 200, 0)))}}
    response = local.client.post("/_inference/embedding/tiny-clip", json={"input": [picture, "a yellow square"]})
    assert response.status_code == 200, response.text
    [image, text] = [e["embedding"] for e in response.json()["embeddings"]]
    assert len(image) == len(text) == PROJECTION_DIM
    assert abs(math.sqrt(sum(x * x for x in image)) - 1.0) < 1e-5
    assert image != text
    # The same image answers the same vector, whatever it is batched with.
    again = local.client.post("/_inference/embedding/tiny-clip", json={"input": picture}).json()["embeddings"]
    assert cosine(again[0]["embedding"], image) > 0.99999
    refused = local.client.post("/_inference/embedding/tiny-clip", json={"input": {"content": {
        "type": "video", "value": data_uri(b"...", "video/mp4")}}})
    assert refused.status_code == 400
    assert refused.json()["error"]["reason"] == "The elasticsearch service does not support embedding with video inputs"


def test_a_local_model_endpoint_created_by_put_serves_at_once(local):
    body = {"service": "elasticsearch", "service_settings": {
        "model_id": local.paths["rerank_model"], "num_allocations": 1, "num_threads": 1},
        "task_settings": {"return_documents": False}}
    created = local.client.put("/_inference/rerank/put-rerank", json=body)
    assert created.status_code == 200, created.text
    assert created.json()["task_settings"] == {"return_documents": False}
    answer = local.client.post("/_inference/rerank/put-rerank", json={"query": "cat", "input": ["a cat", "a dog"]})
    ranked = answer.json()["rerank"]
    assert sorted(r["index"] for r in ranked) == [0, 1] and all("text" not in r for r in ranked)


def test_a_model_that_cannot_be_found_is_not_created(local):
    body = {"service": "elasticsearch", "service_settings": {
        "model_id": "/nonexistent/model", "num_allocations": 1, "num_threads": 1}}
    response = local.client.put("/_inference/text_embedding/no-model", json=body)
    assert response.status_code == 404
    assert response.json()["error"]["type"] == "resource_not_found_exception"
    assert local.client.get("/_inference/no-model").status_code == 404


def test_preconfigured_endpoint_is_served_on_first_use_without_a_put(tmp_path):
    import json

    model = build_tiny_bert(tmp_path / "e5", "base", sentence_transformers={})
    env = {"KUBEINFER_MODEL_ALIASES": json.dumps({".multilingual-e5-small": str(model)})}
    with LocalMode(state_dir=tmp_path / "state", env=env) as running:
        listed = running.client.get("/_inference/_all").json()["endpoints"]
        assert [e["inference_id"] for e in listed] == [
            ".elser-2-elasticsearch", ".multilingual-e5-small-elasticsearch", ".rerank-v1-elasticsearch"]
        answer = running.client.post("/_inference/text_embedding/.multilingual-e5-small-elasticsearch",
                                     json={"input": ["hello", "world"]})
        assert answer.status_code == 200, answer.text
        vectors = [item["embedding"] for item in answer.json()["text_embedding"]]
        assert len(vectors) == 2 and len(vectors[0]) == len(vectors[1]) > 0
        refused = running.client.delete("/_inference/.multilingual-e5-small-elasticsearch")
        assert refused.status_code == 400
