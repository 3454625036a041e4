"""End to end on a real cluster: kind, the images, the Helm chart, the examples, an
inference call through an endpoint's Service.

Needs ``docker``, ``kind``, ``kubectl`` and ``helm`` on PATH, and network access for the
base images and the model download; skipped otherwise. ``KUBEINFER_E2E_KEEP=1`` keeps
the cluster for inspection.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TOOLS = ("docker", "kind", "kubectl", "helm")
MISSING = [t for t in TOOLS if shutil.which(t) is None]

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(bool(MISSING), reason=f"end-to-end tests need {', '.join(MISSING)} on PATH"),
]

TAG = "e2e"
IMAGES = {"operator": f"kubeinfer/kubeinfer:{TAG}", "server": f"kubeinfer/kubeinfer-server:{TAG}"}
NAMESPACE = "kubeinfer-e2e"
# A small sentence-transformers model, served on CPU by the model server.
ENDPOINT = f"""\
apiVersion: kubeinfer.io/v1alpha1
kind: InferenceEndpoint
metadata:
  name: minilm
  namespace: {NAMESPACE}
spec:
  taskType: text_embedding
  service: elasticsearch
  serviceSettings:
    model_id: sentence-transformers/all-MiniLM-L6-v2
    num_allocations: 1
    num_threads: 1
"""


def sh(*args: str, timeout: float = 900, check: bool = True, input: str | None = None) -> str:
    result = subprocess.run(args, capture_output=True, text=True, timeout=timeout, input=input, cwd=ROOT)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result.stdout


@pytest.fixture(scope="module")
def cluster():
    name = f"kubeinfer-{uuid.uuid4().hex[:6]}"
    sh("kind", "create", "cluster", "--name", name, "--wait", "120s")
    try:
        for target, image in IMAGES.items():
            sh("docker", "build", "--target", target, "-t", image, ".", timeout=3600)
            sh("kind", "load", "docker-image", image, "--name", name)
        sh("helm", "install", "kubeinfer", "charts/kubeinfer", "--namespace", "kubeinfer-system",
           "--create-namespace", "--wait", "--timeout", "5m",
           "--set", "image.repository=kubeinfer/kubeinfer", "--set", f"image.tag={TAG}",
           "--set", "endpoints.serverCpuImage.repository=kubeinfer/kubeinfer-server",
           "--set", f"endpoints.serverCpuImage.tag={TAG}",
           "--set", "endpoints.gpu.perEndpoint=0", "--set", "endpoints.imagePullPolicy=Never")
        sh("kubectl", "create", "namespace", NAMESPACE)
        yield name
    finally:
        if not os.environ.get("KUBEINFER_E2E_KEEP"):
            sh("kind", "delete", "cluster", "--name", name, check=False)


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(5)
    raise AssertionError(f"timed out waiting for {what}")


def endpoint_status(name: str) -> dict:
    out = sh("kubectl", "get", "inferenceendpoint", name, "-n", NAMESPACE, "-o", "json", check=False)
    return (json.loads(out) if out else {}).get("status") or {}


def test_endpoint_becomes_ready_and_answers(cluster):
    sh("kubectl", "apply", "-f", "-", input=ENDPOINT)
    ready = lambda: next((c for c in endpoint_status("minilm").get("conditions", [])  # noqa: E731
                          if c["type"] == "Ready" and c["status"] == "True"), None)
    wait_for(ready, 900, "the endpoint to be Ready")
    status = endpoint_status("minilm")
    assert status["url"].endswith("/_inference/text_embedding/minilm")
    body = json.dumps({"input": ["hello world"]})
    out = sh("kubectl", "run", "curl", "-n", NAMESPACE, "--rm", "-i", "--restart=Never", "--image=curlimages/curl",
             "--", "curl", "-s", "-XPOST", "-H", "Content-Type: application/json", "-d", body, status["url"])
    answer = json.loads(out[out.index("{"):out.rindex("}") + 1])
    assert len(answer["text_embedding"][0]["embedding"]) == 384


def test_deleting_the_endpoint_removes_its_workload(cluster):
    sh("kubectl", "delete", "inferenceendpoint", "minilm", "-n", NAMESPACE, "--wait=true")
    wait_for(lambda: "minilm" not in sh("kubectl", "get", "deployments", "-n", NAMESPACE, "-o", "name"),
             120, "the Deployment to be garbage-collected")
