"""The operator's settings, read once from environment variables that the Helm chart sets.

Every setting has a default that works on a plain cluster, so the operator also runs with
no environment at all. This module knows nothing of kopf or of the Kubernetes API.

Environment variables (all optional):

=============================  =====================================================
``KUBEINFER_SERVER_IMAGE``      model-server image for local models on GPU
``KUBEINFER_SERVER_CPU_IMAGE``  model-server image when no GPU is requested
``KUBEINFER_PROXY_IMAGE``       image of the proxy serving external providers
``KUBEINFER_IMAGE_PULL_POLICY`` ``IfNotPresent``, ``Always`` or ``Never``
``KUBEINFER_GPU_RESOURCE``      extended resource name of a GPU (``nvidia.com/gpu``)
``KUBEINFER_GPUS_PER_ENDPOINT`` GPUs per model-server pod; ``0`` runs on CPU
``KUBEINFER_MODEL_CACHE_PVC``   PersistentVolumeClaim holding downloaded models;
                                empty: an emptyDir per pod
``KUBEINFER_MODEL_CACHE_SIZE``  size limit of the emptyDir model cache (``10Gi``)
``KUBEINFER_MODEL_ALIASES``     JSON object mapping built-in model ids to Hugging
                                Face ids, merged over the catalog's defaults
``KUBEINFER_WATCH_NAMESPACES``  comma-separated namespaces; empty: all namespaces
``KUBEINFER_CLUSTER_DOMAIN``    cluster DNS domain used in status URLs
``KUBEINFER_LOG_LEVEL``         ``DEBUG``, ``INFO``, ``WARNING`` or ``ERROR``
``KUBEINFER_METRICS_PORT``      port of the Prometheus ``/metrics`` endpoint; 0: off
``KUBEINFER_AUTOSCALER``        ``auto`` (KEDA where its CRD is installed, else an HPA),
                                ``keda`` or ``hpa``
``KUBEINFER_SCALE_TO_ZERO_AFTER`` seconds without requests before an endpoint whose
                                adaptive allocations allow it goes to zero (``900``)
``KUBEINFER_PROMETHEUS_ADDRESS`` Prometheus that KEDA queries for the request metric
``KUBEINFER_TARGET_REQUESTS``   in-flight requests per replica the autoscaler aims at
=============================  =====================================================
"""

from __future__ import annotations

import json
import os
from typing import Any, Literal, Mapping

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from kubeinfer.catalog import BUILTIN_MODELS

DEFAULT_IMAGE_REPOSITORY = "ghcr.io/kubeinfer/kubeinfer"
DEFAULT_VERSION = "0.1.0"

# field name -> environment variable
ENVIRONMENT: dict[str, str] = {
    "server_image": "KUBEINFER_SERVER_IMAGE",
    "server_cpu_image": "KUBEINFER_SERVER_CPU_IMAGE",
    "proxy_image": "KUBEINFER_PROXY_IMAGE",
    "image_pull_policy": "KUBEINFER_IMAGE_PULL_POLICY",
    "gpu_resource": "KUBEINFER_GPU_RESOURCE",
    "gpus_per_endpoint": "KUBEINFER_GPUS_PER_ENDPOINT",
    "model_cache_pvc": "KUBEINFER_MODEL_CACHE_PVC",
    "model_cache_size": "KUBEINFER_MODEL_CACHE_SIZE",
    "model_aliases": "KUBEINFER_MODEL_ALIASES",
    "watch_namespaces": "KUBEINFER_WATCH_NAMESPACES",
    "cluster_domain": "KUBEINFER_CLUSTER_DOMAIN",
    "log_level": "KUBEINFER_LOG_LEVEL",
    "metrics_port": "KUBEINFER_METRICS_PORT",
    "autoscaler": "KUBEINFER_AUTOSCALER",
    "scale_to_zero_after": "KUBEINFER_SCALE_TO_ZERO_AFTER",
    "prometheus_address": "KUBEINFER_PROMETHEUS_ADDRESS",
    "target_requests": "KUBEINFER_TARGET_REQUESTS",
}


class SettingsError(ValueError):
    """An environment variable holds a value the operator cannot use."""


class OperatorSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    server_image: str = Field(
        default=f"{DEFAULT_IMAGE_REPOSITORY}-server-cuda:{DEFAULT_VERSION}",
        description="Model-server image for local models on GPU.",
    )
    server_cpu_image: str = Field(
        default=f"{DEFAULT_IMAGE_REPOSITORY}-server:{DEFAULT_VERSION}",
        description="Model-server image when the endpoint gets no GPU.",
    )
    proxy_image: str = Field(
        # The operator's own image: the package without torch is all a proxy needs.
        default=f"{DEFAULT_IMAGE_REPOSITORY}:{DEFAULT_VERSION}",
        description="Image of the proxy Deployments that serve external providers.",
    )
    image_pull_policy: Literal["IfNotPresent", "Always", "Never"] = "IfNotPresent"
    gpu_resource: str = Field(default="nvidia.com/gpu", min_length=1)
    gpus_per_endpoint: int = Field(default=1, ge=0, description="GPUs per model-server pod; 0 runs on CPU.")
    model_cache_pvc: str = Field(default="", description="PVC for the model cache; empty means an emptyDir.")
    model_cache_size: str = Field(default="10Gi", description="Size limit of the emptyDir model cache.")
    model_aliases: dict[str, str] = Field(
        default_factory=lambda: dict(BUILTIN_MODELS),
        description="Built-in model ids mapped to Hugging Face ids.",
    )
    watch_namespaces: tuple[str, ...] = Field(default=(), description="Namespaces to watch; empty means all.")
    cluster_domain: str = "cluster.local"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    metrics_port: int = Field(default=9090, ge=0, le=65535, description="Prometheus port; 0 turns metrics off.")
    autoscaler: Literal["auto", "keda", "hpa"] = Field(
        default="auto", description="KEDA where its CRD is installed (auto), or always KEDA, or always an HPA.")
    scale_to_zero_after: int = Field(
        default=900, ge=0, description="Seconds without requests before an endpoint with min 0 goes to zero.")
    prometheus_address: str = Field(
        default="http://prometheus-operated.monitoring.svc:9090", min_length=1,
        description="Prometheus that KEDA asks for the in-flight request metric.")
    target_requests: int = Field(default=8, ge=1, description="In-flight requests per replica to aim at.")

    @field_validator("log_level", "image_pull_policy", "autoscaler", mode="before")
    @classmethod
    def _normalise_case(cls, value: Any, info: Any) -> Any:
        if isinstance(value, str) and info.field_name == "log_level":
            return value.strip().upper()
        if isinstance(value, str) and info.field_name == "autoscaler":
            return value.strip().lower()
        return value.strip() if isinstance(value, str) else value

    @property
    def all_namespaces(self) -> bool:
        return not self.watch_namespaces

    def resolve_model(self, model_id: str) -> str:
        """The Hugging Face id (or local path) the server loads for ``model_id``."""
        return self.model_aliases.get(model_id, model_id)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "OperatorSettings":
        """Read the settings from ``environ`` (``os.environ`` by default).

        Unset or empty variables keep their defaults; a bad value raises ``SettingsError``
        naming the variable.
        """
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for field, var in ENVIRONMENT.items():
            raw = environ.get(var)
            if raw is None or (raw.strip() == "" and field != "model_cache_pvc"):
                continue
            values[field] = _parse(field, var, raw)
        try:
            return cls(**values)
        except ValidationError as exc:
            err = exc.errors()[0]
            field = str(err["loc"][0]) if err["loc"] else ""
            var = ENVIRONMENT.get(field, field)
            raise SettingsError(f"{var}: {err['msg']}") from None


def _parse(field: str, var: str, raw: str) -> Any:
    raw = raw.strip()
    if field == "watch_namespaces":
        return tuple(ns.strip() for ns in raw.split(",") if ns.strip())
    if field == "model_aliases":
        try:
            aliases = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise SettingsError(f"{var}: not valid JSON ({exc.msg})") from None
        if not isinstance(aliases, dict) or not all(
            isinstance(k, str) and isinstance(v, str) and v for k, v in aliases.items()
        ):
            raise SettingsError(f"{var}: must be a JSON object of model id -> Hugging Face id")
        return {**BUILTIN_MODELS, **aliases}
    if field in ("gpus_per_endpoint", "metrics_port", "scale_to_zero_after", "target_requests"):
        try:
            return int(raw)
        except ValueError:
            raise SettingsError(f"{var}: {raw!r} is not an integer") from None
    return raw
