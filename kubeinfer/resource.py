"""The InferenceEndpoint resource's own fields, as pydantic models: the ``deployment``
overrides of ``spec`` and the whole of ``status``.

The service settings come from the catalog; these models are what is left of the CR.
They are the source of the CRD's schema for those parts, and the operator may use them
to read ``spec.deployment`` and to write ``status``. Names are camelCase on the wire, as
Kubernetes wants. This module knows nothing of kopf or of the Kubernetes API.
"""

from __future__ import annotations

from enum import Enum
from typing import Any, Union

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from kubeinfer.catalog import Similarity


class CamelModel(BaseModel):
    model_config = ConfigDict(extra="forbid", alias_generator=to_camel, populate_by_name=True)


# A Kubernetes quantity ("500m", "2Gi", 1).
Quantity = Union[int, str]


class ResourceRequirements(CamelModel):
    requests: dict[str, Quantity] | None = Field(default=None, description="Minimum resources, e.g. cpu: 500m.")
    limits: dict[str, Quantity] | None = Field(default=None, description="Maximum resources, e.g. nvidia.com/gpu: 1.")


class EnvVar(CamelModel):
    model_config = ConfigDict(extra="allow", alias_generator=to_camel, populate_by_name=True)

    name: str = Field(min_length=1)
    value: str | None = None
    value_from: dict[str, Any] | None = Field(default=None, description="A Kubernetes EnvVarSource.")


class DeploymentOverrides(CamelModel):
    """How the endpoint's pods run; every field overrides what the operator would choose."""

    replicas: int | None = Field(
        default=None, ge=0, description="Pod replicas; defaults to num_allocations, or 1 for external services."
    )
    image: str | None = Field(default=None, description="Container image of the model server or proxy.")
    resources: ResourceRequirements | None = Field(default=None, description="Container resources.")
    node_selector: dict[str, str] | None = Field(default=None, description="Node labels the pods must match.")
    tolerations: list[dict[str, Any]] | None = Field(default=None, description="Kubernetes Tolerations.")
    affinity: dict[str, Any] | None = Field(default=None, description="A Kubernetes Affinity.")
    env: list[EnvVar] | None = Field(default=None, description="Extra environment variables of the container.")
    annotations: dict[str, str] | None = Field(default=None, description="Extra annotations of the pods.")


class ConditionStatus(str, Enum):
    TRUE = "True"
    FALSE = "False"
    UNKNOWN = "Unknown"


class Condition(CamelModel):
    type: str = Field(min_length=1, max_length=316, description="Ready or Progressing.")
    status: ConditionStatus
    reason: str | None = Field(default=None, max_length=1024, description="CamelCase reason, e.g. InvalidSpec.")
    message: str | None = Field(default=None, max_length=32768)
    last_transition_time: str | None = Field(default=None, json_schema_extra={"format": "date-time"})
    observed_generation: int | None = Field(default=None, ge=0)


class InferenceEndpointStatus(CamelModel):
    conditions: list[Condition] | None = None
    observed_generation: int | None = Field(default=None, ge=0, description="The generation the status is about.")
    url: str | None = Field(default=None, description="Where to send inference requests.")
    ready_replicas: int | None = Field(default=None, ge=0)
    replicas: int | None = Field(default=None, ge=0, description="Replicas asked for; 0 when scaled to zero.")
    dimensions: int | None = Field(default=None, ge=1, description="Dimensions of the vectors, once known.")
    similarity: Similarity | None = Field(default=None, description="Similarity of the vectors, once known.")
