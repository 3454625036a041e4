"""The operator, running for real under kopf, against the Kubernetes API emulator and
against Kubernetes' own control plane (the tests that need no held rollouts or faults)."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from apiservers import API_SERVERS, api_server, emulator_only
from kubeemu import APIError, CONFIGMAPS, DEPLOYMENTS, EVENTS, HPAS, INFERENCE_ENDPOINTS, SECRETS, SERVICES, EmulatedCluster
from kubeemu.fixtures import running_operator

NS = "ml"


def endpoint(name: str, **spec: Any) -> dict[str, Any]:
    body = {"taskType": "text_embedding", "service": "elasticsearch",
            "serviceSettings": {"model_id": ".multilingual-e5-small", "num_allocations": 1, "num_threads": 1}}
    body.update(spec)
    return {"apiVersion": "kubeinfer.io/v1alpha1", "kind": "InferenceEndpoint",
            "metadata": {"name": name, "namespace": NS}, "spec": body}


def openai(name: str, secret: str = "openai") -> dict[str, Any]:
    return endpoint(name, taskType="completion", service="openai",
                    serviceSettings={"model_id": "gpt-4o", "api_key": {"secretKeyRef": {"name": secret, "key": "key"}}})


@pytest.fixture(params=API_SERVERS)
def kube(request):
    with api_server(request, request.param) as cluster:
        yield cluster


@pytest.fixture
def env(kubeconfig, monkeypatch):
    monkeypatch.setenv("KUBEINFER_METRICS_PORT", "0")
    monkeypatch.setenv("KUBEINFER_GPUS_PER_ENDPOINT", "0")


def status(kube: EmulatedCluster, name: str) -> dict[str, Any]:
    return (kube.get(INFERENCE_ENDPOINTS, NS, name) or {}).get("status") or {}


def condition(kube: EmulatedCluster, name: str, type_: str = "Ready") -> dict[str, Any]:
    return next((c for c in status(kube, name).get("conditions", []) if c["type"] == type_), {})


def wait_ready(kube: EmulatedCluster, name: str, reason: str = "Available", value: str = "True") -> dict[str, Any]:
    return kube.wait_until(
        lambda: (c := condition(kube, name)) and c["status"] == value and c["reason"] == reason and c,
        message=f"{name} Ready={value} ({reason}); now {status(kube, name)}",
    )


@emulator_only()
def test_create_builds_objects_and_becomes_ready_once_available(kube, env):
    with running_operator():
        kube.hold_rollouts()
        kube.create(INFERENCE_ENDPOINTS, endpoint("e5"))
        kube.wait_until(lambda: kube.get(DEPLOYMENTS, NS, "e5"))
        assert kube.get(SERVICES, NS, "e5")["spec"]["ports"][0]["port"] == 80
        assert "endpoint.yaml" in kube.get(CONFIGMAPS, NS, "e5")["data"]
        progressing = kube.wait_until(lambda: condition(kube, "e5", "Progressing").get("status") == "True"
                                      and status(kube, "e5"))
        assert condition(kube, "e5")["status"] == "False"
        assert progressing["url"] == "http://e5.ml.svc.cluster.local/_inference/text_embedding/e5"
        kube.release_rollouts()
        ready = wait_ready(kube, "e5")
        st = status(kube, "e5")
        assert st["observedGeneration"] == 1 and st["readyReplicas"] == 1
        assert ready["observedGeneration"] == 1 and ready["lastTransitionTime"]
        assert condition(kube, "e5", "Progressing")["status"] == "False"
        owner = kube.get(INFERENCE_ENDPOINTS, NS, "e5")["metadata"]["uid"]
        for key in (DEPLOYMENTS, SERVICES, CONFIGMAPS):
            assert kube.get(key, NS, "e5")["metadata"]["ownerReferences"][0]["uid"] == owner
        kube.wait_until(lambda: "Available" in [e.get("reason") for e in kube.list(EVENTS, NS)],
                        message="an Available event")
        # the operator's own writes go with the credentials kopf logged in with, as server-side apply
        applies = [r for r in kube.requests() if r.headers.get("User-Agent") == "kubeinfer-operator"
                   and r.headers.get("Content-Type") == "application/apply-patch+yaml"]
        assert applies and all(r.headers.get("Authorization") == "Bearer emulator-token" for r in applies)
        assert all(r.params.get("fieldManager") == "kubeinfer-operator" for r in applies)


def test_spec_change_rolls_out_with_a_new_observed_generation(kube, env):
    with running_operator():
        kube.create(INFERENCE_ENDPOINTS, endpoint("e5"))
        first = wait_ready(kube, "e5")
        before = kube.get(DEPLOYMENTS, NS, "e5")
        kube.patch(INFERENCE_ENDPOINTS, NS, "e5", {"spec": {"serviceSettings": {"num_threads": 4}}})
        kube.wait_until(lambda: status(kube, "e5").get("observedGeneration") == 2
                        and condition(kube, "e5", "Progressing").get("status") == "False")
        after = kube.get(DEPLOYMENTS, NS, "e5")
        assert after["metadata"]["generation"] > before["metadata"]["generation"]
        container = after["spec"]["template"]["spec"]["containers"][0]
        assert container["resources"]["requests"]["cpu"] == "4"
        hashes = [d["spec"]["template"]["metadata"]["annotations"]["kubeinfer.io/config-hash"] for d in (before, after)]
        assert hashes[0] != hashes[1]
        ready = condition(kube, "e5")
        assert ready["status"] == "True" and ready["observedGeneration"] == 2
        assert ready["lastTransitionTime"] == first["lastTransitionTime"]  # Ready never went False


def test_declared_vector_settings_are_reported_in_status(kube, env):
    with running_operator():
        kube.create(SECRETS, {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "openai", "namespace": NS},
                              "data": {"key": "c2stdGVzdA=="}})
        kube.create(INFERENCE_ENDPOINTS, endpoint("emb", service="openai", serviceSettings={
            "model_id": "text-embedding-3-small", "dimensions": 256, "similarity": "dot_product",
            "api_key": {"secretKeyRef": {"name": "openai", "key": "key"}}}))
        wait_ready(kube, "emb")
        st = status(kube, "emb")
        assert (st["dimensions"], st["similarity"]) == (256, "dot_product")


def test_adaptive_allocations_get_an_autoscaler(kube, env):
    with running_operator():
        settings = {"model_id": ".elser_model_2", "num_threads": 1,
                    "adaptive_allocations": {"enabled": True, "min_number_of_allocations": 1,
                                             "max_number_of_allocations": 3}}
        kube.create(INFERENCE_ENDPOINTS, endpoint("elser", taskType="sparse_embedding", serviceSettings=settings))
        hpa = kube.wait_until(lambda: kube.get(HPAS, NS, "elser"))
        assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (1, 3)
        wait_ready(kube, "elser")
        settings["adaptive_allocations"] = {"enabled": False}
        kube.patch(INFERENCE_ENDPOINTS, NS, "elser", {"spec": {"serviceSettings": settings}})
        kube.wait_until(lambda: kube.get(HPAS, NS, "elser") is None, message="the HPA removed")


@emulator_only()
def test_invalid_settings_get_invalid_spec_and_no_workload(kube, env):
    bad = endpoint("bad", serviceSettings={"num_threads": 1})
    with pytest.raises(APIError, match="does not contain the required setting"):
        kube.create(INFERENCE_ENDPOINTS, bad)  # the CRD's rules refuse it
    with running_operator():
        # stored under an older CRD without those rules: the operator refuses it too
        kube.create(INFERENCE_ENDPOINTS, bad, admit=False)
        ready = wait_ready(kube, "bad", reason="InvalidSpec", value="False")
        assert "does not contain the required setting [model_id]" in ready["message"]
        assert kube.get(DEPLOYMENTS, NS, "bad") is None
        assert kube.get(SERVICES, NS, "bad") is None and kube.get(CONFIGMAPS, NS, "bad") is None
        warnings = kube.wait_until(lambda: [e for e in kube.list(EVENTS, NS) if e.get("reason") == "InvalidSpec"])
        assert warnings[0]["type"] == "Warning"


ATTACK = {
    "image": "docker.io/attacker/miner:latest",
    "env": [{"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "team-b", "key": "token"}}},
            {"name": "LD_PRELOAD", "value": "/tmp/x.so"}],
    "tolerations": [{"operator": "Exists"}],
    "annotations": {"container.apparmor.security.beta.kubernetes.io/server": "unconfined"},
    "resources": {"requests": {"cpu": 1000}, "limits": {"nvidia.com/gpu": 64}},
}


def test_a_spec_the_deployment_policy_refuses_gets_policy_violation_and_no_workload(kube, env):
    """Where no admission policy stops it, the operator does: nothing is built, and the
    condition names every field the policy refuses."""
    with running_operator():
        kube.create(INFERENCE_ENDPOINTS, endpoint("miner", deployment=ATTACK))
        ready = wait_ready(kube, "miner", reason="PolicyViolation", value="False")
        for field in ("spec.deployment.image", "spec.deployment.env[0].valueFrom", "spec.deployment.env[1].name",
                      "spec.deployment.tolerations[0]", "spec.deployment.annotations",
                      "spec.deployment.resources.requests[cpu]", "spec.deployment.resources.limits[nvidia.com/gpu]"):
            assert field in ready["message"], field
        assert ready["observedGeneration"] == 1
        assert condition(kube, "miner", "Stalled")["reason"] == "PolicyViolation"
        for key in (DEPLOYMENTS, SERVICES, CONFIGMAPS):
            assert kube.get(key, NS, "miner") is None
        warnings = kube.wait_until(
            lambda: [e for e in kube.list(EVENTS, NS) if e.get("reason") == "PolicyViolation"])
        assert warnings[0]["type"] == "Warning"
        # Within the policy, the endpoint is built.
        kube.patch(INFERENCE_ENDPOINTS, NS, "miner", {"spec": {"deployment": {
            "image": None, "env": [{"name": "OMP_NUM_THREADS", "value": "1"}], "tolerations": None,
            "annotations": {"container.apparmor.security.beta.kubernetes.io/server": None, "prometheus.io/scrape": "true"},
            "resources": {"requests": {"cpu": 1}, "limits": None}}}})
        wait_ready(kube, "miner")
        assert status(kube, "miner")["observedGeneration"] == 2
        pod = kube.get(DEPLOYMENTS, NS, "miner")["spec"]["template"]["spec"]
        assert pod["containers"][0]["image"] == "ghcr.io/kubeinfer/kubeinfer-server:0.1.0"
        assert "tolerations" not in pod


def test_a_tightened_policy_stops_what_it_no_longer_allows(kube, env, monkeypatch):
    """An endpoint admitted under a looser policy keeps its pods but is reported: a
    Deployment event must not make it Ready again."""
    monkeypatch.setenv("KUBEINFER_DEPLOYMENT_POLICY", json.dumps({"allowedImagePrefixes": ["reg/"]}))
    with running_operator():
        kube.create(INFERENCE_ENDPOINTS, endpoint("own", deployment={"image": "reg/server:1"}))
        wait_ready(kube, "own")
    monkeypatch.delenv("KUBEINFER_DEPLOYMENT_POLICY")
    with running_operator():
        refused = wait_ready(kube, "own", reason="PolicyViolation", value="False")
        assert "spec.deployment.image: image [reg/server:1]" in refused["message"]
        deployment = kube.get(DEPLOYMENTS, NS, "own")
        assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == "reg/server:1"


@emulator_only()
def test_a_deployment_rolling_out_does_not_lift_a_policy_violation(kube, env):
    with running_operator():
        kube.hold_rollouts()
        kube.create(INFERENCE_ENDPOINTS, endpoint("e5"))
        kube.wait_until(lambda: condition(kube, "e5", "Progressing").get("status") == "True")
        kube.patch(INFERENCE_ENDPOINTS, NS, "e5", {"spec": {"deployment": {"image": "docker.io/attacker/miner:1"}}})
        wait_ready(kube, "e5", reason="PolicyViolation", value="False")
        kube.release_rollouts()  # the Deployment built before becomes available
        kube.wait_until(lambda: (kube.get(DEPLOYMENTS, NS, "e5").get("status") or {}).get("availableReplicas"))
        time.sleep(1)  # the operator has seen that Deployment event
        assert condition(kube, "e5")["reason"] == "PolicyViolation"


def test_missing_secret_waits_then_recovers_when_created(kube, env):
    with running_operator():
        kube.create(INFERENCE_ENDPOINTS, openai("chat"))
        ready = wait_ready(kube, "chat", reason="SecretNotFound", value="False")
        assert "openai" in ready["message"]
        assert kube.get(DEPLOYMENTS, NS, "chat") is None
        kube.create(SECRETS, {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "openai", "namespace": NS},
                              "data": {"key": "c2stdGVzdA=="}})
        wait_ready(kube, "chat")
        assert status(kube, "chat")["url"] == "http://chat.ml.svc.cluster.local/_inference/completion/chat"
        deployment = kube.get(DEPLOYMENTS, NS, "chat")
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        env_var = next(e for e in container["env"] if e["name"] == "KUBEINFER_SECRET_API_KEY")
        assert env_var == {"name": "KUBEINFER_SECRET_API_KEY",
                           "valueFrom": {"secretKeyRef": {"name": "openai", "key": "key"}}}
        assert "c2stdGVzdA" not in json.dumps(deployment) and "sk-test" not in json.dumps(deployment)
        assert container["resources"]["requests"] == {"cpu": "50m", "memory": "128Mi"}
        # rotating the Secret rolls the pods
        old_hash = deployment["spec"]["template"]["metadata"]["annotations"]["kubeinfer.io/config-hash"]
        kube.patch(SECRETS, NS, "openai", {"data": {"key": "c2stbmV3"}})
        kube.wait_until(lambda: kube.get(DEPLOYMENTS, NS, "chat")["spec"]["template"]["metadata"]["annotations"]
                        ["kubeinfer.io/config-hash"] != old_hash, message="a new config hash")


def test_deleted_or_edited_objects_are_put_back(kube, env):
    with running_operator():
        kube.create(INFERENCE_ENDPOINTS, endpoint("e5"))
        wait_ready(kube, "e5")
        uid = kube.get(DEPLOYMENTS, NS, "e5")["metadata"]["uid"]
        kube.delete(DEPLOYMENTS, NS, "e5")
        recreated = kube.wait_until(lambda: (d := kube.get(DEPLOYMENTS, NS, "e5")) and d["metadata"]["uid"] != uid
                                    and d)
        assert recreated["spec"]["template"]["spec"]["containers"][0]["image"]
        wait_ready(kube, "e5")
        kube.patch(DEPLOYMENTS, NS, "e5", {"spec": {"template": {"spec": {"containers": [
            {"name": "server", "image": "someone/else:latest"}]}}}})
        kube.wait_until(lambda: kube.get(DEPLOYMENTS, NS, "e5")["spec"]["template"]["spec"]["containers"][0]["image"]
                        != "someone/else:latest", message="the image put back")
        kube.delete(SERVICES, NS, "e5")
        kube.wait_until(lambda: kube.get(SERVICES, NS, "e5"), message="the Service recreated")


@emulator_only()
def test_operator_restarted_midway_converges_without_duplicates(kube, env):
    with running_operator():
        kube.hold_rollouts()
        for i in range(3):
            kube.create(INFERENCE_ENDPOINTS, endpoint(f"e{i}"))
        kube.wait_until(lambda: len(kube.list(DEPLOYMENTS, NS)) == 3)
    kube.release_rollouts()
    kube.create(INFERENCE_ENDPOINTS, endpoint("late"))  # created while the operator is down
    kube.patch(INFERENCE_ENDPOINTS, NS, "e0", {"spec": {"serviceSettings": {"num_threads": 2}}})
    with running_operator():
        for name in ("e0", "e1", "e2", "late"):
            wait_ready(kube, name)
        kube.wait_until(lambda: status(kube, "e0").get("observedGeneration") == 2)
    assert sorted(d["metadata"]["name"] for d in kube.list(DEPLOYMENTS, NS)) == ["e0", "e1", "e2", "late"]
    assert len(kube.list(SERVICES, NS)) == 4 and len(kube.list(CONFIGMAPS, NS)) == 4
    cpu = kube.get(DEPLOYMENTS, NS, "e0")["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]["cpu"]
    assert cpu == "2"


def test_deleting_the_endpoint_removes_its_objects(kube, kubeinfer_operator):
    kube.create(INFERENCE_ENDPOINTS, endpoint("e5"))
    wait_ready(kube, "e5")
    kube.delete(INFERENCE_ENDPOINTS, NS, "e5")
    kube.wait_until(lambda: kube.get(INFERENCE_ENDPOINTS, NS, "e5") is None)
    # the garbage collector deletes the dependents in the background
    kube.wait_until(lambda: all(kube.get(key, NS, "e5") is None for key in (DEPLOYMENTS, SERVICES, CONFIGMAPS)))


@emulator_only()
def test_a_stuck_rollout_is_reported_with_the_deadline_reason(kube, env, monkeypatch):
    # The operator's deployment policy lets endpoints run images of the registry "reg".
    monkeypatch.setenv("KUBEINFER_DEPLOYMENT_POLICY", json.dumps({"allowedImagePrefixes": ["reg/"]}))
    with running_operator():
        kube.hold_rollouts()
        kube.create(INFERENCE_ENDPOINTS, endpoint("stuck"))
        kube.wait_until(lambda: kube.get(DEPLOYMENTS, NS, "stuck"))
        kube.fail_rollout(NS, "stuck", "Back-off pulling image")
        ready = wait_ready(kube, "stuck", reason="ProgressDeadlineExceeded", value="False")
        assert "Back-off pulling image" in ready["message"]
        assert condition(kube, "stuck", "Progressing")["status"] == "False"
        kube.release_rollouts()
        # the user points the endpoint at an image that can be pulled: a new rollout succeeds
        kube.patch(INFERENCE_ENDPOINTS, NS, "stuck", {"spec": {"deployment": {"image": "reg/server:fixed"}}})
        wait_ready(kube, "stuck")
        assert status(kube, "stuck")["observedGeneration"] == 2


def test_a_secret_without_the_referenced_key_is_not_enough(kube, env):
    with running_operator():
        kube.create(SECRETS, {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "openai", "namespace": NS},
                              "data": {"other": "eA=="}})
        kube.create(INFERENCE_ENDPOINTS, openai("chat"))
        ready = wait_ready(kube, "chat", reason="SecretNotFound", value="False")
        assert "openai" in ready["message"] and "eA==" not in json.dumps(status(kube, "chat"))
        kube.patch(SECRETS, NS, "openai", {"data": {"key": "c2stdGVzdA=="}})
        wait_ready(kube, "chat")


def test_a_secret_goes_to_a_custom_url_only_with_its_owners_consent(kube, env):
    stolen = openai("exfil", secret="team-a")
    stolen["spec"]["serviceSettings"]["url"] = "https://attacker.example/v1"
    with running_operator():
        kube.create(SECRETS, {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "team-a", "namespace": NS},
                              "data": {"key": "c2stdGVhbS1h"}})
        kube.create(INFERENCE_ENDPOINTS, stolen)
        refused = wait_ready(kube, "exfil", reason="SecretNotAllowed", value="False")
        assert "[team-a]" in refused["message"] and "kubeinfer.io/allow-custom-url=true" in refused["message"]
        assert kube.get(DEPLOYMENTS, NS, "exfil") is None
        # The provider's own URL needs no consent.
        kube.create(INFERENCE_ENDPOINTS, openai("own-url", secret="team-a"))
        wait_ready(kube, "own-url")
        # The Secret's owner consents: the endpoint is built.
        kube.patch(SECRETS, NS, "team-a", {"metadata": {"labels": {"kubeinfer.io/allow-custom-url": "true"}}})
        wait_ready(kube, "exfil")
        assert kube.get(DEPLOYMENTS, NS, "exfil") is not None
