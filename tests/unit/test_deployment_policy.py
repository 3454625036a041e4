"""The deployment policy: what an InferenceEndpoint's ``spec.deployment`` may ask of its
pods. ``kubeinfer validate`` and ``kubeinfer render`` refuse what the operator refuses,
and the chart's ValidatingAdmissionPolicy, evaluated as the API server evaluates it,
refuses the same: each is held to one table of cases (``policy_cases``), under the
chart's defaults and under the example values file."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import pytest
import yaml

from kubeemu.policies import denials
from kubeinfer.cli import main
from kubeinfer.deployment_policy import DeploymentPolicy, load_policy
from policy_cases import DEFAULT, EXAMPLE, EXAMPLE_VALUES, SERVER_CPU_IMAGE, endpoint, refused_field
from shipping import CHART, NAMESPACE, RELEASE, helm, load_all, named

POLICIES = {"default": [], "example": ["--policy", str(EXAMPLE_VALUES)]}
VALUES = {"default": [], "example": ["-f", str(EXAMPLE_VALUES)]}
ATTACK = {"image": "docker.io/attacker/miner:latest",
          "env": [{"name": "HTTPS_PROXY", "value": "http://user:s3cr3t@attacker:3128"}]}


def run_cli(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(args))
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def validate_refusals(tmp_path_factory) -> dict[str, dict[str, set[str]]]:
    """Per policy, per case: the fields ``kubeinfer validate`` refuses, one run a policy."""
    found: dict[str, dict[str, set[str]]] = {}
    for policy, table in (("default", DEFAULT), ("example", EXAMPLE)):
        folder = tmp_path_factory.mktemp(policy)
        for name, deployment, _ in table:
            (folder / f"{name}.yaml").write_text(yaml.safe_dump(endpoint(name, deployment)))
        code, out, _ = run_cli("validate", str(folder), *POLICIES[policy])
        refusals: dict[str, set[str]] = {name: set() for name, _, _ in table}
        for line in out.splitlines():
            if line.startswith("OK:"):
                continue
            source, message = line.split(": ", 1)
            refusals[Path(source).stem].add(refused_field(message))
        assert code == (1 if any(refusals.values()) else 0)
        found[policy] = refusals
    return found


def chart_policy(*args: str) -> tuple[dict | None, dict | None, list[dict]]:
    """The chart's ValidatingAdmissionPolicy, its ConfigMap and every object rendered."""
    objs = load_all(helm("template", RELEASE, str(CHART), "--namespace", NAMESPACE, *args).stdout)
    pick = lambda kind: next((o for o in objs if o["kind"] == kind), None)  # noqa: E731
    return pick("ValidatingAdmissionPolicy"), pick("ConfigMap"), objs


@pytest.fixture(scope="module")
def admission_refusals() -> dict[str, dict[str, set[str]]]:
    """Per policy, per case: the fields the chart's admission policy refuses."""
    found: dict[str, dict[str, set[str]]] = {}
    for policy, table in (("default", DEFAULT), ("example", EXAMPLE)):
        vap, params, _ = chart_policy(*VALUES[policy])
        found[policy] = {name: {refused_field(m) for m in denials(vap, params, endpoint(name, deployment))}
                         for name, deployment, _ in table}
    return found


@pytest.mark.parametrize("name, deployment, refused", DEFAULT, ids=[c[0] for c in DEFAULT])
def test_validate_holds_spec_deployment_to_the_default_policy(validate_refusals, name, deployment, refused):
    assert validate_refusals["default"][name] == refused


@pytest.mark.parametrize("name, deployment, refused", DEFAULT, ids=[c[0] for c in DEFAULT])
def test_admission_policy_refuses_what_the_default_policy_refuses(admission_refusals, name, deployment, refused):
    assert admission_refusals["default"][name] == refused


@pytest.mark.parametrize("name, deployment, refused", EXAMPLE, ids=[c[0] for c in EXAMPLE])
def test_validate_holds_spec_deployment_to_a_policy_file(validate_refusals, name, deployment, refused):
    assert validate_refusals["example"][name] == refused


