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
        for ns in ("ns1", "ns2", "ns3", "ns4", "ns5", "ns6"):
            c.create_namespace(ns)
        yield c


@pytest.fixture
def api(cluster):
    with httpx.Client(base_url=cluster.url, timeout=10) as client:
        yield client


def endpoint(name: str, service: str = "openai", **extra) -> dict:
    return {"apiVersion": "kubeinfer.io/v1alpha1", "kind": "InferenceEndpoint", "metadata": {"name": name, **extra},
            "spec": {"taskType": "text_embedding", "service": service,
                     "serviceSettings": {"model_id": "m", "api_key": {"secretKeyRef": {"name": "s", "key": "k"}}}}}


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
    obj = {**endpoint("e"), "status": {"url": "ignored"}}
    created = api.post(base, json=obj).json()
    assert "status" not in created
    merge = {"Content-Type": "application/merge-patch+json"}
    labelled = api.patch(f"{base}/e", content=json.dumps({"metadata": {"labels": {"a": "b"}}}), headers=merge).json()
    assert labelled["metadata"]["generation"] == 1
    assert int(labelled["metadata"]["resourceVersion"]) > int(created["metadata"]["resourceVersion"])
    changed = api.patch(f"{base}/e", content=json.dumps({"spec": {"taskType": "completion"}}), headers=merge).json()
    assert changed["metadata"]["generation"] == 2
    # status through the main resource is ignored; through /status it is kept and spec is not touched
    api.patch(f"{base}/e", content=json.dumps({"status": {"url": "x"}}), headers=merge)
    assert "status" not in api.get(f"{base}/e").json()
    st = api.patch(f"{base}/e/status", content=json.dumps({"status": {"url": "x"}, "spec": {"service": "cohere"}}),
                   headers=merge).json()
    assert st["status"] == {"url": "x"} and st["spec"]["service"] == "openai" and st["metadata"]["generation"] == 2
    # a no-op patch changes nothing
    same = api.patch(f"{base}/e", content=json.dumps({"spec": {"taskType": "completion"}}), headers=merge).json()
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
    owner = api.post(base, json=endpoint("o", finalizers=["keep"])).json()
    ref = {"apiVersion": "kubeinfer.io/v1alpha1", "kind": "InferenceEndpoint", "name": "o",
           "uid": owner["metadata"]["uid"], "controller": True}
    api.post("/api/v1/namespaces/ns4/configmaps", json={"metadata": {"name": "child", "ownerReferences": [ref]}})
    deleting = api.delete(f"{base}/o").json()
    assert deleting["metadata"]["deletionTimestamp"]
    assert api.get("/api/v1/namespaces/ns4/configmaps/child").status_code == 200
    api.patch(f"{base}/o", headers={"Content-Type": "application/merge-patch+json"},
              content=json.dumps({"metadata": {"finalizers": None}}))
    assert api.get(f"{base}/o").status_code == 404
    # the garbage collector works in the background, as a real one does
    cluster.wait_until(lambda: api.get("/api/v1/namespaces/ns4/configmaps/child").status_code == 404)


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


# ---- the rules of a real API server ----------------------------------------------------------
APPLY = {"Content-Type": "application/apply-patch+yaml"}
MERGE = {"Content-Type": "application/merge-patch+json"}
STRATEGIC = {"Content-Type": "application/strategic-merge-patch+json"}


def test_creating_into_a_missing_namespace_is_not_found(api):
    r = api.post("/api/v1/namespaces/nowhere/configmaps", json={"metadata": {"name": "a"}})
    assert r.status_code == 404
    assert r.json()["reason"] == "NotFound" and r.json()["message"] == 'namespaces "nowhere" not found'


