"""``kubeinfer serve`` as a pod runs it: a real process, a manifest file, a real port."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import yaml


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def manifest(path: Path, model_id: str, task: str = "text_embedding") -> Path:
    path.write_text(yaml.safe_dump({
        "apiVersion": "kubeinfer.io/v1alpha1", "kind": "InferenceEndpoint",
        "metadata": {"name": "tiny-embed", "namespace": "search"},
        "spec": {"taskType": task, "service": "elasticsearch",
                 "serviceSettings": {"model_id": model_id, "num_threads": 1}},
    }))
    return path


def serve(config: Path, port: int, cwd: Path | None = None) -> subprocess.Popen:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONSAFEPATH": "1"}
    return subprocess.Popen(
        [sys.executable, "-P", "-m", "model_server.cli", "serve", "--config", str(config),
         "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=cwd,
    )


def test_serve_answers_after_its_model_is_ready(tiny_models, tmp_path):
    # A path relative to the working directory, as a mounted volume often is.
    config = manifest(tmp_path / "endpoint.yaml", os.path.relpath(tiny_models["embedding"], tmp_path))
    port = free_port()
    process = serve(config, port, cwd=tmp_path)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        ready = None
        while time.monotonic() < deadline:
            assert process.poll() is None, process.stdout.read()
            try:
                ready = httpx.get(f"{base}/readyz", timeout=2)
                if ready.status_code == 200:
                    break
                assert ready.status_code == 503
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        assert ready is not None and ready.status_code == 200
        assert httpx.get(f"{base}/healthz").status_code == 200
        r = httpx.post(f"{base}/_inference/text_embedding/tiny-embed", json={"input": ["the cat sat"]})
        assert r.status_code == 200
        assert r.headers["x-elastic-product"] == "Elasticsearch"
        assert len(r.json()["text_embedding"][0]["embedding"]) == 32
        got = httpx.get(f"{base}/_inference/tiny-embed").json()
        assert got["endpoints"][0]["inference_id"] == "tiny-embed"
        assert "kubeinfer_batch_size_count" in httpx.get(f"{base}/metrics").text
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_serve_exits_non_zero_when_the_model_cannot_load(tmp_path):
    config = manifest(tmp_path / "endpoint.yaml", str(tmp_path / "no-model-here"))
    process = serve(config, free_port())
    output, _ = process.communicate(timeout=120)
    assert process.returncode == 1
    assert "Could not find trained model" in output


def test_serve_rejects_an_invalid_manifest_before_starting(tmp_path):
    bad = tmp_path / "endpoint.yaml"
    bad.write_text(yaml.safe_dump({
        "apiVersion": "kubeinfer.io/v1alpha1", "kind": "InferenceEndpoint", "metadata": {"name": "x"},
        "spec": {"taskType": "completion", "service": "elasticsearch", "serviceSettings": {"model_id": "m"}},
    }))
    process = serve(bad, free_port())
    output, _ = process.communicate(timeout=60)
    assert process.returncode == 2
    assert "The [elasticsearch] service does not support task type [completion]" in output
