"""What the README tells a user to do, done with the real kubectl against the API emulator
and against Kubernetes' own control plane:
install the CRD, create a namespace and a Secret, apply an example, run the operator, wait
for Ready, read the printer columns, change the spec, be refused a broken manifest, delete
and see the workload collected; and the kustomize install of deploy/, whose deployment
policy refuses a pod the admin did not allow.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Iterator

import pytest
import yaml

from apiservers import API_SERVERS, api_server
from kubeemu import DEPLOYMENTS, EmulatedCluster
from operator_process import free_port, running_operator
from shipping import REPO, run, tool

NS = "search"
NAME = "openai-embeddings"  # examples/openai/text_embedding.yaml
EXAMPLE = REPO / "examples" / "openai" / "text_embedding.yaml"


@pytest.fixture(params=API_SERVERS)
def fresh(request, tmp_path) -> Iterator[tuple[EmulatedCluster, dict[str, str]]]:
    """A cluster with no CRD installed yet, and the environment kubectl finds it with."""
    with api_server(request, request.param, crds=False) as cluster:
        yield cluster, {"KUBECONFIG": str(cluster.write_kubeconfig(tmp_path / "kubeconfig"))}


def kubectl(env: dict[str, str], *args: str, check: bool = True, stdin: str | None = None):
    if stdin is not None:
        proc = subprocess.run([tool("kubectl"), *args], input=stdin, capture_output=True, text=True, timeout=60,
                              env={**os.environ, **env}, cwd=REPO)
        if check and proc.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} exited {proc.returncode}:\n{proc.stderr}")
        return proc
    return run([tool("kubectl"), *args], check=check, env=env, timeout=60)


@pytest.fixture
def operator(fresh, tmp_path) -> Iterator[None]:
    cluster, env = fresh
    with running_operator({**os.environ, **env, "KUBEINFER_METRICS_PORT": "0", "KUBEINFER_GPUS_PER_ENDPOINT": "0"},
                          tmp_path, free_port()):
        yield


def manifest(name: str, **settings: object) -> str:
    spec = {"taskType": "text_embedding", "service": "openai",
            "serviceSettings": {"api_key": {"secretKeyRef": {"name": "openai", "key": "api-key"}},
                                "model_id": "text-embedding-3-small", **settings}}
    return json.dumps({"apiVersion": "kubeinfer.io/v1alpha1", "kind": "InferenceEndpoint",
                       "metadata": {"name": name}, "spec": spec})


def test_the_readme_story_with_kubectl(fresh, operator):
    cluster, env = fresh
    # before the CRD is installed kubectl does not know the kind
    assert kubectl(env, "get", "ie", check=False).returncode != 0
    assert "serverside-applied" in kubectl(env, "apply", "--server-side", "-f", "crds/").stdout
    kubectl(env, "wait", "--for=condition=Established", "crd/inferenceendpoints.kubeinfer.io", "--timeout=30s")
    # the server publishes the new kind's OpenAPI a moment after it is Established
    explained = cluster.wait_until(lambda: kubectl(env, "explain", "inferenceendpoint.spec", check=False).stdout,
                                   message="kubectl explain of the new kind")
    assert "taskType" in explained

    # a namespace must exist before anything is created in it, as on a real server
    missing = kubectl(env, "apply", "-n", NS, "-f", str(EXAMPLE), check=False)
    assert missing.returncode != 0 and f'namespaces "{NS}" not found' in missing.stderr

    kubectl(env, "create", "namespace", NS)
    kubectl(env, "-n", NS, "create", "secret", "generic", "openai", "--from-literal=api-key=sk-test")
    kubectl(env, "-n", NS, "apply", "-f", str(EXAMPLE))
    kubectl(env, "-n", NS, "wait", "--for=condition=Ready", f"ie/{NAME}", "--timeout=60s")

    # the printer columns are the CRD's: the wide ones only with -o wide
    columns = yaml.safe_load((REPO / "crds" / "inferenceendpoints.kubeinfer.io.yaml").read_text())[
        "spec"]["versions"][0]["additionalPrinterColumns"]
    table = kubectl(env, "-n", NS, "get", "ie").stdout.splitlines()
    assert table[0].split() == ["NAME", *(c["name"].upper() for c in columns if not c.get("priority"))]
    row = dict(zip(table[0].split(), table[1].split()))
    assert (row["NAME"], row["TASK"], row["SERVICE"], row["READY"]) == (NAME, "text_embedding", "openai", "True")
    wide = kubectl(env, "-n", NS, "get", "ie", "-o", "wide").stdout.splitlines()
    assert wide[0].split() == ["NAME", *(c["name"].upper() for c in columns)]
    assert f"http://{NAME}.{NS}.svc" in wide[1]

    # a change of spec rolls the Deployment
    before = cluster.get(DEPLOYMENTS, NS, NAME)["metadata"]["generation"]
    kubectl(env, "-n", NS, "patch", "ie", NAME, "--type=merge", "-p", '{"spec":{"serviceSettings":{"dimensions":256}}}')
    cluster.wait_until(lambda: cluster.get(DEPLOYMENTS, NS, NAME)["metadata"]["generation"] > before,
                       message="the Deployment rolled")
    kubectl(env, "-n", NS, "wait", "--for=condition=Ready", f"ie/{NAME}", "--timeout=60s")

    # another manager's unforced server-side apply of a field kubectl patched conflicts
    conflict = kubectl(env, "-n", NS, "apply", "--server-side", "--field-manager=gitops", "-f", "-",
                       stdin=manifest(NAME, dimensions=128), check=False)
    assert conflict.returncode != 0 and "conflict" in conflict.stderr
    assert ".spec.serviceSettings.dimensions" in conflict.stderr

    # the CRD's rules refuse a broken manifest
    broken = json.loads(manifest("broken"))
    del broken["spec"]["serviceSettings"]["model_id"]
    refused = kubectl(env, "-n", NS, "apply", "-f", "-", stdin=json.dumps(broken), check=False)
    assert refused.returncode != 0 and "does not contain the required setting [model_id]" in refused.stderr

    # unknown fields: refused by kubectl's strict validation, pruned when validation is off
    unknown = json.loads(manifest("pruned"))
    unknown["spec"]["replicaz"] = 3
    strict = kubectl(env, "-n", NS, "apply", "-f", "-", stdin=json.dumps(unknown), check=False)
    assert strict.returncode != 0 and 'unknown field "spec.replicaz"' in strict.stderr
    kubectl(env, "-n", NS, "apply", "--validate=false", "-f", "-", stdin=json.dumps(unknown))
    stored = json.loads(kubectl(env, "-n", NS, "get", "ie", "pruned", "-o", "json").stdout)
    assert "replicaz" not in stored["spec"]

    # deleting the endpoint collects its Deployment
    assert cluster.get(DEPLOYMENTS, NS, NAME) is not None
    kubectl(env, "-n", NS, "delete", "ie", NAME, "--timeout=30s")
    cluster.wait_until(lambda: cluster.get(DEPLOYMENTS, NS, NAME) is None, message="the Deployment collected")
    gone = kubectl(env, "-n", NS, "get", "deploy", NAME, check=False)
    assert gone.returncode != 0 and "NotFound" in gone.stderr

    # in the foreground, the endpoint is gone only once its Deployment is
    kubectl(env, "-n", NS, "wait", "--for=condition=Ready", "ie/pruned", "--timeout=60s")
    assert cluster.get(DEPLOYMENTS, NS, "pruned") is not None
    kubectl(env, "-n", NS, "delete", "ie", "pruned", "--cascade=foreground", "--timeout=30s")
    assert cluster.get(DEPLOYMENTS, NS, "pruned") is None


def test_the_emulator_serves_kubectl_from_the_command_line(tmp_path):
    config = tmp_path / "kubeconfig"
    proc = subprocess.Popen([sys.executable, "-P", "-m", "kubeemu", "--kubeconfig", str(config)],
                            env={**os.environ, "PYTHONPATH": str(REPO / "tests")}, stdout=subprocess.PIPE, text=True)
    try:
        url = proc.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:")
        env = {"KUBECONFIG": str(config)}
        assert "default" in kubectl(env, "get", "namespaces").stdout
        assert "inferenceendpoints" in kubectl(env, "api-resources", "--api-group=kubeinfer.io").stdout
    finally:
        proc.terminate()
        proc.wait(10)


def test_kustomize_install_of_deploy(fresh):
    cluster, env = fresh
    applied = kubectl(env, "apply", "--server-side", "-k", "deploy/").stdout
    assert "namespace/kubeinfer serverside-applied" in applied
    assert "deployment.apps/kubeinfer-operator serverside-applied" in applied
    kubectl(env, "-n", "kubeinfer", "rollout", "status", "deployment/kubeinfer-operator", "--timeout=30s")
    kubectl(env, "wait", "--for=condition=Established", "crd/inferenceendpoints.kubeinfer.io", "--timeout=30s")
    assert kubectl(env, "get", "ie", "-A").returncode == 0
    # applying it again changes nothing and conflicts with nothing
    again = kubectl(env, "apply", "--server-side", "-k", "deploy/").stdout
    assert "serverside-applied" in again
    # the operator's Deployment carries its labels from kustomize
    deployment = json.loads(kubectl(env, "-n", "kubeinfer", "get", "deploy", "kubeinfer-operator", "-o", "json").stdout)
    assert deployment["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "kustomize"
    # The deployment policy is installed: the API server refuses a pod the admin did not allow.
    kubectl(env, "create", "namespace", NS)
    miner = json.loads(manifest("miner"))
    miner["spec"]["deployment"] = {"image": "docker.io/attacker/miner:latest"}
    refused = kubectl(env, "apply", "-n", NS, "-f", "-", stdin=json.dumps(miner), check=False)
    assert refused.returncode != 0
    assert ("ValidatingAdmissionPolicy 'kubeinfer-deployment-policy' with binding 'kubeinfer-deployment-policy' "
            "denied request: spec.deployment.image: image [docker.io/attacker/miner:latest] is not allowed by the "
            "deployment policy") in refused.stderr
    miner["spec"]["deployment"] = {"image": "ghcr.io/kubeinfer/kubeinfer:0.1.0"}
    kubectl(env, "apply", "-n", NS, "-f", "-", stdin=json.dumps(miner))
    kubectl(env, "delete", "namespace", "kubeinfer", "--timeout=30s")
    assert cluster.get(DEPLOYMENTS, "kubeinfer", "kubeinfer-operator") is None