def test_a_watch_older_than_the_history_window_is_gone_and_bookmarks_come_when_asked():
    with EmulatedCluster(history_window=3, bookmark_interval=0.1) as small:
        small.create_namespace("w")
        with httpx.Client(base_url=small.url, timeout=10) as c:
            since = c.get("/api/v1/namespaces/w/configmaps").json()["metadata"]["resourceVersion"]
            for i in range(5):
                c.post("/api/v1/namespaces/w/configmaps", json={"metadata": {"name": f"c{i}"}})
            with c.stream("GET", "/api/v1/namespaces/w/configmaps",
                          params={"watch": "true", "resourceVersion": since}) as r:
                events = [json.loads(line) for line in r.iter_lines() if line]
            assert [e["type"] for e in events] == ["ERROR"]
            assert events[0]["object"]["code"] == 410 and events[0]["object"]["reason"] == "Expired"
            latest = c.get("/api/v1/namespaces/w/configmaps").json()["metadata"]["resourceVersion"]
            with c.stream("GET", "/api/v1/namespaces/w/configmaps",
                          params={"watch": "true", "resourceVersion": latest, "allowWatchBookmarks": "true",
                                  "timeoutSeconds": "1"}) as r:
                events = [json.loads(line) for line in r.iter_lines() if line]
            assert events and {e["type"] for e in events} == {"BOOKMARK"}
            assert events[0]["object"]["metadata"]["resourceVersion"] == latest
            c.post("/api/v1/namespaces/w/configmaps", json={"metadata": {"name": "later"}})
            small.compact()
            with c.stream("GET", "/api/v1/namespaces/w/configmaps",
                          params={"watch": "true", "resourceVersion": latest}) as r:
                assert json.loads(next(r.iter_lines()))["object"]["code"] == 410


def test_server_side_apply_merges_lists_by_key_and_records_owners(api):
    url = "/apis/apps/v1/namespaces/ns2/deployments/keyed"
    mine = deployment("keyed")
    mine["spec"]["template"]["spec"]["containers"][0]["env"] = [{"name": "A", "value": "1"}]
    api.patch(f"{url}?fieldManager=op", content=json.dumps(mine), headers=APPLY).raise_for_status()
    theirs = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "keyed"},
              "spec": {"template": {"spec": {"containers": [{"name": "c", "env": [{"name": "B", "value": "2"}]},
                                                            {"name": "sidecar", "image": "proxy"}]}}}}
    r = api.patch(f"{url}?fieldManager=mesh", content=json.dumps(theirs), headers=APPLY)
    assert r.status_code == 200
    containers = r.json()["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in containers] == ["c", "sidecar"]
    assert containers[0]["env"] == [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]
    managers = {m["manager"]: m for m in r.json()["metadata"]["managedFields"]}
    assert set(managers) == {"op", "mesh", "kube-controller-manager"} and managers["op"]["operation"] == "Apply"
    assert managers["kube-controller-manager"]["subresource"] == "status"
    c_key = 'k:{"name":"c"}'
    assert 'k:{"name":"B"}' in managers["mesh"]["fieldsV1"]["f:spec"]["f:template"]["f:spec"]["f:containers"][c_key][
        "f:env"]
    # the first manager re-applies: another manager's env var survives
    again = api.patch(f"{url}?fieldManager=op", content=json.dumps(mine), headers=APPLY).json()
    assert again["spec"]["template"]["spec"]["containers"][0]["env"] == [{"name": "A", "value": "1"},
                                                                         {"name": "B", "value": "2"}]


def test_an_unforced_apply_that_changes_another_managers_field_conflicts(api):
    url = "/apis/apps/v1/namespaces/ns2/deployments/contested"
    api.patch(f"{url}?fieldManager=op", content=json.dumps(deployment("contested")), headers=APPLY)
    # an autoscaler takes over the replicas through an update
    api.patch(url, content=json.dumps({"spec": {"replicas": 3}}), headers=MERGE,
              params={"fieldManager": "autoscaler"}).raise_for_status()
    wanted = {**deployment("contested"), "spec": {**deployment("contested")["spec"], "replicas": 1}}
    r = api.patch(f"{url}?fieldManager=op", content=json.dumps(wanted), headers=APPLY)
    assert r.status_code == 409 and r.json()["reason"] == "Conflict"
    assert r.json()["details"]["causes"][0]["field"] == ".spec.replicas"
    assert 'conflict with "autoscaler"' in r.json()["message"]
    forced = api.patch(f"{url}?fieldManager=op&force=true", content=json.dumps(wanted), headers=APPLY)
    assert forced.status_code == 200 and forced.json()["spec"]["replicas"] == 1
    owners = {m["manager"]: m["fieldsV1"] for m in forced.json()["metadata"]["managedFields"]}
    assert "f:replicas" in owners["op"]["f:spec"] and "f:replicas" not in owners.get("autoscaler", {}).get("f:spec", {})


def test_the_scale_subresource_reads_and_sets_replicas_owned_by_its_writer(api):
    url = "/apis/apps/v1/namespaces/ns2/deployments/scaled"
    api.patch(f"{url}?fieldManager=op", content=json.dumps(deployment("scaled")), headers=APPLY)
    scale = api.get(f"{url}/scale").json()
    assert (scale["kind"], scale["spec"]["replicas"]) == ("Scale", deployment("scaled")["spec"].get("replicas", 1))
    woken = api.patch(f"{url}/scale", content=json.dumps({"spec": {"replicas": 0}}), headers=MERGE,
                      params={"fieldManager": "waker"})
    assert woken.status_code == 200 and woken.json()["spec"]["replicas"] == 0
    after = api.get(url).json()
    assert after["spec"]["replicas"] == 0
    waker = next(m for m in after["metadata"]["managedFields"] if m["manager"] == "waker")
    assert waker["subresource"] == "scale" and "f:replicas" in waker["fieldsV1"]["f:spec"]
    bad = api.patch(f"{url}/scale", content=json.dumps({"spec": {"replicas": -1}}), headers=MERGE)
    assert bad.status_code == 422


def test_a_field_dropped_from_an_apply_stays_while_another_manager_owns_it(api):
    url = "/api/v1/namespaces/ns2/configmaps/shared"
    api.patch(f"{url}?fieldManager=a", headers=APPLY, content=json.dumps(
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "shared"}, "data": {"x": "1", "y": "1"}}))
    api.patch(f"{url}?fieldManager=b", headers=APPLY, content=json.dumps(
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "shared"}, "data": {"x": "1"}}))
    r = api.patch(f"{url}?fieldManager=a", headers=APPLY, content=json.dumps(
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "shared"}, "data": {}}))
    assert r.json()["data"] == {"x": "1"}


