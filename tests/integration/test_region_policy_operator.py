"""The operator against the API emulator under the inference region policy: an endpoint
whose cloud region the policy leaves out is ``Ready=False`` (``RegionNotAllowed``) as soon
as the policy's ConfigMap says so, and Ready again once it allows it; with node placement,
model servers' pods are held to nodes in the allowed regions."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from kubeemu import CONFIGMAPS, DEPLOYMENTS, INFERENCE_ENDPOINTS, SECRETS
from kubeemu.fixtures import running_operator

NS = "ml"
RELEASE_NS = "kubeinfer"


@pytest.fixture
def env(kubeconfig, monkeypatch):
    monkeypatch.setenv("KUBEINFER_METRICS_PORT", "0")
    monkeypatch.setenv("KUBEINFER_GPUS_PER_ENDPOINT", "0")
    monkeypatch.setenv("KUBEINFER_REGION_POLICY_NAMESPACE", RELEASE_NS)
    monkeypatch.setenv("KUBEINFER_REGION_NODE_PLACEMENT", "true")


def resource(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "kubeinfer.io/v1alpha1", "kind": "InferenceEndpoint",
            "metadata": {"name": name, "namespace": NS}, "spec": spec}


def bedrock(name: str, region: str) -> dict[str, Any]:
    key = {"secretKeyRef": {"name": "aws", "key": "access_key"}}
    secret = {"secretKeyRef": {"name": "aws", "key": "secret_key"}}
    return resource(name, {"taskType": "completion", "service": "amazonbedrock", "serviceSettings": {
        "access_key": key, "secret_key": secret, "region": region, "provider": "anthropic",
        "model": "anthropic.claude-3-haiku-20240307-v1:0"}})


def e5(name: str) -> dict[str, Any]:
    return resource(name, {"taskType": "text_embedding", "service": "elasticsearch", "serviceSettings": {
        "model_id": ".multilingual-e5-small", "num_allocations": 1, "num_threads": 1}})


def policy_configmap(policy: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {
        "name": "kubeinfer-region-policy", "namespace": RELEASE_NS, "labels": {"kubeinfer.io/region-policy": "true"}},
        "data": {"region_policy.json": json.dumps({"region_policy": policy, "created_at": "2026-07-13T12:00:00.000Z"})}}


def ready(kube, name: str) -> dict[str, Any]:
    obj = kube.get(INFERENCE_ENDPOINTS, NS, name) or {}
    return next((c for c in (obj.get("status") or {}).get("conditions", []) if c["type"] == "Ready"), {})


def node_regions(kube, name: str) -> list[str] | None:
    pod = kube.get(DEPLOYMENTS, NS, name)["spec"]["template"]["spec"]
    terms = ((pod.get("affinity") or {}).get("nodeAffinity") or {}).get(
        "requiredDuringSchedulingIgnoredDuringExecution", {}).get("nodeSelectorTerms")
    if not terms:
        return None
    [term] = terms
    [expression] = [e for e in term["matchExpressions"] if e["key"] == "topology.kubernetes.io/region"]
    assert expression["operator"] == "In"
    return expression["values"]


def test_an_endpoint_outside_the_policy_is_not_ready_until_the_policy_allows_it(kube, env):
    kube.create_namespace(RELEASE_NS)
    kube.create(SECRETS, {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "aws", "namespace": NS},
                          "data": {k: base64.b64encode(b"x").decode() for k in ("access_key", "secret_key")}})
    with running_operator():
        kube.create(INFERENCE_ENDPOINTS, bedrock("eu-chat", "eu-west-1"))
        kube.create(INFERENCE_ENDPOINTS, e5("e5"))
        kube.wait_until(lambda: ready(kube, "eu-chat").get("status") == "True", message="eu-chat ready")
        kube.wait_until(lambda: ready(kube, "e5").get("status") == "True", message="e5 ready")
        assert node_regions(kube, "e5") is None

        kube.create(CONFIGMAPS, policy_configmap({"allowed_geos": ["us"]}))
        refused = kube.wait_until(lambda: (c := ready(kube, "eu-chat")).get("reason") == "RegionNotAllowed" and c,
                                  message=f"eu-chat RegionNotAllowed; now {ready(kube, 'eu-chat')}")
        assert refused["status"] == "False"
        assert refused["message"] == ("inference endpoint [eu-chat] uses region [eu-west-1] of [aws], which the "
                                      "inference region policy does not allow (allowed geos [us])")
        # A model server names no region: it stays Ready, moved to nodes in the policy's regions.
        kube.wait_until(lambda: node_regions(kube, "e5") and "us-east-1" in node_regions(kube, "e5"),
                        message="e5 placed in the US")
        assert "eu-west-1" not in node_regions(kube, "e5") and "us-central1" in node_regions(kube, "e5")
        assert ready(kube, "e5")["status"] == "True"
        # A new endpoint outside the policy is refused before anything is built.
        kube.create(INFERENCE_ENDPOINTS, bedrock("paris", "eu-west-3"))
        kube.wait_until(lambda: ready(kube, "paris").get("reason") == "RegionNotAllowed", message="paris refused")
        assert kube.get(DEPLOYMENTS, NS, "paris") is None

        kube.delete(CONFIGMAPS, RELEASE_NS, "kubeinfer-region-policy")
        kube.wait_until(lambda: ready(kube, "eu-chat").get("status") == "True", message="eu-chat ready again")
        kube.wait_until(lambda: ready(kube, "paris").get("status") == "True", message="paris built")
        kube.wait_until(lambda: node_regions(kube, "e5") is None, message="e5 placed anywhere again")


def test_at_start_up_an_endpoint_outside_the_policy_is_never_built(kube, env):
    kube.create_namespace(RELEASE_NS)
    kube.create(SECRETS, {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "aws", "namespace": NS},
                          "data": {k: base64.b64encode(b"x").decode() for k in ("access_key", "secret_key")}})
    kube.create(CONFIGMAPS, policy_configmap({"allowed_regions": [{"csp": "aws", "region": "us-east-1"}]}))
    kube.create(INFERENCE_ENDPOINTS, bedrock("virginia", "us-east-1"))
    kube.create(INFERENCE_ENDPOINTS, bedrock("oregon", "us-west-2"))
    with running_operator():
        kube.wait_until(lambda: ready(kube, "virginia").get("status") == "True", message="virginia ready")
        kube.wait_until(lambda: ready(kube, "oregon").get("reason") == "RegionNotAllowed", message="oregon refused")
        assert kube.get(DEPLOYMENTS, NS, "oregon") is None
