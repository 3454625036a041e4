"""The cluster admin's deployment policy: what an InferenceEndpoint's ``spec.deployment``
may ask of the pods that serve it.

``spec.deployment`` overrides what the operator would choose for the pods, and whoever
may create an InferenceEndpoint may write it. Unchecked, that is anyone running any
pod: another image, a Secret of the namespace read into the environment, a loader or a
proxy set by environment variable, a toleration of the control plane's taints, an
annotation that lifts AppArmor, a thousand CPUs. ``DeploymentPolicy`` says what is
allowed, with safe defaults, and ``violations`` checks one spec against it.

The policy is enforced twice, alike: by the API server, through the chart's
ValidatingAdmissionPolicy (CEL over the same values, held in a ConfigMap), and by the
operator, which refuses a violating spec with ``Ready=False``, reason
``PolicyViolation``, for clusters without admission policies. ``kubeinfer validate`` and
``kubeinfer render`` read the same policy file (``load_policy``). Tests hold the CEL and
this module to one table of cases.

This module knows nothing of kopf, Helm or the Kubernetes API.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

import yaml
from pydantic import ConfigDict, Field, ValidationError, field_validator
from pydantic.alias_generators import to_camel

from .quantity import QuantityError, parse_quantity
from .resource import CamelModel, Quantity

# The key of the policy in the Helm chart's values: a values file is a policy file too.
VALUES_KEY = "deploymentPolicy"
# Where every check is reported from.
FIELD = "spec.deployment"

# Read by the proxies' and the servers' HTTP clients (Python's urllib lower-cases the
# names, so any case counts), the CAs they trust, where models are downloaded from, and
# glibc's own module and resolver paths.
DEFAULT_DENIED_ENV_NAMES = (
    "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "WS_PROXY", "WSS_PROXY", "FTP_PROXY",
    "SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE",
    "HF_ENDPOINT",
    "GCONV_PATH", "GLIBC_TUNABLES", "HOSTALIASES", "LOCALDOMAIN", "RES_OPTIONS",
)
# The dynamic loader's (LD_PRELOAD, LD_LIBRARY_PATH, LD_AUDIT...), Python's (PYTHONPATH,
# PYTHONHOME, PYTHONWARNINGS, which imports...) and kubeinfer's own settings, which the
# operator sets.
DEFAULT_DENIED_ENV_PREFIXES = ("LD_", "PYTHON", "KUBEINFER_")
# Settings of the model server that tune one endpoint's own model within its own pod.
DEFAULT_ALLOWED_ENV_NAMES = ("KUBEINFER_INT8_MIN_COSINE", "KUBEINFER_CPU_LANES_MAX_MEMORY")
# Taint and label keys of control-plane nodes.
DEFAULT_DENIED_NODE_KEYS = ("node-role.kubernetes.io/control-plane", "node-role.kubernetes.io/master")
# Entries ending in "/" allow every annotation of that prefix.
DEFAULT_ALLOWED_ANNOTATIONS = ("prometheus.io/", "cluster-autoscaler.kubernetes.io/safe-to-evict")
DEFAULT_MAX_RESOURCES: dict[str, Quantity] = {
    "cpu": "32", "memory": "64Gi", "ephemeral-storage": "20Gi", "nvidia.com/gpu": "1",
}


class DeploymentPolicy(CamelModel):
    """What ``spec.deployment`` of an InferenceEndpoint may ask for. Names are camelCase
    in a policy file, as in the chart's values."""

    model_config = ConfigDict(extra="forbid", alias_generator=to_camel, populate_by_name=True, frozen=True)

    enabled: bool = Field(default=True, description="Check spec.deployment at all.")
    allowed_image_prefixes: tuple[str, ...] = Field(
        default=(), description="Images may start with one of these (end each with '/' or ':'); the operator's "
                                "own server and proxy images are always allowed.")
    allow_env_value_from: bool = Field(
        default=False, description="Let env entries read Secrets, ConfigMaps and fields (valueFrom).")
    denied_env_names: tuple[str, ...] = Field(
        default=DEFAULT_DENIED_ENV_NAMES, description="Environment variables env may not set, in any case.")
    denied_env_prefixes: tuple[str, ...] = Field(
        default=DEFAULT_DENIED_ENV_PREFIXES, description="Prefixes of environment variables env may not set, "
                                                         "in any case.")
    allowed_env_names: tuple[str, ...] = Field(
        default=DEFAULT_ALLOWED_ENV_NAMES, description="Environment variables env may set though a denied name or "
                                                       "prefix matches them, in any case.")
    denied_node_keys: tuple[str, ...] = Field(
        default=DEFAULT_DENIED_NODE_KEYS, description="Node taint and label keys that tolerations, nodeSelector "
                                                      "and node affinity may not name.")
    allowed_annotations: tuple[str, ...] = Field(
        default=DEFAULT_ALLOWED_ANNOTATIONS, description="Pod annotations allowed; an entry ending in '/' allows "
                                                         "its whole prefix.")
    max_resources: dict[str, Quantity] = Field(
        default_factory=lambda: dict(DEFAULT_MAX_RESOURCES),
        description="The most of each resource a request or limit may ask for; resources not listed may not be "
                    "asked for.")

    @field_validator("allowed_image_prefixes", "denied_env_names", "denied_env_prefixes", "allowed_env_names",
                     "denied_node_keys", "allowed_annotations")
    @classmethod
    def _single_words(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        # An empty prefix would match everything; the admission policy's ConfigMap holds
        # one entry a line.
        if any(not entry or any(c.isspace() for c in entry) for entry in value):
            raise ValueError("entries must be non-empty, without spaces or line breaks")
        return value

    @field_validator("max_resources")
    @classmethod
    def _quantities(cls, value: dict[str, Quantity]) -> dict[str, Quantity]:
        for name, quantity in value.items():
            parse_quantity(quantity)  # a QuantityError is a ValueError: pydantic reports it
            if not name or "=" in name or any(c.isspace() for c in name):
                raise ValueError(f"[{name}] is not a resource name")
        return value


class PolicyError(ValueError):
    """A policy file that cannot be read or is not a valid policy."""


def parse_policy(document: Any, source: str = "policy") -> DeploymentPolicy:
    """The policy in a parsed file: a policy itself, or chart values holding one under
    ``deploymentPolicy``. As Helm merges a values file over the chart's, what the file
    leaves out keeps its default, and ``maxResources`` changes the default ceilings (a
    resource given ``null`` has none)."""
    if document is None:
        document = {}
    if not isinstance(document, Mapping):
        raise PolicyError(f"{source}: a deployment policy is a mapping")
    if VALUES_KEY in document:
        document = document[VALUES_KEY] or {}
        if not isinstance(document, Mapping):
            raise PolicyError(f"{source}: {VALUES_KEY} is a mapping")
    document = dict(document)
    for key in ("maxResources", "max_resources"):
        if isinstance(document.get(key), Mapping):
            ceilings: dict[str, Any] = dict(DEFAULT_MAX_RESOURCES)
            for name, value in document[key].items():
                if value is None:
                    ceilings.pop(name, None)
                else:
                    ceilings[name] = value
            document[key] = ceilings
    try:
        return DeploymentPolicy.model_validate(document)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(part) for part in err["loc"]) or "<root>"
        raise PolicyError(f"{source}: {where}: {err['msg']}") from None


