"""The chart's RBAC is exactly what the operator calls: the real operator runs under kopf
against the Kubernetes API emulator, with the environment the chart gives it, through an
endpoint's whole life; every request it makes must be allowed by the roles the chart
binds to its ServiceAccount, and every right the chart grants must have been used (or be
one the emulator cannot show, named below with the reason)."""

from __future__ import annotations

import contextlib
import re
from typing import Any, Iterator

import pytest
from kopf.testing import KopfRunner

from kubeemu import DEPLOYMENTS, HPAS, INFERENCE_ENDPOINTS, SECRETS, EmulatedCluster
from shipping import NAMESPACE, env_of, expand_rules, grants, named, of_kind, render

NS = "ml"
OPERATOR = "kubeinfer-operator"
GATEWAY = "kubeinfer-gateway"
PATH = re.compile(r"^/(?:api/(?P<core>v1)|apis/(?P<group>[^/]+)/(?P<version>[^/]+))"
                  r"(?:/namespaces/(?P<ns>[^/]+))?/(?P<plural>[^/]+)(?:/(?P<name>[^/]+))?(?:/(?P<sub>[^/]+))?$")

# Rights kopf uses outside what the emulator serves: it finds InferenceEndpoints through
# discovery and then watches CRDs (the emulator serves no CRD objects), and in namespaced
# mode lists the namespaces it was given.
FRAMEWORK_ONLY = {
    ("apiextensions.k8s.io", "customresourcedefinitions", "list"),
    ("apiextensions.k8s.io", "customresourcedefinitions", "watch"),
    ("", "namespaces", "list"),
    ("", "namespaces", "watch"),
}

# The operator's KEDA branch: the run below has no KEDA installed, so adaptive allocations
# get an HPA; tests/integration/test_autoscaling.py runs the operator with KEDA.
KEDA_ONLY = {("keda.sh", "scaledobjects", verb) for verb in ("create", "patch", "delete")}

# The gateway deletes a Secret it made only when creating the InferenceEndpoint then fails
# (nothing is left half-made); the run below has no failing create.
GATEWAY_ROLLBACK_ONLY = {("", "secrets", "delete")}
# The gateway wakes an endpoint at zero replicas; the run below has none at zero
# (tests/integration/test_gateway_kubernetes.py holds and releases requests).
GATEWAY_WAKE_ONLY = {("apps", "deployments", "get"), ("apps", "deployments/scale", "patch")}


@pytest.fixture
def kube(tmp_path, monkeypatch) -> Iterator[EmulatedCluster]:
    """A started API emulator that kopf and the project's client find through KUBECONFIG."""
    with EmulatedCluster() as cluster:
        monkeypatch.setenv("KUBECONFIG", str(cluster.write_kubeconfig(tmp_path / "kubeconfig")))
        yield cluster


def verbs_of(request: Any) -> list[tuple[str, str, str | None, str]]:
    """(group, resource[/subresource], namespace, verb) that RBAC checks for one request."""
    path = request.url.path
    m = PATH.match(path)
    if m is None or (m["core"] is None and m["plural"] in ("", None)):
        return []  # discovery (/api, /apis, /version) is open to every authenticated user
    group = "" if m["core"] else m["group"]
    # /namespaces/<ns> alone is the namespace object itself.
    if m["plural"] == "namespaces" and m["ns"] is None and m["name"]:
        resource, name, sub = "namespaces", m["name"], m["sub"]
    else:
        resource, name, sub = m["plural"], m["name"], m["sub"]
    if sub:
        resource = f"{resource}/{sub}"
    method = str(request.method.value if hasattr(request.method, "value") else request.method).upper()
    params = request.url.query
    if method == "GET":
        verbs = ["get"] if name else (["watch"] if params.get("watch") in ("true", "1") else ["list"])
    elif method == "POST":
        verbs = ["create"]
    elif method == "PATCH":
        # A server-side apply may create the object: Kubernetes then checks create as well.
        apply = "apply-patch" in request.headers.get("Content-Type", "")
        verbs = ["patch", "create"] if apply else ["patch"]
    elif method == "PUT":
        verbs = ["update"]
    elif method == "DELETE":
        verbs = ["delete"] if name else ["deletecollection"]
    else:
        return []
    return [(group, resource, m["ns"], verb) for verb in verbs]