@pytest.mark.parametrize("name, deployment, refused", EXAMPLE, ids=[c[0] for c in EXAMPLE])
def test_admission_policy_refuses_what_the_same_values_file_refuses(admission_refusals, name, deployment, refused):
    assert admission_refusals["example"][name] == refused


def test_refusals_name_the_field_and_never_echo_a_variables_value(tmp_path):
    path = tmp_path / "attack.yaml"
    path.write_text(yaml.safe_dump(endpoint("attack", ATTACK)))
    code, out, _ = run_cli("validate", str(path))
    assert code == 1
    assert out.splitlines() == [
        f"{path}: spec.deployment.image: image [docker.io/attacker/miner:latest] is not allowed by the deployment "
        f"policy; allowed: [ghcr.io/kubeinfer/kubeinfer-server-cuda:0.1.0, ghcr.io/kubeinfer/kubeinfer-server:0.1.0, "
        f"ghcr.io/kubeinfer/kubeinfer:0.1.0]",
        f"{path}: spec.deployment.env[0].name: [HTTPS_PROXY] may not be set: the deployment policy denies it",
    ]
    vap, params, _ = chart_policy()
    messages = denials(vap, params, endpoint("attack", ATTACK))
    assert [refused_field(m) for m in messages] == ["image", "env"]
    assert "s3cr3t" not in out + "".join(messages)


def test_render_refuses_a_spec_the_policy_refuses_and_builds_one_it_allows(tmp_path):
    path = tmp_path / "e5.yaml"
    path.write_text(yaml.safe_dump(endpoint("e5", {"image": "registry.example.com/ml/server:2.1"})))
    code, out, err = run_cli("render", str(path))
    assert (code, out) == (1, "")
    assert err.splitlines() == [f"kubeinfer render: {path}: spec.deployment.image: image "
                                f"[registry.example.com/ml/server:2.1] is not allowed by the deployment policy; "
                                f"allowed: [ghcr.io/kubeinfer/kubeinfer-server-cuda:0.1.0, "
                                f"ghcr.io/kubeinfer/kubeinfer-server:0.1.0, ghcr.io/kubeinfer/kubeinfer:0.1.0]"]
    code, out, _ = run_cli("render", str(path), "--policy", str(EXAMPLE_VALUES))
    assert code == 0
    deployment = named(load_all(out), "Deployment", "e5")
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == "registry.example.com/ml/server:2.1"


def test_the_operators_own_settings_are_the_policy_without_a_file(tmp_path, monkeypatch):
    path = tmp_path / "e5.yaml"
    path.write_text(yaml.safe_dump(endpoint("e5", {"image": "registry.example.com/ml/server:2.1"})))
    monkeypatch.setenv("KUBEINFER_DEPLOYMENT_POLICY", json.dumps({"allowedImagePrefixes": ["registry.example.com/"]}))
    assert run_cli("validate", str(path))[0] == 0
    assert run_cli("render", str(path))[0] == 0
    # The operator's images are its settings': a CR may name them, whatever the policy.
    monkeypatch.setenv("KUBEINFER_SERVER_CPU_IMAGE", "registry.internal/kubeinfer-server:7")
    path.write_text(yaml.safe_dump(endpoint("e5", {"image": "registry.internal/kubeinfer-server:7"})))
    assert run_cli("validate", str(path))[0] == 0


def test_a_disabled_policy_checks_nothing(tmp_path):
    path = tmp_path / "attack.yaml"
    path.write_text(yaml.safe_dump(endpoint("attack", ATTACK)))
    policy = tmp_path / "policy.yaml"
    policy.write_text("enabled: false\n")
    assert run_cli("validate", str(path), "--policy", str(policy))[0] == 0
    vap, params, objs = chart_policy("--set", "deploymentPolicy.enabled=false")
    assert vap is None and params is None
    assert not [o for o in objs if o["kind"] == "ValidatingAdmissionPolicyBinding"]