def test_strategic_merge_patch_merges_containers_by_name_and_differs_from_merge_patch(api):
    api.post("/apis/apps/v1/namespaces/ns2/deployments", json=deployment("smp")).raise_for_status()
    url = "/apis/apps/v1/namespaces/ns2/deployments/smp"
    patch = {"spec": {"template": {"spec": {"containers": [{"name": "sidecar", "image": "proxy"}]}}}}
    merged = api.patch(url, content=json.dumps(patch), headers=STRATEGIC).json()
    assert [c["name"] for c in merged["spec"]["template"]["spec"]["containers"]] == ["c", "sidecar"]
    delete = {"spec": {"template": {"spec": {"containers": [{"name": "sidecar", "$patch": "delete"}]}}}}
    trimmed = api.patch(url, content=json.dumps(delete), headers=STRATEGIC).json()
    assert [c["name"] for c in trimmed["spec"]["template"]["spec"]["containers"]] == ["c"]
    replaced = api.patch(url, content=json.dumps(patch), headers=MERGE).json()
    assert [c["name"] for c in replaced["spec"]["template"]["spec"]["containers"]] == ["sidecar"]
    # custom resources take no strategic merge patch, as on a real server
    api.post("/apis/kubeinfer.io/v1alpha1/namespaces/ns2/inferenceendpoints", json=endpoint("smp"))
    r = api.patch("/apis/kubeinfer.io/v1alpha1/namespaces/ns2/inferenceendpoints/smp",
                  content=json.dumps({"spec": {"taskType": "completion"}}), headers=STRATEGIC)
    assert r.status_code == 415


