"""The InferenceEndpoint resource's own facts: its name in the API (group, version, kind,
plural), the labels and ownerReference of what it owns, the ``deployment`` overrides of
``spec`` and the whole of ``status``, with the one vocabulary of its conditions.

The operator writes status in these words (``kubeinfer_operator.status``) and the gateway
reads it with ``is_ready`` and ``refusal`` here; the CRD's schema for those parts comes
from these models. The service settings come from the catalog, which builds on this
module. Names are camelCase on the wire, as Kubernetes wants. This module imports no
other part of kubeinfer, and knows nothing of kopf or of the Kubernetes API's transport.
"""

from __future__ import annotations

import hashlib
import re
from enum import Enum
from typing import Any, Literal, Mapping, Union

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

# ---- the resource in the API -------------------------------------------------------
GROUP = "kubeinfer.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "InferenceEndpoint"
PLURAL = "inferenceendpoints"
SHORT_NAMES = ("ie",)
CRD_NAME = f"{PLURAL}.{GROUP}"
# Annotations and labels of the project's own start with it.
ANNOTATION_PREFIX = GROUP

# ---- what the resource owns ----------------------------------------------------------
LABEL_NAME = "app.kubernetes.io/name"
LABEL_INSTANCE = "app.kubernetes.io/instance"
LABEL_COMPONENT = "app.kubernetes.io/component"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
LABEL_ENDPOINT = f"{GROUP}/endpoint"
# A Secret's owner lets endpoints send it to a URL of their own (not the provider's own
# API) by labelling it so; a Secret the endpoint owns (made by the gateway) needs no label.
LABEL_ALLOW_CUSTOM_URL = f"{GROUP}/allow-custom-url"
APP_NAME = "kubeinfer"


# On an endpoint's Deployment: which autoscaler owns its replicas (``keda`` or ``hpa``) and
# the fewest it may have. The operator writes them; the gateway reads the first to wake an
# endpoint at zero.
AUTOSCALER_ANNOTATION = f"{ANNOTATION_PREFIX}/autoscaler"
MIN_REPLICAS_ANNOTATION = f"{ANNOTATION_PREFIX}/min-replicas"
# The gateway's gauge of requests it holds for an endpoint at zero replicas; KEDA's
# trigger counts them, so that a held request activates the endpoint.
HELD_METRIC = "kubeinfer_gateway_requests_held"