@pytest.mark.parametrize("text, message", [
    ("maxResources: {cpu: lots}\n", "maxResources: Value error, [lots] is not a quantity"),
    ("allowedImagePrefixes: ['']\n", "allowedImagePrefixes: Value error, entries must be non-empty"),
    ("deniedEnvNames: ['HTTP PROXY']\n", "deniedEnvNames: Value error, entries must be non-empty"),
    ("allowImages: [x]\n", "allowImages: Extra inputs are not permitted"),
    ("deploymentPolicy: [x]\n", "deploymentPolicy is a mapping"),
    ("[1, 2]\n", "a deployment policy is a mapping"),
    ("a: [\n", "invalid YAML"),
])
def test_a_policy_file_that_is_not_one_stops_validate_and_render(tmp_path, text, message):
    policy = tmp_path / "policy.yaml"
    policy.write_text(text)
    manifest = tmp_path / "e5.yaml"
    manifest.write_text(yaml.safe_dump(endpoint("e5", {})))
    for command in ("validate", "render"):
        code, _, err = run_cli(command, str(manifest), "--policy", str(policy))
        assert code == 2, command
        assert f"kubeinfer {command}: {policy}: " in err and message in err, err


def test_the_charts_default_policy_is_the_operators_default():
    values = yaml.safe_load((CHART / "values.yaml").read_text())["deploymentPolicy"]
    assert values == DeploymentPolicy().model_dump(by_alias=True, mode="json")
    assert DeploymentPolicy.model_validate(values) == DeploymentPolicy()


def test_a_values_file_means_what_helm_makes_of_it():
    """What the file leaves out is the chart's default; maxResources merges over the
    default ceilings, a null removing one: the operator's settings from the rendered chart
    equal the policy ``--policy`` reads from the same file."""
    _, _, objs = chart_policy(*VALUES["example"])
    operator = named(objs, "Deployment", "kubeinfer-operator")["spec"]["template"]["spec"]["containers"][0]
    rendered = next(e["value"] for e in operator["env"] if e["name"] == "KUBEINFER_DEPLOYMENT_POLICY")
    assert DeploymentPolicy.model_validate_json(rendered) == load_policy(EXAMPLE_VALUES)
    assert "ephemeral-storage" not in load_policy(EXAMPLE_VALUES).max_resources


def test_a_change_that_leaves_the_spec_alone_is_admitted():
    """The operator's own writes (finalizers, annotations) must pass even when the
    policy was tightened after the spec was admitted; a change of the spec is checked."""
    vap, params, _ = chart_policy()
    old = endpoint("e5", ATTACK)
    annotated = {**old, "metadata": {**old["metadata"], "finalizers": ["kubeinfer.io/finalizer"]}}
    assert denials(vap, params, annotated, old, operation="UPDATE") == []
    changed = endpoint("e5", {**ATTACK, "replicas": 2})
    assert [refused_field(m) for m in denials(vap, params, changed, old, operation="UPDATE")] == ["image", "env"]
    fixed = endpoint("e5", {"image": SERVER_CPU_IMAGE})
    assert denials(vap, params, fixed, old, operation="UPDATE") == []


def test_the_chart_binds_its_admission_policy_to_its_values_and_denies():
    vap, params, objs = chart_policy()
    binding = next(o for o in objs if o["kind"] == "ValidatingAdmissionPolicyBinding")
    name = "kubeinfer-deployment-policy"
    assert vap["metadata"]["name"] == binding["metadata"]["name"] == params["metadata"]["name"] == name
    assert (params["metadata"]["namespace"], "namespace" in vap["metadata"]) == (NAMESPACE, False)
    assert vap["apiVersion"] == binding["apiVersion"] == "admissionregistration.k8s.io/v1"
    assert vap["spec"]["failurePolicy"] == "Fail"
    assert vap["spec"]["paramKind"] == {"apiVersion": "v1", "kind": "ConfigMap"}
    assert vap["spec"]["matchConstraints"]["resourceRules"] == [{
        "apiGroups": ["kubeinfer.io"], "apiVersions": ["v1alpha1"], "operations": ["CREATE", "UPDATE"],
        "resources": ["inferenceendpoints"]}]
    # Without its ConfigMap the policy lets writes pass (the operator still holds the values):
    # refusing them all would refuse the removal of finalizers too, and wedge deletions.
    assert binding["spec"] == {"policyName": name, "validationActions": ["Deny"], "paramRef": {
        "name": name, "namespace": NAMESPACE, "parameterNotFoundAction": "Allow"}}


