"""``kubeinfer serve --pool``: several endpoints in one model-server process, following its
manifest file as a mounted ConfigMap changes, each model ready on its own."""

from __future__ import annotations

import time

import httpx
import yaml

from test_serve_command import free_port, serve


def endpoint(name: str, model: str | None, task: str = "text_embedding", **settings) -> dict:
    service_settings = settings or {"model_id": model, "num_allocations": 1, "num_threads": 1}
    return {"apiVersion": "kubeinfer.io/v1alpha1", "kind": "InferenceEndpoint",
            "metadata": {"name": name, "namespace": "search"},
            "spec": {"taskType": task, "service": "elasticsearch", "serviceSettings": service_settings}}


def write(path, *endpoints) -> None:
    # As the kubelet updates a ConfigMap: a new file swapped in whole.
    staged = path.with_suffix(".new")
    staged.write_text(yaml.safe_dump_all(list(endpoints)))
    staged.replace(path)


def wait_for(predicate, timeout: float = 90.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise AssertionError("timed out")


def model_ready(base: str, model: str) -> int:
    return httpx.get(f"{base}/readyz", params={"model": model}, timeout=2).status_code


def embed(base: str, task: str, inference_id: str) -> httpx.Response:
    return httpx.post(f"{base}/_inference/{task}/{inference_id}", json={"input": ["the cat sat"]}, timeout=30)


def test_a_pool_serves_two_models_and_follows_its_file_without_restarting(tiny_models, tmp_path):
    config = tmp_path / "endpoints.yaml"
    write(config, endpoint("dense", str(tiny_models["embedding"])),
          endpoint("sparse", str(tiny_models["sparse"]), "sparse_embedding"))
    port = free_port()
    process = serve(config, port, args=("--pool",))
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: model_ready(base, "dense") == 200 and model_ready(base, "sparse") == 200)
        assert httpx.get(f"{base}/readyz").status_code == 200
        dense = embed(base, "text_embedding", "dense")
        assert dense.status_code == 200 and len(dense.json()["text_embedding"][0]["embedding"]) == 32
        sparse = embed(base, "sparse_embedding", "sparse")
        assert sparse.status_code == 200 and sparse.json()["sparse_embedding"][0]["embedding"]
        listed = httpx.get(f"{base}/_inference/_all").json()["endpoints"]
        assert [e["inference_id"] for e in listed] == ["dense", "sparse"]

        # One endpoint goes, another comes, and one runs on dense's deployment: same process.
        write(config, endpoint("dense", str(tiny_models["embedding"])),
              endpoint("rerank", str(tiny_models["rerank"]), "rerank"),
              endpoint("dense-too", None, deployment_id="dense"))
        wait_for(lambda: model_ready(base, "rerank") == 200)
        assert model_ready(base, "sparse") == 404
        assert embed(base, "sparse_embedding", "sparse").status_code == 404
        assert model_ready(base, "dense-too") == 200
        again = embed(base, "text_embedding", "dense-too")
        assert again.status_code == 200
        assert again.json() == embed(base, "text_embedding", "dense").json()
        ranked = httpx.post(f"{base}/_inference/rerank/rerank",
                            json={"query": "cat", "input": ["the cat sat", "blue sky"]}, timeout=30)
        assert ranked.status_code == 200
        assert process.poll() is None
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_a_model_that_cannot_load_fails_alone_and_says_why(tiny_models, tmp_path):
    config = tmp_path / "endpoints.yaml"
    write(config, endpoint("good", str(tiny_models["embedding"])), endpoint("broken", str(tmp_path / "missing")),
          endpoint("orphan", None, deployment_id="nowhere"))
    port = free_port()
    process = serve(config, port, args=("--pool",))
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: httpx.get(f"{base}/readyz", timeout=2).status_code == 200)
        assert model_ready(base, "good") == 200
        broken = httpx.get(f"{base}/readyz", params={"model": "broken"}, timeout=2)
        assert broken.status_code == 503 and broken.json()["reason"]
        orphan = httpx.get(f"{base}/readyz", params={"model": "orphan"}, timeout=2)
        assert orphan.json()["reason"] == "Cannot find deployment [nowhere]"
        answer = embed(base, "text_embedding", "orphan")
        assert answer.status_code == 500
        assert "Cannot find deployment [nowhere]" in answer.json()["error"]["reason"]
        assert embed(base, "text_embedding", "good").status_code == 200
    finally:
        process.terminate()
        process.wait(timeout=30)
