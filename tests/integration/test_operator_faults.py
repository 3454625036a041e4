"""The operator under a real API server's rules, against the emulator: watches that
expire (410) and drop, requests refused with 500, 409 and 429 (with Retry-After), a CR
edited while its Deployment rolls, and watches scoped on the server. Each converges with
no duplicate objects and the right status."""

from __future__ import annotations

from typing import Any

from kubeemu import CONFIGMAPS, DEPLOYMENTS, INFERENCE_ENDPOINTS, SECRETS, SERVICES, EmulatedCluster, faults
from kubeemu.fixtures import running_operator

from test_operator import NS, condition, endpoint, env, openai, status, wait_ready  # noqa: F401

APPS = "apps/v1/deployments"


def ready_for(kube: EmulatedCluster, name: str, generation: int) -> dict[str, Any]:
    return kube.wait_until(
        lambda: condition(kube, name).get("status") == "True"
        and status(kube, name).get("observedGeneration") == generation and status(kube, name),
        message=f"{name} Ready at generation {generation}; now {status(kube, name)}")


def owners(kube: EmulatedCluster, key: str) -> list[str]:
    return [ref["uid"] for obj in kube.list(key, NS) for ref in obj["metadata"].get("ownerReferences", [])]


def test_an_endpoint_deleted_and_created_again_across_a_410_gets_its_status(kube, env):
    with running_operator():
        kube.create(INFERENCE_ENDPOINTS, endpoint("e5"))
        wait_ready(kube, "e5")
        # Every watch of the endpoints misses the delete and the new create, then the
        # server forgets that history: the watches are answered 410 and list again. The
        # delete orphans the objects (kubectl delete --cascade=orphan), so the new endpoint
        # adopts a Deployment that is already available: its status equals the old one's.
        kube.call(faults.stall_watches, kube.emulator, INFERENCE_ENDPOINTS)
        kube.call(kube.emulator.delete, INFERENCE_ENDPOINTS, NS, "e5", propagation="Orphan")
        kube.wait_until(lambda: kube.get(INFERENCE_ENDPOINTS, NS, "e5") is None, message="e5 deleted")
        again = kube.create(INFERENCE_ENDPOINTS, endpoint("e5"))
        kube.call(faults.expire_history, kube.emulator, INFERENCE_ENDPOINTS)
        kube.call(faults.drop_watches, kube.emulator, INFERENCE_ENDPOINTS)
        ready_for(kube, "e5", 1)
        uid = again["metadata"]["uid"]
        for key in (DEPLOYMENTS, SERVICES, CONFIGMAPS):
            kube.wait_until(lambda: uid in owners(kube, key), message=f"{key} owned by the new e5")
            assert [o["metadata"]["name"] for o in kube.list(key, NS)] == ["e5"]


def test_an_endpoint_deleted_while_the_watch_was_away_is_not_rebuilt_when_its_secret_changes(kube, env):
    kube.create(SECRETS, {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "openai", "namespace": NS},
                          "data": {"key": "c2stdGVzdA=="}})
    with running_operator():
        kube.create(INFERENCE_ENDPOINTS, openai("gone"))
        kube.create(INFERENCE_ENDPOINTS, openai("kept"))
        wait_ready(kube, "gone")
        wait_ready(kube, "kept")
        # The watches of the endpoints miss the delete, then are answered 410 and list
        # again; the delete orphans the objects, so no owned object's event tells either.
        kube.call(faults.stall_watches, kube.emulator, INFERENCE_ENDPOINTS)
        kube.call(kube.emulator.delete, INFERENCE_ENDPOINTS, NS, "gone", propagation="Orphan")
        kube.wait_until(lambda: kube.get(INFERENCE_ENDPOINTS, NS, "gone") is None, message="gone deleted")
        kube.call(faults.expire_history, kube.emulator, INFERENCE_ENDPOINTS)
        kube.call(faults.drop_watches, kube.emulator, INFERENCE_ENDPOINTS)
        orphan = kube.get(DEPLOYMENTS, NS, "gone")
        assert not orphan["metadata"].get("ownerReferences")
        # The Secret rotates: the endpoint that still exists rolls, the deleted one is not rebuilt.
        before = kube.get(DEPLOYMENTS, NS, "kept")["metadata"]["generation"]
        kube.patch(SECRETS, NS, "openai", {"data": {"key": "c2stbmV3"}})
        kube.wait_until(lambda: kube.get(DEPLOYMENTS, NS, "kept")["metadata"]["generation"] > before,
                        message="kept rolled for the new Secret")
        after = kube.get(DEPLOYMENTS, NS, "gone")
        assert after is not None, "the orphan was adopted by the deleted endpoint, then collected"
        assert after["metadata"]["generation"] == orphan["metadata"]["generation"]
        assert not after["metadata"].get("ownerReferences")