def test_the_admission_policy_allows_the_images_the_operator_is_given():
    images = {"endpoints.serverImage": {"repository": "registry.internal/server-cuda", "tag": "2"},
              "endpoints.serverCpuImage": {"repository": "registry.internal/server", "tag": "@sha256:" + "a" * 64},
              "image.repository": "registry.internal/kubeinfer", "image.tag": "2"}
    vap, params, objs = chart_policy(*(arg for key, value in images.items()
                                       for arg in ("--set-json", f"{key}={json.dumps(value)}")))
    operator = named(objs, "Deployment", "kubeinfer-operator")["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in operator["env"]}
    given = [env["KUBEINFER_SERVER_IMAGE"], env["KUBEINFER_SERVER_CPU_IMAGE"], env["KUBEINFER_PROXY_IMAGE"]]
    assert params["data"]["allowedImages"].split("\n") == given
    for image in given:
        assert denials(vap, params, endpoint("e5", {"image": image})) == []
    assert denials(vap, params, endpoint("e5", {"image": "ghcr.io/kubeinfer/kubeinfer-server:0.1.0"})) != []


def test_the_admission_policy_covers_the_namespaces_the_operator_watches():
    _, _, objs = chart_policy("--set-json", 'watchNamespaces=["search","ml"]',
                              "--set", "gateway.endpointNamespace=search")
    binding = next(o for o in objs if o["kind"] == "ValidatingAdmissionPolicyBinding")
    assert binding["spec"]["matchResources"] == {"namespaceSelector": {"matchExpressions": [
        {"key": "kubernetes.io/metadata.name", "operator": "In", "values": ["search", "ml"]}]}}


def test_before_kubernetes_1_30_the_operator_alone_enforces_the_policy():
    _, _, objs = chart_policy("--kube-version", "1.29.0")
    assert not [o for o in objs if o["kind"].startswith("ValidatingAdmissionPolicy")]
    operator = named(objs, "Deployment", "kubeinfer-operator")["spec"]["template"]["spec"]["containers"][0]
    assert any(e["name"] == "KUBEINFER_DEPLOYMENT_POLICY" for e in operator["env"])


def test_the_api_server_enforces_the_charts_objects_and_lets_writes_pass_without_its_values():
    """The chart's three objects, applied to the API emulator, which runs bound admission
    policies as kube-apiserver does."""
    from kubeemu import APIError, EmulatedCluster, INFERENCE_ENDPOINTS

    vap, params, objs = chart_policy()
    binding = next(o for o in objs if o["kind"] == "ValidatingAdmissionPolicyBinding")
    with EmulatedCluster() as kube:
        kube.create("v1/namespaces", {"metadata": {"name": NAMESPACE}})
        kube.create("v1/namespaces", {"metadata": {"name": "ml"}})
        kube.create("admissionregistration.k8s.io/v1/validatingadmissionpolicies", vap)
        kube.create("admissionregistration.k8s.io/v1/validatingadmissionpolicybindings", binding)
        kube.create("v1/configmaps", params)
        with pytest.raises(APIError) as refused:
            kube.create(INFERENCE_ENDPOINTS, endpoint("miner", ATTACK))
        assert (refused.value.code, refused.value.reason) == (403, "Forbidden")
        assert refused.value.message == (
            'inferenceendpoints.kubeinfer.io "miner" is forbidden: ValidatingAdmissionPolicy '
            "'kubeinfer-deployment-policy' with binding 'kubeinfer-deployment-policy' denied request: "
            "spec.deployment.image: image [docker.io/attacker/miner:latest] is not allowed by the deployment policy")
        e5 = endpoint("e5", {"image": SERVER_CPU_IMAGE})
        e5["metadata"]["finalizers"] = ["kubeinfer.io/finalizer"]
        kube.create(INFERENCE_ENDPOINTS, e5)
        # Its values gone, the policy must not keep the operator from letting go of an endpoint.
        kube.delete("v1/configmaps", NAMESPACE, params["metadata"]["name"])
        kube.delete(INFERENCE_ENDPOINTS, "ml", "e5")
        kube.patch(INFERENCE_ENDPOINTS, "ml", "e5", {"metadata": {"finalizers": None}})
        assert kube.get(INFERENCE_ENDPOINTS, "ml", "e5") is None