def test_custom_resources_are_pruned_defaulted_and_validated_by_their_crd(api):
    base = "/apis/kubeinfer.io/v1alpha1/namespaces/ns2/inferenceendpoints"
    obj = endpoint("schema")
    obj["spec"]["unknownField"] = 1
    created = api.post(base, json=obj)
    assert created.status_code == 201 and "unknownField" not in created.json()["spec"]
    assert 'unknown field "spec.unknownField"' in created.headers["Warning"]
    strict = api.post(base, json={**obj, "metadata": {"name": "strict"}}, params={"fieldValidation": "Strict"})
    assert strict.status_code == 400 and 'unknown field "spec.unknownField"' in strict.json()["message"]
    bad = endpoint("bad", service="nosuch")
    r = api.post(base, json=bad)
    assert r.status_code == 422 and r.json()["reason"] == "Invalid"
    assert r.json()["details"]["causes"][0]["field"] == "spec.service"
    # CEL rules, transition rules included, hold on updates and on the status subresource's writes
    r = api.patch(f"{base}/schema", headers=MERGE, content=json.dumps({"spec": {"inferenceId": "schema"}}))
    assert r.status_code == 200
    r = api.patch(f"{base}/schema", headers=MERGE, content=json.dumps({"spec": {"inferenceId": "changed"}}))
    assert r.status_code == 422 and "inferenceId is immutable" in r.json()["message"]
    st = api.patch(f"{base}/schema/status", headers=MERGE, content=json.dumps({"status": {"url": "u", "junk": 1}}))
    assert st.status_code == 200 and st.json()["status"] == {"url": "u"}


def test_deletion_bumps_generation_forbids_new_finalizers_and_collects_dangling_dependents(api, cluster):
    base = "/apis/kubeinfer.io/v1alpha1/namespaces/ns4/inferenceendpoints"
    api.post(base, json=endpoint("held", finalizers=["keep"])).raise_for_status()
    deleting = api.delete(f"{base}/held").json()
    assert deleting["metadata"]["generation"] == 2 and deleting["metadata"]["deletionTimestamp"]
    r = api.patch(f"{base}/held", headers=MERGE, content=json.dumps({"metadata": {"finalizers": ["keep", "more"]}}))
    assert r.status_code == 422 and "no new finalizers" in r.json()["message"]
    ghost = {"apiVersion": "v1", "kind": "ConfigMap", "name": "ghost", "uid": "no-such-uid"}
    api.post("/api/v1/namespaces/ns4/configmaps", json={"metadata": {"name": "orphan", "ownerReferences": [ghost]}})
    cluster.wait_until(lambda: api.get("/api/v1/namespaces/ns4/configmaps/orphan").status_code == 404)


def test_foreground_and_orphan_propagation(api, cluster):
    owner = api.post("/api/v1/namespaces/ns4/configmaps", json={"metadata": {"name": "fg"}}).json()
    ref = {"apiVersion": "v1", "kind": "ConfigMap", "name": "fg", "uid": owner["metadata"]["uid"]}
    api.post("/api/v1/namespaces/ns4/configmaps", json={"metadata": {"name": "fg-child", "ownerReferences": [ref]}})
    r = api.delete("/api/v1/namespaces/ns4/configmaps/fg", params={"propagationPolicy": "Foreground"})
    assert r.status_code == 202 and "foregroundDeletion" in r.json()["metadata"]["finalizers"]
    cluster.wait_until(lambda: api.get("/api/v1/namespaces/ns4/configmaps/fg").status_code == 404)
    assert api.get("/api/v1/namespaces/ns4/configmaps/fg-child").status_code == 404
    owner = api.post("/api/v1/namespaces/ns4/configmaps", json={"metadata": {"name": "or"}}).json()
    ref = {**ref, "name": "or", "uid": owner["metadata"]["uid"]}
    api.post("/api/v1/namespaces/ns4/configmaps", json={"metadata": {"name": "or-child", "ownerReferences": [ref]}})
    api.request("DELETE", "/api/v1/namespaces/ns4/configmaps/or", json={"propagationPolicy": "Orphan"})
    kept = api.get("/api/v1/namespaces/ns4/configmaps/or-child").json()
    assert "ownerReferences" not in kept["metadata"]


