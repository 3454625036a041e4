"""One table of ``spec.deployment`` cases for the deployment policy, with what each
policy refuses: the operator's check (through ``kubeinfer validate``) and the chart's
ValidatingAdmissionPolicy are both held to it.

A case is ``(id, spec.deployment, refused fields)``; a field is the part of
``spec.deployment`` a refusal names (``image``, ``env``...), and none means allowed.
``DEFAULT`` is for the chart's default values, ``EXAMPLE`` for
``examples/deployment-policy/values.yaml``.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

from kubeinfer.config import OperatorSettings

REPO = Path(__file__).resolve().parents[1]
EXAMPLE_VALUES = REPO / "examples" / "deployment-policy" / "values.yaml"
SERVER_IMAGE, SERVER_CPU_IMAGE, PROXY_IMAGE = OperatorSettings.from_env({}).endpoint_images
SECRET_REF = {"secretKeyRef": {"name": "another-teams-secret", "key": "token"}}


def env(name: str, **entry: Any) -> dict[str, Any]:
    return {"env": [{"name": name, **(entry or {"value": "x"})}]}


def resources(part: str, asked: dict[str, Any]) -> dict[str, Any]:
    return {"resources": {part: asked}}


def required_affinity(key: str) -> dict[str, Any]:
    return {"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchExpressions": [{"key": key, "operator": "Exists"}]}]}}}}


def preferred_affinity(key: str) -> dict[str, Any]:
    return {"affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
        {"weight": 1, "preference": {"matchExpressions": [{"key": key, "operator": "In", "values": ["a"]}]}}]}}}


CONTROL_PLANE = "node-role.kubernetes.io/control-plane"

# Cases whose answer is the same under both policies.
COMMON: list[tuple[str, dict[str, Any], set[str]]] = [
    ("nothing-overridden", {}, set()),
    ("replicas-and-engine", {"replicas": 2, "runtime": "onnx"}, set()),
    ("the-operators-server-image", {"image": SERVER_IMAGE}, set()),
    ("the-operators-cpu-image", {"image": SERVER_CPU_IMAGE}, set()),
    ("the-operators-proxy-image", {"image": PROXY_IMAGE}, set()),
    ("an-attackers-image", {"image": "docker.io/attacker/miner:latest"}, {"image"}),
    ("a-tag-beside-the-operators", {"image": SERVER_IMAGE + "-evil"}, {"image"}),
    ("a-plain-variable", env("OMP_NUM_THREADS", value="4"), set()),
    ("a-secret-of-the-namespace", env("TOKEN", valueFrom=SECRET_REF), {"env"}),
    ("ld-preload", env("LD_PRELOAD", value="/tmp/x.so"), {"env"}),
    ("ld-library-path", env("LD_LIBRARY_PATH", value="/tmp"), {"env"}),
    ("pythonpath", env("PYTHONPATH", value="/tmp"), {"env"}),
    ("pythonwarnings-imports", env("PYTHONWARNINGS", value="ignore::x.Y"), {"env"}),
    ("https-proxy", env("HTTPS_PROXY", value="http://attacker:3128"), {"env"}),
    ("http-proxy-lower-case", env("http_proxy", value="http://attacker:3128"), {"env"}),
    ("proxy-mixed-case", env("Https_Proxy", value="http://attacker:3128"), {"env"}),
    ("ca-bundle", env("REQUESTS_CA_BUNDLE", value="/tmp/ca.pem"), {"env"}),
    ("kubeinfer-setting", env("KUBEINFER_MODEL_ALIASES", value="{}"), {"env"}),
    ("an-allowed-kubeinfer-setting", env("KUBEINFER_INT8_MIN_COSINE", value="0.98"), set()),
    ("an-allowed-setting-lower-case", env("kubeinfer_cpu_lanes_max_memory", value="512mb"), set()),
    ("an-allowed-setting-from-a-secret", env("KUBEINFER_INT8_MIN_COSINE", valueFrom=SECRET_REF), {"env"}),
    ("kubeinfer-setting-lower-case", env("kubeinfer_allow_link_local_urls", value="true"), {"env"}),
    ("a-proxy-read-from-a-secret", env("HTTPS_PROXY", valueFrom=SECRET_REF), {"env"}),
    ("tolerate-every-taint", {"tolerations": [{"operator": "Exists"}]}, {"tolerations"}),
    ("tolerate-an-empty-key", {"tolerations": [{"key": "", "operator": "Exists"}]}, {"tolerations"}),
    ("tolerate-the-control-plane", {"tolerations": [{"key": CONTROL_PLANE, "operator": "Exists",
                                                     "effect": "NoSchedule"}]}, {"tolerations"}),
    ("tolerate-the-old-master-taint", {"tolerations": [{"key": "node-role.kubernetes.io/master",
                                                        "operator": "Exists"}]}, {"tolerations"}),
    ("tolerate-gpus", {"tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]},
     set()),
    ("select-the-control-plane", {"nodeSelector": {CONTROL_PLANE: ""}}, {"nodeSelector"}),
    ("select-a-pool", {"nodeSelector": {"pool": "gpu"}}, set()),
    ("require-the-control-plane", required_affinity(CONTROL_PLANE), {"affinity"}),
    ("prefer-the-control-plane", preferred_affinity(CONTROL_PLANE), {"affinity"}),
    ("require-a-zone", required_affinity("topology.kubernetes.io/zone"), set()),
    ("unconfine-apparmor", {"annotations": {"container.apparmor.security.beta.kubernetes.io/server": "unconfined"}},
     {"annotations"}),
    ("unconfine-seccomp", {"annotations": {"seccomp.security.alpha.kubernetes.io/pod": "unconfined"}},
     {"annotations"}),
    ("leave-the-mesh", {"annotations": {"sidecar.istio.io/inject": "false"}}, {"annotations"}),
    ("prometheus-scraping", {"annotations": {"prometheus.io/scrape": "true", "prometheus.io/port": "8080"}}, set()),
    ("safe-to-evict", {"annotations": {"cluster-autoscaler.kubernetes.io/safe-to-evict": "true"}}, set()),
    ("a-thousand-cpus", resources("requests", {"cpu": 1000}), {"resources"}),
    ("ten-tebibytes", resources("requests", {"memory": "10Ti"}), {"resources"}),
    ("sixty-four-gpus", resources("limits", {"nvidia.com/gpu": 64}), {"resources"}),
    ("a-resource-without-a-ceiling", resources("limits", {"amd.com/gpu": 1}), {"resources"}),
    ("hugepages", resources("limits", {"hugepages-2Mi": "1Gi"}), {"resources"}),
    ("not-a-quantity", resources("requests", {"cpu": "lots"}), {"resources"}),
    ("modest-resources", {"resources": {"requests": {"cpu": "4", "memory": "8Gi"}, "limits": {"nvidia.com/gpu": 1}}},
     set()),
    ("everything-at-once", {
        "image": "docker.io/attacker/miner:latest", "env": [{"name": "LD_PRELOAD", "value": "/x.so"}],
        "tolerations": [{"operator": "Exists"}], "annotations": {"a.example/b": "c"},
        "resources": {"requests": {"cpu": 1000}}}, {"image", "env", "tolerations", "annotations", "resources"}),
]

# Cases whose answer differs: (id, spec.deployment, refused by the defaults, refused by the example).
DIFFERING: list[tuple[str, dict[str, Any], set[str], set[str]]] = [
    ("the-ml-teams-registry", {"image": "registry.example.com/ml/server:2.1"}, {"image"}, set()),
    ("a-registry-path-beside-it", {"image": "registry.example.com/mlx/server:2.1"}, {"image"}, {"image"}),
    ("twenty-cpus", resources("requests", {"cpu": "20"}), set(), {"resources"}),
    ("exactly-the-ceiling", resources("requests", {"cpu": "16000m"}), set(), set()),
    ("just-above-the-ceiling", resources("requests", {"cpu": "16001m"}), set(), {"resources"}),
    ("two-gpus", resources("limits", {"nvidia.com/gpu": 2}), {"resources"}, set()),
    ("ephemeral-storage", resources("limits", {"ephemeral-storage": "1Gi"}), set(), {"resources"}),
    ("tolerate-a-dedicated-pool", {"tolerations": [{"key": "dedicated", "operator": "Equal", "value": "search"}]},
     set(), {"tolerations"}),
    ("istio-proxy-cpu", {"annotations": {"sidecar.istio.io/proxyCPU": "200m"}}, {"annotations"}, set()),
]

DEFAULT = [(name, spec, refused) for name, spec, refused in COMMON] + [
    (name, spec, refused) for name, spec, refused, _ in DIFFERING]
EXAMPLE = [(name, spec, refused) for name, spec, refused in COMMON] + [
    (name, spec, refused) for name, spec, _, refused in DIFFERING]


def endpoint(name: str, deployment: dict[str, Any], namespace: str = "ml") -> dict[str, Any]:
    """A valid InferenceEndpoint (a local model) with ``deployment`` as its overrides."""
    spec: dict[str, Any] = {"taskType": "text_embedding", "service": "elasticsearch",
                            "serviceSettings": {"model_id": ".multilingual-e5-small", "num_allocations": 1,
                                                "num_threads": 1}}
    if deployment:
        spec["deployment"] = copy.deepcopy(deployment)
    return {"apiVersion": "kubeinfer.io/v1alpha1", "kind": "InferenceEndpoint",
            "metadata": {"name": name, "namespace": namespace}, "spec": spec}


_FIELD = re.compile(r"(?:^|: )spec\.deployment\.(\w+)")


def refused_field(message: str) -> str:
    """The part of spec.deployment a refusal names, from ``validate``'s line or the
    admission policy's message."""
    match = _FIELD.search(message)
    assert match, f"the refusal names no field of spec.deployment: {message}"
    return match.group(1)
