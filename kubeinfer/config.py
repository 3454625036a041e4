"""All of kubeinfer's ``KUBEINFER_*`` configuration, read from the environment here and
nowhere else, and checked when a role starts.

Each role reads its settings once at start-up with ``from_env`` and refuses to start on
a value it cannot use, with a ``SettingsError`` naming the variable
(``KUBEINFER_MODEL_ALIASES: not valid JSON ...``); the CLI prints it and exits 2. Every
setting has a default that works on a plain cluster, and an unset or empty variable keeps
it. Secrets are not configuration: ``kubeinfer.secrets`` reads those.

Operator (``OperatorSettings``; the Helm chart sets these):

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
``KUBEINFER_MODEL_ALIASES``     JSON object mapping model ids to Hugging Face ids or
                                paths, over the catalog's defaults (``model_ids``)
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
``KUBEINFER_ENDPOINT_NETWORK_POLICY`` ``true`` (default): a NetworkPolicy per endpoint admits
                                only the gateway and the allowed namespaces to its pods
``KUBEINFER_ENDPOINT_ALLOWED_NAMESPACES`` comma-separated namespaces whose pods may call
                                endpoint pods directly, skipping the gateway
``KUBEINFER_GATEWAY_NAMESPACE`` namespace of the gateway's pods; empty: any namespace
``KUBEINFER_GATEWAY_POD_LABELS`` JSON object of labels selecting the gateway's pods
``KUBEINFER_ALLOW_LINK_LOCAL_URLS`` ``true`` lets every endpoint's provider URL point at
                                link-local and cloud metadata addresses (the operator
                                sets it on the pods; a CR cannot)
``KUBEINFER_DEPLOYMENT_POLICY`` JSON object: what a CR's ``spec.deployment`` may ask for
                                (``deployment_policy``); safe defaults when unset
``KUBEINFER_REGION_POLICY_NAMESPACE`` namespace of the region policy's ConfigMap
                                (``kubeinfer-region-policy``); empty: the operator's own
``KUBEINFER_REGION_NODE_PLACEMENT`` ``true``: model servers run only on nodes whose
                                ``topology.kubernetes.io/region`` the region policy allows
=============================  =====================================================

The HTTP API (``HttpSettings``; ``serve``, ``local`` and ``gateway``):

=====================================  =============================================
``KUBEINFER_LOG_LEVEL``                 ``DEBUG``, ``INFO``, ``WARNING`` or ``ERROR``
``KUBEINFER_HTTP_MAX_CONTENT_LENGTH``   largest request body (``10MiB``; ``512kb``,
                                        ``100mb``...); larger ones are answered 413
=====================================  =============================================

Gateway (``GatewaySettings``; ``kubeinfer gateway``): requests it holds while an
endpoint at zero replicas wakes, and where the region policy is kept:

=====================================  =============================================
``KUBEINFER_HELD_REQUESTS_PER_ENDPOINT`` requests held at once per endpoint (``64``);
                                        more are answered 429
``KUBEINFER_MAX_HOLD``                  most seconds a request is held (``300``), even
                                        with ``?timeout=-1``; a 408 after it
``KUBEINFER_REGION_POLICY_NAMESPACE``   namespace of the region policy's ConfigMap
                                        (``kubeinfer-region-policy``); empty: its own
=====================================  =============================================

Model server (``ServerSettings``; ``kubeinfer serve`` and ``kubeinfer local``):

=====================================  =============================================
``KUBEINFER_MODEL_ALIASES``             as for the operator, which sets it on the pod
``KUBEINFER_BUILTIN_MODEL_<ID>``        the model for one built-in id (both roles)
``KUBEINFER_MAX_INPUTS_PER_REQUEST``    inputs one request may carry (2048), whatever
                                        serves it: a local model or a provider
``KUBEINFER_MAX_BATCH_SIZE``            inputs per model forward pass
``KUBEINFER_MAX_BATCH_TOKENS``          padded tokens per model forward pass
``KUBEINFER_MAX_BATCH_WAIT_MS``         longest wait for a batch to fill
``KUBEINFER_QUEUE_CAPACITY``            requests in flight before 429s
``KUBEINFER_SCALE_TO_ZERO_AFTER``       local mode: idle seconds before a min-0 local
                                        model is unloaded (``900``)
``KUBEINFER_DEVICE``                    ``cpu`` or ``cuda``; the best there is when unset
``KUBEINFER_CPU_DTYPE``                 ``float32`` (default) or ``bfloat16`` on CPU
``KUBEINFER_CUDA_GRAPHS``               ``false`` runs local models on a GPU without
                                        CUDA graphs (on by default)
``KUBEINFER_ALLOW_LINK_LOCAL_URLS``     ``true`` lets provider URLs point at link-local
                                        and cloud metadata addresses (refused by default)
``KUBEINFER_PROVIDER_MAX_ANSWER_SIZE``  most bytes read of one provider answer, once
                                        decompressed (``128mb``); past it a 502
``KUBEINFER_PROVIDER_MAX_LINE_SIZE``    most bytes of one line of a provider's stream
                                        (``1mb``); past it the stream ends in an error
``KUBEINFER_STREAM_MAX_DURATION``       seconds a provider stream may last in all (``600``)
``KUBEINFER_STREAM_IDLE_TIMEOUT``       seconds a provider stream may stay silent (``120``);
                                        the request's ``timeout`` bounds each wait too
``KUBEINFER_RUNTIME``                   CPU engine: ``auto`` (ONNX Runtime where it matches
                                        torch), ``torch`` or ``onnx``; GPUs run torch
``KUBEINFER_QUANTIZATION``              ``none`` or ``int8`` (ONNX Runtime, opt-in)
``KUBEINFER_INT8_MIN_COSINE``           int8's least mean cosine to fp32 at load (0.99)
``KUBEINFER_CPU_LANES_MAX_MEMORY``      most memory one-thread ONNX Runtime sessions
                                        running batches side by side may add
                                        (``1gb``; ``0`` turns them off)
=====================================  =============================================

This module knows nothing of kopf, of the Kubernetes API or of torch.
"""