def test_yaml_bodies_tables_and_discovery_for_kubectl(api):
    created = api.post("/api/v1/namespaces/ns2/configmaps", headers={"Content-Type": "application/yaml"},
                       content="metadata:\n  name: from-yaml\ndata:\n  k: v\n")
    assert created.status_code == 201 and created.json()["data"] == {"k": "v"}
    api.post("/apis/kubeinfer.io/v1alpha1/namespaces/ns2/inferenceendpoints", json=endpoint("tabled"))
    table = api.get("/apis/kubeinfer.io/v1alpha1/namespaces/ns2/inferenceendpoints",
                    headers={"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io"}).json()
    assert table["kind"] == "Table"
    assert [c["name"] for c in table["columnDefinitions"]][:4] == ["Name", "Task", "Service", "Ready"]
    row = next(r for r in table["rows"] if r["cells"][0] == "tabled")
    assert row["cells"][1:3] == ["text_embedding", "openai"]
    found = {r["name"]: r for r in api.get("/apis/kubeinfer.io/v1alpha1").json()["resources"]}
    assert found["inferenceendpoints"]["shortNames"] == ["ie"] and found["inferenceendpoints"]["categories"] == [
        "kubeinfer"]
    doc = api.get("/openapi/v3/apis/kubeinfer.io/v1alpha1").json()
    schema = doc["components"]["schemas"]["io.kubeinfer.v1alpha1.InferenceEndpoint"]
    assert "taskType" in schema["properties"]["spec"]["properties"]
    assert api.get("/openapi/v3").json()["paths"]["apis/kubeinfer.io/v1alpha1"]["serverRelativeURL"]
    assert "io.k8s.api.apps.v1.Deployment" in api.get("/openapi/v2").json()["definitions"]


WIDGETS = "example.com/v1/widgets"
WIDGET_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
    "metadata": {"name": "widgets.example.com"},
    "spec": {"group": "example.com", "scope": "Namespaced",
             "names": {"kind": "Widget", "plural": "widgets", "singular": "widget", "listKind": "WidgetList"},
             "versions": [{"name": "v1", "served": True, "storage": True, "subresources": {"status": {}},
                           "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                               "spec": {"type": "object", "properties": {
                                   "size": {"type": "string", "enum": ["S", "M"], "default": "S"},
                                   "ports": {"type": "array", "x-kubernetes-list-type": "map",
                                             "x-kubernetes-list-map-keys": ["port"],
                                             "items": {"type": "object", "required": ["port"], "properties": {
                                                 "port": {"type": "integer"}, "name": {"type": "string"}}}},
                                   "tags": {"type": "array", "items": {"type": "string"}}}},
                               "status": {"type": "object", "properties": {"phase": {"type": "string"}}}}}}}]}}


def test_a_crd_created_through_the_api_is_served_with_its_schema(api, cluster):
    assert api.post("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", json=WIDGET_CRD).status_code == 201
    crd = api.get("/apis/apiextensions.k8s.io/v1/customresourcedefinitions/widgets.example.com").json()
    assert {c["type"]: c["status"] for c in crd["status"]["conditions"]}["Established"] == "True"
    url = "/apis/example.com/v1/namespaces/ns2/widgets"
    created = api.post(url, json={"metadata": {"name": "w"}, "spec": {"ports": [{"port": 80}], "tags": ["a"]}}).json()
    assert created["spec"]["size"] == "S"  # defaulted
    bad = api.post(url, json={"metadata": {"name": "x"}, "spec": {"size": "XL"}})
    assert bad.status_code == 422 and bad.json()["details"]["causes"][0]["field"] == "spec.size"
    # ports merge by their map key for another manager's apply; the atomic tags list is replaced
    theirs = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"},
              "spec": {"ports": [{"port": 443, "name": "tls"}], "tags": ["b"]}}
    r = api.patch(f"{url}/w?fieldManager=tls", content=json.dumps(theirs), headers=APPLY)
    assert r.status_code == 409  # the tags list belongs to the creator
    r = api.patch(f"{url}/w?fieldManager=tls&force=true", content=json.dumps(theirs), headers=APPLY)
    assert [p["port"] for p in r.json()["spec"]["ports"]] == [80, 443] and r.json()["spec"]["tags"] == ["b"]
    # deleting the CRD stops serving the resource
    api.delete("/apis/apiextensions.k8s.io/v1/customresourcedefinitions/widgets.example.com")
    assert api.get(url).status_code == 404
    assert cluster.list(WIDGETS) == []


