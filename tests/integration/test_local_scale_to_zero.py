"""Local mode scales a local model to zero: with adaptive allocations and no minimum, the
model is unloaded after the quiet period and loaded again by the next request, which is
answered (or gets a 408 when its own timeout passes first)."""

from __future__ import annotations

import time

import pytest
from local_mode import LocalMode
from tiny_bert import build_tiny_bert

MANIFEST = """\
apiVersion: kubeinfer.io/v1alpha1
kind: InferenceEndpoint
metadata:
  name: {name}
spec:
  taskType: text_embedding
  service: elasticsearch
  serviceSettings:
    model_id: "{path}"
    num_threads: 1
    adaptive_allocations: {adaptive}
"""


@pytest.fixture(scope="module")
def local(tmp_path_factory):
    root = tmp_path_factory.mktemp("scale-to-zero")
    model = build_tiny_bert(root / "dense", "base", sentence_transformers={})
    (root / "manifests").mkdir()
    (root / "manifests" / "idle.yaml").write_text(MANIFEST.format(
        name="idle", path=model, adaptive="{enabled: true, max_number_of_allocations: 2}"))
    (root / "manifests" / "kept.yaml").write_text(MANIFEST.format(
        name="kept", path=model, adaptive="{enabled: true, min_number_of_allocations: 1}"))
    with LocalMode("-f", str(root / "manifests"), state_dir=root / "state",
                   env={"KUBEINFER_SCALE_TO_ZERO_AFTER": "0.5"}) as running:
        yield running


def wait_for(predicate, timeout=30.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def embed(local, name, **params):
    return local.client.post(f"/_inference/text_embedding/{name}", params=params, json={"input": ["hello world"]})


def cold_starts(local, name):
    for line in local.client.get("/metrics").text.splitlines():
        if line.startswith(f'kubeinfer_cold_start_seconds_count{{inference_id="{name}"}}'):
            return float(line.split()[-1])
    return 0.0


def test_an_idle_min_zero_model_is_unloaded_and_the_next_request_loads_it(local):
    first = embed(local, "idle")
    assert first.status_code == 200, first.text
    wait_for(lambda: "endpoint [idle] idle for 0.5s: model unloaded" in local.text)
    # OpenAI's route wakes it as well, and gets the same vector.
    again = local.client.post("/v1/embeddings", json={"model": "idle", "input": "hello world",
                                                      "encoding_format": "float"})
    assert again.status_code == 200, again.text
    assert again.json()["data"][0]["embedding"] == pytest.approx(first.json()["text_embedding"][0]["embedding"])
    assert "endpoint [idle] loaded its model again in" in local.text
    assert cold_starts(local, "idle") >= 1
    # An endpoint with a minimum of one keeps its model.
    assert "endpoint [kept] idle" not in local.text


def test_a_request_whose_timeout_passes_while_the_model_loads_gets_a_408(local):
    wait_for(lambda: local.text.count("endpoint [idle] idle for 0.5s: model unloaded") >= 1)
    assert embed(local, "idle").status_code == 200
    before = local.text.count("endpoint [idle] idle for 0.5s: model unloaded")
    wait_for(lambda: local.text.count("endpoint [idle] idle for 0.5s: model unloaded") > before)
    late = embed(local, "idle", timeout="1ms")
    assert late.status_code == 408
    assert late.json()["error"]["reason"] == "timeout [1ms] waiting for inference result"
    assert embed(local, "idle").status_code == 200