def allowed(granted: dict[str | None, set[tuple[str, str, str]]], group: str, resource: str,
            namespace: str | None, verb: str) -> bool:
    rule = (group, resource, verb)
    if rule in granted.get(None, set()):
        return True
    return namespace is not None and rule in granted.get(namespace, set())


@contextlib.contextmanager
def operator(kube: EmulatedCluster, objs: list[dict], monkeypatch, *args: str) -> Iterator[KopfRunner]:
    container = named(objs, "Deployment", OPERATOR)["spec"]["template"]["spec"]["containers"][0]
    for key, value in env_of(container).items():
        if key.startswith("KUBEINFER_") and isinstance(value, str):
            monkeypatch.setenv(key, value)
    monkeypatch.setenv("KUBEINFER_METRICS_PORT", "0")
    with KopfRunner(["run", "--standalone", *args, "-m", "kubeinfer_operator.handlers"], timeout=30) as runner:
        yield runner
    assert runner.exception is None, runner.output[-4000:]


def endpoint(name: str, task: str, service: str, settings: dict) -> dict:
    return {"apiVersion": "kubeinfer.io/v1alpha1", "kind": "InferenceEndpoint",
            "metadata": {"name": name, "namespace": NS},
            "spec": {"taskType": task, "service": service, "serviceSettings": settings}}


def ready(kube: EmulatedCluster, name: str, reason: str = "Available") -> bool:
    cr = kube.get(INFERENCE_ENDPOINTS, NS, name) or {}
    return any(c["type"] == "Ready" and c["reason"] == reason for c in (cr.get("status") or {}).get("conditions", []))


def endpoint_life(kube: EmulatedCluster) -> None:
    """Everything the operator does to an endpoint: wait for a Secret, build, autoscale,
    stop autoscaling, repair drift, and let go of a deleted endpoint."""
    kube.create(INFERENCE_ENDPOINTS, endpoint("chat", "completion", "openai", {
        "model_id": "gpt-4o", "api_key": {"secretKeyRef": {"name": "openai", "key": "key"}}}))
    kube.wait_until(lambda: ready(kube, "chat", "SecretNotFound"), message="SecretNotFound")
    kube.create(SECRETS, {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "openai", "namespace": NS},
                          "data": {"key": "c2stdGVzdA=="}})
    kube.wait_until(lambda: ready(kube, "chat"), message="chat Ready")
    settings = {"model_id": ".elser_model_2", "num_threads": 1,
                "adaptive_allocations": {"enabled": True, "min_number_of_allocations": 1,
                                         "max_number_of_allocations": 3}}
    kube.create(INFERENCE_ENDPOINTS, endpoint("elser", "sparse_embedding", "elasticsearch", settings))
    kube.wait_until(lambda: kube.get(HPAS, NS, "elser") and ready(kube, "elser"), message="elser Ready")
    settings["adaptive_allocations"] = {"enabled": False}
    kube.patch(INFERENCE_ENDPOINTS, NS, "elser", {"spec": {"serviceSettings": settings}})
    kube.wait_until(lambda: kube.get(HPAS, NS, "elser") is None, message="the HPA removed")
    kube.delete(DEPLOYMENTS, NS, "chat")
    kube.wait_until(lambda: kube.get(DEPLOYMENTS, NS, "chat"), message="the Deployment put back")
    kube.delete(INFERENCE_ENDPOINTS, NS, "chat")
    kube.wait_until(lambda: kube.get(INFERENCE_ENDPOINTS, NS, "chat") is None, message="chat deleted")
    # The garbage collector deletes the Deployment in the background; the operator, told of
    # it, looks for the owner it no longer has in its cache.
    kube.wait_until(lambda: kube.get(DEPLOYMENTS, NS, "chat") is None, message="chat's Deployment collected")
    kube.wait_until(lambda: any(getattr(r.method, "value", r.method) == "GET" and r.url.path.endswith("/inferenceendpoints/chat")
                                for r in kube.requests()), message="the owner looked up")


def audit(kube: EmulatedCluster, granted: dict[str | None, set]) -> set[tuple[str, str, str]]:
    used: set[tuple[str, str, str]] = set()
    denied = []
    # kmock's emulator iterates over the requests it received.
    for request in kube.call(lambda: list(kube.emulator)):
        for group, resource, namespace, verb in verbs_of(request):
            used.add((group, resource, verb))
            if not allowed(granted, group, resource, namespace, verb):
                denied.append(f"{verb} {group or 'core'}/{resource} in {namespace or 'the cluster'}")
    assert not denied, "the chart does not allow these calls:\n" + "\n".join(sorted(set(denied)))
    return used