def test_a_crd_whose_rule_reads_a_field_cel_cannot_type_is_refused(api):
    """As kube-apiserver compiles the rules: an untyped map's field is not in CEL's type."""
    crd = json.loads(json.dumps(WIDGET_CRD))
    spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    spec["properties"]["labels"] = {"type": "object",
                                    "additionalProperties": {"x-kubernetes-preserve-unknown-fields": True}}
    spec["x-kubernetes-validations"] = [{"rule": "!has(self.labels) || self.size != 'S'", "message": "m"}]
    refused = api.post("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", json=crd)
    assert refused.status_code == 422
    assert "compilation failed: ERROR: undefined field 'labels'" in refused.json()["message"]
    assert api.get("/apis/apiextensions.k8s.io/v1/customresourcedefinitions/widgets.example.com").status_code == 404
    spec["properties"]["labels"] = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
    assert api.post("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", json=crd).status_code == 201


def test_a_secret_whose_data_is_not_base64_is_refused(api):
    bad = {"metadata": {"name": "bad"}, "data": {"token": "c2VjcmV0==" * 2}}
    refused = api.post("/api/v1/namespaces/default/secrets", json=bad)
    assert refused.status_code == 400 and "illegal base64 data" in refused.json()["message"]
    good = {"metadata": {"name": "good"}, "data": {"token": "c2VjcmV0"}}
    assert api.post("/api/v1/namespaces/default/secrets", json=good).status_code == 201


def test_the_scale_subresource_sets_replicas_under_its_own_manager(api):
    api.post("/apis/apps/v1/namespaces/ns3/deployments", json=deployment("scaled")).raise_for_status()
    url = "/apis/apps/v1/namespaces/ns3/deployments/scaled/scale"
    scale = api.get(url).json()
    assert scale["kind"] == "Scale" and scale["spec"]["replicas"] == 1 and scale["status"]["selector"] == "app=scaled"
    r = api.patch(url, content=json.dumps({"spec": {"replicas": 3}}), headers=MERGE,
                  params={"fieldManager": "hpa"})
    assert r.status_code == 200 and r.json()["spec"]["replicas"] == 3
    got = api.get("/apis/apps/v1/namespaces/ns3/deployments/scaled").json()
    assert got["spec"]["replicas"] == 3
    entry = next(m for m in got["metadata"]["managedFields"] if m["manager"] == "hpa")
    assert entry["subresource"] == "scale" and entry["fieldsV1"] == {"f:spec": {"f:replicas": {}}}


def test_built_in_kinds_lose_fields_their_type_does_not_have(api):
    body = deployment("typed")
    body["spec"]["replicaz"] = 2
    body["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"] = "Always"
    body["spec"]["template"]["spec"]["containers"][0]["imagee"] = "typo"
    created = api.post("/apis/apps/v1/namespaces/ns3/deployments", json=body)
    assert created.status_code == 201
    container = created.json()["spec"]["template"]["spec"]["containers"][0]
    assert "replicaz" not in created.json()["spec"] and "imagee" not in container
    assert container["imagePullPolicy"] == "Always"
    assert 'unknown field "spec.replicaz"' in created.headers["Warning"]
    strict = api.post("/apis/apps/v1/namespaces/ns3/deployments", json={**body, "metadata": {"name": "typed2"}},
                      params={"fieldValidation": "Strict"})
    assert strict.status_code == 400 and "strict decoding error" in strict.json()["message"]


def test_a_watch_asked_for_tables_streams_rows_as_kubectl_get_watch_reads_them(api):
    since = api.get("/api/v1/namespaces/ns5/configmaps").json()["metadata"]["resourceVersion"]
    api.post("/api/v1/namespaces/ns5/configmaps", json={"metadata": {"name": "rowed"}, "data": {"a": "1"}})
    with api.stream("GET", "/api/v1/namespaces/ns5/configmaps",
                    params={"watch": "true", "resourceVersion": since, "timeoutSeconds": "1"},
                    headers={"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io"}) as r:
        events = [json.loads(line) for line in r.iter_lines() if line]
    assert [e["type"] for e in events] == ["ADDED"]
    table = events[0]["object"]
    assert table["kind"] == "Table" and [c["name"] for c in table["columnDefinitions"]] == ["Name", "Data", "Age"]
    assert table["rows"][0]["cells"][:2] == ["rowed", 1]


