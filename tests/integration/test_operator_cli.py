"""``kubeinfer operator`` as a process: settings from the environment, liveness, metrics."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import httpx
import pytest

from kubeemu import DEPLOYMENTS, INFERENCE_ENDPOINTS
from operator_process import free_port, running_operator


def wait_http(url: str, timeout: float = 20) -> httpx.Response:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return httpx.get(url, timeout=2)
        except httpx.HTTPError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


@pytest.fixture
def operator_process(kube, kubeconfig, tmp_path):
    health, metrics = free_port(), free_port()
    env = {**os.environ, "KUBEINFER_METRICS_PORT": str(metrics), "KUBEINFER_GPUS_PER_ENDPOINT": "0",
           "KUBEINFER_SERVER_CPU_IMAGE": "reg/server:7", "KUBEINFER_WATCH_NAMESPACES": "team-a",
           "KUBEINFER_REGION_POLICY_NAMESPACE": "kubeinfer"}
    with running_operator(env, tmp_path, health) as proc:
        yield proc, health, metrics


def endpoint(name: str, namespace: str) -> dict:
    return {"apiVersion": "kubeinfer.io/v1alpha1", "kind": "InferenceEndpoint",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"taskType": "text_embedding", "service": "elasticsearch",
                     "serviceSettings": {"model_id": ".multilingual-e5-small", "num_allocations": 1, "num_threads": 1}}}


def test_operator_command_serves_liveness_metrics_and_watches_only_its_namespaces(kube, operator_process):
    proc, health, metrics = operator_process
    for ns in ("team-a", "team-b"):
        kube.call(kube.emulator.create, "v1/namespaces", None, {"metadata": {"name": ns}})
    assert wait_http(f"http://127.0.0.1:{health}/healthz").status_code == 200
    kube.create(INFERENCE_ENDPOINTS, endpoint("mine", "team-a"))
    kube.create(INFERENCE_ENDPOINTS, endpoint("theirs", "team-b"))
    deployment = kube.wait_until(lambda: kube.get(DEPLOYMENTS, "team-a", "mine"))
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == "reg/server:7"
    kube.wait_until(lambda: any(c["type"] == "Ready" and c["status"] == "True" for c in
                                ((kube.get(INFERENCE_ENDPOINTS, "team-a", "mine") or {}).get("status") or {})
                                .get("conditions", [])))
    text = wait_http(f"http://127.0.0.1:{metrics}/metrics").text
    assert 'kubeinfer_operator_reconciles_total{result="ready",trigger="create"}' in text or \
        'kubeinfer_operator_reconciles_total{result="MinimumReplicasUnavailable",trigger="create"}' in text
    assert "kubeinfer_operator_reconcile_duration_seconds_count" in text
    assert "kubeinfer_operator_endpoints_ready 1.0" in text
    assert kube.get(DEPLOYMENTS, "team-b", "theirs") is None
    assert proc.poll() is None
    # Every list and watch of endpoints, their objects and Secrets stays in team-a; the one
    # read elsewhere is the region policy's ConfigMap, by its label, in the release namespace.
    reads = [r for r in kube.requests() if r.method.value == "GET" and str(r.url.path).endswith(
        ("/inferenceendpoints", "/deployments", "/services", "/configmaps", "/secrets"))]
    policy = [r for r in reads if str(r.url.path) == "/api/v1/namespaces/kubeinfer/configmaps"]
    assert policy and all(r.url.query.get("labelSelector") == "kubeinfer.io/region-policy=true" for r in policy)
    listed = {str(r.url.path) for r in reads if r not in policy}
    assert listed and all("/namespaces/team-a/" in path for path in listed), sorted(listed)
    assert any(path.endswith("/secrets") for path in listed)


def test_a_bad_setting_stops_the_operator_with_the_variable_named(tmp_path):
    env = {**os.environ, "KUBEINFER_GPUS_PER_ENDPOINT": "many"}
    result = subprocess.run([sys.executable, "-P", "-m", "kubeinfer.cli", "operator"], env=env,
                            capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert result.returncode == 2 and "KUBEINFER_GPUS_PER_ENDPOINT" in result.stderr