_DNS_LABEL = re.compile(r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$")


def workload_name(cr_name: str) -> str:
    """The name of the objects serving the CR: the CR's name when it is a valid DNS label
    (what a Service name must be), else a shortened, sanitised form with a stable hash."""
    if _DNS_LABEL.match(cr_name):
        return cr_name
    digest = hashlib.sha256(cr_name.encode()).hexdigest()[:8]
    base = re.sub(r"[^a-z0-9-]+", "-", cr_name.lower()).strip("-")
    if not base or not base[0].isalpha():
        base = "ie-" + base
    return f"{base[:53].rstrip('-')}-{digest}"


def owner_reference(name: str, uid: str) -> dict[str, Any]:
    """The ownerReference by which an InferenceEndpoint owns (and deletes) an object."""
    return {"apiVersion": API_VERSION, "kind": KIND, "name": name, "uid": uid,
            "controller": True, "blockOwnerDeletion": True}


# ---- status: condition types and reasons ------------------------------------------------
READY = "Ready"
PROGRESSING = "Progressing"
# kstatus's abnormal-true conditions, present only while true: Flux's default health check
# and kstatus-based tools read these, not Ready.
RECONCILING = "Reconciling"
STALLED = "Stalled"

# Reasons, CamelCase as Kubernetes wants them.
AVAILABLE = "Available"
INVALID_SPEC = "InvalidSpec"
SECRET_NOT_FOUND = "SecretNotFound"
SECRET_NOT_ALLOWED = "SecretNotAllowed"
# spec.deployment asks for what the cluster's deployment policy does not allow.
POLICY_VIOLATION = "PolicyViolation"
# The endpoint's cloud region is outside the inference region policy.
REGION_NOT_ALLOWED = "RegionNotAllowed"
ROLLING_OUT = "RollingOut"
ROLLOUT_COMPLETE = "RolloutComplete"
ROLLOUT_FAILED = "ProgressDeadlineExceeded"
UNAVAILABLE = "MinimumReplicasUnavailable"
SCALED_TO_ZERO = "ScaledToZero"
DEPLOYMENT_NOT_FOUND = "DeploymentNotFound"
# A pool member whose model does not fit in the pool's memory budget.
POOL_FULL = "PoolFull"
# A member of a shared model server whose own model is still loading, or failed to load.
MODEL_LOADING = "ModelLoading"
MODEL_LOAD_FAILED = "ModelLoadFailed"
APPLY_FAILED = "ApplyFailed"


def ready_condition(obj: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The ``Ready`` condition of an InferenceEndpoint, if it has one."""
    for condition in (obj.get("status") or {}).get("conditions") or []:
        if condition.get("type") == READY:
            return condition
    return None


def is_ready(obj: Mapping[str, Any]) -> bool:
    """Ready=True for the resource's current generation, with a URL to send requests to."""
    status = obj.get("status") or {}
    condition = ready_condition(obj)
    generation = (obj.get("metadata") or {}).get("generation")
    observed = status.get("observedGeneration")
    current = generation is None or observed is None or observed >= generation
    return bool(condition and condition.get("status") == ConditionStatus.TRUE.value and current
                and status.get("url"))


def refusal(obj: Mapping[str, Any]) -> str | None:
    """The operator's message when it refused the current spec as invalid."""
    condition = ready_condition(obj) or {}
    generation = (obj.get("metadata") or {}).get("generation")
    observed = condition.get("observedGeneration", (obj.get("status") or {}).get("observedGeneration"))
    if (condition.get("status") == ConditionStatus.FALSE.value
            and condition.get("reason") in (INVALID_SPEC, POLICY_VIOLATION) and observed == generation):
        return condition.get("message") or condition.get("reason")
    return None


# How an embedding endpoint's vectors compare: a service setting and a status field.
class Similarity(str, Enum):
    COSINE = "cosine"
    DOT_PRODUCT = "dot_product"
    L2_NORM = "l2_norm"


class CamelModel(BaseModel):
    model_config = ConfigDict(extra="forbid", alias_generator=to_camel, populate_by_name=True)


# A Kubernetes quantity ("500m", "2Gi", 1).
Quantity = Union[int, str]


# Bounds on the lists and maps of spec.deployment: they keep the CEL of admission policies
# over them (the chart's deployment policy) within the API server's cost budget.
MAX_ENV = 64
MAX_TOLERATIONS = 32
MAX_MAP_ENTRIES = 64
MAX_RESOURCE_NAMES = 16


# A pool's name is part of its objects' names (kubeinfer-pool-<name>): a DNS label.
POOL_NAME_PATTERN = r"^[a-z]([-a-z0-9]*[a-z0-9])?$"
POOL_NAME_MAX = 47


class ResourceRequirements(CamelModel):
    requests: dict[str, Quantity] | None = Field(default=None, max_length=MAX_RESOURCE_NAMES,
                                                 description="Minimum resources, e.g. cpu: 500m.")
    limits: dict[str, Quantity] | None = Field(default=None, max_length=MAX_RESOURCE_NAMES,
                                               description="Maximum resources, e.g. nvidia.com/gpu: 1.")


class EnvVar(CamelModel):
    model_config = ConfigDict(extra="allow", alias_generator=to_camel, populate_by_name=True)

    name: str = Field(min_length=1, max_length=256)
    value: str | None = None
    value_from: dict[str, Any] | None = Field(default=None, description="A Kubernetes EnvVarSource.")


class DeploymentOverrides(CamelModel):
    """How the endpoint's pods run; every field overrides what the operator would choose."""

    replicas: int | None = Field(
        default=None, ge=0, description="Pod replicas; defaults to num_allocations, or 1 for external services."
    )
    image: str | None = Field(default=None, max_length=1024,
                              description="Container image of the model server or proxy.")
    resources: ResourceRequirements | None = Field(default=None, description="Container resources.")
    node_selector: dict[str, str] | None = Field(default=None, max_length=MAX_MAP_ENTRIES,
                                                 description="Node labels the pods must match.")
    tolerations: list[dict[str, Any]] | None = Field(default=None, max_length=MAX_TOLERATIONS,
                                                     description="Kubernetes Tolerations.")
    affinity: dict[str, Any] | None = Field(default=None, description="A Kubernetes Affinity.")
    env: list[EnvVar] | None = Field(default=None, max_length=MAX_ENV,
                                     description="Extra environment variables of the container.")
    annotations: dict[str, str] | None = Field(default=None, max_length=MAX_MAP_ENTRIES,
                                               description="Extra annotations of the pods.")
    runtime: Literal["auto", "torch", "onnx"] | None = Field(
        default=None, description="Engine of a local model on CPU: auto (ONNX Runtime where it matches torch, "
                                  "the default), torch or onnx. GPUs run torch.")
    quantization: Literal["none", "int8"] | None = Field(
        default=None, description="int8: a local model on CPU runs dynamically quantized on ONNX Runtime, "
                                  "faster and slightly less exact; refused below a mean cosine of 0.99 to fp32.")
    pool: str | None = Field(
        default=None, min_length=1, max_length=POOL_NAME_MAX, pattern=POOL_NAME_PATTERN,
        description="A named pool of the namespace: one model server (Deployment and Service) serves every "
                    "model of the pool. resources.requests.memory is the model's share of the pool's memory "
                    "(2Gi when unset); the largest resources.limits.memory of the members, else the "
                    "operator's pool memory, is the pool's budget.")


class ConditionStatus(str, Enum):
    TRUE = "True"
    FALSE = "False"
    UNKNOWN = "Unknown"


class Condition(CamelModel):
    type: str = Field(min_length=1, max_length=316, description=f"{READY} or {PROGRESSING}.")
    status: ConditionStatus
    reason: str | None = Field(default=None, max_length=1024, description=f"CamelCase reason, e.g. {INVALID_SPEC}.")
    message: str | None = Field(default=None, max_length=32768)
    last_transition_time: str | None = Field(default=None, json_schema_extra={"format": "date-time"})
    observed_generation: int | None = Field(default=None, ge=0)


class InferenceEndpointStatus(CamelModel):
    conditions: list[Condition] | None = None
    observed_generation: int | None = Field(default=None, ge=0, description="The generation the status is about.")
    url: str | None = Field(default=None, description="Where to send inference requests.")
    model_server: str | None = Field(
        default=None, description="The Deployment whose pods serve the endpoint: its own, its pool's, or that of "
                                  "the endpoint its deployment_id names.")
    ready_replicas: int | None = Field(default=None, ge=0)
    replicas: int | None = Field(default=None, ge=0, description="Replicas asked for; 0 when scaled to zero.")
    dimensions: int | None = Field(default=None, ge=1, description="Dimensions of the vectors, once known.")
    similarity: Similarity | None = Field(default=None, description="Similarity of the vectors, once known.")
