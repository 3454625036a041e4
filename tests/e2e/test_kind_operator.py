"""The operator's behaviour on a real cluster (kind): what the emulator stands in for in
tests/integration, checked once against a real API server, controllers and kubelet.

Builds the image, installs the chart, then drives a provider endpoint (proxy pods, no
model download): a missing Secret and its recovery, a spec change rolled out, a deleted
Deployment put back, deletion cascading. Needs ``docker``, ``kind``, ``kubectl`` and
``helm`` on PATH and network access for the base images; skipped otherwise.
``KUBEINFER_E2E_KEEP=1`` keeps the cluster for inspection.
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
NS = "operator-e2e"
ENDPOINT = f"""\
apiVersion: kubeinfer.io/v1alpha1
kind: InferenceEndpoint
metadata:
  name: chat
  namespace: {NS}
spec:
  taskType: completion
  service: openai
  serviceSettings:
    model_id: gpt-4o-mini
    url: http://fake-openai.invalid
    api_key:
      secretKeyRef: {{name: openai, key: api-key}}
"""
CONTEXT: dict[str, str] = {}


def sh(*args: str, timeout: float = 900, check: bool = True, input: str | None = None) -> str:
    result = subprocess.run(args, capture_output=True, text=True, timeout=timeout, input=input, cwd=ROOT)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result.stdout


def kubectl(*args: str, **kw) -> str:
    return sh("kubectl", "--context", CONTEXT["name"], *args, **kw)


@pytest.fixture(scope="module")
def cluster():
    name = f"kubeinfer-op-{uuid.uuid4().hex[:6]}"
    CONTEXT["name"] = f"kind-{name}"
    sh("kind", "create", "cluster", "--name", name, "--wait", "120s")
    try:
        sh("docker", "build", "--target", "operator", "-t", f"kubeinfer/kubeinfer:{TAG}", ".", timeout=3600)
        sh("kind", "load", "docker-image", f"kubeinfer/kubeinfer:{TAG}", "--name", name)
        sh("helm", "--kube-context", CONTEXT["name"], "install", "kubeinfer", "charts/kubeinfer",
           "--namespace", "kubeinfer-system", "--create-namespace", "--wait", "--timeout", "5m",
           "--set", "image.repository=kubeinfer/kubeinfer", "--set", f"image.tag={TAG}",
           "--set", "image.pullPolicy=Never", "--set", "endpoints.imagePullPolicy=Never")
        kubectl("create", "namespace", NS)
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
        time.sleep(3)
    raise AssertionError(f"timed out waiting for {what}")


def status() -> dict:
    out = kubectl("get", "inferenceendpoint", "chat", "-n", NS, "-o", "json", check=False)
    return (json.loads(out) if out else {}).get("status") or {}


def ready_reason() -> tuple[str, str] | None:
    cond = next((c for c in status().get("conditions", []) if c["type"] == "Ready"), None)
    return (cond["status"], cond["reason"]) if cond else None


def test_missing_secret_then_ready_then_rollout_and_repair(cluster):
    kubectl("apply", "-f", "-", input=ENDPOINT)
    wait_for(lambda: ready_reason() == ("False", "SecretNotFound"), 120, "SecretNotFound")
    assert not kubectl("get", "deployments", "-n", NS, "-o", "name")
    kubectl("create", "secret", "generic", "openai", "-n", NS, "--from-literal=api-key=sk-e2e")
    kubectl("label", "secret", "openai", "-n", NS, "kubeinfer.io/allow-custom-url=true")
    wait_for(lambda: ready_reason() == ("True", "Available"), 600, "Ready after the Secret appeared")
    assert status()["url"] == f"http://chat.{NS}.svc.cluster.local/_inference/completion/chat"
    deployment = json.loads(kubectl("get", "deployment", "chat", "-n", NS, "-o", "json"))
    env = deployment["spec"]["template"]["spec"]["containers"][0]["env"]
    assert {"name": "KUBEINFER_SECRET_API_KEY",
            "valueFrom": {"secretKeyRef": {"name": "openai", "key": "api-key"}}} in env
    assert "sk-e2e" not in json.dumps(deployment)

    kubectl("patch", "inferenceendpoint", "chat", "-n", NS, "--type=merge",
            "-p", json.dumps({"spec": {"serviceSettings": {"model_id": "gpt-4o"}}}))
    wait_for(lambda: status().get("observedGeneration") == 2 and ready_reason() == ("True", "Available"),
             600, "the spec change rolled out")

    uid = deployment["metadata"]["uid"]
    kubectl("delete", "deployment", "chat", "-n", NS, "--wait=true")
    wait_for(lambda: (out := kubectl("get", "deployment", "chat", "-n", NS, "-o", "json", check=False))
             and json.loads(out)["metadata"]["uid"] != uid, 120, "the Deployment put back")
    wait_for(lambda: ready_reason() == ("True", "Available"), 600, "Ready again")


def test_deleting_the_endpoint_cascades(cluster):
    kubectl("delete", "inferenceendpoint", "chat", "-n", NS, "--wait=true")
    wait_for(lambda: not kubectl("get", "deployments,services,configmaps", "-n", NS,
                                 "-l", "app.kubernetes.io/managed-by=kubeinfer-operator", "-o", "name"),
             180, "owned objects garbage-collected")