from __future__ import annotations

import os
import re
from contextvars import ContextVar
from typing import Annotated, Any, ClassVar, Literal, Mapping, TypeVar

from pydantic import ByteSize, Field, ValidationError, field_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, EnvSettingsSource, NoDecode, PydanticBaseSettingsSource, SettingsConfigDict
from pydantic_settings import SettingsError as PydanticSettingsError

from .catalog import BUILTIN_MODELS
from .deployment_policy import DeploymentPolicy
from .model_ids import model_aliases, resolve_model

PREFIX = "KUBEINFER_"
DEFAULT_IMAGE_REPOSITORY = "ghcr.io/kubeinfer/kubeinfer"
DEFAULT_VERSION = "0.1.0"

_Settings = TypeVar("_Settings", bound="KubeinferSettings")
# The environment ``from_env`` reads; ``os.environ`` unless a caller passes another.
_ENVIRON: ContextVar[Mapping[str, str] | None] = ContextVar("kubeinfer_environ", default=None)


class SettingsError(ValueError):
    """An environment variable holds a value kubeinfer cannot use; the message names it."""


def env_var(field: str) -> str:
    """The environment variable of a settings field: ``gpus_per_endpoint`` -> ``KUBEINFER_GPUS_PER_ENDPOINT``."""
    return PREFIX + field.upper()


class _Environment(EnvSettingsSource):
    """The ``KUBEINFER_*`` variables of one mapping, blank ones left out.

    The model aliases are folded here from their several variables (``model_ids``), so
    that every role reads them alike.
    """

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str]) -> None:
        self._environ = {k: v for k, v in environ.items() if k.startswith(PREFIX) and v.strip()}
        super().__init__(settings_cls)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return {k.lower(): v for k, v in self._environ.items()}

    def prepare_field_value(self, field_name: str, field: FieldInfo, value: Any, value_is_complex: bool) -> Any:
        if field_name == "model_aliases":
            return None  # read from several variables below
        return super().prepare_field_value(field_name, field, value, value_is_complex)

    def __call__(self) -> dict[str, Any]:
        values = super().__call__()
        if "model_aliases" in self.settings_cls.model_fields:
            try:
                values["model_aliases"] = model_aliases(self._environ)
            except ValueError as exc:
                raise SettingsError(str(exc)) from None
        return values


