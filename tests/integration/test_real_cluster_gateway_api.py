"""Pools and Gateway API objects on Kubernetes' own control plane, with the Gateway API and
InferencePool CRDs installed from their upstream YAML: the API server (its OpenAPI schema
and CEL rules), the chart's RBAC and Pod Security admission accept every object the
operator writes, and ``kubeinfer render`` prints nothing it would refuse."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

from fake_providers import FakeProvider, Reply
from local_mode import ServedFake
from operator_process import free_port, running_operator
from test_real_cluster import (  # noqa: F401 - fixtures
    IE, RELEASE_NS, RESTRICTED, admin, endpoint, helm_install, identity, kubectl, ready,
)

DATA = Path(__file__).resolve().parents[1] / "data" / "gateway-api"
HTTPROUTES = "gateway.networking.k8s.io/v1/httproutes"
INFERENCEPOOLS = "inference.networking.k8s.io/v1/inferencepools"
NS = "search"


def members() -> list[dict]:
    def in_pool(body: dict) -> dict:
        body["spec"]["deployment"] = {"pool": "small", "resources": {"limits": {"memory": "4Gi"}}}
        return body

    sparse = endpoint("sparse", NS, taskType="sparse_embedding",
                      serviceSettings={"model_id": ".elser_model_2", "num_allocations": 1, "num_threads": 1})
    return [in_pool(endpoint("dense", NS)), in_pool(sparse), endpoint("solo", NS, taskType="rerank", serviceSettings={
        "model_id": ".rerank-v1", "num_allocations": 1, "num_threads": 1}),
        endpoint("on-solo", NS, taskType="rerank", serviceSettings={"deployment_id": "solo"})]


def test_pools_routes_and_inference_pools_are_accepted_by_the_api_server(real_kube, admin, tmp_path):
    real_kube.install_crds(DATA)
    real_kube.create_namespace(RELEASE_NS, RESTRICTED)
    installed = helm_install(admin, "gatewayAPI.parent=infra/edge", "gatewayAPI.inferencePool=true")
    assert installed.returncode == 0, installed.stderr
    # Management goes to kubeinfer's gateway through the chart's own route.
    [chart_route] = real_kube.list(HTTPROUTES, RELEASE_NS)
    assert chart_route["spec"]["rules"][0]["matches"][0]["path"] == {"type": "PathPrefix", "value": "/"}

    # What render prints passes the API server's own validation (a server-side dry run).
    manifests = tmp_path / "endpoints.yaml"
    with_uids = members()
    for i, body in enumerate(with_uids):
        body["metadata"]["uid"] = f"0b7e1f3c-1111-4222-8333-94445555666{i}"
    manifests.write_text(yaml.safe_dump_all(with_uids))
    rendered = subprocess.run([sys.executable, "-P", "-m", "kubeinfer.cli", "render", str(manifests),
                               "--gateway", "infra/edge", "--inference-pool"], capture_output=True, text=True,
                              check=True)
    real_kube.create_namespace(NS, RESTRICTED)
    dry = kubectl(admin, "apply", "--server-side", "--dry-run=server", "-f", "-", stdin=rendered.stdout)
    assert "inferencepool.inference.networking.k8s.io/kubeinfer-pool-small serverside-applied" in dry.stdout
    assert "httproute.gateway.networking.k8s.io/on-solo serverside-applied" in dry.stdout

    # The operator, with no rights but the chart's, writes them for real.
    env = {**os.environ, "KUBECONFIG": str(identity(real_kube, tmp_path, "kubeinfer-operator")),
           "KUBEINFER_METRICS_PORT": "0", "KUBEINFER_AUTOSCALER": "hpa",
           "KUBEINFER_GATEWAY_PARENT": "infra/edge", "KUBEINFER_INFERENCE_POOL": "true"}
    # The control plane runs no pods: a fake model server says every model is loaded.
    pool_pod = FakeProvider().on("/readyz", lambda r: Reply(json={"status": "ready", "model": r.query["model"]}))
    with ServedFake(pool_pod) as served, running_operator({**env, "KUBEINFER_MODEL_SERVER_URL": served.url},
                                                          tmp_path, free_port()):
        for body in members():
            real_kube.create(IE, body)
        for name in ("dense", "sparse", "solo", "on-solo"):
            real_kube.wait_until(lambda: ready(real_kube, NS, name).get("status") == "True", timeout=120,
                                 message=f"{name} Ready; now {ready(real_kube, NS, name)}")
        routes = {r["metadata"]["name"]: r for r in real_kube.list(HTTPROUTES, NS)}
        assert set(routes) == {"dense", "sparse", "solo", "on-solo"}
        assert routes["sparse"]["spec"]["rules"][0]["backendRefs"][0]["name"] == "kubeinfer-pool-small"
        pools = {p["metadata"]["name"] for p in real_kube.list(INFERENCEPOOLS, NS)}
        assert pools == {"kubeinfer-pool-small", "solo"}
        assert real_kube.get("apps/v1/deployments", NS, "on-solo") is None
