"""The GitOps examples: what Argo CD, Flux and kstatus make of each status the operator
writes, and that the Applications, HelmRelease and Kustomizations point at things that
exist and render.

Statuses come from the operator's own pure status functions. Argo CD's verdict comes from
running the shipped Lua with a Lua interpreter (lupa); Flux's from evaluating the
shipped healthCheckExprs with a CEL interpreter (celpy); kstatus's from its documented
rules for generic resources, written out below.
"""

from __future__ import annotations

import json
from pathlib import Path

import celpy
import lupa
import pytest
import yaml

from kubeinfer_operator import status as endpoint_status
from kubeinfer.cli import main as kubeinfer
from shipping import CHART, REPO, helm, kustomize, load_files, named, tool

GITOPS = REPO / "examples" / "gitops"
REPO_URL = "https://github.com/kubeinfer/kubeinfer.git"


# ---------------------------------------------------------------- statuses

def deployment(*, replicas=1, generation=1, observed=1, total=1, updated=1, available=1, progress=None):
    conditions = [{"type": "Available", "status": "True" if available else "False"}]
    if progress:
        conditions.append({"type": "Progressing", "status": "False", "reason": progress, "message": "timed out"})
    return {"metadata": {"generation": generation}, "spec": {"replicas": replicas},
            "status": {"observedGeneration": observed, "replicas": total, "updatedReplicas": updated,
                       "readyReplicas": available, "availableReplicas": available, "conditions": conditions}}


URL = "http://e5.search.svc.cluster.local/_inference/text_embedding/e5"
OBSERVATIONS = {
    "ready": endpoint_status.observe_deployment(deployment(), url=URL),
    "invalid-spec": endpoint_status.invalid_spec(
        "Validation Failed: 1: [service_settings] does not contain the required setting [model_id];"),
    "secret-not-found": endpoint_status.secret_not_found(["openai"]),
    "policy-violation": endpoint_status.policy_violation(
        "spec.deployment.image: image [docker.io/attacker/miner:latest] is not allowed by the deployment policy"),
    "region-not-allowed": endpoint_status.region_not_allowed(
        "inference endpoint [e5] uses region [eu-west-1] of [aws], which the inference region policy does not allow "
        "(allowed geos [us])"),
    "rolling-out": endpoint_status.observe_deployment(deployment(available=0), url=URL),
    "updating-while-serving": endpoint_status.observe_deployment(
        deployment(generation=2, observed=2, total=2, updated=1, available=1), url=URL),
    "rollout-stuck": endpoint_status.observe_deployment(
        deployment(available=0, progress="ProgressDeadlineExceeded"), url=URL),
    "scaled-to-zero": endpoint_status.observe_deployment(deployment(replicas=0, total=0, updated=0, available=0)),
}


def endpoint(case: str) -> dict:
    """An InferenceEndpoint as the API server would hold it with the operator's status."""
    cr = {"apiVersion": "kubeinfer.io/v1alpha1", "kind": "InferenceEndpoint",
          "metadata": {"name": "e5", "namespace": "search", "generation": 1},
          "spec": {"taskType": "text_embedding", "service": "elasticsearch",
                   "serviceSettings": {"model_id": ".multilingual-e5-small", "num_allocations": 1, "num_threads": 1}}}
    if case == "no-status-yet":
        return cr
    if case == "generation-behind":
        # The spec changed (generation 2) and the operator has not caught up yet.
        cr["status"] = endpoint_status.endpoint_status(None, OBSERVATIONS["ready"], 1)
        cr["metadata"]["generation"] = 2
        return cr
    cr["status"] = endpoint_status.endpoint_status(None, OBSERVATIONS[case], 1)
    # The API server drops null fields of a merge patch.
    cr["status"] = {k: v for k, v in cr["status"].items() if v is not None}
    return cr


CASES = [*OBSERVATIONS, "generation-behind", "no-status-yet"]


# ---------------------------------------------------------------- kstatus

def kstatus(obj: dict) -> str:
    """kstatus's status of a custom resource (sigs.k8s.io/cli-utils/pkg/kstatus/status):
    deletion -> Terminating; status.observedGeneration present and different from
    metadata.generation -> InProgress; a Reconciling condition True -> InProgress; a
    Stalled condition True -> Failed; a kind without built-in rules -> Current."""
    meta, status = obj.get("metadata", {}), obj.get("status") or {}
    if meta.get("deletionTimestamp"):
        return "Terminating"
    if "generation" in meta and "observedGeneration" in status and status["observedGeneration"] != meta["generation"]:
        return "InProgress"
    for condition in status.get("conditions") or []:
        if condition.get("type") == "Reconciling" and condition.get("status") == "True":
            return "InProgress"
        if condition.get("type") == "Stalled" and condition.get("status") == "True":
            return "Failed"
    return "Current"