class KubeinferSettings(BaseSettings):
    """What every role reads: how much it logs."""

    model_config = SettingsConfigDict(env_prefix=PREFIX, frozen=True, extra="forbid")

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(default="INFO", description="How much the role logs.")

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_case(cls, value: Any) -> Any:
        return value.strip().upper() if isinstance(value, str) else value

    @classmethod
    def settings_customise_sources(
        cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource, dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return init_settings, _Environment(settings_cls, _ENVIRON.get() or os.environ)

    @classmethod
    def from_env(cls: type[_Settings], environ: Mapping[str, str] | None = None) -> _Settings:
        """The settings ``environ`` (``os.environ`` by default) gives; ``SettingsError`` on a bad value."""
        token = _ENVIRON.set(environ if environ is not None else os.environ)
        try:
            return cls()
        except PydanticSettingsError as exc:
            # A complex setting (a JSON object) that is not JSON.
            field = re.search(r'field "(\w+)"', str(exc))
            raise SettingsError(f"{env_var(field.group(1)) if field else PREFIX + '*'}: not valid JSON") from None
        except ValidationError as exc:
            err = exc.errors()[0]
            field = str(err["loc"][0]) if err["loc"] else ""
            given = f" (got {err['input']!r})" if isinstance(err.get("input"), (str, int)) else ""
            raise SettingsError(f"{env_var(field)}: {err['msg']}{given}") from None
        finally:
            _ENVIRON.reset(token)


class ModelSettings(KubeinferSettings):
    """Which model serves each model id: the operator and the server read it alike."""

    model_aliases: dict[str, str] = Field(
        default_factory=lambda: dict(BUILTIN_MODELS),
        description="Model ids mapped to Hugging Face ids or paths, over the catalog's defaults.",
    )

    def resolve_model(self, model_id: str) -> str:
        """The Hugging Face id (or local path) the server loads for ``model_id``."""
        return resolve_model(model_id, self.model_aliases)


class OperatorSettings(ModelSettings):
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
    image_pull_policy: Literal["IfNotPresent", "Always", "Never"] = Field(
        default="IfNotPresent", description="Pull policy of the endpoint pods' images.")
    gpu_resource: str = Field(default="nvidia.com/gpu", min_length=1,
                              description="Extended resource a model-server pod requests its GPUs as.")
    gpus_per_endpoint: int = Field(default=1, ge=0, description="GPUs per model-server pod; 0 runs on CPU.")
    model_cache_pvc: str = Field(default="", description="PVC for the model cache; empty means an emptyDir.")
    model_cache_size: str = Field(default="10Gi", description="Size limit of the emptyDir model cache.")
    watch_namespaces: Annotated[tuple[str, ...], NoDecode] = Field(
        default=(), description="Namespaces to watch; empty means all.")
    cluster_domain: str = Field(default="cluster.local", description="Cluster DNS domain in the status URLs.")
    metrics_port: int = Field(default=9090, ge=0, le=65535, description="Prometheus port; 0 turns metrics off.")
    autoscaler: Literal["auto", "keda", "hpa"] = Field(
        default="auto", description="KEDA where its CRD is installed (auto), or always KEDA, or always an HPA.")
    scale_to_zero_after: int = Field(
        default=900, ge=0, description="Seconds without requests before an endpoint with min 0 goes to zero.")
    prometheus_address: str = Field(
        default="http://prometheus-operated.monitoring.svc:9090", min_length=1,
        description="Prometheus that KEDA asks for the in-flight request metric.")
    target_requests: int = Field(default=8, ge=1, description="In-flight requests per replica to aim at.")
    endpoint_network_policy: bool = Field(
        default=True, description="A NetworkPolicy per endpoint: only the gateway (and allowed namespaces) may call it.")
    endpoint_allowed_namespaces: Annotated[tuple[str, ...], NoDecode] = Field(
        default=(), description="Namespaces whose pods may call endpoint pods directly.")
    gateway_namespace: str = Field(default="", description="Namespace of the gateway's pods; empty: any.")
    gateway_pod_labels: dict[str, str] = Field(
        default_factory=lambda: {"app.kubernetes.io/name": "kubeinfer", "app.kubernetes.io/component": "gateway"},
        description="Labels that select the gateway's pods.")
    operator_namespace: str = Field(
        default="", description="Namespace of the operator's pods, which ask pool pods which models they "
                                "loaded; empty: any.")
    operator_pod_labels: dict[str, str] = Field(
        default_factory=lambda: {"app.kubernetes.io/name": "kubeinfer", "app.kubernetes.io/component": "operator"},
        description="Labels that select the operator's pods.")
    model_server_url: str = Field(
        default="", description="Base URL the operator asks a shared model server's /readyz?model= at; empty: "
                                "the model server's Service, http://SERVICE.NAMESPACE.svc.CLUSTER_DOMAIN.")
    allow_link_local_urls: bool = Field(
        default=False, description="Let provider URLs point at link-local and cloud metadata addresses.")
    deployment_policy: DeploymentPolicy = Field(
        default_factory=DeploymentPolicy, description="What an InferenceEndpoint's spec.deployment may ask for.")
    pool_memory: str = Field(
        default="8Gi", pattern=r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|k|M|G|T)?$",
        description="Memory budget of a pool's pod when no member sets resources.limits.memory.")
    gateway_parent: str = Field(
        default="", pattern=r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?/[a-z0-9]([-a-z0-9.]*[a-z0-9])?)?$",
        description="NAMESPACE/NAME of a Gateway API Gateway: an HTTPRoute per endpoint sends its inference "
                    "there straight to its Service; empty: none.")
    inference_pool: bool = Field(
        default=False, description="An InferencePool per model server, the HTTPRoutes' backend (needs "
                                   "gateway_parent and an endpoint picker).")
    endpoint_picker: str = Field(
        default="kubeinfer-endpoint-picker:9002",
        pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?:[0-9]{1,5}$",
        description="SERVICE:PORT of the endpoint picker the InferencePools name, in the endpoints' namespace.")
    region_policy_namespace: str = Field(
        default="", description="Namespace of the region policy's ConfigMap; empty: the operator's own.")
    region_node_placement: bool = Field(
        default=False, description="Run model servers only on nodes in the regions the region policy allows.")

    @field_validator("endpoint_allowed_namespaces", "watch_namespaces", mode="before")
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(ns.strip() for ns in value.split(",") if ns.strip())
        return value

    @field_validator("autoscaler", mode="before")
    @classmethod
    def _autoscaler_lower_case(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("image_pull_policy", mode="before")
    @classmethod
    def _strip(cls, value: Any) -> Any:
        return value.strip() if isinstance(value, str) else value

    @property
    def all_namespaces(self) -> bool:
        return not self.watch_namespaces

    @property
    def endpoint_images(self) -> tuple[str, ...]:
        """The images the operator runs endpoints with: a CR may always name them."""
        return (self.server_image, self.server_cpu_image, self.proxy_image)


class HttpSettings(KubeinferSettings):
    """What every role serving the HTTP API reads (``serve``, ``local``, ``gateway``)."""

    http_max_content_length: ByteSize = Field(
        default=ByteSize(10 * 1024 * 1024), gt=0,
        description="Largest request body, as Elasticsearch's http.max_content_length; larger ones get a 413.")


class GatewaySettings(HttpSettings):
    """What ``kubeinfer gateway`` reads besides the HTTP API's settings."""

    held_requests_per_endpoint: int = Field(
        default=64, ge=1, description="Requests held at once for one endpoint waking from zero; more get a 429.")
    max_hold: float = Field(
        default=300, gt=0, description="Most seconds a request is held while its endpoint wakes, whatever its timeout.")
    region_policy_namespace: str = Field(
        default="", description="Namespace of the region policy's ConfigMap; empty: the gateway's own.")


class ServerSettings(ModelSettings, HttpSettings):
    """What ``kubeinfer serve`` and ``kubeinfer local`` read: models, batching, device."""

    max_inputs_per_request: int = Field(default=2048, ge=1, description="Inputs one request may carry.")
    max_batch_size: int | None = Field(default=None, ge=1, description="Inputs per model forward pass.")
    max_batch_tokens: int | None = Field(default=None, ge=1, description="Padded tokens per forward pass.")
    max_batch_wait_ms: float | None = Field(default=None, ge=0, description="Longest wait for a batch to fill.")
    queue_capacity: int | None = Field(default=None, ge=1, description="Requests in flight before 429s.")
    device: str | None = Field(default=None, pattern=r"^(cpu|cuda(:\d+)?)$", description="cpu or cuda.")
    cpu_dtype: Literal["float32", "bfloat16", "bf16"] = Field(
        default="float32", description="Precision of local models on CPU; bfloat16 keeps torch.")
    cuda_graphs: bool = Field(
        default=True, description="On a GPU, replay CUDA graphs of local models' forward pass: one launch per batch.")
    operator_namespace: str = Field(
        default="", description="Namespace of the operator's pods, which ask pool pods which models they "
                                "loaded; empty: any.")
    operator_pod_labels: dict[str, str] = Field(
        default_factory=lambda: {"app.kubernetes.io/name": "kubeinfer", "app.kubernetes.io/component": "operator"},
        description="Labels that select the operator's pods.")
    model_server_url: str = Field(
        default="", description="Base URL the operator asks a shared model server's /readyz?model= at; empty: "
                                "the model server's Service, http://SERVICE.NAMESPACE.svc.CLUSTER_DOMAIN.")
    allow_link_local_urls: bool = Field(
        default=False, description="Let provider URLs point at link-local and cloud metadata addresses.")
    runtime: Literal["auto", "torch", "onnx"] = Field(
        default="auto", description="Engine of local models on CPU: auto (ONNX Runtime where it matches torch), "
                                    "torch or onnx. GPUs run torch.")
    quantization: Literal["none", "int8"] = Field(
        default="none", description="int8: dynamic per-channel quantization on ONNX Runtime (changes results).")
    int8_min_cosine: float = Field(
        default=0.99, gt=0, le=1, description="Least mean cosine to fp32 int8 may show at load to be served.")
    cpu_lanes_max_memory: ByteSize = Field(
        default=ByteSize(1024 ** 3), ge=0,
        description="With num_threads > 1 on ONNX Runtime, the most memory the one-thread sessions that run "
                    "parts of a batch side by side may add (each holds a copy of the model); 0 turns them off.")
    scale_to_zero_after: float = Field(
        default=900, ge=0, description="Local mode: idle seconds before a min-0 local model is unloaded.")
    provider_max_answer_size: ByteSize = Field(
        default=ByteSize(128 * 1024 ** 2), gt=0,
        description="Most bytes read of one provider answer, once decompressed; a larger one is a 502.")
    provider_max_line_size: ByteSize = Field(
        default=ByteSize(1024 ** 2), gt=0,
        description="Most bytes of one line (one event) of a provider's stream; a longer one ends the stream.")
    stream_max_duration: float = Field(
        default=600, gt=0, description="Seconds a provider stream may last in all before it is ended with an error.")
    stream_idle_timeout: float = Field(
        default=120, gt=0, description="Seconds a provider stream may go without a byte before it is ended.")

    _BATCHING: ClassVar[tuple[str, ...]] = ("max_batch_size", "max_batch_tokens", "queue_capacity")

    @field_validator("quantization")
    @classmethod
    def _int8_needs_onnx(cls, value: str, info: Any) -> str:
        if value == "int8" and info.data.get("runtime") == "torch":
            raise ValueError("int8 runs on ONNX Runtime, so KUBEINFER_RUNTIME must be auto or onnx, not torch")
        return value

    @field_validator("cpu_dtype", "device", "runtime", "quantization", mode="before")
    @classmethod
    def _lower_case(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    def batching(self) -> dict[str, Any]:
        """The batching options the environment sets, in ``BatchingOptions``' terms."""
        options: dict[str, Any] = {name: getattr(self, name) for name in self._BATCHING if getattr(self, name)}
        if self.max_batch_wait_ms is not None:
            options["max_wait"] = self.max_batch_wait_ms / 1000.0
        return options


# OperatorSettings field -> environment variable, as the Helm chart sets them.
ENVIRONMENT: dict[str, str] = {field: env_var(field) for field in OperatorSettings.model_fields}
