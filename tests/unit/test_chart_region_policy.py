"""The chart's regionPolicy values: rendered as the ConfigMap the gateway and the operator
read, refused by the values schema when Elasticsearch would refuse the policy, and the
RBAC that changing the policy takes."""

from __future__ import annotations

import pytest
from shipping import NAMESPACE, env_of, named, of_kind, render, template

from kubeinfer.region_policy_store import document_of

OPERATOR = "kubeinfer-operator"


def test_values_render_the_policy_configmap_the_gateway_and_operator_read():
    objs = render({"regionPolicy.allowedRegions": [{"csp": "aws", "region": "eu-west-1"}]})
    configmap = named(objs, "ConfigMap", "kubeinfer-region-policy")
    assert configmap["metadata"]["namespace"] == NAMESPACE
    configmap["metadata"]["creationTimestamp"] = "2026-07-13T12:00:00Z"
    document = document_of(configmap)
    assert document.region_policy.body() == {"allowed_regions": [{"csp": "aws", "region": "eu-west-1"}]}
    assert document.created_at == "2026-07-13T12:00:00.000Z"
    geos = document_of({**named(render({"regionPolicy.allowedGeos": ["eu", "ca"]}), "ConfigMap",
                                      "kubeinfer-region-policy"), })
    assert geos.region_policy.body() == {"allowed_geos": ["eu", "ca"]}


def test_no_values_no_policy():
    assert [c for c in of_kind(render(), "ConfigMap") if c["metadata"]["name"] == "kubeinfer-region-policy"] == []


def test_node_placement_reaches_the_operator():
    objs = render({"regionPolicy.nodePlacement": True})
    [container] = named(objs, "Deployment", OPERATOR)["spec"]["template"]["spec"]["containers"]
    assert env_of(container)["KUBEINFER_REGION_NODE_PLACEMENT"] == "true"
    [default] = named(render(), "Deployment", OPERATOR)["spec"]["template"]["spec"]["containers"]
    assert env_of(default)["KUBEINFER_REGION_NODE_PLACEMENT"] == "false"


@pytest.mark.parametrize("values", [
    {"regionPolicy.allowedGeos": ["eu"], "regionPolicy.allowedRegions": [{"csp": "aws", "region": "eu-west-1"}]},
    {"regionPolicy.allowedGeos": ["mars"]},
    {"regionPolicy.allowedRegions": [{"csp": "oracle", "region": "x"}]},
    {"regionPolicy.allowedRegions": [{"csp": "aws"}]},
])
def test_the_schema_refuses_what_elasticsearch_refuses(values):
    result = template(values, check=False)
    assert result.returncode != 0 and "values don't meet the specifications of the schema" in result.stderr


def test_changing_the_policy_takes_a_cluster_role_no_built_in_role_aggregates():
    role = named(render(), "ClusterRole", "kubeinfer-region-policy-admin")
    assert role["rules"] == [{"apiGroups": ["kubeinfer.io"], "resources": ["inferenceregionpolicies"],
                              "verbs": ["update", "delete"]}]
    assert not any(k.startswith("rbac.authorization.k8s.io/aggregate") for k in role["metadata"].get("labels", {}))
