"""The inference region policy through ``kubeinfer gateway`` against the Kubernetes API
emulator: the policy kept in a ConfigMap, changing it authorized cluster-wide with
SubjectAccessReview, and every endpoint held to it.

The operator is played by a listener that marks each InferenceEndpoint Ready at the URL
of a fake endpoint server speaking Elasticsearch's inference API, which records what it
received.
"""

from __future__ import annotations

import contextlib
import json
from typing import Any

import httpx
import pytest
from fake_providers import FakeProvider, Reply
from kubeemu import CONFIGMAPS, INFERENCE_ENDPOINTS
from local_mode import ServedFake

from kubeinfer.kube import Connection
from model_server.gateway.main import build_gateway_app

NS = "search"
RELEASE_NS = "kubeinfer"
ADMIN, DEVELOPER = "admin-token", "developer-token"
USERS = {ADMIN: {"username": "root", "uid": "u-1", "groups": ["system:masters"]},
         DEVELOPER: {"username": "dev", "uid": "u-2", "groups": ["team-a"]}}


@pytest.fixture
def endpoint_server():
    fake = FakeProvider()
    fake.on("/_inference/text_embedding/eu-emb", Reply(json={"text_embedding": [{"embedding": [1.0]}]}))
    fake.on("/_inference/text_embedding/us-emb", Reply(json={"text_embedding": [{"embedding": [2.0]}]}))
    with ServedFake(fake) as served:
        yield served


@pytest.fixture
def cluster(kube, endpoint_server):
    reviews: list[dict[str, Any]] = []

    def access(spec: dict[str, Any]) -> tuple[bool, str]:
        reviews.append(spec)
        attrs = spec.get("resourceAttributes") or {}
        if spec.get("user") == "root":  # cluster-admin: everything, everywhere
            return True, "RBAC: allowed"
        # A namespace admin: every verb on endpoints of their namespace, nothing cluster-wide.
        ok = (attrs.get("resource"), attrs.get("namespace")) == ("inferenceendpoints", NS)
        return ok, "RBAC: allowed" if ok else ""

    def mark_ready(event_type: str, key: str, obj: dict[str, Any]) -> None:
        if key != INFERENCE_ENDPOINTS or event_type == "DELETED":
            return
        meta = obj["metadata"]
        if (obj.get("status") or {}).get("observedGeneration") == meta["generation"]:
            return
        kube.emulator.update_status(INFERENCE_ENDPOINTS, meta["namespace"], meta["name"], {
            "observedGeneration": meta["generation"],
            "url": f"{endpoint_server.url}/_inference/{obj['spec']['taskType']}/{meta['name']}",
            "conditions": [{"type": "Ready", "status": "True", "reason": "Available", "message": "serving"}]})

    def configure() -> None:
        kube.emulator.tokens.update(USERS)
        kube.emulator.access_policy = access
        kube.emulator.on_change(mark_ready)
        for namespace in (NS, RELEASE_NS):
            kube.emulator.create("v1/namespaces", None, {"apiVersion": "v1", "kind": "Namespace",
                                                         "metadata": {"name": namespace}})

    kube.call(configure)
    kube.reviews = reviews
    return kube


@contextlib.asynccontextmanager
async def gateway_of(cluster):
    app = build_gateway_app(Connection(cluster.url, token="gateway-sa-token"), NS, poll_interval=0.02,
                            region_policy_namespace=RELEASE_NS)
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway",
                                     timeout=30) as client:
            yield client


