"""The NetworkPolicy the operator gives each endpoint: its pods have no authentication of
their own, so only the gateway (and namespaces the user lists) may reach them."""

from __future__ import annotations

import json

import yaml

from kubeinfer.cli import main
from kubeinfer.config import OperatorSettings
from kubeinfer_operator.builders import desired_state
from kubeinfer_operator.pools import desired_group, serving_groups

CR = {
    "apiVersion": "kubeinfer.io/v1alpha1", "kind": "InferenceEndpoint",
    "metadata": {"name": "emb", "namespace": "team-a", "uid": "uid-1"},
    "spec": {"taskType": "text_embedding", "service": "openai", "serviceSettings": {
        "model_id": "text-embedding-3-small", "api_key": {"secretKeyRef": {"name": "openai", "key": "api-key"}}}},
}
GATEWAY = {"app.kubernetes.io/name": "kubeinfer", "app.kubernetes.io/instance": "kubeinfer",
           "app.kubernetes.io/component": "gateway"}


def settings(**env: str) -> OperatorSettings:
    return OperatorSettings.from_env({"KUBEINFER_GATEWAY_NAMESPACE": "kubeinfer",
                                      "KUBEINFER_GATEWAY_POD_LABELS": json.dumps(GATEWAY), **env})


def test_only_the_gateway_may_reach_an_endpoints_pods():
    desired = desired_state(CR, settings())
    policy = desired.network_policy
    pod_labels = desired.deployment["spec"]["template"]["metadata"]["labels"]
    assert policy["metadata"]["namespace"] == "team-a"
    assert policy["metadata"]["ownerReferences"][0]["uid"] == "uid-1"
    selector = policy["spec"]["podSelector"]["matchLabels"]
    assert selector.items() <= pod_labels.items()
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    [rule] = policy["spec"]["ingress"]
    assert rule["ports"] == [{"port": "http", "protocol": "TCP"}]
    assert rule["from"] == [{"podSelector": {"matchLabels": GATEWAY},
                             "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kubeinfer"}}}]
    assert policy in desired.objects()


def test_listed_namespaces_may_reach_them_too():
    policy = desired_state(CR, settings(KUBEINFER_ENDPOINT_ALLOWED_NAMESPACES="monitoring, apps")).network_policy
    peers = policy["spec"]["ingress"][0]["from"]
    assert peers[1] == {"namespaceSelector": {"matchExpressions": [
        {"key": "kubernetes.io/metadata.name", "operator": "In", "values": ["apps", "monitoring"]}]}}


def test_the_policy_can_be_turned_off():
    desired = desired_state(CR, settings(KUBEINFER_ENDPOINT_NETWORK_POLICY="false"))
    assert desired.network_policy is None
    assert all(o["kind"] != "NetworkPolicy" for o in desired.objects())


def test_render_shows_the_policy(tmp_path, capsys):
    path = tmp_path / "emb.yaml"
    path.write_text(yaml.safe_dump(CR))
    assert main(["render", str(path)]) == 0
    kinds = [d["kind"] for d in yaml.safe_load_all(capsys.readouterr().out) if d]
    assert "NetworkPolicy" in kinds


OPERATOR = {"app.kubernetes.io/name": "kubeinfer", "app.kubernetes.io/instance": "kubeinfer",
            "app.kubernetes.io/component": "operator"}
POOL_MEMBER = {
    "apiVersion": "kubeinfer.io/v1alpha1", "kind": "InferenceEndpoint",
    "metadata": {"name": "dense", "namespace": "team-a", "uid": "uid-2"},
    "spec": {"taskType": "text_embedding", "service": "elasticsearch", "deployment": {"pool": "small"},
             "serviceSettings": {"model_id": "org/dense", "num_allocations": 1, "num_threads": 1}},
}


def test_the_operator_alone_may_also_reach_a_pools_pods_to_read_its_models():
    [group] = serving_groups([POOL_MEMBER])[0]
    state = desired_group(group, settings(KUBEINFER_OPERATOR_NAMESPACE="kubeinfer",
                                          KUBEINFER_OPERATOR_POD_LABELS=json.dumps(OPERATOR)))
    gateway, operator = state.network_policy["spec"]["ingress"]
    assert gateway["from"][0]["podSelector"] == {"matchLabels": GATEWAY}
    assert operator == {"from": [{"podSelector": {"matchLabels": OPERATOR},
                                  "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kubeinfer"}}}],
                        "ports": [{"port": "http", "protocol": "TCP"}]}
    assert state.network_policy["spec"]["podSelector"]["matchLabels"].items() <= (
        state.deployment["spec"]["template"]["metadata"]["labels"].items())


def test_an_endpoint_served_alone_admits_no_operator():
    policy = desired_state(CR, settings(KUBEINFER_OPERATOR_NAMESPACE="kubeinfer")).network_policy
    assert len(policy["spec"]["ingress"]) == 1