def load_policy(path: str | Path) -> DeploymentPolicy:
    """The policy in a YAML or JSON file (``PolicyError`` when it is not one)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
        document = yaml.safe_load(text)
    except (OSError, UnicodeDecodeError) as exc:
        raise PolicyError(f"{path}: cannot be read: {exc.__class__.__name__}") from None
    except yaml.YAMLError as exc:
        raise PolicyError(f"{path}: invalid YAML: {getattr(exc, 'problem', None) or exc}") from None
    return parse_policy(document, str(path))


@dataclass(frozen=True)
class Violation:
    """One thing the spec asks for that the policy does not allow. Messages name the
    field, never an environment variable's value."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


class PolicyViolation(Exception):
    """A spec the deployment policy does not allow."""

    def __init__(self, violations: list[Violation]) -> None:
        super().__init__("; ".join(map(str, violations)))
        self.violations = violations


def violations(spec: Mapping[str, Any], policy: DeploymentPolicy, images: Iterable[str] = ()) -> list[Violation]:
    """What ``spec`` (an InferenceEndpoint's) asks for against ``policy``; ``images`` are
    the operator's own, always allowed. Fields of the wrong type are left to the schema."""
    if not policy.enabled:
        return []
    deployment = spec.get("deployment") if isinstance(spec, Mapping) else None
    if not isinstance(deployment, Mapping):
        return []
    return [*_image(deployment, policy, set(images)), *_env(deployment, policy), *_nodes(deployment, policy),
            *_annotations(deployment, policy), *_resources(deployment, policy)]


def check(spec: Mapping[str, Any], policy: DeploymentPolicy, images: Iterable[str] = ()) -> None:
    """Raise ``PolicyViolation`` when ``spec`` breaks the policy."""
    found = violations(spec, policy, images)
    if found:
        raise PolicyViolation(found)


def _image(deployment: Mapping[str, Any], policy: DeploymentPolicy, images: set[str]) -> Iterator[Violation]:
    image = deployment.get("image")
    if not isinstance(image, str) or not image:
        return  # an empty image overrides nothing
    if image in images or any(image.startswith(prefix) for prefix in policy.allowed_image_prefixes):
        return
    allowed = ", ".join(sorted(images) + [f"{p}*" for p in policy.allowed_image_prefixes])
    yield Violation(f"{FIELD}.image", f"image [{image}] is not allowed by the deployment policy; "
                                      f"allowed: [{allowed}]")


