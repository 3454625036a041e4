"""``kubeinfer serve`` as a pod runs it: a real process, a manifest file, a real port."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
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
                 "serviceSettings": {"model_id": model_id, "num_allocations": 1, "num_threads": 1}},
    }))
    return path


def serve(config: Path, port: int, cwd: Path | None = None, env: dict[str, str] | None = None,
          args: tuple[str, ...] = ()) -> subprocess.Popen:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONSAFEPATH": "1", **(env or {})}
    return subprocess.Popen(
        [sys.executable, "-P", "-m", "kubeinfer.cli", "serve", "--config", str(config),
         "--host", "127.0.0.1", "--port", str(port), *args],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=cwd,
    )


def wait_until_ready(process: subprocess.Popen, base: str) -> None:
    deadline = time.monotonic() + 90
    ready = None
    while time.monotonic() < deadline:
        assert process.poll() is None, process.stdout.read()
        try:
            ready = httpx.get(f"{base}/readyz", timeout=2)
            if ready.status_code == 200:
                return
            assert ready.status_code == 503
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"not ready: {ready}")


def test_serve_answers_after_its_model_is_ready(tiny_models, tmp_path):
    # A path relative to the working directory, as a mounted volume often is.
    config = manifest(tmp_path / "endpoint.yaml", os.path.relpath(tiny_models["embedding"], tmp_path))
    port = free_port()
    process = serve(config, port, cwd=tmp_path)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_ready(process, base)
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


def test_serve_answers_image_embeddings_from_a_clip_model_folder(tiny_clip, tmp_path):
    from tiny_clip import PROJECTION_DIM, data_uri, png

    config = manifest(tmp_path / "endpoint.yaml", str(tiny_clip), task="embedding")
    port = free_port()
    process = serve(config, port)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_ready(process, base)
        picture = {"content": {"type": "image", "format": "base64", "value": data_uri(png(8, 8, (0, 0, 255)))}}
        r = httpx.post(f"{base}/_inference/embedding/tiny-embed", json={"input": [picture, "blue"]}, timeout=30)
        assert r.status_code == 200, r.text
        assert [len(e["embedding"]) for e in r.json()["embeddings"]] == [PROJECTION_DIM, PROJECTION_DIM]
        got = httpx.get(f"{base}/_inference/tiny-embed").json()["endpoints"][0]
        assert got["task_type"] == "embedding"
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_serve_loads_an_aliased_builtin_model_from_the_hugging_face_cache(tiny_models, tmp_path):
    # What the operator sets up: aliases in the environment, the model downloaded into
    # HF_HOME by an init container, --cache-dir on the same volume, no network.
    hub = tmp_path / "models" / "huggingface" / "hub" / "models--kubeinfer-tests--tiny-e5"
    snapshot = hub / "snapshots" / "0123456789abcdef0123456789abcdef01234567"
    shutil.copytree(tiny_models["embedding"], snapshot)
    (hub / "refs").mkdir()
    (hub / "refs" / "main").write_text(snapshot.name)
    config = manifest(tmp_path / "endpoint.yaml", ".multilingual-e5-small")
    port = free_port()
    process = serve(config, port, env={
        "HF_HOME": str(tmp_path / "models" / "huggingface"),
        "KUBEINFER_MODEL_ALIASES": json.dumps({".multilingual-e5-small": "kubeinfer-tests/tiny-e5"}),
    }, args=("--cache-dir", str(tmp_path / "models")))
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_ready(process, base)
        r = httpx.post(f"{base}/_inference/tiny-embed", json={"input": "rain", "input_type": "search"})
        assert r.status_code == 200
        assert len(r.json()["text_embedding"][0]["embedding"]) == 32
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
        "spec": {"taskType": "completion", "service": "elasticsearch", "serviceSettings": {"model_id": "m", "num_allocations": 1, "num_threads": 1}},
    }))
    process = serve(bad, free_port())
    output, _ = process.communicate(timeout=60)
    assert process.returncode == 2
    assert "The [elasticsearch] service does not support task type [completion]" in output


@pytest.mark.parametrize("pool", [(), ("--pool",)], ids=["one endpoint", "pool"])
def test_serve_names_a_file_it_cannot_read_or_parse(tmp_path, pool):
    missing = serve(tmp_path / "absent.yaml", free_port(), args=pool)
    output, _ = missing.communicate(timeout=60)
    assert missing.returncode == 2
    assert f"kubeinfer serve: cannot read [{tmp_path / 'absent.yaml'}]: No such file or directory" in output

    broken = tmp_path / "broken.yaml"
    broken.write_text("spec: [\n")
    garbled = serve(broken, free_port(), args=pool)
    output, _ = garbled.communicate(timeout=60)
    assert garbled.returncode == 2
    assert f"kubeinfer serve: [{broken}] is not valid YAML" in output