def as_user(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def bedrock_body(region: str) -> dict[str, Any]:
    return {"service": "amazonbedrock", "service_settings": {
        "access_key": "AKIDEXAMPLE", "secret_key": "wJalrXUtnFEMI", "region": region,
        "provider": "amazontitan", "model": "amazon.titan-embed-text-v2:0"}}


def error_of(response: httpx.Response) -> tuple[int, str, str]:
    body = response.json()
    return response.status_code, body["error"]["type"], body["error"]["reason"]


async def test_the_policy_lives_in_a_configmap_and_holds_endpoints_to_it(cluster, endpoint_server):
    async with gateway_of(cluster) as gateway:
        assert (await gateway.put("/_inference/text_embedding/eu-emb", json=bedrock_body("eu-west-1"),
                                  headers=as_user(ADMIN))).status_code == 200
        policy = {"region_policy": {"allowed_geos": ["us"]}}
        refused = await gateway.put("/_inference/_region_policy", json=policy, headers=as_user(ADMIN))
        assert error_of(refused)[:2] == (400, "status_exception") and "[eu-emb]" in error_of(refused)[2]
        assert cluster.get(CONFIGMAPS, RELEASE_NS, "kubeinfer-region-policy") is None

        forced = await gateway.put("/_inference/_region_policy?force=true", json=policy, headers=as_user(ADMIN))
        assert forced.status_code == 200, forced.text
        assert forced.json()["created_by"] == "root"
        stored = cluster.get(CONFIGMAPS, RELEASE_NS, "kubeinfer-region-policy")
        assert stored["metadata"]["labels"]["kubeinfer.io/region-policy"] == "true"
        assert json.loads(stored["data"]["region_policy.json"]) == forced.json()

        denied = await gateway.post("/_inference/text_embedding/eu-emb", json={"input": ["x"]},
                                    headers=as_user(DEVELOPER))
        assert error_of(denied) == (
            403, "status_exception", "Inference endpoint [eu-emb] uses region [eu-west-1] of [aws], which the "
                                     "inference region policy does not allow (allowed geos [us])")
        assert endpoint_server.fake.to("/_inference/text_embedding/eu-emb") == []
        outside = await gateway.put("/_inference/text_embedding/paris", json=bedrock_body("eu-west-3"),
                                    headers=as_user(DEVELOPER))
        assert error_of(outside)[:2] == (403, "status_exception")
        assert cluster.get(INFERENCE_ENDPOINTS, NS, "paris") is None
        assert (await gateway.put("/_inference/text_embedding/us-emb", json=bedrock_body("us-west-2"),
                                  headers=as_user(DEVELOPER))).status_code == 200
        served = await gateway.post("/_inference/text_embedding/us-emb", json={"input": ["x"]},
                                    headers=as_user(DEVELOPER))
        assert served.json() == {"text_embedding": [{"embedding": [2.0]}]}

    # Another replica (or this one restarted) reads the same policy from the cluster.
    async with gateway_of(cluster) as other:
        read = await other.get("/_inference/_region_policy", headers=as_user(DEVELOPER))
        assert read.json() == forced.json()
        assert (await other.delete("/_inference/_region_policy", headers=as_user(ADMIN))).json() == {
            "acknowledged": True}
        assert cluster.get(CONFIGMAPS, RELEASE_NS, "kubeinfer-region-policy") is None
        again = await other.post("/_inference/text_embedding/eu-emb", json={"input": ["x"]},
                                 headers=as_user(DEVELOPER))
        assert again.json() == {"text_embedding": [{"embedding": [1.0]}]}


async def test_changing_the_policy_takes_a_cluster_wide_grant(cluster):
    async with gateway_of(cluster) as gateway:
        body = {"region_policy": {"allowed_geos": ["eu"]}}
        refused = await gateway.put("/_inference/_region_policy", json=body, headers=as_user(DEVELOPER))
        assert error_of(refused) == (
            403, "security_exception",
            "action [cluster:admin/xpack/inference/region_policy/put] is unauthorized for user [dev], this action "
            "is granted by the Kubernetes RBAC verb [update] on [inferenceregionpolicies.kubeinfer.io] cluster-wide")
        review = cluster.reviews[-1]["resourceAttributes"]
        assert review == {"verb": "update", "group": "kubeinfer.io", "resource": "inferenceregionpolicies"}
        deleted = await gateway.delete("/_inference/_region_policy", headers=as_user(DEVELOPER))
        assert error_of(deleted)[:2] == (403, "security_exception")
        assert cluster.get(CONFIGMAPS, RELEASE_NS, "kubeinfer-region-policy") is None
        # Reading it is monitor_inference: get on the endpoints of the namespace.
        assert error_of(await gateway.get("/_inference/_region_policy", headers=as_user(DEVELOPER)))[0] == 404
        assert error_of(await gateway.get("/_inference/_region_policy"))[0] == 401


async def test_a_policy_the_chart_wrote_is_read_and_enforced(cluster):
    cluster.create(CONFIGMAPS, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {
        "name": "kubeinfer-region-policy", "namespace": RELEASE_NS,
        "labels": {"kubeinfer.io/region-policy": "true", "app.kubernetes.io/managed-by": "Helm"}},
        "data": {"region_policy.json": json.dumps(
            {"region_policy": {"allowed_regions": [{"csp": "gcp", "region": "europe-west4"}]}})}})
    async with gateway_of(cluster) as gateway:
        read = await gateway.get("/_inference/_region_policy", headers=as_user(DEVELOPER))
        assert read.json()["region_policy"] == {"allowed_regions": [{"csp": "gcp", "region": "europe-west4"}]}
        assert read.json()["created_at"].endswith("Z")
        refused = await gateway.put("/_inference/text_embedding/global", headers=as_user(DEVELOPER), json={
            "service": "googlevertexai", "service_settings": {
                "service_account_json": "{}", "model_id": "text-embedding-004", "project_id": "p"}})
        assert error_of(refused) == (
            403, "status_exception", "Inference endpoint [global] uses region [global] of [gcp], which the "
                                     "inference region policy does not allow (allowed regions [gcp:europe-west4])")
        # A change through the API keeps the chart's labels.
        changed = await gateway.put("/_inference/_region_policy", json={"region_policy": {"allowed_geos": ["eu"]}},
                                    headers=as_user(ADMIN))
        assert changed.status_code == 200, changed.text
        labels = cluster.get(CONFIGMAPS, RELEASE_NS, "kubeinfer-region-policy")["metadata"]["labels"]
        assert labels["app.kubernetes.io/managed-by"] == "Helm"