KSTATUS_EXPECTED = {
    "ready": "Current",
    "invalid-spec": "Failed",
    "secret-not-found": "Failed",
    "policy-violation": "Failed",
    "region-not-allowed": "Failed",
    "rolling-out": "InProgress",
    "updating-while-serving": "InProgress",
    "rollout-stuck": "Failed",
    "generation-behind": "InProgress",
    "scaled-to-zero": "Current",
}


@pytest.mark.parametrize("case, expected", [
    v if not isinstance(v, str) else (k, v) for k, v in KSTATUS_EXPECTED.items()])
def test_kstatus_reading_of_each_status(case, expected):
    assert kstatus(endpoint(case)) == expected


def test_kstatus_rules_as_written_here_match_the_documented_cases():
    # The rules themselves, on objects kstatus documents.
    assert kstatus({"metadata": {"generation": 2, "deletionTimestamp": "2026-01-01T00:00:00Z"}}) == "Terminating"
    assert kstatus({"metadata": {"generation": 2}, "status": {"observedGeneration": 1}}) == "InProgress"
    stalled = {"metadata": {"generation": 1}, "status": {"observedGeneration": 1, "conditions": [
        {"type": "Stalled", "status": "True", "reason": "InvalidSpec"}]}}
    assert kstatus(stalled) == "Failed"
    reconciling = {"metadata": {}, "status": {"conditions": [{"type": "Reconciling", "status": "True"}]}}
    assert kstatus(reconciling) == "InProgress"
    assert kstatus({"metadata": {"generation": 1}}) == "Current"


# ---------------------------------------------------------------- Argo CD

@pytest.fixture(scope="module")
def argocd_health():
    lua = lupa.LuaRuntime(unpack_returned_tuples=True)
    script = (GITOPS / "argocd" / "health.lua").read_text()
    # Argo CD runs the script as a function body with the live object as `obj`.
    run = lua.eval(f"function(obj)\n{script}\nend")

    def health(obj: dict) -> dict:
        result = run(lua.table_from(json.loads(json.dumps(obj)), recursive=True))
        return dict(result)

    return health


ARGOCD_EXPECTED = {
    "ready": "Healthy",
    "invalid-spec": "Degraded",
    "secret-not-found": "Degraded",
    "policy-violation": "Degraded",
    "region-not-allowed": "Degraded",
    "rolling-out": "Progressing",
    "updating-while-serving": "Progressing",
    "rollout-stuck": "Degraded",
    "scaled-to-zero": "Healthy",  # Ready=True, reason ScaledToZero: usable, not degraded
    "generation-behind": "Progressing",
    "no-status-yet": "Progressing",
}


@pytest.mark.parametrize("case", CASES)
def test_argocd_health_of_each_status(argocd_health, case):
    result = argocd_health(endpoint(case))
    assert result["status"] == ARGOCD_EXPECTED[case]
    if case in ("invalid-spec", "secret-not-found", "policy-violation", "region-not-allowed"):
        # The operator's message reaches the Argo CD UI.
        assert result["message"] == endpoint(case)["status"]["conditions"][0]["message"]


def test_argocd_config_map_carries_the_health_script():
    cm = yaml.safe_load((GITOPS / "argocd" / "argocd-cm.yaml").read_text())
    key = "resource.customizations.health.kubeinfer.io_InferenceEndpoint"
    assert cm["metadata"]["name"] == "argocd-cm"
    assert cm["data"][key] == (GITOPS / "argocd" / "health.lua").read_text()


# ---------------------------------------------------------------- Flux

def flux_health_exprs() -> dict:
    sync = load_files([GITOPS / "flux" / "sync.yaml"])
    ks = named(sync, "Kustomization", "inference-endpoints")
    (check,) = ks["spec"]["healthCheckExprs"]
    assert (check["apiVersion"], check["kind"]) == ("kubeinfer.io/v1alpha1", "InferenceEndpoint")
    return check


def flux_health(obj: dict) -> str:
    """Flux's reading with healthCheckExprs: inProgress, then failed, then current; an
    expression that cannot be evaluated (a field not there yet) leaves it in progress."""
    env = celpy.Environment()
    activation = {key: celpy.json_to_cel(value) for key, value in obj.items()}
    for field, verdict in (("inProgress", "InProgress"), ("failed", "Failed"), ("current", "Current")):
        expr = flux_health_exprs().get(field)
        if expr is None:
            continue
        try:
            if bool(env.program(env.compile(expr)).evaluate(activation)):
                return verdict
        except celpy.CELEvalError:
            return "InProgress"
    return "InProgress"


