"""`kubeinfer serve` as an endpoint pod runs it: a manifest whose API key is a
``secretKeyRef`` resolved from the environment, in front of a fake Cohere served over
real TCP. Checks readiness, a rerank through HTTP, what the provider received, and that
the key appears in no answer and no line of the server's output."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import httpx
import pytest
import yaml

from fake_providers import FakeProvider, Reply, serve_over_tcp

KEY = "co-live-key-5b2f9c1e7a"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def fake_cohere():
    def rerank(received):
        documents = received.json["documents"]
        scores = [0.05, 0.93][: len(documents)]
        return Reply(json={"id": "r", "meta": {}, "results": sorted(
            ({"index": i, "relevance_score": s} for i, s in enumerate(scores)), key=lambda r: -r["relevance_score"])})

    fake = FakeProvider().on("/v1/rerank", rerank)
    with serve_over_tcp(fake) as port:
        yield fake, port


def test_serve_process_proxies_cohere_rerank(tmp_path, fake_cohere):
    fake, fake_port = fake_cohere
    manifest = {
        "apiVersion": "kubeinfer.io/v1alpha1", "kind": "InferenceEndpoint",
        "metadata": {"name": "cohere-rerank"},
        "spec": {"taskType": "rerank", "service": "cohere", "serviceSettings": {
            "api_key": {"secretKeyRef": {"name": "cohere", "key": "api-key"}},
            "model_id": "rerank-english-v3.0", "url": f"http://127.0.0.1:{fake_port}"}},
    }
    path = tmp_path / "endpoint.yaml"
    path.write_text(yaml.safe_dump(manifest))
    port = free_port()
    env = {**os.environ, "KUBEINFER_SECRET_API_KEY": KEY}
    proc = subprocess.Popen(
        [sys.executable, "-P", "-m", "kubeinfer.cli", "serve", "--config", str(path), "--host", "127.0.0.1",
         "--port", str(port), "--secrets-dir", str(tmp_path / "none")],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5) as http:
            deadline = time.time() + 60
            ready = None
            while time.time() < deadline and proc.poll() is None:
                try:
                    ready = http.get("/readyz")
                    if ready.status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                time.sleep(0.2)
            response = http.post("/_inference/rerank/cohere-rerank", json={"query": "q", "input": ["a", "b"]})
    finally:
        proc.terminate()
        output, _ = proc.communicate(timeout=20)
    assert response.status_code == 200, (response.text, output)
    assert response.json() == {"rerank": [{"index": 1, "relevance_score": 0.93}, {"index": 0, "relevance_score": 0.05}]}
    assert ready is not None and ready.status_code == 200, output
    # The start-up check, then the request.
    check, call = fake.to("/v1/rerank")
    assert check.json["query"] == "how big"
    assert call.json == {"query": "q", "documents": ["a", "b"], "model": "rerank-english-v3.0"}
    assert call.headers["authorization"] == f"Bearer {KEY}"
    assert KEY not in response.text
    assert KEY not in output
