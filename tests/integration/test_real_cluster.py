"""kubeinfer on Kubernetes' own control plane: what no emulator of ours can vouch for.

The real kube-apiserver compiles and cost-checks the CRD's CEL rules; RBAC decides what the
operator and the gateway may do, with the identities the Helm chart gives them (tokens
from the TokenRequest API); Pod Security admission judges every pod they create; the
real Deployment controller, scheduler and garbage collector roll out and collect; KWOK
moves pods to Running and Ready on a fake node; TokenReview and SubjectAccessReview
answer the gateway.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest
from controlplane.client import APIStatusError, RealCluster, path_of
from local_mode import KubeinferProcess
from operator_process import free_port, running_operator
from policy_cases import DEFAULT as POLICY_CASES
from policy_cases import endpoint as policy_endpoint
from policy_cases import refused_field
from shipping import CHART, REPO, tool

RELEASE_NS = "kubeinfer"
RESTRICTED = {"pod-security.kubernetes.io/enforce": "restricted",
              "pod-security.kubernetes.io/enforce-version": "latest"}
IE = "kubeinfer.io/v1alpha1/inferenceendpoints"
VAPS = "admissionregistration.k8s.io/v1/validatingadmissionpolicies"
DEPLOYMENTS, REPLICASETS, PODS = "apps/v1/deployments", "apps/v1/replicasets", "v1/pods"
EXAMPLE = REPO / "examples" / "openai" / "text_embedding.yaml"


# ---- set-up a user would do ------------------------------------------------------------------

def kubectl(kubeconfig: Path, *args: str, check: bool = True, stdin: str | None = None,
            timeout: float = 120) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([tool("kubectl"), *args], input=stdin, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "KUBECONFIG": str(kubeconfig)}, cwd=REPO)
    if check and proc.returncode != 0:
        raise AssertionError(f"kubectl {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return proc


def helm_install(kubeconfig: Path, *values: str) -> subprocess.CompletedProcess[str]:
    sets = [arg for value in values for arg in ("--set", value)]
    return subprocess.run([tool("helm"), "install", "kubeinfer", str(CHART), "--namespace", RELEASE_NS, *sets,
                           "--wait", "--timeout", "120s"], capture_output=True, text=True, timeout=180,
                          env={**os.environ, "KUBECONFIG": str(kubeconfig)}, cwd=REPO)


@pytest.fixture
def admin(real_kube: RealCluster, tmp_path: Path) -> Path:
    return real_kube.write_kubeconfig(tmp_path / "admin.kubeconfig")


@pytest.fixture
def chart(real_kube: RealCluster, admin: Path) -> RealCluster:
    """The chart installed with Helm into a namespace that enforces the restricted Pod
    Security Standard, and waited for: its CRD served and its pods Ready."""
    real_kube.create_namespace(RELEASE_NS, RESTRICTED)
    installed = helm_install(admin)
    assert installed.returncode == 0, installed.stderr
    return real_kube


def identity(cluster: RealCluster, tmp_path: Path, service_account: str, namespace: str = RELEASE_NS) -> Path:
    """A kubeconfig that authenticates as ``service_account``, with a bound token as its pod gets."""
    return cluster.write_kubeconfig(tmp_path / f"{service_account}.kubeconfig",
                                    token=cluster.token_for(namespace, service_account))


@pytest.fixture
def operator_as_chart_sa(chart: RealCluster, tmp_path: Path) -> Iterator[None]:
    """``kubeinfer operator`` as a process, with no rights but the chart's ServiceAccount's."""
    env = {**os.environ, "KUBECONFIG": str(identity(chart, tmp_path, "kubeinfer-operator")),
           "KUBEINFER_METRICS_PORT": "0", "KUBEINFER_AUTOSCALER": "hpa"}
    with running_operator(env, tmp_path, free_port()):
        yield


def endpoint(name: str, namespace: str, **spec: Any) -> dict[str, Any]:
    body = {"taskType": "text_embedding", "service": "elasticsearch",
            "serviceSettings": {"model_id": ".multilingual-e5-small", "num_allocations": 1, "num_threads": 1}}
    body.update(spec)
    return {"apiVersion": "kubeinfer.io/v1alpha1", "kind": "InferenceEndpoint",
            "metadata": {"name": name, "namespace": namespace}, "spec": body}


def ready(cluster: RealCluster, namespace: str, name: str) -> dict[str, Any]:
    obj = cluster.get(IE, namespace, name) or {}
    return next((c for c in (obj.get("status") or {}).get("conditions", []) if c["type"] == "Ready"), {})


def pods_of(cluster: RealCluster, namespace: str, name: str) -> list[dict[str, Any]]:
    return cluster.list(PODS, namespace, label_selector=f"app.kubernetes.io/instance={name}")


# ---- the chart ---------------------------------------------------------------------------------

def test_the_chart_installs_and_the_server_refuses_broken_endpoints(chart, admin):
    crd = chart.get("apiextensions.k8s.io/v1/customresourcedefinitions", None, "inferenceendpoints.kubeinfer.io")
    assert {c["type"]: c["status"] for c in crd["status"]["conditions"]}["Established"] == "True"
    # the operator's and the gateway's pods were admitted under "restricted", and run
    for name in ("kubeinfer-operator", "kubeinfer-gateway"):
        deployment = chart.get(DEPLOYMENTS, RELEASE_NS, name)
        assert deployment["status"].get("availableReplicas") == 1, deployment["status"]

    def refused(spec: dict[str, Any]) -> str:
        proc = kubectl(admin, "apply", "-n", "default", "-f", "-", check=False,
                       stdin=json.dumps(endpoint("broken", "default", **spec)))
        assert proc.returncode != 0, proc.stdout
        return proc.stderr

    assert "Unsupported value: \"translation\"" in refused({"taskType": "translation"})
    assert "does not support task type [rerank]" in refused({"taskType": "rerank", "service": "openai", "serviceSettings": {
        "model_id": "m", "api_key": {"secretKeyRef": {"name": "s", "key": "k"}}}})
    inline = refused({"service": "openai", "serviceSettings": {"model_id": "m", "api_key": "sk-in-plain-text"}})
    assert "spec.serviceSettings.api_key in body must be of type object" in inline
    assert "sk-in-plain-text" not in inline
    assert chart.get(IE, "default", "broken") is None


def test_the_api_server_holds_spec_deployment_to_the_deployment_policy(chart):
    """The chart's ValidatingAdmissionPolicy as kube-apiserver compiles, type-checks and
    runs it, on the table of cases the operator's own check is held to: a refusal names
    the field (the first one refused), what the policy allows is stored."""
    policy = chart.wait_until(lambda: (p := chart.get(VAPS, None, "kubeinfer-deployment-policy"))
                              and (p.get("status") or {}).get("observedGeneration") and p,
                              message="the deployment policy type-checked")
    assert not (policy["status"].get("typeChecking") or {}).get("expressionWarnings"), policy["status"]
    assert not [c for c in policy["status"].get("conditions") or () if c.get("status") == "False"]

    chart.create_namespace("policy")

    def refusal(name: str, deployment: dict[str, Any]) -> str | None:
        # A dry run is admitted as a create is, and leaves nothing to clean up.
        response = chart.http.post(path_of(IE, "policy"), params={"dryRun": "All"},
                                   json=policy_endpoint(name, deployment, namespace="policy"))
        if response.status_code == 201:
            return None
        message = response.json().get("message", response.text)
        assert "ValidatingAdmissionPolicy 'kubeinfer-deployment-policy'" in message, (name, message)
        return message

    # The API server begins to enforce a policy once it has read it.
    chart.wait_until(lambda: refusal("first", {"image": "docker.io/attacker/miner:latest"}),
                     message="the deployment policy enforced")
    for name, deployment, refused in POLICY_CASES:
        message = refusal(name, deployment)
        if refused:
            assert message and refused_field(message.split("denied request: ", 1)[1]) in refused, (name, message)
        else:
            assert message is None, (name, message)


def test_pod_security_restricted_refuses_what_it_should(chart):
    """The namespace's policy is enforced (a control for the admissions above)."""
    unconfined = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "unconfined", "namespace": RELEASE_NS},
                  "spec": {"containers": [{"name": "c", "image": "busybox"}]}}
    with pytest.raises(APIStatusError) as refused:
        chart.create(PODS, unconfined)
    assert refused.value.status == 403 and 'violates PodSecurity "restricted:latest"' in str(refused.value)


