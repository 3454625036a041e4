"""The emulator answers as a Kubernetes API server does, seen through real clients."""

from __future__ import annotations

import json
import threading

import httpx
import pytest

from kubeemu import DEPLOYMENTS, EmulatedCluster


@pytest.fixture(scope="module")
def cluster():
    with EmulatedCluster(rollout_delay=0.01) as c:
        yield c


@pytest.fixture
def api(cluster):
    with httpx.Client(base_url=cluster.url, timeout=10) as client:
        yield client


def deployment(name: str, image: str = "server:1") -> dict:
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "labels": {"app": name}},
            "spec": {"selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}},
                                  "spec": {"containers": [{"name": "c", "image": image}]}}}}


def test_create_fills_metadata_and_rejects_duplicates(api):
    r = api.post("/api/v1/namespaces/ns1/configmaps", json={"metadata": {"name": "a"}, "data": {"k": "v"}})
    assert r.status_code == 201
    meta = r.json()["metadata"]
    assert meta["namespace"] == "ns1" and meta["uid"] and meta["resourceVersion"] and meta["generation"] == 1
    again = api.post("/api/v1/namespaces/ns1/configmaps", json={"metadata": {"name": "a"}})
    assert again.status_code == 409 and again.json()["reason"] == "AlreadyExists"
    assert api.get("/api/v1/namespaces/ns1/configmaps/missing").status_code == 404


def test_generation_counts_spec_changes_only_and_status_is_a_subresource(api):
    base = "/apis/kubeinfer.io/v1alpha1/namespaces/ns1/inferenceendpoints"
    obj = {"apiVersion": "kubeinfer.io/v1alpha1", "kind": "InferenceEndpoint", "metadata": {"name": "e"},
           "spec": {"service": "openai"}, "status": {"ignored": True}}
    created = api.post(base, json=obj).json()
    assert "status" not in created
    merge = {"Content-Type": "application/merge-patch+json"}
    labelled = api.patch(f"{base}/e", content=json.dumps({"metadata": {"labels": {"a": "b"}}}), headers=merge).json()
    assert labelled["metadata"]["generation"] == 1
    assert int(labelled["metadata"]["resourceVersion"]) > int(created["metadata"]["resourceVersion"])
    changed = api.patch(f"{base}/e", content=json.dumps({"spec": {"service": "cohere"}}), headers=merge).json()
    assert changed["metadata"]["generation"] == 2
    # status through the main resource is ignored; through /status it is kept and spec is not touched
    api.patch(f"{base}/e", content=json.dumps({"status": {"x": 1}}), headers=merge)
    assert "status" not in api.get(f"{base}/e").json()
    st = api.patch(f"{base}/e/status", content=json.dumps({"status": {"x": 1}, "spec": {"service": "no"}}),
                   headers=merge).json()
    assert st["status"] == {"x": 1} and st["spec"] == {"service": "cohere"} and st["metadata"]["generation"] == 2
    # a no-op patch changes nothing
    same = api.patch(f"{base}/e", content=json.dumps({"spec": {"service": "cohere"}}), headers=merge).json()
    assert same["metadata"]["resourceVersion"] == st["metadata"]["resourceVersion"]


def test_put_with_a_stale_resource_version_conflicts(api):
    created = api.post("/api/v1/namespaces/ns1/configmaps", json={"metadata": {"name": "put"}}).json()
    created["data"] = {"a": "1"}
    assert api.put("/api/v1/namespaces/ns1/configmaps/put", json=created).status_code == 200
    assert api.put("/api/v1/namespaces/ns1/configmaps/put", json=created).status_code == 409


def test_json_patch_test_operation_guards_concurrent_changes(api):
    created = api.post("/api/v1/namespaces/ns1/configmaps", json={"metadata": {"name": "jp"}}).json()
    rv = created["metadata"]["resourceVersion"]
    jp = {"Content-Type": "application/json-patch+json"}
    ops = [{"op": "test", "path": "/metadata/resourceVersion", "value": rv},
           {"op": "add", "path": "/metadata/finalizers", "value": ["x"]}]
    assert api.patch("/api/v1/namespaces/ns1/configmaps/jp", content=json.dumps(ops), headers=jp).status_code == 200
    assert api.patch("/api/v1/namespaces/ns1/configmaps/jp", content=json.dumps(ops), headers=jp).status_code == 422


def test_server_side_apply_creates_updates_and_forgets_dropped_fields(api, cluster):
    url = "/apis/apps/v1/namespaces/ns2/deployments/web?fieldManager=op&force=true"
    apply = {"Content-Type": "application/apply-patch+yaml"}
    desired = deployment("web")
    desired["metadata"]["annotations"] = {"mine": "1"}
    first = api.patch(url, content=json.dumps(desired), headers=apply)
    assert first.status_code == 201
    # someone else adds an annotation and edits the image
    api.patch("/apis/apps/v1/namespaces/ns2/deployments/web", headers={"Content-Type": "application/merge-patch+json"},
              content=json.dumps({"metadata": {"annotations": {"theirs": "1"}},
                                  "spec": {"template": {"spec": {"containers": [{"name": "c", "image": "evil"}]}}}}))
    del desired["metadata"]["annotations"]
    again = api.patch(url, content=json.dumps(desired), headers=apply).json()
    assert again["metadata"]["annotations"] == {"theirs": "1"}
    assert again["spec"]["template"]["spec"]["containers"][0]["image"] == "server:1"
    assert again["spec"]["replicas"] == 1  # defaulted by the API server


