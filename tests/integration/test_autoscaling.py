"""Adaptive allocations against the Kubernetes API emulator: the operator picks KEDA where
its CRD is installed and an HPA otherwise, hands ``replicas`` to the autoscaler under
server-side apply, and reports an endpoint at zero replicas as usable."""

from __future__ import annotations

from typing import Any

import pytest

from kubeemu import DEPLOYMENTS, HPAS, INFERENCE_ENDPOINTS, EmulatedCluster
from kubeemu.fixtures import running_operator

NS = "ml"
SCALED_OBJECTS = "keda.sh/v1alpha1/scaledobjects"


def endpoint(name: str, adaptive: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "kubeinfer.io/v1alpha1", "kind": "InferenceEndpoint",
            "metadata": {"name": name, "namespace": NS},
            "spec": {"taskType": "text_embedding", "service": "elasticsearch",
                     "serviceSettings": {"model_id": ".multilingual-e5-small", "num_threads": 1,
                                         "adaptive_allocations": adaptive}}}


def ready(kube: EmulatedCluster, name: str) -> dict[str, Any]:
    status = (kube.get(INFERENCE_ENDPOINTS, NS, name) or {}).get("status") or {}
    return next((c for c in status.get("conditions", []) if c["type"] == "Ready"), {})


@pytest.fixture
def env(kubeconfig, monkeypatch):
    monkeypatch.setenv("KUBEINFER_METRICS_PORT", "0")
    monkeypatch.setenv("KUBEINFER_GPUS_PER_ENDPOINT", "0")
    monkeypatch.setenv("KUBEINFER_SCALE_TO_ZERO_AFTER", "120")


def install_keda(kube: EmulatedCluster) -> None:
    kube.call(kube.emulator.declare, SCALED_OBJECTS, "ScaledObject")


def test_with_keda_installed_min_zero_gets_a_scaled_object_that_owns_replicas_down_to_zero(kube, env):
    install_keda(kube)
    with running_operator():
        kube.create(INFERENCE_ENDPOINTS, endpoint("e5", {"enabled": True, "max_number_of_allocations": 3}))
        scaled = kube.wait_until(lambda: kube.get(SCALED_OBJECTS, NS, "e5"), message="a ScaledObject")
        assert (scaled["spec"]["minReplicaCount"], scaled["spec"]["maxReplicaCount"]) == (0, 3)
        assert scaled["spec"]["cooldownPeriod"] == 120
        assert kube.get(HPAS, NS, "e5") is None
        kube.wait_until(lambda: ready(kube, "e5").get("reason") == "Available", message="Ready")

        # KEDA scales the Deployment to zero; the operator's next apply leaves replicas alone.
        kube.patch(DEPLOYMENTS, NS, "e5", {"spec": {"replicas": 0}})
        cond = kube.wait_until(lambda: (c := ready(kube, "e5")).get("reason") == "ScaledToZero" and c,
                               message="ScaledToZero")
        assert cond["status"] == "True"
        status = kube.get(INFERENCE_ENDPOINTS, NS, "e5")["status"]
        assert (status["readyReplicas"], status["replicas"]) == (0, 0)
        kube.patch(INFERENCE_ENDPOINTS, NS, "e5", {"spec": {"serviceSettings": {"num_threads": 2}}})
        kube.wait_until(lambda: kube.get(INFERENCE_ENDPOINTS, NS, "e5")["status"].get("observedGeneration") == 2,
                        message="the change reconciled")
        deployment = kube.get(DEPLOYMENTS, NS, "e5")
        assert deployment["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]["cpu"] == "2"
        assert deployment["spec"]["replicas"] == 0

        # and back up on demand
        kube.patch(DEPLOYMENTS, NS, "e5", {"spec": {"replicas": 1}})
        kube.wait_until(lambda: ready(kube, "e5").get("reason") == "Available", message="Available again")
        assert kube.get(INFERENCE_ENDPOINTS, NS, "e5")["status"]["replicas"] == 1


def test_the_operator_setting_forces_an_hpa_and_switching_removes_the_scaled_object(kube, env, monkeypatch):
    install_keda(kube)
    with running_operator():
        kube.create(INFERENCE_ENDPOINTS, endpoint("e5", {"enabled": True, "min_number_of_allocations": 0}))
        kube.wait_until(lambda: kube.get(SCALED_OBJECTS, NS, "e5"), message="a ScaledObject")
    monkeypatch.setenv("KUBEINFER_AUTOSCALER", "hpa")
    with running_operator():
        hpa = kube.wait_until(lambda: kube.get(HPAS, NS, "e5"), message="an HPA")
        # an HPA cannot go below one replica
        assert hpa["spec"]["minReplicas"] == 1
        assert hpa["spec"]["metrics"][0]["pods"]["metric"]["name"] == "kubeinfer_requests_in_flight"
        kube.wait_until(lambda: kube.get(SCALED_OBJECTS, NS, "e5") is None, message="the ScaledObject removed")