def test_operator_rbac_is_exactly_what_the_operator_calls(kube, monkeypatch):
    objs = render({"endpoints.gpu.perEndpoint": 0})
    granted = grants(objs, OPERATOR)
    with operator(kube, objs, monkeypatch, "--all-namespaces"):
        endpoint_life(kube)
    used = audit(kube, granted)
    every_grant = set().union(*granted.values())
    unused = every_grant - used - FRAMEWORK_ONLY - KEDA_ONLY
    assert not unused, f"the chart grants rights the operator never used: {sorted(unused)}"


def test_watched_namespaces_get_the_same_rights_as_a_role_each():
    # (The emulator cannot list namespaces, which kopf does in this mode, so this set-up is
    # compared with the audited cluster-wide one rather than run.)
    cluster = grants(render(), OPERATOR)
    objs = render({"watchNamespaces": ["search", "ml"], "gateway.endpointNamespace": "ml"})
    scoped = grants(objs, OPERATOR)
    assert set(scoped) == {None, "search", "ml", NAMESPACE}
    assert scoped["search"] == scoped["ml"] == cluster[None] - FRAMEWORK_ONLY
    # In the release's namespace, the region policy's ConfigMap is watched.
    assert scoped[NAMESPACE] == {("", "configmaps", "list"), ("", "configmaps", "watch")}
    # Cluster-wide, only what kopf needs to find the namespaces and the CRD.
    assert scoped[None] == FRAMEWORK_ONLY
    roles = of_kind(objs, "Role")
    assert sorted(r["metadata"]["namespace"] for r in roles if r["metadata"]["name"] == OPERATOR) == ["ml", "search"]


class OperatorStandIn:
    """Marks each InferenceEndpoint Ready for its generation, as the operator would, so
    that the gateway's PUT returns once the endpoint is ready."""

    def __init__(self, emulator) -> None:
        self.emulator = emulator

    def __call__(self, event_type: str, key: str, obj: dict) -> None:
        meta, status = obj["metadata"], obj.get("status") or {}
        if key != INFERENCE_ENDPOINTS or event_type == "DELETED":
            return
        if status.get("observedGeneration") == meta["generation"]:
            return
        self.emulator.update_status(INFERENCE_ENDPOINTS, meta["namespace"], meta["name"], {
            "observedGeneration": meta["generation"], "url": "http://127.0.0.1:9/unused",
            "conditions": [{"type": "Ready", "status": "True", "reason": "Available", "message": "serving"}]})


async def test_gateway_rbac_is_exactly_what_the_gateway_calls(kube):
    import httpx

    from kubeinfer.kube import Connection
    from model_server.gateway.main import build_gateway_app

    objs = render()
    namespace = next(a.split("=", 1)[1] for a in named(objs, "Deployment", GATEWAY)["spec"]["template"]["spec"]
                     ["containers"][0]["args"] if a.startswith("--namespace="))

    kube.create_namespace(namespace)
    if namespace != NAMESPACE:
        kube.create_namespace(NAMESPACE)

    def configure() -> None:
        kube.emulator.tokens["admin-token"] = {"username": "alice", "uid": "u-1", "groups": ["ml-admins"]}
        kube.emulator.on_change(OperatorStandIn(kube.emulator))

    kube.call(configure)
    # The region policy lives in the release's namespace, the gateway's own.
    app = build_gateway_app(Connection(kube.url, token="gateway-sa-token"), namespace, poll_interval=0.02,
                            region_policy_namespace=NAMESPACE)
    admin = {"Authorization": "Bearer admin-token"}
    body = {"service": "openai", "service_settings": {"api_key": "sk-one", "model_id": "text-embedding-3-small"}}
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as gw:
            steps = [
                await gw.put("/_inference/text_embedding/emb", json=body, headers=admin),
                await gw.put("/_inference/text_embedding/emb/_update", headers=admin,
                             json={"service_settings": {"api_key": "sk-two"}}),
                await gw.get("/_inference", headers=admin),
                await gw.get("/_inference/text_embedding/emb", headers=admin),
                await gw.delete("/_inference/text_embedding/emb", headers=admin),
                await gw.put("/_inference/_region_policy", json={"region_policy": {"allowed_geos": ["us"]}},
                             headers=admin),
                await gw.put("/_inference/_region_policy", json={"region_policy": {"allowed_geos": ["eu"]}},
                             headers=admin),
                await gw.get("/_inference/_region_policy", headers=admin),
                await gw.delete("/_inference/_region_policy", headers=admin),
            ]
    assert [r.status_code for r in steps] == [200] * len(steps), [r.text for r in steps]
    granted = grants(objs, GATEWAY)
    used = audit(kube, granted)
    unused = set().union(*granted.values()) - used - GATEWAY_ROLLBACK_ONLY - GATEWAY_WAKE_ONLY
    assert not unused, f"the chart grants rights the gateway never used: {sorted(unused)}"