FLUX_EXPECTED = {
    "ready": "Current",
    "invalid-spec": "Failed",
    "secret-not-found": "Failed",
    "policy-violation": "Failed",
    "region-not-allowed": "Failed",
    "rolling-out": "InProgress",
    "updating-while-serving": "InProgress",
    "rollout-stuck": "Failed",
    "scaled-to-zero": "Current",  # deliberately at zero replicas: nothing to wait for
    "generation-behind": "InProgress",
    "no-status-yet": "InProgress",
}


@pytest.mark.parametrize("case", CASES)
def test_flux_health_of_each_status(case):
    assert flux_health(endpoint(case)) == FLUX_EXPECTED[case]


def test_flux_syncs_endpoints_after_the_chart_and_waits_for_both():
    sync = load_files([GITOPS / "flux" / "sync.yaml"])
    chart, endpoints = named(sync, "Kustomization", "kubeinfer"), named(sync, "Kustomization", "inference-endpoints")
    assert endpoints["spec"]["dependsOn"] == [{"name": "kubeinfer"}]
    assert chart["spec"]["wait"] is True and endpoints["spec"]["wait"] is True
    for ks in (chart, endpoints):
        path = REPO / ks["spec"]["path"]
        assert path.is_dir(), ks["spec"]["path"]
        assert kustomize(path)  # renders
    release = load_files([REPO / chart["spec"]["path"] / "helmrelease.yaml"])[0]
    assert release["kind"] == "HelmRelease"
    assert release["spec"]["install"]["crds"] == "CreateReplace"


# ---------------------------------------------------------------- what the examples point at

def test_argocd_application_installs_this_chart_with_valid_values(tmp_path):
    app = named(load_files([GITOPS / "argocd" / "kubeinfer.yaml"]), "Application", "kubeinfer")
    source = app["spec"]["source"]
    assert source["repoURL"] == REPO_URL and (REPO / source["path"]) == CHART
    assert "ServerSideApply=true" in app["spec"]["syncPolicy"]["syncOptions"]
    values = tmp_path / "values.yaml"
    values.write_text(yaml.safe_dump(source["helm"]["valuesObject"]))
    out = helm("template", source["helm"]["releaseName"], str(CHART), "-n", app["spec"]["destination"]["namespace"],
               "-f", str(values)).stdout
    assert "--namespace=search" in out  # the gateway creates endpoints where Argo CD syncs them


def test_argocd_endpoints_application_syncs_valid_endpoints():
    app = named(load_files([GITOPS / "argocd" / "endpoints.yaml"]), "Application", "inference-endpoints")
    path = REPO / app["spec"]["source"]["path"]
    assert path == GITOPS / "endpoints"
    objs = kustomize(path)
    assert {o["kind"] for o in objs} == {"Namespace", "InferenceEndpoint"}
    assert {o["metadata"]["namespace"] for o in objs if o["kind"] == "InferenceEndpoint"} == {
        app["spec"]["destination"]["namespace"]}
    assert kubeinfer(["validate", str(path)]) == 0


def test_flux_helm_release_installs_this_chart_with_valid_values(tmp_path):
    source = named(load_files([GITOPS / "flux" / "source.yaml"]), "GitRepository", "kubeinfer")
    assert source["spec"]["url"] == REPO_URL
    release = named(load_files([GITOPS / "flux" / "release" / "helmrelease.yaml"]), "HelmRelease", "kubeinfer")
    chart = release["spec"]["chart"]["spec"]
    assert (REPO / chart["chart"]).resolve() == CHART
    assert chart["sourceRef"]["name"] == source["metadata"]["name"]
    # The source's ignore rules keep what the HelmRelease and Kustomizations read.
    kept = [line[2:].rstrip("/") for line in source["spec"]["ignore"].split() if line.startswith("!/")]
    assert any(chart["chart"].lstrip("./").startswith(k) for k in kept)
    assert any("examples/gitops/endpoints".startswith(k) for k in kept)
    values = tmp_path / "values.yaml"
    values.write_text(yaml.safe_dump(release["spec"]["values"]))
    helm("template", release["spec"]["releaseName"], str(CHART), "-n", release["spec"]["targetNamespace"],
         "-f", str(values))


def test_every_gitops_file_parses_and_names_a_kind():
    files = [p for p in GITOPS.rglob("*.yaml")]
    assert len(files) >= 10
    for obj in load_files(files):
        assert obj.get("apiVersion") and obj.get("kind"), obj
    # kustomize builds the Flux bootstrap directory as a whole too.
    assert {o["kind"] for o in kustomize(GITOPS / "flux")} == {"GitRepository", "Kustomization"}
    assert Path(tool("kubectl")).exists()
