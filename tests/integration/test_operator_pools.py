"""The operator serving pools and endpoints on another endpoint's deployment, running for
real under kopf against the Kubernetes API emulator: one model server per group, a
ConfigMap that follows the members, PoolFull when the budget is spent, and each member
Ready once its own model is loaded.

The emulator runs no pods: a fake pool pod answers ``/readyz?model=<inference id>`` as
``kubeinfer serve --pool`` does, with the state each test gives each model, and records
what the operator asked."""

from __future__ import annotations

import time
from typing import Any

import pytest
import yaml

from apiservers import api_server, emulator_only
from fake_providers import FakeProvider, Received, Reply
from local_mode import ServedFake
from kubeemu import CONFIGMAPS, DEPLOYMENTS, INFERENCE_ENDPOINTS, EmulatedCluster
from kubeemu.fixtures import running_operator

NS = "ml"


def endpoint(name: str, task: str = "text_embedding", *, pool: str | None = None, memory: str | None = None,
             **settings: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {"taskType": task, "service": "elasticsearch",
                            "serviceSettings": settings or {"model_id": f"org/{name}", "num_allocations": 1,
                                                            "num_threads": 1}}
    if pool:
        spec["deployment"] = {"pool": pool}
        if memory:
            spec["deployment"]["resources"] = {"requests": {"memory": memory}}
    return {"apiVersion": "kubeinfer.io/v1alpha1", "kind": "InferenceEndpoint",
            "metadata": {"name": name, "namespace": NS}, "spec": spec}


@pytest.fixture(params=["emulator"])
def kube(request):
    with api_server(request, request.param) as cluster:
        yield cluster


class PoolPod:
    """A pool pod's ``/readyz?model=``: each model loaded unless the test says otherwise."""

    def __init__(self) -> None:
        self.loading: set[str] = set()
        self.failed: dict[str, str] = {}
        self.fake = FakeProvider().on("/readyz", self.readyz)

    def readyz(self, received: Received) -> Reply:
        model = received.query["model"]
        if model in self.failed:
            return Reply(503, {"status": "not_ready", "model": model, "state": "failed",
                               "reason": self.failed[model]})
        if model in self.loading:
            return Reply(503, {"status": "not_ready", "model": model, "state": "loading",
                               "reason": "its model is loading"})
        return Reply(json={"status": "ready", "model": model})

    def asked(self, model: str) -> int:
        return sum(1 for r in self.fake.to("/readyz") if r.query.get("model") == model)


@pytest.fixture
def pool_pod():
    pod = PoolPod()
    with ServedFake(pod.fake) as served:
        pod.url = served.url
        yield pod


@pytest.fixture
def env(kubeconfig, monkeypatch, pool_pod):
    monkeypatch.setenv("KUBEINFER_MODEL_SERVER_URL", pool_pod.url)
    monkeypatch.setenv("KUBEINFER_METRICS_PORT", "0")
    monkeypatch.setenv("KUBEINFER_GPUS_PER_ENDPOINT", "0")
    monkeypatch.setenv("KUBEINFER_POOL_MEMORY", "5Gi")


def ready(kube: EmulatedCluster, name: str) -> dict[str, Any]:
    status = (kube.get(INFERENCE_ENDPOINTS, NS, name) or {}).get("status") or {}
    return next((c for c in status.get("conditions", []) if c["type"] == "Ready"), {})


def listed(kube: EmulatedCluster, name: str) -> list[str]:
    configmap = kube.get(CONFIGMAPS, NS, name) or {"data": {}}
    return [d["metadata"]["name"] for d in yaml.safe_load_all(configmap["data"].get("endpoints.yaml", "")) if d]


@emulator_only()
def test_a_pool_is_one_model_server_that_follows_its_members(kube, env):
    with running_operator():
        kube.create(INFERENCE_ENDPOINTS, endpoint("dense", pool="small"))
        kube.create(INFERENCE_ENDPOINTS, endpoint("sparse", "sparse_embedding", pool="small"))
        kube.wait_until(lambda: listed(kube, "kubeinfer-pool-small") == ["dense", "sparse"])
        for name in ("dense", "sparse"):
            kube.wait_until(lambda: ready(kube, name).get("status") == "True", message=f"{name} Ready")
            assert kube.get(DEPLOYMENTS, NS, name) is None
        url = kube.get(INFERENCE_ENDPOINTS, NS, "sparse")["status"]["url"]
        assert url == "http://kubeinfer-pool-small.ml.svc.cluster.local/_inference/sparse_embedding/sparse"
        assert kube.get(INFERENCE_ENDPOINTS, NS, "dense")["status"]["modelServer"] == "kubeinfer-pool-small"
        template = kube.get(DEPLOYMENTS, NS, "kubeinfer-pool-small")["spec"]["template"]

        # 2Gi each of a 5Gi budget: a third model does not fit.
        kube.create(INFERENCE_ENDPOINTS, endpoint("third", pool="small"))
        kube.wait_until(lambda: ready(kube, "third").get("reason") == "PoolFull", message="third PoolFull")
        assert listed(kube, "kubeinfer-pool-small") == ["dense", "sparse"]

        # Once one goes, the model that waited fits and loads.
        kube.delete(INFERENCE_ENDPOINTS, NS, "sparse")
        kube.wait_until(lambda: listed(kube, "kubeinfer-pool-small") == ["dense", "third"], message="sparse unlisted")
        kube.wait_until(lambda: ready(kube, "third").get("status") == "True", message="third Ready")
        # The pods were not restarted for it: the pod template is the same.
        assert kube.get(DEPLOYMENTS, NS, "kubeinfer-pool-small")["spec"]["template"] == template


@emulator_only()
def test_an_endpoint_on_another_endpoints_deployment_has_no_workload_of_its_own(kube, env):
    with running_operator():
        kube.create(INFERENCE_ENDPOINTS, endpoint("my-elser", "sparse_embedding"))
        kube.wait_until(lambda: ready(kube, "my-elser").get("status") == "True", message="my-elser Ready")
        kube.create(INFERENCE_ENDPOINTS, endpoint("on-elser", "sparse_embedding", deployment_id="my-elser"))
        kube.wait_until(lambda: listed(kube, "my-elser") == ["my-elser", "on-elser"])
        kube.wait_until(lambda: ready(kube, "on-elser").get("status") == "True", message="on-elser Ready")
        assert kube.get(DEPLOYMENTS, NS, "on-elser") is None
        status = kube.get(INFERENCE_ENDPOINTS, NS, "on-elser")["status"]
        assert status["url"] == "http://my-elser.ml.svc.cluster.local/_inference/sparse_embedding/on-elser"
        assert status["modelServer"] == "my-elser"  # which endpoint's server it runs on

        # Its host deleted, the endpoint says so.
        kube.delete(INFERENCE_ENDPOINTS, NS, "my-elser")
        kube.wait_until(lambda: ready(kube, "on-elser").get("reason") == "DeploymentNotFound")

        kube.create(INFERENCE_ENDPOINTS, endpoint("lost", "sparse_embedding", deployment_id="nowhere"))
        kube.wait_until(lambda: ready(kube, "lost").get("reason") == "DeploymentNotFound")
        assert ready(kube, "lost")["message"] == "Cannot find deployment [nowhere]"


@emulator_only()
def test_an_endpoint_joining_and_leaving_a_pool_moves_its_model_between_servers(kube, env):
    with running_operator():
        kube.create(INFERENCE_ENDPOINTS, endpoint("dense", pool="small"))
        kube.create(INFERENCE_ENDPOINTS, endpoint("solo"))
        kube.wait_until(lambda: kube.get(DEPLOYMENTS, NS, "solo"), message="solo's own Deployment")
        kube.patch(INFERENCE_ENDPOINTS, NS, "solo", {"spec": {"deployment": {"pool": "small"}}})
        kube.wait_until(lambda: listed(kube, "kubeinfer-pool-small") == ["dense", "solo"], message="solo joined")
        kube.wait_until(lambda: kube.get(DEPLOYMENTS, NS, "solo") is None, message="solo's Deployment gone")
        kube.patch(INFERENCE_ENDPOINTS, NS, "solo", {"spec": {"deployment": {"pool": None}}})
        kube.wait_until(lambda: listed(kube, "kubeinfer-pool-small") == ["dense"], message="solo left")
        kube.wait_until(lambda: kube.get(DEPLOYMENTS, NS, "solo"), message="solo's own Deployment again")


@emulator_only()
def test_a_pool_member_is_ready_once_its_own_model_is_loaded(kube, env, pool_pod):
    pool_pod.loading = {"dense", "late"}
    pool_pod.failed = {"broken": "OSError: org/nothing is not a model repository"}
    with running_operator():
        kube.create(INFERENCE_ENDPOINTS, endpoint("dense", pool="small", memory="1Gi"))
        kube.create(INFERENCE_ENDPOINTS, endpoint("broken", pool="small", memory="1Gi"))
        kube.wait_until(lambda: kube.get(DEPLOYMENTS, NS, "kubeinfer-pool-small"), message="the pool's Deployment")
        kube.wait_until(lambda: pool_pod.asked("dense") and pool_pod.asked("broken"), message="the pod asked")
        # The pool's Deployment is available, but the models are not loaded.
        assert ready(kube, "dense")["status"] == "False"
        assert ready(kube, "dense")["reason"] == "ModelLoading"
        assert ready(kube, "dense")["message"] == "its model is loading"
        kube.wait_until(lambda: ready(kube, "broken").get("reason") == "ModelLoadFailed", message="broken failed")
        assert ready(kube, "broken")["status"] == "False"
        assert ready(kube, "broken")["message"] == (
            "its model failed to load: OSError: org/nothing is not a model repository")

        pool_pod.loading.discard("dense")
        kube.wait_until(lambda: ready(kube, "dense").get("status") == "True", message="dense Ready")
        assert ready(kube, "broken")["reason"] == "ModelLoadFailed"

        # A member added to the running pool goes through the same.
        kube.create(INFERENCE_ENDPOINTS, endpoint("late", "sparse_embedding", pool="small", memory="1Gi"))
        kube.wait_until(lambda: pool_pod.asked("late"), message="the pod asked about late")
        kube.wait_until(lambda: ready(kube, "late").get("reason") == "ModelLoading", message="late loading")
        assert ready(kube, "late")["status"] == "False"
        assert ready(kube, "dense")["status"] == "True"
        pool_pod.loading.discard("late")
        kube.wait_until(lambda: ready(kube, "late").get("status") == "True", message="late Ready")

        # Once loaded, the pod is not asked at each turn.
        asked = pool_pod.asked("dense")
        time.sleep(4)
        assert pool_pod.asked("dense") <= asked + 1