def _env(deployment: Mapping[str, Any], policy: DeploymentPolicy) -> Iterator[Violation]:
    env = deployment.get("env")
    if not isinstance(env, list):
        return
    names = {n.lower() for n in policy.denied_env_names}
    prefixes = tuple(p.lower() for p in policy.denied_env_prefixes)
    allowed = {n.lower() for n in policy.allowed_env_names}
    for i, entry in enumerate(env):
        if not isinstance(entry, Mapping) or not isinstance(entry.get("name"), str):
            continue
        name = entry["name"]
        if name.lower() not in allowed and (name.lower() in names or name.lower().startswith(prefixes)):
            yield Violation(f"{FIELD}.env[{i}].name",
                            f"[{name}] may not be set: the deployment policy denies it")
        if "valueFrom" in entry and not policy.allow_env_value_from:
            yield Violation(f"{FIELD}.env[{i}].valueFrom",
                            f"[{name}] may not read a Secret, ConfigMap or field (valueFrom): the deployment "
                            f"policy denies it; Secrets reach an endpoint through serviceSettings' secretKeyRef")


def _nodes(deployment: Mapping[str, Any], policy: DeploymentPolicy) -> Iterator[Violation]:
    denied = set(policy.denied_node_keys)
    tolerations = deployment.get("tolerations")
    for i, toleration in enumerate(tolerations if isinstance(tolerations, list) else []):
        if not isinstance(toleration, Mapping):
            continue
        key = toleration.get("key")
        if not key:
            yield Violation(f"{FIELD}.tolerations[{i}]",
                            "a toleration without a key tolerates every taint, the control plane's included: "
                            "the deployment policy denies it")
        elif key in denied:
            yield Violation(f"{FIELD}.tolerations[{i}]", f"[{key}] may not be tolerated: the deployment policy "
                                                         f"denies it")
    selector = deployment.get("nodeSelector")
    for key in sorted(selector) if isinstance(selector, Mapping) else []:
        if key in denied:
            yield Violation(f"{FIELD}.nodeSelector", f"[{key}] may not be selected: the deployment policy denies it")
    for path, key in _node_affinity_keys(deployment.get("affinity")):
        if key in denied:
            yield Violation(f"{FIELD}.affinity.nodeAffinity.{path}",
                            f"[{key}] may not be selected: the deployment policy denies it")


def _node_affinity_keys(affinity: Any) -> Iterator[tuple[str, Any]]:
    node = affinity.get("nodeAffinity") if isinstance(affinity, Mapping) else None
    if not isinstance(node, Mapping):
        return
    required = node.get("requiredDuringSchedulingIgnoredDuringExecution")
    terms = required.get("nodeSelectorTerms") if isinstance(required, Mapping) else None
    for term in terms if isinstance(terms, list) else []:
        yield from _expression_keys("requiredDuringSchedulingIgnoredDuringExecution", term)
    preferred = node.get("preferredDuringSchedulingIgnoredDuringExecution")
    for weighted in preferred if isinstance(preferred, list) else []:
        if isinstance(weighted, Mapping):
            yield from _expression_keys("preferredDuringSchedulingIgnoredDuringExecution", weighted.get("preference"))


def _expression_keys(path: str, term: Any) -> Iterator[tuple[str, Any]]:
    expressions = term.get("matchExpressions") if isinstance(term, Mapping) else None
    for expression in expressions if isinstance(expressions, list) else []:
        if isinstance(expression, Mapping):
            yield path, expression.get("key")


def _annotations(deployment: Mapping[str, Any], policy: DeploymentPolicy) -> Iterator[Violation]:
    annotations = deployment.get("annotations")
    for key in sorted(annotations) if isinstance(annotations, Mapping) else []:
        if not any(key == a or (a.endswith("/") and key.startswith(a)) for a in policy.allowed_annotations):
            yield Violation(f"{FIELD}.annotations", f"[{key}] is not an annotation the deployment policy allows")


def _resources(deployment: Mapping[str, Any], policy: DeploymentPolicy) -> Iterator[Violation]:
    resources = deployment.get("resources")
    if not isinstance(resources, Mapping):
        return
    for part in ("requests", "limits"):
        asked = resources.get(part)
        for name, value in sorted(asked.items()) if isinstance(asked, Mapping) else []:
            path = f"{FIELD}.resources.{part}[{name}]"
            ceiling = policy.max_resources.get(name)
            if ceiling is None:
                yield Violation(path, f"[{name}] may not be asked for: the deployment policy sets no ceiling for it")
                continue
            try:
                over = parse_quantity(value) > parse_quantity(ceiling)
            except QuantityError:
                yield Violation(path, f"[{value}] is not a quantity")
                continue
            if over:
                yield Violation(path, f"[{value}] is above the deployment policy's ceiling of [{ceiling}]")
