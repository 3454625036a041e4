"""Model servers placed by the inference region policy: the Deployment the operator
builds requires nodes whose ``topology.kubernetes.io/region`` the policy allows, when the
admin asks for it."""

from __future__ import annotations

from kubeinfer_operator.builders import desired_state
from kubeinfer.config import OperatorSettings
from kubeinfer.region_policy import parse_region_policy

PLACING = OperatorSettings.from_env({"KUBEINFER_REGION_NODE_PLACEMENT": "true"})
EU = parse_region_policy({"allowed_geos": ["eu"]})
TWO = parse_region_policy({"allowed_regions": [{"csp": "aws", "region": "eu-west-1"},
                                               {"csp": "gcp", "region": "europe-west4"}]})
REQUIRED = "requiredDuringSchedulingIgnoredDuringExecution"


def manifest(spec: dict) -> dict:
    return {"apiVersion": "kubeinfer.io/v1alpha1", "kind": "InferenceEndpoint",
            "metadata": {"name": "ep", "namespace": "ml", "uid": "uid-1"}, "spec": spec}


def e5(**spec) -> dict:
    return manifest({"taskType": "text_embedding", "service": "elasticsearch", "serviceSettings": {
        "model_id": ".multilingual-e5-small", "num_allocations": 1, "num_threads": 1}, **spec})


def terms(state) -> list[dict] | None:
    affinity = state.deployment["spec"]["template"]["spec"].get("affinity") or {}
    return ((affinity.get("nodeAffinity") or {}).get(REQUIRED) or {}).get("nodeSelectorTerms")


def test_a_model_server_is_required_on_nodes_of_the_allowed_regions():
    [term] = terms(desired_state(e5(), PLACING, region_policy=TWO))
    assert term == {"matchExpressions": [
        {"key": "topology.kubernetes.io/region", "operator": "In", "values": ["eu-west-1", "europe-west4"]}]}


def test_allowed_geos_become_every_known_region_of_them():
    [term] = terms(desired_state(e5(), PLACING, region_policy=EU))
    [expression] = term["matchExpressions"]
    assert {"eu-west-1", "europe-west4", "westeurope", "eu-central-1"} <= set(expression["values"])
    assert not {"us-east-1", "us-central1", "eastus", "ap-south-1"} & set(expression["values"])


def test_the_requirement_is_added_to_each_term_of_an_endpoints_own_affinity():
    own = {"nodeAffinity": {REQUIRED: {"nodeSelectorTerms": [
        {"matchExpressions": [{"key": "pool", "operator": "In", "values": ["gpu"]}]},
        {"matchExpressions": [{"key": "topology.kubernetes.io/region", "operator": "In", "values": ["eu-west-1"]}]},
    ]}}}
    placed = terms(desired_state(e5(deployment={"affinity": own}), PLACING, region_policy=TWO))
    region = {"key": "topology.kubernetes.io/region", "operator": "In", "values": ["eu-west-1", "europe-west4"]}
    assert placed == [
        {"matchExpressions": [{"key": "pool", "operator": "In", "values": ["gpu"]}, region]},
        # the endpoint's own region choice is kept, inside the policy's
        {"matchExpressions": [region, {"key": "topology.kubernetes.io/region", "operator": "In",
                                       "values": ["eu-west-1"]}]},
    ]


def test_without_the_setting_or_a_policy_pods_go_anywhere():
    assert terms(desired_state(e5(), OperatorSettings.from_env({}), region_policy=EU)) is None
    assert terms(desired_state(e5(), PLACING, region_policy=None)) is None


def test_a_provider_proxy_is_not_placed():
    openai = manifest({"taskType": "completion", "service": "openai", "serviceSettings": {
        "model_id": "gpt-4o", "api_key": {"secretKeyRef": {"name": "openai", "key": "key"}}}})
    assert terms(desired_state(openai, PLACING, region_policy=EU)) is None