def test_secrets_are_only_read_by_the_operator():
    granted = set().union(*grants(render(), OPERATOR).values())
    assert {verb for group, resource, verb in granted if resource == "secrets"} == {"get", "list", "watch"}


def test_peering_rights_come_with_peering_only():
    alone = set().union(*grants(render(), OPERATOR).values())
    assert not [r for r in alone if r[0] == "kopf.dev"]
    cluster = grants(render({"operator.replicas": 2}), OPERATOR)
    assert {("kopf.dev", "clusterkopfpeerings", v) for v in ("get", "list", "watch", "patch")} <= cluster[None]
    namespaced = grants(render({"operator.replicas": 2, "watchNamespaces": ["a"], "gateway.enabled": False}),
                        OPERATOR)
    assert {("kopf.dev", "kopfpeerings", v) for v in ("get", "list", "watch", "patch")} <= namespaced["a"]
    assert not [r for r in namespaced[None] if r[0] == "kopf.dev"]


def test_gateway_may_manage_endpoints_and_their_secrets_in_one_namespace_and_review_callers():
    objs = render({"gateway.endpointNamespace": "search", "watchNamespaces": ["search"]})
    granted = grants(objs, GATEWAY)
    assert set(granted) == {None, "search", NAMESPACE}
    # In its own namespace, the region policy's ConfigMap; no other ConfigMap is read.
    assert granted[NAMESPACE] == {("", "configmaps", v) for v in ("list", "watch", "create", "get", "update",
                                                                   "delete")}
    [named_only] = [r for r in named(objs, "Role", "kubeinfer-gateway-region-policy")["rules"] if "get" in r["verbs"]]
    assert named_only["resourceNames"] == ["kubeinfer-region-policy"]
    assert granted[None] == {("authentication.k8s.io", "tokenreviews", "create"),
                             ("authorization.k8s.io", "subjectaccessreviews", "create")}
    endpoints = {v for g, r, v in granted["search"] if (g, r) == ("kubeinfer.io", "inferenceendpoints")}
    assert {"list", "watch", "create", "update", "delete"} <= endpoints
    secrets = {v for g, r, v in granted["search"] if r == "secrets"}
    assert not secrets & {"get", "list", "watch"}  # it writes the Secrets it makes, never reads any
    no_auth = grants(render({"gateway.auth.enabled": False}), GATEWAY)
    assert None not in no_auth


def test_inference_roles_aggregate_into_the_built_in_roles():
    objs = render()
    admin = named(objs, "ClusterRole", "kubeinfer-inference-admin")
    user = named(objs, "ClusterRole", "kubeinfer-inference-user")
    labels = admin["metadata"]["labels"]
    assert labels["rbac.authorization.k8s.io/aggregate-to-admin"] == "true"
    assert labels["rbac.authorization.k8s.io/aggregate-to-edit"] == "true"
    assert "rbac.authorization.k8s.io/aggregate-to-view" not in labels
    assert user["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-view"] == "true"
    # The gateway's SubjectAccessReviews: create/update/delete manage (PUT, DELETE); get calls.
    admin_rules = expand_rules(admin["rules"])
    for verb in ("create", "update", "delete", "get", "list"):
        assert ("kubeinfer.io", "inferenceendpoints", verb) in admin_rules
    user_rules = expand_rules(user["rules"])
    assert ("kubeinfer.io", "inferenceendpoints", "get") in user_rules
    assert not {r for r in user_rules if r[2] in ("create", "update", "patch", "delete")}
    assert not of_kind(render({"rbac.aggregatedRoles": False}), "ClusterRole") == of_kind(objs, "ClusterRole")
