"""Pools and deployment_id as the operator renders them: one model server for several
endpoints, a memory budget, and the Gateway API objects that route to it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

from kubeinfer.config import OperatorSettings
from kubeinfer_operator.pools import desired_group, plan, serving_groups
from kubeinfer_operator.render import render_objects


def endpoint(name: str, task: str = "text_embedding", *, pool: str | None = None, memory: str | None = None,
             limit: str | None = None, created: str = "", **settings) -> dict:
    spec = {"taskType": task, "service": "elasticsearch",
            "serviceSettings": settings or {"model_id": f"org/{name}", "num_allocations": 1, "num_threads": 1}}
    deployment: dict = {}
    if pool:
        deployment["pool"] = pool
    if memory or limit:
        deployment["resources"] = {k: {"memory": v} for k, v in (("requests", memory), ("limits", limit)) if v}
    if deployment:
        spec["deployment"] = deployment
    meta = {"name": name, "namespace": "search", "uid": f"uid-{name}"}
    if created:
        meta["creationTimestamp"] = created
    return {"apiVersion": "kubeinfer.io/v1alpha1", "kind": "InferenceEndpoint", "metadata": meta, "spec": spec}


SETTINGS = OperatorSettings(gpus_per_endpoint=0)


def by_kind(objects: list[dict], kind: str) -> list[dict]:
    return [o for o in objects if o["kind"] == kind]


def test_a_pool_of_two_models_is_one_deployment_listing_both_in_its_configmap():
    objects = render_objects([endpoint("e5", pool="small"), endpoint("elser", "sparse_embedding", pool="small")],
                             SETTINGS)
    [deployment] = by_kind(objects, "Deployment")
    [configmap] = by_kind(objects, "ConfigMap")
    [service] = by_kind(objects, "Service")
    assert deployment["metadata"]["name"] == service["metadata"]["name"] == "kubeinfer-pool-small"
    listed = list(yaml.safe_load_all(configmap["data"]["endpoints.yaml"]))
    assert [d["metadata"]["name"] for d in listed] == ["e5", "elser"]
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["args"][:2] == ["serve", "--pool"]
    # The whole ConfigMap is mounted: a mount by items or subPath would never update in place.
    [config] = [v for v in deployment["spec"]["template"]["spec"]["volumes"] if v["name"] == "config"]
    assert config["configMap"] == {"name": "kubeinfer-pool-small"}
    # The pod reserves the pool's budget, the operator's pool memory here.
    assert container["resources"]["requests"]["memory"] == container["resources"]["limits"]["memory"] == "8192Mi"
    # Each member owns the objects; none controls them, so the last one deleted takes them along.
    owners = deployment["metadata"]["ownerReferences"]
    assert {(o["name"], o["uid"], o["controller"]) for o in owners} == {("e5", "uid-e5", False),
                                                                         ("elser", "uid-elser", False)}


def test_adding_a_model_to_a_pool_changes_its_configmap_not_its_pods():
    one = render_objects([endpoint("e5", pool="small")], SETTINGS)
    two = render_objects([endpoint("e5", pool="small"), endpoint("other", pool="small")], SETTINGS)
    template = lambda objs: by_kind(objs, "Deployment")[0]["spec"]["template"]  # noqa: E731
    assert by_kind(one, "ConfigMap")[0]["data"] != by_kind(two, "ConfigMap")[0]["data"]
    annotations = [template(o)["metadata"]["annotations"] for o in (one, two)]
    assert annotations[0] == annotations[1]


def test_a_model_that_does_not_fit_the_pools_memory_is_refused_as_pool_full():
    members = [endpoint("first", pool="p", memory="3Gi", limit="6Gi", created="2026-01-01T00:00:00Z"),
               endpoint("second", pool="p", memory="2Gi", created="2026-01-02T00:00:00Z"),
               endpoint("third", pool="p", memory="2Gi", created="2026-01-03T00:00:00Z")]
    [group], alone, refused = serving_groups(members)
    decided = plan(group, SETTINGS)
    assert [m["metadata"]["name"] for m in decided.served] == ["first", "second"]
    assert decided.refused["third"].reason == "PoolFull"
    assert "1Gi of its 6Gi left" in decided.refused["third"].message
    listed = yaml.safe_load_all(desired_group(group, SETTINGS).configmap["data"]["endpoints.yaml"])
    assert [d["metadata"]["name"] for d in listed] == ["first", "second"]


def test_an_endpoint_on_another_endpoints_deployment_has_no_model_server_of_its_own():
    owner = endpoint("my-elser", "sparse_embedding")
    user = endpoint("use-existing-deployment", "sparse_embedding", deployment_id="my-elser")
    objects = render_objects([owner, user], SETTINGS, notes=(notes := []))
    assert notes == []
    [deployment] = by_kind(objects, "Deployment")
    assert deployment["metadata"]["name"] == "my-elser"
    [configmap] = by_kind(objects, "ConfigMap")
    listed = list(yaml.safe_load_all(configmap["data"]["endpoints.yaml"]))
    assert [d["metadata"]["name"] for d in listed] == ["my-elser", "use-existing-deployment"]
    # The user's model is the owner's: it takes no memory of its own.
    [group], _, _ = serving_groups([owner, user])
    assert plan(group, SETTINGS).used == 2 * 1024 ** 3


def test_a_deployment_id_naming_no_endpoint_is_refused_as_not_found():
    notes: list[str] = []
    objects = render_objects([endpoint("lost", "sparse_embedding", deployment_id="nowhere")], SETTINGS,
                             notes=notes)
    assert objects == []
    assert notes == ["InferenceEndpoint lost is not served: DeploymentNotFound: Cannot find deployment [nowhere]"]


def test_a_built_in_models_deployment_id_runs_that_model_as_the_specifications_example_does():
    notes: list[str] = []
    objects = render_objects([endpoint("use-existing-deployment", "sparse_embedding", deployment_id=".elser_model_2")],
                             SETTINGS, notes=notes)
    assert notes == []
    [deployment] = by_kind(objects, "Deployment")
    assert deployment["metadata"]["name"] == "use-existing-deployment"
    [export] = [c for c in deployment["spec"]["template"]["spec"]["initContainers"] if c["name"] == "export-model"]
    assert "opensearch-project/opensearch-neural-sparse-encoding-v2-distill" in export["command"]


def test_a_deployment_id_of_another_task_type_is_refused():
    notes: list[str] = []
    render_objects([endpoint("e5"), endpoint("wrong", "sparse_embedding", deployment_id="e5")], SETTINGS,
                   notes=notes)
    assert notes == ["InferenceEndpoint wrong is not served: InvalidSpec: Deployment [e5] serves task type "
                     "[text_embedding], not [sparse_embedding]"]


def test_httproutes_send_each_endpoints_inference_to_its_pools_service():
    settings = SETTINGS.model_copy(update={"gateway_parent": "infra/edge"})
    objects = render_objects([endpoint("e5", pool="small"), endpoint("solo", "rerank")], settings)
    routes = {r["metadata"]["name"]: r for r in by_kind(objects, "HTTPRoute")}
    assert set(routes) == {"e5", "solo"}
    route = routes["e5"]
    assert route["apiVersion"] == "gateway.networking.k8s.io/v1"
    assert route["spec"]["parentRefs"] == [{"group": "gateway.networking.k8s.io", "kind": "Gateway",
                                            "namespace": "infra", "name": "edge"}]
    [rule] = route["spec"]["rules"]
    assert [(m["method"], m["path"]["value"]) for m in rule["matches"]] == [
        ("POST", "/_inference/text_embedding/e5"), ("POST", "/_inference/text_embedding/e5/_stream"),
        ("POST", "/_inference/e5")]
    assert rule["backendRefs"] == [{"name": "kubeinfer-pool-small", "port": 80}]
    assert routes["solo"]["spec"]["rules"][0]["backendRefs"] == [{"name": "solo", "port": 80}]
    assert routes["solo"]["metadata"]["ownerReferences"][0]["controller"] is True


def test_inference_pools_select_the_model_servers_pods_and_name_the_endpoint_picker():
    settings = SETTINGS.model_copy(update={"gateway_parent": "infra/edge", "inference_pool": True})
    objects = render_objects([endpoint("e5", pool="small"), endpoint("elser", "sparse_embedding", pool="small")],
                             settings)
    [pool] = by_kind(objects, "InferencePool")
    [deployment] = by_kind(objects, "Deployment")
    assert pool["apiVersion"] == "inference.networking.k8s.io/v1"
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert pool["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert labels["inference.networking.k8s.io/engine-type"] == "kubeinfer"
    assert pool["spec"]["targetPorts"] == [{"number": 8080}]
    assert pool["spec"]["endpointPickerRef"]["name"] == "kubeinfer-endpoint-picker"
    for route in by_kind(objects, "HTTPRoute"):
        assert route["spec"]["rules"][0]["backendRefs"] == [
            {"group": "inference.networking.k8s.io", "kind": "InferencePool", "name": "kubeinfer-pool-small"}]


def run_render(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-P", "-m", "kubeinfer.cli", "render", *args],
                          capture_output=True, text=True)


def test_render_command_writes_routes_for_a_gateway_and_refuses_a_malformed_one(tmp_path: Path):
    path = tmp_path / "pool.yaml"
    path.write_text(yaml.safe_dump_all([endpoint("e5", pool="small"), endpoint("b", pool="small")]))
    done = run_render(str(path), "--gateway", "infra/edge", "--inference-pool")
    assert done.returncode == 0, done.stderr
    kinds = [d["kind"] for d in yaml.safe_load_all(done.stdout) if d]
    assert kinds.count("HTTPRoute") == 2 and kinds.count("InferencePool") == 1 and kinds.count("Deployment") == 1
    bad = run_render(str(path), "--gateway", "edge")
    assert bad.returncode == 2
    assert "NAMESPACE/NAME" in bad.stderr


def test_an_external_service_cannot_join_a_pool():
    cr = endpoint("oa", pool="p")
    cr["spec"].update({"service": "openai", "serviceSettings": {
        "api_key": {"secretKeyRef": {"name": "s", "key": "k"}}, "model_id": "text-embedding-3-small"}})
    notes: list[str] = []
    render_objects([cr, endpoint("e5", pool="p")], SETTINGS, notes=notes)
    assert notes and "pools hold local models" in notes[0]


def test_members_rendered_without_uids_are_one_owner_reference_not_a_duplicate():
    members = [endpoint("a", pool="p"), endpoint("b", pool="p")]
    for cr in members:
        del cr["metadata"]["uid"]
    [deployment] = by_kind(render_objects(members, SETTINGS), "Deployment")
    uids = [o["uid"] for o in deployment["metadata"]["ownerReferences"]]
    assert len(uids) == len(set(uids)) == 1


def test_a_pool_scales_as_one_and_goes_to_zero_only_when_every_member_may():
    adaptive = {"model_id": "org/a", "num_threads": 1,
                "adaptive_allocations": {"enabled": True, "min_number_of_allocations": 0, "max_number_of_allocations": 4}}
    idle = [endpoint("a", pool="p", **adaptive), endpoint("b", pool="p", **{**adaptive, "model_id": "org/b"})]
    objects = render_objects(idle, SETTINGS)
    [scaled] = by_kind(objects, "ScaledObject")
    [deployment] = by_kind(objects, "Deployment")
    assert (scaled["spec"]["minReplicaCount"], scaled["spec"]["maxReplicaCount"]) == (0, 4)
    assert scaled["spec"]["scaleTargetRef"]["name"] == "kubeinfer-pool-p"
    assert 'inference_id=~"a|b"' in scaled["spec"]["triggers"][0]["metadata"]["query"]
    assert "replicas" not in deployment["spec"]
    # A member with a fixed allocation keeps the pool up.
    objects = render_objects(idle + [endpoint("fixed", pool="p")], SETTINGS.model_copy(update={"autoscaler": "hpa"}))
    [hpa] = by_kind(objects, "HorizontalPodAutoscaler")
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (1, 4)
    assert by_kind(objects, "Deployment")[0]["metadata"]["annotations"]["kubeinfer.io/min-replicas"] == "1"


def test_azure_openais_own_deployment_id_puts_no_endpoint_on_another():
    cr = endpoint("azure")
    cr["spec"].update({"service": "azureopenai", "serviceSettings": {
        "api_key": {"secretKeyRef": {"name": "s", "key": "k"}}, "resource_name": "r", "deployment_id": "d",
        "api_version": "2024-02-01"}})
    notes: list[str] = []
    objects = render_objects([cr], SETTINGS, notes=notes)
    assert notes == [] and by_kind(objects, "Deployment")[0]["metadata"]["name"] == "azure"