def test_one_change_reaches_a_full_and_a_metadata_only_watch_each_in_its_own_form(api, cluster):
    seen: dict[str, list[dict]] = {"full": [], "partial": []}
    partial = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1"

    def watch(form: str, accept: str) -> None:
        with httpx.Client(base_url=cluster.url, timeout=10, headers={"Accept": accept}) as c:
            with c.stream("GET", "/api/v1/namespaces/ns6/secrets",
                          params={"watch": "true", "timeoutSeconds": "3"}) as r:
                for line in r.iter_lines():
                    if line:
                        seen[form].append(json.loads(line))
                        if len(seen[form]) == 2:
                            return

    before = cluster.call(lambda: len(cluster.emulator.watchers))
    threads = [threading.Thread(target=watch, args=("full", "application/json")),
               threading.Thread(target=watch, args=("partial", partial))]
    for t in threads:
        t.start()
    cluster.wait_until(lambda: cluster.call(lambda: len(cluster.emulator.watchers)) >= before + 2)
    api.post("/api/v1/namespaces/ns6/secrets", json={"metadata": {"name": "both"}, "data": {"k": "dg=="}})
    api.patch("/api/v1/namespaces/ns6/secrets/both", headers=MERGE, content=json.dumps({"data": {"k": "dw=="}}))
    for t in threads:
        t.join(5)
    assert [(e["type"], e["object"]["kind"], e["object"]["data"]) for e in seen["full"]] == [
        ("ADDED", "Secret", {"k": "dg=="}), ("MODIFIED", "Secret", {"k": "dw=="})]
    assert [(e["type"], e["object"]["kind"], "data" in e["object"]) for e in seen["partial"]] == [
        ("ADDED", "PartialObjectMetadata", False), ("MODIFIED", "PartialObjectMetadata", False)]
    assert seen["partial"][1]["object"]["metadata"]["resourceVersion"] == \
        seen["full"][1]["object"]["metadata"]["resourceVersion"]


def test_a_list_comes_in_pages_of_limit_objects_in_name_order(api, cluster):
    for name in ("p3", "p1", "p5", "p2", "p4"):
        api.post("/api/v1/namespaces/ns3/configmaps", json={"metadata": {"name": name}}).raise_for_status()
    first = api.get("/api/v1/namespaces/ns3/configmaps", params={"limit": "2"}).json()
    assert [o["metadata"]["name"] for o in first["items"]] == ["p1", "p2"]
    assert first["metadata"]["remainingItemCount"] == 3
    api.delete("/api/v1/namespaces/ns3/configmaps/p3").raise_for_status()
    pages, token = [first], first["metadata"]["continue"]
    while token:
        page = api.get("/api/v1/namespaces/ns3/configmaps", params={"limit": "2", "continue": token}).json()
        pages.append(page)
        token = page["metadata"].get("continue")
    assert [[o["metadata"]["name"] for o in p["items"]] for p in pages] == [["p1", "p2"], ["p4", "p5"]]
    assert {p["metadata"]["resourceVersion"] for p in pages} == {first["metadata"]["resourceVersion"]}
    whole = api.get("/api/v1/namespaces/ns3/configmaps").json()
    assert "continue" not in whole["metadata"] and len(whole["items"]) == 4
    bad = api.get("/api/v1/namespaces/ns3/configmaps", params={"limit": "2", "continue": "not-a-token"})
    assert bad.status_code == 400
    cluster.call(cluster.emulator.compact, "v1/configmaps")
    gone = api.get("/api/v1/namespaces/ns3/configmaps", params={"limit": "2", "continue": first["metadata"]["continue"]})
    assert gone.status_code == 410 and gone.json()["reason"] == "Expired"