# ---- the README's kubectl story, under the chart's RBAC ------------------------------------------

def test_an_example_reaches_ready_rolls_out_and_is_collected(chart, admin, operator_as_chart_sa):
    ns, name = "search", "openai-embeddings"
    chart.create_namespace(ns, RESTRICTED)
    kubectl(admin, "-n", ns, "create", "secret", "generic", "openai", "--from-literal=api-key=sk-test")
    kubectl(admin, "-n", ns, "apply", "-f", str(EXAMPLE))
    kubectl(admin, "-n", ns, "wait", "--for=condition=Ready", f"ie/{name}", "--timeout=90s")
    # (the printer columns are test_kubectl's, on both API servers)

    # its proxy pod was admitted under "restricted" and runs on the fake node
    pods = pods_of(chart, ns, name)
    assert [p["status"]["phase"] for p in pods] == ["Running"]
    assert pods[0]["spec"]["nodeName"] == "kwok-node-0"

    # a change of spec rolls out through a new ReplicaSet of the real Deployment controller
    first = {rs["metadata"]["name"] for rs in chart.list(REPLICASETS, ns)}
    kubectl(admin, "-n", ns, "patch", "ie", name, "--type=merge", "-p", '{"spec":{"serviceSettings":{"dimensions":256}}}')
    chart.wait_until(lambda: {rs["metadata"]["name"] for rs in chart.list(REPLICASETS, ns)} - first,
                     message="a new ReplicaSet")
    chart.wait_until(lambda: (ready(chart, ns, name).get("observedGeneration") == 2
                              and ready(chart, ns, name)["status"] == "True"), timeout=60,
                     message="Ready for generation 2")
    chart.wait_until(lambda: [p["metadata"]["name"] for p in pods_of(chart, ns, name)
                              if p["status"].get("phase") == "Running"], message="a pod of the new ReplicaSet")

    # deleting the endpoint: the real garbage collector removes what it owned
    kubectl(admin, "-n", ns, "delete", "ie", name, "--timeout=60s")
    chart.wait_until(lambda: not chart.get(DEPLOYMENTS, ns, name) and not chart.list(REPLICASETS, ns)
                     and not pods_of(chart, ns, name) and not chart.get("v1/services", ns, name)
                     and not chart.get("v1/configmaps", ns, name), timeout=60,
                     message="the Deployment, ReplicaSets, pods, Service and ConfigMap collected")
    assert chart.get("v1/secrets", ns, "openai") is not None  # the user's Secret is theirs