def test_deployment_controller_marks_rollouts_available(cluster, api):
    api.post("/apis/apps/v1/namespaces/ns3/deployments", json=deployment("d"))
    status = cluster.wait_until(
        lambda: (cluster.get(DEPLOYMENTS, "ns3", "d") or {}).get("status", {}).get("availableReplicas"))
    assert status == 1
    cluster.hold_rollouts()
    try:
        api.patch("/apis/apps/v1/namespaces/ns3/deployments/d",
                  headers={"Content-Type": "application/merge-patch+json"},
                  content=json.dumps({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "v2"}]}}}}))
        st = cluster.get(DEPLOYMENTS, "ns3", "d")["status"]
        assert st["observedGeneration"] == 2 and st["updatedReplicas"] == 0
    finally:
        cluster.release_rollouts()
    cluster.wait_until(lambda: cluster.get(DEPLOYMENTS, "ns3", "d")["status"].get("updatedReplicas") == 1)


def test_finalizers_hold_deletion_and_owners_cascade(api, cluster):
    base = "/apis/kubeinfer.io/v1alpha1/namespaces/ns4/inferenceendpoints"
    owner = api.post(base, json={"metadata": {"name": "o", "finalizers": ["keep"]}, "spec": {}}).json()
    ref = {"apiVersion": "kubeinfer.io/v1alpha1", "kind": "InferenceEndpoint", "name": "o",
           "uid": owner["metadata"]["uid"], "controller": True}
    api.post("/api/v1/namespaces/ns4/configmaps", json={"metadata": {"name": "child", "ownerReferences": [ref]}})
    deleting = api.delete(f"{base}/o").json()
    assert deleting["metadata"]["deletionTimestamp"]
    assert api.get("/api/v1/namespaces/ns4/configmaps/child").status_code == 200
    api.patch(f"{base}/o", headers={"Content-Type": "application/merge-patch+json"},
              content=json.dumps({"metadata": {"finalizers": None}}))
    assert api.get(f"{base}/o").status_code == 404
    assert api.get("/api/v1/namespaces/ns4/configmaps/child").status_code == 404


def test_watch_resumes_from_a_resource_version_and_filters_by_label(api, cluster):
    listing = api.get("/api/v1/namespaces/ns5/configmaps").json()
    since = listing["metadata"]["resourceVersion"]
    api.post("/api/v1/namespaces/ns5/configmaps", json={"metadata": {"name": "x", "labels": {"k": "v"}}})
    api.post("/api/v1/namespaces/ns5/configmaps", json={"metadata": {"name": "y"}})
    lines = []
    with api.stream("GET", "/api/v1/namespaces/ns5/configmaps",
                    params={"watch": "true", "resourceVersion": since, "labelSelector": "k=v",
                            "timeoutSeconds": "1"}) as r:
        for line in r.iter_lines():
            if line:
                lines.append(json.loads(line))
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in lines] == [("ADDED", "x")]


def test_live_watch_sees_changes(api, cluster):
    seen = []

    def watch():
        with httpx.Client(base_url=cluster.url, timeout=10) as c:
            params = {"watch": "true", "timeoutSeconds": "2"}
            with c.stream("GET", "/api/v1/namespaces/ns6/secrets", params=params) as r:
                for line in r.iter_lines():
                    if line:
                        seen.append(json.loads(line)["type"])
                        if len(seen) == 2:
                            return

    t = threading.Thread(target=watch)
    t.start()
    cluster.wait_until(lambda: cluster.call(lambda: len(cluster.emulator.watchers)) > 0)
    api.post("/api/v1/namespaces/ns6/secrets", json={"metadata": {"name": "s"}, "data": {}})
    api.delete("/api/v1/namespaces/ns6/secrets/s")
    t.join(5)
    assert seen == ["ADDED", "DELETED"]


def test_reviews_answer_from_the_configured_policy(api, cluster):
    cluster.emulator.tokens["good"] = {"username": "alice", "groups": ["devs"]}
    cluster.emulator.access_policy = lambda spec: (spec.get("user") == "alice", "test policy")
    tr = api.post("/apis/authentication.k8s.io/v1/tokenreviews", json={"spec": {"token": "good"}}).json()
    assert tr["status"] == {"authenticated": True, "user": {"username": "alice", "groups": ["devs"]}}
    bad = api.post("/apis/authentication.k8s.io/v1/tokenreviews", json={"spec": {"token": "bad"}}).json()
    assert bad["status"]["authenticated"] is False
    sar = {"spec": {"user": "bob", "resourceAttributes": {"verb": "get", "resource": "inferenceendpoints"}}}
    assert api.post("/apis/authorization.k8s.io/v1/subjectaccessreviews", json=sar).json()["status"]["allowed"] is False


def test_discovery_lists_declared_resources_with_subresources(api):
    found = api.get("/apis/kubeinfer.io/v1alpha1").json()
    names = {r["name"] for r in found["resources"]}
    assert {"inferenceendpoints", "inferenceendpoints/status"} <= names


def test_namespaces_are_cluster_scoped_objects(api):
    assert api.post("/api/v1/namespaces", json={"metadata": {"name": "team-x"}}).status_code == 201
    names = [n["metadata"]["name"] for n in api.get("/api/v1/namespaces").json()["items"]]
    assert "team-x" in names
    got = api.get("/api/v1/namespaces/team-x").json()
    assert got["kind"] == "Namespace" and "namespace" not in got["metadata"]