def test_refusals_of_the_api_server_are_retried_until_the_endpoint_is_ready(kube, env):
    def inject() -> faults.FaultPlan:
        plan = faults.plan(kube.emulator)
        plan.add("PATCH", APPS, 500, times=2)
        plan.add("PATCH", CONFIGMAPS, 429, retry_after=0.2)
        plan.add("PATCH", INFERENCE_ENDPOINTS, 409, path_part="/status")
        return plan

    plan = kube.call(inject)
    with running_operator():
        kube.create(INFERENCE_ENDPOINTS, endpoint("e5"))
        ready_for(kube, "e5", 1)
    assert sorted(status for _, _, status in plan.injected) == [409, 429, 500, 500]
    assert len(kube.list(DEPLOYMENTS, NS)) == len(kube.list(SERVICES, NS)) == len(kube.list(CONFIGMAPS, NS)) == 1
    assert condition(kube, "e5")["reason"] == "Available"


def test_dropped_watch_streams_during_a_rollout_still_end_ready(kube, env):
    with running_operator():
        kube.hold_rollouts()
        kube.create(INFERENCE_ENDPOINTS, endpoint("e5"))
        kube.wait_until(lambda: condition(kube, "e5", "Progressing").get("status") == "True")
        assert kube.call(faults.drop_watches, kube.emulator) > 0
        kube.release_rollouts()
        ready_for(kube, "e5", 1)
    assert len(kube.list(DEPLOYMENTS, NS)) == 1


def test_a_spec_edited_while_its_deployment_rolls_ends_ready_at_the_new_generation(kube, env):
    with running_operator():
        kube.hold_rollouts()
        kube.create(INFERENCE_ENDPOINTS, endpoint("e5"))
        kube.wait_until(lambda: condition(kube, "e5", "Progressing").get("status") == "True")
        kube.patch(INFERENCE_ENDPOINTS, NS, "e5", {"spec": {"serviceSettings": {"num_threads": 2}}})
        kube.wait_until(lambda: kube.get(DEPLOYMENTS, NS, "e5")["metadata"]["generation"] == 2,
                        message="the edit applied mid-rollout")
        assert condition(kube, "e5")["status"] == "False"
        kube.release_rollouts()
        ready_for(kube, "e5", 2)
    deployment, = kube.list(DEPLOYMENTS, NS)
    assert deployment["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]["cpu"] == "2"


def test_unrelated_objects_never_reach_the_operator_and_secret_data_is_not_watched(kube, env):
    unrelated = {"metadata": {"name": "web", "namespace": NS, "labels": {"app": "web"}}}
    kube.create(APPS, {"apiVersion": "apps/v1", "kind": "Deployment", **unrelated, "spec": {"replicas": 1}})
    kube.create(CONFIGMAPS, {"apiVersion": "v1", "kind": "ConfigMap", **unrelated, "data": {"a": "b"}})
    kube.create(SECRETS, {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "openai", "namespace": NS},
                          "data": {"key": "c2stdGVzdA=="}})
    with running_operator():
        kube.create(INFERENCE_ENDPOINTS, openai("chat"))
        wait_ready(kube, "chat")
        # A rotated Secret (seen by its metadata alone) rolls the endpoint's pods.
        before = kube.get(DEPLOYMENTS, NS, "chat")["metadata"]["generation"]
        kube.patch(SECRETS, NS, "openai", {"data": {"key": "c2stbmV3"}})
        kube.wait_until(lambda: kube.get(DEPLOYMENTS, NS, "chat")["metadata"]["generation"] > before,
                        message="the pods rolled for the new Secret")
    operator = [r for r in kube.requests() if r.method.value == "GET" and "/namespaces/" not in str(r.url.path)]
    for request in operator:
        path = str(request.url.path)
        if path.endswith(("/deployments", "/services", "/configmaps")):
            assert request.params.get("labelSelector") == "app.kubernetes.io/managed-by=kubeinfer-operator", path
        if path.endswith("/secrets"):
            assert "as=PartialObjectMetadata" in request.headers.get("Accept", ""), path
    assert any(str(r.url.path).endswith("/secrets") for r in operator)
    # The only Secret read in full is the one an endpoint references, by name.
    reads = {str(r.url.path) for r in kube.requests() if r.method.value == "GET" and "/secrets/" in str(r.url.path)}
    assert reads == {f"/api/v1/namespaces/{NS}/secrets/openai"}