def test_every_pod_the_operator_makes_is_admitted_under_restricted(chart, operator_as_chart_sa):
    """A model server (with its GPU) and a proxy, in a namespace enforcing "restricted"."""
    ns = "restricted"
    chart.create_namespace(ns, RESTRICTED)
    chart.create("v1/secrets", {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "cohere", "namespace": ns},
                                "stringData": {"key": "co-test"}})
    chart.create(IE, endpoint("e5", ns))
    chart.create(IE, endpoint("rerank", ns, taskType="rerank", service="cohere", serviceSettings={
        "model_id": "rerank-v3.5", "api_key": {"secretKeyRef": {"name": "cohere", "key": "key"}}}))
    for name in ("e5", "rerank"):
        chart.wait_until(lambda: ready(chart, ns, name).get("status") == "True", timeout=90,
                         message=f"{name} Ready; now {ready(chart, ns, name)}")
        assert [p["status"]["phase"] for p in pods_of(chart, ns, name)] == ["Running"]
    gpu = pods_of(chart, ns, "e5")[0]["spec"]["containers"][0]["resources"]["limits"]
    assert gpu.get("nvidia.com/gpu") == "1"


# ---- the gateway, with real TokenReview and SubjectAccessReview ------------------------------------

def bind(cluster: RealCluster, user: str, role: str) -> str:
    """A ServiceAccount ``user`` bound to the chart's ClusterRole ``role`` in the release
    namespace; its token."""
    cluster.create("v1/serviceaccounts", {"apiVersion": "v1", "kind": "ServiceAccount",
                                          "metadata": {"name": user, "namespace": RELEASE_NS}})
    cluster.create("rbac.authorization.k8s.io/v1/rolebindings", {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": {"name": user, "namespace": RELEASE_NS},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
        "subjects": [{"kind": "ServiceAccount", "name": user, "namespace": RELEASE_NS}]})
    return cluster.token_for(RELEASE_NS, user)


@pytest.fixture
def gateway_as_chart_sa(chart: RealCluster, tmp_path: Path) -> Iterator[KubeinferProcess]:
    env = {"KUBECONFIG": str(identity(chart, tmp_path, "kubeinfer-gateway"))}
    with KubeinferProcess("gateway", "--host", "127.0.0.1", "--namespace", RELEASE_NS, env=env) as gateway:
        gateway.ready_path = "/healthz"
        yield gateway


def test_the_gateway_asks_the_api_server_who_may_do_what(chart, gateway_as_chart_sa):
    gateway = gateway_as_chart_sa
    manager, user = bind(chart, "manager", "kubeinfer-inference-admin"), bind(chart, "user", "kubeinfer-inference-user")

    def call(method: str, path: str, token: str | None, body: Any = None) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return gateway.client.request(method, path, json=body, headers=headers)

    put = {"service": "elasticsearch", "service_settings": {
        "model_id": ".multilingual-e5-small", "num_allocations": 1, "num_threads": 1}}
    refused = call("PUT", "/_inference/text_embedding/e5", user, put)
    assert refused.status_code == 403 and refused.json()["error"]["type"] == "security_exception", refused.text
    assert chart.get(IE, RELEASE_NS, "e5") is None
    # the manager may create it; with no operator running, the gateway's wait for Ready ends
    # in a timeout, and the resource stays, as Elasticsearch keeps an endpoint whose model
    # is still deploying
    created = call("PUT", "/_inference/text_embedding/e5?timeout=1s", manager, put)
    assert created.status_code == 408, created.text
    assert chart.get(IE, RELEASE_NS, "e5") is not None

    listed = call("GET", "/_inference", user)
    assert listed.status_code == 200 and "e5" in [e["inference_id"] for e in listed.json()["endpoints"]]
    # calling an endpoint is "get": allowed past authorization, to the endpoint's own
    # answer (it is not Ready: no operator runs here)
    inference = call("POST", "/_inference/text_embedding/e5?timeout=1s", user, {"input": ["hi"]})
    assert inference.status_code == 409, inference.text
    assert call("DELETE", "/_inference/text_embedding/e5", user).status_code == 403
    assert call("GET", "/_inference", "not-a-token").status_code == 401
    assert call("GET", "/_inference", None).status_code == 401
    assert call("DELETE", "/_inference/text_embedding/e5", manager).json() == {
        "acknowledged": True, "pipelines": [], "indexes": []}
    chart.wait_until(lambda: chart.get(IE, RELEASE_NS, "e5") is None, message="the endpoint deleted")


# ---- scale from zero ---------------------------------------------------------------------------------

def test_the_gateway_wakes_an_endpoint_at_zero_through_the_real_controllers(chart, admin, operator_as_chart_sa,
                                                                          gateway_as_chart_sa):
    gateway, name = gateway_as_chart_sa, "e5-wakes"
    reader = bind(chart, "reader", "kubeinfer-inference-user")
    chart.create(IE, endpoint(name, RELEASE_NS, serviceSettings={
        "model_id": ".multilingual-e5-small", "num_threads": 1,
        "adaptive_allocations": {"enabled": True, "min_number_of_allocations": 0, "max_number_of_allocations": 2}}))
    chart.wait_until(lambda: ready(chart, RELEASE_NS, name).get("reason") == "Available", timeout=90,
                     message=f"{name} Available; now {ready(chart, RELEASE_NS, name)}")
    # at zero, as `kubectl scale` (or KEDA) leaves it: no pod, and still Ready for GitOps tools
    kubectl(admin, "-n", RELEASE_NS, "scale", f"deployment/{name}", "--replicas=0")
    chart.wait_until(lambda: ready(chart, RELEASE_NS, name).get("reason") == "ScaledToZero"
                     and not pods_of(chart, RELEASE_NS, name), timeout=60, message="scaled to zero")
    assert ready(chart, RELEASE_NS, name)["status"] == "True"

    # A request wakes it: the gateway asks for a replica, the Deployment controller and the
    # scheduler place a pod, KWOK runs it, the operator reports it Available, and the held
    # request is let through. (The pod's address is a cluster DNS name this machine cannot
    # resolve, so the relay itself fails, after the wake, with the gateway's own error.)
    answer = gateway.client.post(f"/_inference/text_embedding/{name}", params={"timeout": "90s"},
                                 json={"input": ["hi"]}, headers={"Authorization": f"Bearer {reader}"})
    assert answer.status_code != 408, answer.text
    assert "error" in answer.json() and answer.status_code >= 500, answer.text
    assert chart.get(DEPLOYMENTS, RELEASE_NS, name)["spec"]["replicas"] == 1
    assert ready(chart, RELEASE_NS, name)["reason"] == "Available"
    assert [p["status"]["phase"] for p in pods_of(chart, RELEASE_NS, name)] == ["Running"]
